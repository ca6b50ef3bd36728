//! Launching a function's runtime client as Lambda starts one: the program a build produced
//! ([`Launch`]), the environment Lambda gives every runtime ([`lambda_env`]), its `_HANDLER`,
//! and the command that puts them together ([`runtime_command`]). Used for `live dev`'s
//! workers and `live cloud --direct`'s handlers alike.

use crate::config::Function;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The region every local execution environment reports.
pub const REGION: &str = "us-east-1";

/// How to start a function's runtime: program, arguments, working directory.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub dir: PathBuf,
}

/// Make sure a launch's program exists, for a clearer error than the spawn's.
pub fn check_launch(name: &str, launch: &Launch) -> anyhow::Result<()> {
    if launch.program.components().count() > 1 && !launch.program.exists() {
        bail!(
            "function {name}: {} does not exist; check `command` in live.toml",
            launch.program.display()
        );
    }
    std::fs::metadata(&launch.dir).with_context(|| {
        format!(
            "function {name}: working directory {} is missing",
            launch.dir.display()
        )
    })?;
    Ok(())
}

/// `_HANDLER` for `function`: its `handler` setting, or else its name.
pub fn handler_name(function: &str, config: &Function) -> String {
    config
        .handler
        .clone()
        .unwrap_or_else(|| function.to_string())
}

/// The command that starts `function`'s runtime client (`launch`) against the Runtime API at
/// `api`, in the environment Lambda gives a runtime; the function's own `env` comes last and
/// wins. Used for `live dev`'s workers and `live cloud --direct`'s handlers alike.
pub fn runtime_command(
    function: &str,
    config: &Function,
    launch: &Launch,
    env_id: &str,
    api: SocketAddr,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .current_dir(&launch.dir)
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .envs(lambda_env(function, config, env_id))
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("_HANDLER", handler_name(function, config))
        .env("LAMBDA_TASK_ROOT", &launch.dir)
        .envs(&config.env);
    cmd
}

/// The environment Lambda gives every runtime, as the official clients need it.
pub fn lambda_env(function: &str, config: &Function, env_id: &str) -> Vec<(String, String)> {
    let day = crate::ids::utc_day();
    vec![
        ("AWS_LAMBDA_FUNCTION_NAME".into(), function.into()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            config.memory.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            format!("{day}/[$LATEST]{env_id}"),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_DEFAULT_REGION".into(), REGION.into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        ("TZ".into(), "UTC".into()),
    ]
}
