//! One stage function in Lambda: what it should be (the stub's package, runtime, role,
//! environment, timeout, memory, tags, Function URL), what Lambda has, the difference in
//! words, and the calls that close it: created once, then updated only where it differs,
//! code before configuration with `LastUpdateStatus` awaited between them.

use super::progress::Step;
use crate::aws::{is_not_found, Failure};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionUrlAuthType, LastUpdateStatus, Runtime, State,
};
use aws_sdk_lambda::Client;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What a stage function should be.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Lambda's function name.
    pub name: String,
    pub description: String,
    pub role_arn: String,
    /// Whether the role was just created: Lambda may not see it for a few seconds.
    pub role_is_new: bool,
    pub env: BTreeMap<String, String>,
    pub timeout: i32,
    pub memory: i32,
    pub tags: BTreeMap<String, String>,
    /// A public Function URL (auth type NONE).
    pub url: bool,
    /// The stub's architecture, as Lambda names it (`x86_64`, `arm64`).
    pub architecture: &'static str,
}

/// What happened to a function.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub arn: String,
    pub url: Option<String>,
    /// Empty: unchanged.
    pub changes: Vec<String>,
    pub created: bool,
}

/// How long a change waits for IAM or another update before it fails.
const MINUTE: Duration = Duration::from_secs(60);

/// Doubling delays up to a cap, for a bounded time: how this module waits on AWS.
struct Backoff {
    delay: Duration,
    max: Duration,
    deadline: tokio::time::Instant,
}

impl Backoff {
    fn new(first: Duration, max: Duration, within: Duration) -> Backoff {
        Backoff {
            delay: first,
            max,
            deadline: tokio::time::Instant::now() + within,
        }
    }

    fn expired(&self) -> bool {
        tokio::time::Instant::now() >= self.deadline
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.max);
    }
}

/// The stub is a custom runtime on Amazon Linux 2023; `bootstrap` is its handler.
const RUNTIME: Runtime = Runtime::Providedal2023;
const HANDLER: &str = "bootstrap";

