//! The names a stage's resources get in AWS: functions, roles and the payload bucket, each
//! inside its service's characters and length, the same on every run (deploy, remove and the
//! tests find them again by name), with a hash where a name had to be cut.

/// What identifies one function of a stage in AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionNames {
    /// Lambda's function name: `{app}-{stage}-{function}`.
    pub function: String,
    /// The IAM role's name: the function's and the region (IAM is global, the role's
    /// policy names regional resources).
    pub role: String,
}

/// Lambda function names: 64 characters of `[A-Za-z0-9_-]`.
const FUNCTION_MAX: usize = 64;
/// IAM role names: 64 characters of `[A-Za-z0-9+=,.@_-]`.
const ROLE_MAX: usize = 64;
/// S3 bucket names: 3-63 characters of `[a-z0-9.-]`, starting and ending with a letter or
/// digit (no dots here: a dotted name breaks TLS to virtual-hosted buckets).
const BUCKET_MAX: usize = 63;

/// The tag keys every resource of a stage carries, and how `live remove` finds them.
pub const TAG_APP: &str = "live:app";
pub const TAG_STAGE: &str = "live:stage";
pub const TAG_FUNCTION: &str = "live:function";

/// The tags that mark a resource as `app`'s `stage`'s.
pub fn stage_tags(app: &str, stage: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (TAG_APP.to_owned(), app.to_owned()),
        (TAG_STAGE.to_owned(), stage.to_owned()),
    ])
}

/// Whether a resource whose tags `tag` looks up carries the stage's (`stage_tags`'s) app and
/// stage: the one judgement of what belongs to a stage.
pub fn carries_stage<'a>(
    tag: impl Fn(&str) -> Option<&'a str>,
    stage_tags: &std::collections::BTreeMap<String, String>,
) -> bool {
    [TAG_APP, TAG_STAGE]
        .iter()
        .all(|key| tag(key).is_some_and(|v| stage_tags.get(*key).is_some_and(|w| w == v)))
}

/// The inline policy `live deploy` puts on each role it creates.
pub const ROLE_POLICY: &str = "live-stage";

pub fn function(app: &str, stage: &str, function: &str, region: &str) -> FunctionNames {
    let name = fit(
        &format!("{app}-{stage}-{function}"),
        FUNCTION_MAX,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        '-',
    );
    let role = fit(
        &format!("{name}-{region}"),
        ROLE_MAX,
        |c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c),
        '-',
    );
    FunctionNames {
        function: name,
        role,
    }
}

/// The stage's Lambda layer (the stub and its exec wrapper, for attached functions of managed
/// runtimes): `{app}-{stage}-live`, 140 characters of `[A-Za-z0-9_-]`.
pub fn layer(app: &str, stage: &str) -> String {
    fit(
        &format!("{app}-{stage}-live"),
        140,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        '-',
    )
}

/// The inline policy `live attach` adds to an attached function's role (and detach removes):
/// one per function, since tools often give several functions one role.
pub fn attach_policy(app: &str, stage: &str, function: &str) -> String {
    fit(
        &format!("live-{app}-{stage}-{function}"),
        128,
        |c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c),
        '-',
    )
}

/// A Lambda function's name from what a user typed: a name, or an ARN (with or without a
/// qualifier), or `NAME=LOCAL`.
pub fn lambda_name(given: &str) -> &str {
    let given = given.split_once('=').map_or(given, |(name, _)| name);
    match given.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => given,
    }
}

/// The stage's payload bucket: `live-{app}-{stage}-{account}-{region}`, lower case.
pub fn bucket(app: &str, stage: &str, account: &str, region: &str) -> String {
    let wanted = format!("live-{app}-{stage}-{account}-{region}").to_ascii_lowercase();
    let name = fit(
        &wanted,
        BUCKET_MAX,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        '-',
    );
    name.trim_end_matches('-').to_owned()
}

/// `wanted` with characters outside `allowed` replaced by `replacement`, and, when longer
/// than `max`, cut and ended with 8 hex digits of the whole wanted name's hash.
fn fit(wanted: &str, max: usize, allowed: impl Fn(char) -> bool, replacement: char) -> String {
    let clean: String = wanted
        .chars()
        .map(|c| if allowed(c) { c } else { replacement })
        .collect();
    if clean.len() <= max && clean == wanted {
        return clean;
    }
    if clean.len() <= max {
        // Replaced characters: two names differing only there must not collide.
        let kept = clean.len().min(max - 9);
        return format!("{}-{:08x}", &clean[..kept], hash32(wanted));
    }
    format!("{}-{:08x}", &clean[..max - 9], hash32(wanted))
}

/// FNV-1a, 32 bits: stable across versions and machines.
fn hash32(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_read_as_the_app_stage_and_function() {
        let names = function("hello", "ci", "http", "eu-west-1");
        assert_eq!(names.function, "hello-ci-http");
        assert_eq!(names.role, "hello-ci-http-eu-west-1");
        assert_eq!(
            bucket("hello", "ci", "123456789012", "eu-west-1"),
            "live-hello-ci-123456789012-eu-west-1"
        );
    }

    #[test]
    fn characters_a_service_refuses_are_replaced_and_the_name_stays_unique() {
        let dotted = function("my.app", "ci", "f", "us-east-1");
        assert!(dotted
            .function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(
            dotted.function,
            function("my-app", "ci", "f", "us-east-1").function
        );
        let b = bucket("My_App", "Ci", "123456789012", "us-east-1");
        assert!(
            b.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{b}"
        );
        assert_ne!(b, bucket("my-app", "ci", "123456789012", "us-east-1"));
    }

    #[test]
    fn arns_and_local_names_give_the_lambda_name() {
        assert_eq!(lambda_name("orders"), "orders");
        assert_eq!(lambda_name("orders=api"), "orders");
        assert_eq!(
            lambda_name("arn:aws:lambda:eu-west-1:123456789012:function:orders:live"),
            "orders"
        );
        assert_eq!(
            lambda_name("arn:aws:lambda:eu-west-1:123456789012:function:orders=api"),
            "orders"
        );
    }

    #[test]
    fn long_names_are_cut_within_the_limits_and_stay_apart() {
        let long = "f".repeat(64);
        let a = function(&long, &long, "a", "ap-southeast-2");
        let b = function(&long, &long, "b", "ap-southeast-2");
        assert!(a.function.len() <= 64 && a.role.len() <= 64);
        assert_ne!(a.function, b.function);
        assert_ne!(a.role, b.role);
        let bucket_name = bucket(&long, &long, "123456789012", "ap-southeast-2");
        assert!(bucket_name.len() <= 63 && !bucket_name.ends_with('-'));
        // The same input gives the same name on every run.
        assert_eq!(a, function(&long, &long, "a", "ap-southeast-2"));
    }
}
