//! The Lambda Runtime API (2018-06-01) surface: paths and header names, defined once and used
//! by the stub's client and by every local host's server ([`server`], feature
//! `runtime-server`).

#[cfg(feature = "runtime-server")]
pub mod http_server;
#[cfg(feature = "runtime-server")]
pub mod server;

/// `GET`: the next invocation, held open until there is one.
pub const NEXT: &str = "/2018-06-01/runtime/invocation/next";
/// `POST`: an initialization error; served to the pending invocation.
pub const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";
/// The prefix of `/{request_id}/response` and `/{request_id}/error`.
pub const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
/// `POST`: register an extension (answered so that `lambda_runtime`'s graceful-shutdown
/// helper starts).
pub const EXTENSION_REGISTER: &str = "/2020-01-01/extension/register";
/// `GET`: an extension's next event (held open: no events are emitted locally).
pub const EXTENSION_NEXT: &str = "/2020-01-01/extension/event/next";

/// The invocation's request id.
pub const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
/// The deadline, epoch milliseconds.
pub const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
/// The invoked function's ARN.
pub const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
/// The X-Ray trace header.
pub const TRACE_ID: &str = "lambda-runtime-trace-id";
/// The mobile SDK client context, JSON.
pub const CLIENT_CONTEXT: &str = "lambda-runtime-client-context";
/// The Cognito identity, JSON.
pub const COGNITO_IDENTITY: &str = "lambda-runtime-cognito-identity";
/// The error type a runtime reports on `/error` and `/init/error`.
pub const ERROR_TYPE: &str = "lambda-runtime-function-error-type";

/// The largest buffered response Lambda accepts (6 MiB + 100 bytes); above it the runtime
/// gets 413 and the caller `Function.ResponseSizeTooLarge`.
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;

/// The path of `/response` for `request_id`.
pub fn response_path(request_id: &str) -> String {
    format!("{INVOCATION_PREFIX}{request_id}/response")
}

/// The path of `/error` for `request_id`.
pub fn error_path(request_id: &str) -> String {
    format!("{INVOCATION_PREFIX}{request_id}/error")
}

/// Whether a header of `/next` belongs to the invocation (and so is tunnelled unchanged).
pub fn is_invocation_header(name: &str) -> bool {
    name.len() > 15 && name[..15].eq_ignore_ascii_case("lambda-runtime-")
}

/// Whether a header of a runtime's `/response` or `/error` request is carried back to the
/// caller: all but the connection-level ones.
pub fn is_result_header(name: &str) -> bool {
    ![
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// An error body in the Runtime API's documented shape.
pub fn error_body(error_type: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "errorMessage": message,
        "errorType": error_type,
    }))
    .expect("a JSON object serializes")
}

/// The headers of an error JSON body the bridge writes itself.
pub fn json_headers() -> Vec<crate::protocol::Header> {
    vec![("content-type".into(), "application/json".into())]
}

/// A failure as its error type and body in the documented shape ([`error_body`]).
pub fn failure(error_type: &str, message: &str) -> (String, bytes::Bytes) {
    (
        error_type.to_string(),
        bytes::Bytes::from(error_body(error_type, message)),
    )
}