/// Make the function `desired` with code `zip` (whose `CodeSha256` is `sha256`).
pub async fn ensure(
    lambda: &Client,
    desired: &Desired,
    zip: &[u8],
    sha256: &str,
    step: &Step,
) -> anyhow::Result<Deployed> {
    let name = &desired.name;
    let what = format!("function {name}");
    let current = match lambda.get_function().function_name(name).send().await {
        Ok(out) => Some(out),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(Failure::of("lambda:GetFunction", &what, e).into()),
    };
    let mut deployed = match current {
        None => {
            step.say("creating");
            let arn = create(lambda, desired, zip, step).await?;
            wait_until_ready(lambda, name, step).await?;
            Deployed {
                arn,
                url: None,
                changes: Vec::new(),
                created: true,
            }
        }
        Some(out) => {
            let tags = out.tags();
            let tag = |key: &str| tags.and_then(|t| t.get(key)).map(String::as_str);
            if !super::names::carries_stage(tag, &desired.tags) {
                anyhow::bail!(
                    "{what} exists and is not this stage's (it lacks the stage's live:app and \
                     live:stage tags): live deploy never takes over what it did not create; \
                     `live attach {name}` puts the stub in front of it and gives it back"
                );
            }
            // Another update (a deploy just before, another tool) may still be running.
            wait_until_ready(lambda, name, step).await?;
            let config = out
                .configuration()
                .cloned()
                .unwrap_or_else(|| aws_sdk_lambda::types::FunctionConfiguration::builder().build());
            let arn = config.function_arn().unwrap_or_default().to_owned();
            let mut changes = Vec::new();
            let architectures: Vec<&str> =
                config.architectures().iter().map(|a| a.as_str()).collect();
            let moved = architectures != [desired.architecture];
            if config.code_sha256() != Some(sha256) || moved {
                changes.push("code (the stub)".to_owned());
                if moved {
                    changes.push(format!(
                        "architecture {} -> {}",
                        architectures.join(", "),
                        desired.architecture
                    ));
                }
                step.say("updating code");
                lambda
                    .update_function_code()
                    .function_name(name)
                    .architectures(Architecture::from(desired.architecture))
                    .zip_file(Blob::new(zip.to_vec()))
                    .send()
                    .await
                    .map_err(|e| Failure::of("lambda:UpdateFunctionCode", &what, e))?;
                wait_until_ready(lambda, name, step).await?;
            }
            let config_changes = configuration_changes(&config, desired);
            if !config_changes.is_empty() {
                step.say("updating configuration");
                update_configuration(lambda, desired, step).await?;
                wait_until_ready(lambda, name, step).await?;
                changes.extend(config_changes);
            }
            let tag_changes: HashMap<String, String> = desired
                .tags
                .iter()
                .filter(|(k, v)| tag(k) != Some(v.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !tag_changes.is_empty() {
                let mut keys: Vec<&String> = tag_changes.keys().collect();
                keys.sort();
                changes.push(format!(
                    "tags {}",
                    keys.iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                lambda
                    .tag_resource()
                    .resource(&arn)
                    .set_tags(Some(tag_changes))
                    .send()
                    .await
                    .map_err(|e| Failure::of("lambda:TagResource", &what, e))?;
            }
            Deployed {
                arn,
                url: None,
                changes,
                created: false,
            }
        }
    };
    deployed.url = url(lambda, desired, &mut deployed.changes, step).await?;
    Ok(deployed)
}

async fn create(
    lambda: &Client,
    desired: &Desired,
    zip: &[u8],
    step: &Step,
) -> anyhow::Result<String> {
    let what = format!("function {}", desired.name);
    // A new role takes a few seconds to reach Lambda ("cannot be assumed"): retried, bounded.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8), MINUTE);
    loop {
        let result = lambda
            .create_function()
            .function_name(&desired.name)
            .description(&desired.description)
            .runtime(RUNTIME)
            .handler(HANDLER)
            .architectures(Architecture::from(desired.architecture))
            .role(&desired.role_arn)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(zip.to_vec()))
                    .build(),
            )
            .timeout(desired.timeout)
            .memory_size(desired.memory)
            .environment(environment(desired))
            .set_tags(Some(
                desired
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(out) => return Ok(out.function_arn().unwrap_or_default().to_owned()),
            Err(e) if desired.role_is_new && role_not_ready(&e) && !backoff.expired() => {
                step.say(&format!(
                    "waiting for IAM: the new role is not yet visible to Lambda (retrying in {:.1} s)",
                    backoff.delay.as_secs_f64()
                ));
                backoff.wait().await;
            }
            Err(e) => return Err(Failure::of("lambda:CreateFunction", &what, e).into()),
        }
    }
}

/// Lambda's answer while IAM has not yet propagated a new role.
fn role_not_ready<R>(
    e: &aws_sdk_lambda::error::SdkError<
        aws_sdk_lambda::operation::create_function::CreateFunctionError,
        R,
    >,
) -> bool {
    use aws_sdk_lambda::error::ProvideErrorMetadata;
    e.as_service_error().is_some_and(|s| {
        s.code() == Some("InvalidParameterValueException")
            && s.message()
                .unwrap_or_default()
                .contains("cannot be assumed")
    })
}

async fn update_configuration(
    lambda: &Client,
    desired: &Desired,
    step: &Step,
) -> anyhow::Result<()> {
    let what = format!("function {}", desired.name);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4), MINUTE);
    loop {
        let result = lambda
            .update_function_configuration()
            .function_name(&desired.name)
            .description(&desired.description)
            .runtime(RUNTIME)
            .handler(HANDLER)
            .role(&desired.role_arn)
            .timeout(desired.timeout)
            .memory_size(desired.memory)
            .environment(environment(desired))
            .send()
            .await;
        match result {
            Ok(_) => return Ok(()),
            // Another update still running (a deploy racing this one): wait for it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_conflict_exception())
                    && !backoff.expired() =>
            {
                step.say("waiting for an update in progress");
                backoff.wait().await;
            }
            Err(e) => {
                return Err(Failure::of("lambda:UpdateFunctionConfiguration", &what, e).into())
            }
        }
    }
}

fn environment(desired: &Desired) -> Environment {
    Environment::builder()
        .set_variables(Some(
            desired
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
        .build()
}

/// The names of the functions carrying `stage_tags` (all pages; one `ListTags` per
/// function).
pub async fn of_stage(
    lambda: &Client,
    stage_tags: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<String>> {
    let mut functions = Vec::new();
    let mut pages = lambda.list_functions().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Failure::of("lambda:ListFunctions", "functions", e))?;
        for f in page.functions() {
            if let (Some(name), Some(arn)) = (f.function_name(), f.function_arn()) {
                functions.push((name.to_owned(), arn.to_owned()));
            }
        }
    }
    let mut ours = Vec::new();
    for (name, arn) in functions {
        let tags = lambda
            .list_tags()
            .resource(&arn)
            .send()
            .await
            .map_err(|e| Failure::of("lambda:ListTags", &format!("function {name}"), e))?;
        let tag = |key: &str| tags.tags().and_then(|t| t.get(key)).map(String::as_str);
        if super::names::carries_stage(tag, stage_tags) {
            ours.push(name);
        }
    }
    Ok(ours)
}

/// Lambda's limit on a function's environment: 4 KB of names and values together.
const ENV_MAX_BYTES: usize = 4096;

/// Variables Lambda sets itself and refuses in a function's configuration.
const RESERVED: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Check an environment as Lambda will, before anything is changed: names of letters, digits
/// and `_` starting with a letter, none Lambda reserves, 4 KB in all.
pub fn check_environment(what: &str, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    for name in env.keys() {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            anyhow::bail!(
                "{what}: environment variable {name:?} is not a name Lambda takes (a letter, \
                 then letters, digits and _): rename it in live.toml's env"
            );
        }
        if RESERVED.contains(&name.as_str()) {
            anyhow::bail!(
                "{what}: Lambda sets {name} itself and refuses it in a function's environment: \
                 remove it from live.toml's env"
            );
        }
    }
    let size: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > ENV_MAX_BYTES {
        anyhow::bail!(
            "{what}: the environment is {size} bytes with live's own variables, over Lambda's \
             4 KB: move large values to SSM Parameter Store or Secrets Manager"
        );
    }
    Ok(())
}

/// What differs between Lambda's configuration and the desired one, in words (variables by
/// name only: their values may be secrets).
pub fn configuration_changes(
    have: &aws_sdk_lambda::types::FunctionConfiguration,
    want: &Desired,
) -> Vec<String> {
    let mut changes = Vec::new();
    if have.timeout() != Some(want.timeout) {
        changes.push(format!(
            "timeout {} s -> {} s",
            have.timeout().unwrap_or_default(),
            want.timeout
        ));
    }
    if have.memory_size() != Some(want.memory) {
        changes.push(format!(
            "memory {} MB -> {} MB",
            have.memory_size().unwrap_or_default(),
            want.memory
        ));
    }
    if have.role() != Some(want.role_arn.as_str()) {
        changes.push(format!("role -> {}", want.role_arn));
    }
    if have.runtime() != Some(&RUNTIME) {
        changes.push(format!("runtime -> {}", RUNTIME.as_str()));
    }
    if have.handler() != Some(HANDLER) {
        changes.push(format!("handler -> {HANDLER}"));
    }
    if have.description().unwrap_or_default() != want.description {
        changes.push("description".to_owned());
    }
    let empty = HashMap::new();
    let vars = have
        .environment()
        .and_then(|e| e.variables())
        .unwrap_or(&empty);
    let mut names: Vec<&String> = vars.keys().chain(want.env.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        match (vars.get(name), want.env.get(name)) {
            (None, Some(_)) => changes.push(format!("env {name} added")),
            (Some(_), None) => changes.push(format!("env {name} removed")),
            (Some(a), Some(b)) if a != b => changes.push(format!("env {name} changed")),
            _ => {}
        }
    }
    changes
}

/// Replace function `name`'s code with the zip at `bucket`/`key` (Lambda reads it there: no
/// 50 MB cap of a direct upload), and wait until Lambda is done.
pub(super) async fn code_from_bucket(
    lambda: &Client,
    name: &str,
    bucket: &str,
    key: &str,
    step: &Step,
) -> anyhow::Result<()> {
    lambda
        .update_function_code()
        .function_name(name)
        .s3_bucket(bucket)
        .s3_key(key)
        .send()
        .await
        .map_err(|e| Failure::of("lambda:UpdateFunctionCode", &format!("function {name}"), e))?;
    wait_until_ready(lambda, name, step).await
}

/// Wait until Lambda has finished with the function (state Active, last update done), or
/// say why it failed.
pub(super) async fn wait_until_ready(
    lambda: &Client,
    name: &str,
    step: &Step,
) -> anyhow::Result<()> {
    let what = format!("function {name}");
    let mut backoff = Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(2),
        Duration::from_secs(300),
    );
    let mut said = false;
    loop {
        let config = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| Failure::of("lambda:GetFunctionConfiguration", &what, e))?;
        let state = config.state().cloned();
        let update = config.last_update_status().cloned();
        if state == Some(State::Failed) || update == Some(LastUpdateStatus::Failed) {
            anyhow::bail!(
                "Lambda could not make {what} ready: {}",
                config
                    .last_update_status_reason()
                    .or(config.state_reason())
                    .unwrap_or("no reason given")
            );
        }
        let busy = state == Some(State::Pending) || update == Some(LastUpdateStatus::InProgress);
        if !busy {
            return Ok(());
        }
        if backoff.expired() {
            anyhow::bail!("{what} was still updating after 5 minutes: look at it in the Lambda console, then run `live deploy` again");
        }
        if !said {
            step.say("waiting for Lambda to finish the update");
            said = true;
        }
        backoff.wait().await;
    }
}

