//! AWS failures a user can fix, named: no credentials, access denied (naming the action), a
//! resource not found, AWS unreachable, or another refusal with AWS's code; each with the
//! exit code `live` ends with (documented in `live --help`).

use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};

/// Exit codes of `live`, beside 0 (done), 1 (any other error) and 2 (a bad command line).
pub mod exit {
    /// No AWS credentials or region.
    pub const NO_CREDENTIALS: u8 = 3;
    /// AWS refused a call: access denied.
    pub const ACCESS_DENIED: u8 = 4;
    /// A function (or other resource) named does not exist.
    pub const NOT_FOUND: u8 = 5;
    /// The AWS API could not be reached.
    pub const UNREACHABLE: u8 = 6;
}

/// A failed AWS call, named for what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("no AWS credentials ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run `aws sso login`, or pass --profile")]
    NoCredentials { detail: String },
    #[error("access denied: the credentials may not call {action} ({message}); allow {action} in their IAM policy, or use a profile that may (--profile)")]
    AccessDenied { action: String, message: String },
    #[error("{what} not found ({message}): check the name, --region and the account (`aws sts get-caller-identity`)")]
    NotFound { what: String, message: String },
    #[error("could not reach AWS for {action} ({detail}): check the network and --region, or AWS_ENDPOINT_URL if set")]
    Unreachable { action: String, detail: String },
    /// A failure worded where it happened (its advice is the caller's), with its exit code.
    #[error("{text}")]
    Worded { text: String, exit: u8 },
    #[error("AWS refused {action}: {code}: {message}")]
    Refused {
        action: String,
        code: String,
        message: String,
    },
}

impl Failure {
    /// The exit code `live` ends with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::NoCredentials { .. } => exit::NO_CREDENTIALS,
            Failure::AccessDenied { .. } => exit::ACCESS_DENIED,
            Failure::NotFound { .. } => exit::NOT_FOUND,
            Failure::Unreachable { .. } => exit::UNREACHABLE,
            Failure::Worded { exit, .. } => *exit,
            Failure::Refused { .. } => 1,
        }
    }

    /// The failure of calling `action` (`service:Operation`, as IAM names it) on `what`.
    pub fn of<E, R>(action: &str, what: &str, error: SdkError<E, R>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match &error {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let code = err.code().unwrap_or("Unknown").to_owned();
                let message = err.message().unwrap_or_default().to_owned();
                classify(action, what, code, message)
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Failure::Unreachable {
                action: action.to_owned(),
                detail: super::chain(&error),
            },
            _ => {
                let detail = super::chain(&error);
                if detail.contains("credentials") || detail.contains("identity") {
                    Failure::NoCredentials { detail }
                } else {
                    Failure::Refused {
                        action: action.to_owned(),
                        code: "RequestFailed".to_owned(),
                        message: detail,
                    }
                }
            }
        }
    }
}

/// Whether AWS answered that the thing asked for does not exist.
pub fn is_not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(not_found_code)
}

fn not_found_code(code: &str) -> bool {
    matches!(
        code,
        "ResourceNotFoundException" | "NoSuchEntity" | "NoSuchBucket" | "NotFound" | "NoSuchKey"
    ) || code.starts_with("NoSuch")
}

fn classify(action: &str, what: &str, code: String, message: String) -> Failure {
    let denied = matches!(
        code.as_str(),
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "Forbidden"
    ) || code.ends_with("AccessDeniedException");
    let expired = matches!(
        code.as_str(),
        "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
    );
    if denied {
        Failure::AccessDenied {
            action: action.to_owned(),
            message,
        }
    } else if expired {
        Failure::NoCredentials {
            detail: format!("AWS did not accept them for {action}: {code}: {message}"),
        }
    } else if not_found_code(&code) {
        Failure::NotFound {
            what: what.to_owned(),
            message: format!("{code}: {message}"),
        }
    } else {
        Failure::Refused {
            action: action.to_owned(),
            code,
            message,
        }
    }
}

/// The exit code for an error: a [`Failure`]'s anywhere in its chain, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(1, Failure::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_codes_become_named_failures_with_their_exit_codes() {
        let denied = classify(
            "lambda:CreateFunction",
            "function f",
            "AccessDeniedException".into(),
            "User: x is not authorized".into(),
        );
        assert_eq!(denied.exit_code(), exit::ACCESS_DENIED);
        assert!(
            denied.to_string().contains("lambda:CreateFunction"),
            "{denied}"
        );
        let missing = classify(
            "lambda:GetFunction",
            "function f",
            "ResourceNotFoundException".into(),
            "Function not found".into(),
        );
        assert_eq!(missing.exit_code(), exit::NOT_FOUND);
        assert!(missing.to_string().starts_with("function f not found"));
        let expired = classify(
            "sts:GetCallerIdentity",
            "",
            "ExpiredToken".into(),
            "".into(),
        );
        assert_eq!(expired.exit_code(), exit::NO_CREDENTIALS);
        let other = classify(
            "iam:CreateRole",
            "",
            "LimitExceeded".into(),
            "too many".into(),
        );
        assert_eq!(other.exit_code(), 1);
        let wrapped = anyhow::Error::new(denied).context("deploying hello");
        assert_eq!(exit_code(&wrapped), exit::ACCESS_DENIED);
    }
}
