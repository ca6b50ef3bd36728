//! Launching a function's runtime client as Lambda starts one: the program a build produced
//! ([`Launch`]), the environment Lambda gives every runtime ([`lambda_env`]), its `_HANDLER`,
//! and the command that puts them together ([`runtime_command`]), with what a deployed
//! function's stub forwarded ([`Deployed`]: its environment, its role's credentials served
//! from an endpoint). Used for `live dev`'s workers and `live cloud --direct`'s handlers
//! alike.

use crate::config::Function;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
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

/// What the deployed function's stub forwarded for its execution environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deployed<'a> {
    /// The function's environment in the cloud (Lambda's runtime-internal variables left out
    /// by the stub).
    pub env: Option<&'a BTreeMap<String, String>>,
    /// The container-credentials variables (URL and token) serving its role's credentials.
    pub credentials: Option<&'a [(&'static str, String); 2]>,
}

/// Credential variables of the developer's own shell that must not reach a handler given the
/// role's credentials: each would win over the container endpoint in some SDK's chain.
const OWN_CREDENTIALS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// The command that starts `function`'s runtime client (`launch`) against the Runtime API at
/// `api`, in the environment Lambda gives a runtime: the local defaults, then what the stub
/// `deployed` forwarded, then this Runtime API; given the role's credentials, the
/// developer's own are removed and the shared AWS files hidden (as in Lambda, where there
/// are none: botocore reads a profile before the container endpoint). The function's own
/// `env` from live.toml comes last and wins. Used for `live dev`'s workers and
/// `live cloud --direct`'s handlers alike.
pub fn runtime_command(
    function: &str,
    config: &Function,
    launch: &Launch,
    env_id: &str,
    api: SocketAddr,
    deployed: Deployed<'_>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .current_dir(&launch.dir)
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .envs(lambda_env(function, config, env_id));
    if let Some(env) = deployed.env {
        cmd.envs(env);
    }
    cmd.env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("_HANDLER", handler_name(function, config))
        .env("LAMBDA_TASK_ROOT", &launch.dir);
    if let Some(credentials) = deployed.credentials {
        for name in OWN_CREDENTIALS {
            cmd.env_remove(name);
        }
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .envs(credentials.iter().map(|(k, v)| (k, v)));
    }
    cmd.envs(&config.env);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// What `cmd` sets (`Some`) or removes (`None`) for `name`, if anything.
    fn change<'a>(cmd: &'a tokio::process::Command, name: &str) -> Option<Option<&'a OsStr>> {
        cmd.as_std()
            .get_envs()
            .filter(|(k, _)| *k == name)
            .last()
            .map(|(_, v)| v)
    }

    #[test]
    fn a_worker_given_the_roles_credentials_gets_none_of_the_developers() {
        let mut config = Function::default();
        config.env.insert("TABLE".into(), "mine".into());
        let launch = Launch {
            program: "python3".into(),
            args: vec![],
            dir: "/tmp".into(),
        };
        let cloud = BTreeMap::from([
            ("AWS_REGION".to_string(), "eu-west-1".to_string()),
            ("TABLE".to_string(), "the-clouds".to_string()),
            ("QUEUE".to_string(), "q".to_string()),
        ]);
        let served = [
            (FULL, "http://127.0.0.1:1/credentials/f/x".to_string()),
            (TOKEN, "t".to_string()),
        ];
        const FULL: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
        const TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
        let api = "127.0.0.1:9".parse().unwrap();
        let deployed = Deployed {
            env: Some(&cloud),
            credentials: Some(&served),
        };
        let cmd = runtime_command("f", &config, &launch, "e", api, deployed);
        let set = |name| change(&cmd, name).flatten().map(|v| v.to_str().unwrap());
        assert_eq!(
            set("AWS_REGION"),
            Some("eu-west-1"),
            "the cloud's region wins"
        );
        assert_eq!(set("QUEUE"), Some("q"));
        assert_eq!(set("TABLE"), Some("mine"), "live.toml's env wins");
        assert_eq!(set("AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9"));
        assert_eq!(set(FULL), Some("http://127.0.0.1:1/credentials/f/x"));
        assert_eq!(set(TOKEN), Some("t"));
        assert_eq!(set("AWS_SHARED_CREDENTIALS_FILE"), Some("/dev/null"));
        for own in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            assert_eq!(change(&cmd, own), Some(None), "{own} is removed");
        }

        // Nothing forwarded: the developer's environment is left as it is.
        let cmd = runtime_command("f", &config, &launch, "e", api, Deployed::default());
        assert_eq!(change(&cmd, "AWS_ACCESS_KEY_ID"), None);
        assert_eq!(change(&cmd, FULL), None);
    }
}