/// The Function URL: created (with the permissions a public URL needs) when asked for and
/// missing, deleted when no longer asked for.
async fn url(
    lambda: &Client,
    desired: &Desired,
    changes: &mut Vec<String>,
    step: &Step,
) -> anyhow::Result<Option<String>> {
    let name = &desired.name;
    let what = format!("the Function URL of {name}");
    let current = match lambda
        .get_function_url_config()
        .function_name(name)
        .send()
        .await
    {
        Ok(out) => Some(out.function_url().to_owned()),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(Failure::of("lambda:GetFunctionUrlConfig", &what, e).into()),
    };
    match (current, desired.url) {
        (Some(url), true) => {
            // A deploy stopped between creating the URL and its permissions left a URL that
            // answers 403: put back what is missing.
            if add_url_permissions(lambda, name, &what).await? {
                changes.push("Function URL permissions".to_owned());
            }
            Ok(Some(url))
        }
        (None, false) => Ok(None),
        (Some(_), false) => {
            step.say("removing the Function URL");
            lambda
                .delete_function_url_config()
                .function_name(name)
                .send()
                .await
                .map_err(|e| Failure::of("lambda:DeleteFunctionUrlConfig", &what, e))?;
            for sid in [URL_PERMISSION, URL_INVOKE_PERMISSION] {
                let _ = lambda
                    .remove_permission()
                    .function_name(name)
                    .statement_id(sid)
                    .send()
                    .await;
            }
            changes.push("Function URL removed".to_owned());
            Ok(None)
        }
        (None, true) => {
            step.say("creating the Function URL");
            let out = lambda
                .create_function_url_config()
                .function_name(name)
                .auth_type(FunctionUrlAuthType::None)
                .send()
                .await
                .map_err(|e| Failure::of("lambda:CreateFunctionUrlConfig", &what, e))?;
            add_url_permissions(lambda, name, &what).await?;
            changes.push("Function URL created".to_owned());
            Ok(Some(out.function_url().to_owned()))
        }
    }
}

