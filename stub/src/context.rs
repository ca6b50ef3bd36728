//! What the stub forwards beside each invocation so the local handler runs as the deployed
//! one would: its function's environment (minus Lambda's runtime-internal variables, the
//! credentials and the stub's own configuration) and its role's current credentials. Each
//! goes to a session (one connection of it) only on the environment's first invocation there
//! and when it changed, so that a rotation costs one message's worth and an invocation
//! otherwise nothing.

use bridge::protocol::RoleCredentials;
use bridge::{FunctionEnv, Presence, WireInvocation};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Sessions remembered at most; beyond it all are forgotten (they are sent both again).
const SESSIONS_KEPT: usize = 64;

/// Variables never forwarded: the Runtime API's and Lambda's paths inside the cloud, the
/// credentials (forwarded apart), X-Ray's daemon in the cloud, shell leftovers. Names
/// starting with `_` (`_HANDLER`, `_X_AMZN_TRACE_ID`, `_AWS_XRAY_*`, `_LAMBDA_*`) and `LIVE_`
/// (the stub's configuration) are never forwarded either.
const INTERNAL: &[&str] = &[
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_EXEC_WRAPPER",
    "AWS_LAMBDA_MAX_CONCURRENCY",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_XRAY_DAEMON_ADDRESS",
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "NODE_PATH",
    "HOME",
    "PWD",
    "OLDPWD",
    "SHLVL",
];

/// Whether variable `name` goes to the local handler.
pub fn forwarded(name: &str) -> bool {
    !name.starts_with('_') && !name.starts_with("LIVE_") && !INTERNAL.contains(&name)
}

/// The environment the local handler gets, from `vars` (the stub's own).
pub fn function_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter(|(name, _)| forwarded(name)).collect()
}

/// What a session (by name and connection epoch) was last seen to receive.
struct Delivered {
    epoch: u64,
    env: bool,
    credentials: Option<RoleCredentials>,
}

/// The environment, and what each session has of it and of the credentials.
pub struct Context {
    env: Arc<FunctionEnv>,
    sessions: HashMap<String, Delivered>,
}

impl Context {
    pub fn new(env: BTreeMap<String, String>) -> Context {
        Context {
            env: Arc::new(FunctionEnv(env)),
            sessions: HashMap::new(),
        }
    }

    /// Fill in `invocation`'s environment and credentials for `session`: each only when that
    /// connection of the session has not been seen to receive it.
    pub fn stamp(
        &self,
        invocation: &mut WireInvocation,
        session: &Presence,
        credentials: Option<&RoleCredentials>,
    ) {
        let had = self
            .sessions
            .get(&session.session)
            .filter(|d| d.epoch == session.epoch);
        let has_env = had.is_some_and(|d| d.env);
        invocation.env = (!has_env).then(|| (*self.env).clone());
        let has_credentials = match (had.and_then(|d| d.credentials.as_ref()), credentials) {
            (Some(old), Some(new)) => old.same_key(new),
            (_, None) => true,
            (None, Some(_)) => false,
        };
        invocation.credentials = credentials.filter(|_| !has_credentials).cloned();
    }

    /// `session` answered an invocation sent with `credentials` (and this environment):
    /// it has both now.
    pub fn delivered(&mut self, session: &Presence, credentials: Option<&RoleCredentials>) {
        if self.sessions.len() >= SESSIONS_KEPT && !self.sessions.contains_key(&session.session) {
            self.sessions.clear();
        }
        self.sessions.insert(
            session.session.clone(),
            Delivered {
                epoch: session.epoch,
                env: true,
                credentials: credentials.cloned(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(session: &str, epoch: u64) -> Presence {
        Presence {
            session: session.into(),
            online: true,
            epoch,
            version: bridge::PROTOCOL_VERSION,
            functions: vec!["f".into()],
            lanes: 1,
        }
    }

    fn key(id: &str) -> RoleCredentials {
        RoleCredentials {
            access_key_id: id.into(),
            secret_access_key: "s".into(),
            session_token: Some("t".into()),
            expires_in_secs: Some(100),
        }
    }

    fn invocation() -> WireInvocation {
        WireInvocation {
            request_id: "r".into(),
            function: "f".into(),
            env_id: "e".into(),
            headers: vec![],
            remaining_ms: 1000,
            attempt: 0,
            env: None,
            credentials: None,
            objects: None,
        }
    }

    #[test]
    fn lambdas_internal_variables_and_the_stubs_own_stay_behind() {
        let vars = [
            ("AWS_REGION", "eu-west-1"),
            ("TABLE", "orders"),
            ("AWS_LAMBDA_FUNCTION_NAME", "app-stage-f"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("_X_AMZN_TRACE_ID", "Root=1"),
            ("_AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129"),
            ("LIVE_BRIDGE_URL", "wss://x/mqtt"),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("PATH", "/var/lang/bin"),
        ];
        let env = function_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(
            env.keys().collect::<Vec<_>>(),
            ["AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "TABLE"]
        );
    }

    #[test]
    fn each_session_gets_the_env_once_and_the_credentials_when_they_change() {
        let mut context = Context::new(BTreeMap::from([("A".to_string(), "1".to_string())]));
        let (one, k1, k2) = (presence("s1", 1), key("K1"), key("K2"));
        let mut inv = invocation();
        context.stamp(&mut inv, &one, Some(&k1));
        assert!(
            inv.env.is_some() && inv.credentials.is_some(),
            "first: both"
        );
        // Not answered yet: a resend carries both again.
        context.stamp(&mut inv, &one, Some(&k1));
        assert!(inv.env.is_some() && inv.credentials.is_some());
        context.delivered(&one, Some(&k1));
        context.stamp(&mut inv, &one, Some(&k1));
        assert!(inv.env.is_none() && inv.credentials.is_none(), "unchanged");
        context.stamp(&mut inv, &one, Some(&k2));
        assert!(inv.env.is_none(), "the env did not change");
        assert_eq!(inv.credentials.as_ref().unwrap().access_key_id, "K2");
        // Another session, or the same one reconnected, has neither.
        for other in [presence("s2", 1), presence("s1", 2)] {
            context.stamp(&mut inv, &other, Some(&k1));
            assert!(inv.env.is_some() && inv.credentials.is_some());
        }
        // No credentials (none configured): none sent.
        context.stamp(&mut inv, &presence("s3", 1), None);
        assert!(inv.env.is_some() && inv.credentials.is_none());
    }
}
