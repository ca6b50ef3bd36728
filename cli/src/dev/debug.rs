//! Debug mode (`live dev --debug FN`, or `debug = true`): `live dev` starts no worker for the
//! function. It serves the function's Runtime API on a fixed loopback port (`debug_port`, or
//! one derived from the name) and writes the worker's whole environment to
//! `.live/debug/FN.env`; whatever the IDE launches with it (under its debugger) is the
//! function's one worker. Invocations wait for it, one at a time; a worker that asks for its
//! next invocation without answering the last (it was restarted) gets that one failed at once.

use crate::config::Function;
use crate::function::Launch;
use bridge::runtime_api::failure;
use bridge::runtime_api::server::{FunctionInfo, Outcome, RuntimeApi, RuntimeInvocation};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long before the invocation's deadline debug mode answers a timeout: before the
/// stub's own margin (300 ms) would answer `Live.DeadlineReached`.
const TIMEOUT_MARGIN: std::time::Duration = std::time::Duration::from_millis(700);

/// One function in debug mode.
pub struct DebugWorker {
    name: String,
    api: RuntimeApi,
    /// One invocation at a time: the debugged process is one execution environment.
    turn: tokio::sync::Mutex<()>,
    /// The environment file written for it.
    pub env_file: PathBuf,
}

impl DebugWorker {
    /// Serve `name`'s Runtime API on its port and write its environment file under `root`
    /// (the project's folder), for a worker built as `launch`.
    pub async fn start(
        root: &Path,
        name: &str,
        config: &Function,
        launch: &Launch,
    ) -> anyhow::Result<DebugWorker> {
        let addr = crate::function::debug_env::addr(name, config);
        let info = FunctionInfo {
            name: name.to_owned(),
            version: "$LATEST".into(),
            handler: crate::function::handler_name(name, config),
        };
        let api = RuntimeApi::bind_restartable(addr, info)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "could not serve {name}'s Runtime API on {addr} for debugging ({e}): \
                     another live dev may be debugging it; stop it, or set `debug_port` in \
                     {name}'s table"
                )
            })?;
        let mut text = String::new();
        for (key, value) in crate::function::debug_env::environment(name, config, &launch.dir) {
            text.push_str(&format!("{key}={value}\n"));
        }
        let env_file = root.join(crate::function::debug_env::env_file(name));
        if let Some(dir) = env_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&env_file, text)?;
        Ok(DebugWorker {
            name: name.to_owned(),
            api,
            turn: tokio::sync::Mutex::new(()),
            env_file,
        })
    }

    /// The Runtime API's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.api.local_addr()
    }

    /// Run `invocation` on whatever worker is attached, waiting for one until `deadline`
    /// (then a little more) or until `stop`.
    pub async fn run(
        &self,
        invocation: RuntimeInvocation,
        deadline: tokio::time::Instant,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Outcome, (String, Bytes)> {
        let function = &self.name;
        let _turn = tokio::select! {
            turn = self.turn.lock() => turn,
            _ = tokio::time::sleep_until(deadline) => return Err(failure(
                "Sandbox.Timedout",
                &format!("the debugged worker of {function} was busy with another invocation until this one's deadline (debug mode runs one at a time)"),
            )),
        };
        let started = tokio::time::Instant::now();
        // Answered as Lambda answers a function past its timeout, before the stub's own
        // deadline would answer for it: a handler paused at a breakpoint past the timeout is
        // Lambda's timeout, not the chain's failure.
        let timed_out = deadline
            .checked_sub(TIMEOUT_MARGIN)
            .unwrap_or(deadline)
            .max(started);
        tokio::select! {
            biased;
            _ = stop => Err(failure("Live.GivenUp", "the stub gave up on this invocation at its deadline")),
            outcome = self.api.invoke(invocation) => {
                outcome.ok_or_else(|| failure("Live.WorkerCrashed", "the debug Runtime API stopped"))
            }
            _ = tokio::time::sleep_until(timed_out) => Err(failure(
                "Sandbox.Timedout",
                &format!(
                    "Task timed out after {:.2} seconds (debug mode: the worker launched from {} did not answer in time; paused in the debugger? raise `timeout` in live.toml)",
                    (deadline - started).as_secs_f64(),
                    self.env_file.display()
                ),
            )),
        }
    }
}

/// The debug workers of a session, by function.
pub type DebugWorkers = std::collections::HashMap<String, Arc<DebugWorker>>;