/// Add the two statements a public URL needs that the function's resource policy lacks
/// (a URL with auth type NONE is public only with both: since 2025 Lambda asks for
/// lambda:InvokeFunction beside lambda:InvokeFunctionUrl); whether any was missing.
async fn add_url_permissions(lambda: &Client, name: &str, what: &str) -> anyhow::Result<bool> {
    let sids: Vec<String> = match lambda.get_policy().function_name(name).send().await {
        Ok(out) => out
            .policy()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|p| p["Statement"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["Sid"].as_str().map(str::to_owned))
            .collect(),
        Err(e) if is_not_found(&e) => Vec::new(),
        Err(e) => return Err(Failure::of("lambda:GetPolicy", what, e).into()),
    };
    let mut added = false;
    if !sids.iter().any(|s| s == URL_PERMISSION) {
        lambda
            .add_permission()
            .function_name(name)
            .statement_id(URL_PERMISSION)
            .action("lambda:InvokeFunctionUrl")
            .principal("*")
            .function_url_auth_type(FunctionUrlAuthType::None)
            .send()
            .await
            .map_err(|e| Failure::of("lambda:AddPermission", what, e))?;
        added = true;
    }
    if !sids.iter().any(|s| s == URL_INVOKE_PERMISSION) {
        lambda
            .add_permission()
            .function_name(name)
            .statement_id(URL_INVOKE_PERMISSION)
            .action("lambda:InvokeFunction")
            .principal("*")
            .invoked_via_function_url(true)
            .send()
            .await
            .map_err(|e| Failure::of("lambda:AddPermission", what, e))?;
        added = true;
    }
    Ok(added)
}

/// The statement ids of the Function URL's resource-policy statements.
const URL_PERMISSION: &str = "live-function-url";
const URL_INVOKE_PERMISSION: &str = "live-function-url-invoke";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_lambda_would_refuse_are_named_before_anything_changes() {
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(check_environment("f", &env(&[("TABLE", "t"), ("LIVE_APP", "a")])).is_ok());
        let reserved = check_environment("f", &env(&[("AWS_REGION", "x")])).unwrap_err();
        assert!(
            reserved
                .to_string()
                .contains("Lambda sets AWS_REGION itself"),
            "{reserved}"
        );
        let bad = check_environment("f", &env(&[("1ST", "x")])).unwrap_err();
        assert!(bad.to_string().contains("\"1ST\""), "{bad}");
        let big = "x".repeat(4_100);
        let large = check_environment("f", &env(&[("BIG", &big)])).unwrap_err();
        assert!(large.to_string().contains("over Lambda's 4 KB"), "{large}");
    }
}
