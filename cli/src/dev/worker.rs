//! Worker processes: one per cloud execution environment (function and environment id), each
//! running the function's runtime client under its own local Runtime API, so that module
//! state and concurrency behave as in Lambda. A worker that dies is replaced on the next
//! invocation. What an environment's stub forwarded (its function's environment, its role's
//! credentials; each sent only when it changed) is kept per environment: a worker starts
//! with that environment, and is served the newest credentials from a loopback
//! container-credentials endpoint, updated before each invocation reaches its handler.

use crate::config::Project;
use crate::function::{
    handler_name, runtime_command, CredentialsEndpoint, Deployed, Grant, Launch,
};
use crate::process::{Echo, Supervised};
use bridge::runtime_api::failure;
use bridge::runtime_api::server::{FunctionInfo, Outcome, RuntimeApi, RuntimeInvocation};
use bridge::RoleCredentials;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long past the stub's deadline a worker may run before it is killed, as Lambda resets
/// an environment that timed out.
pub(super) const OVERRUN: Duration = Duration::from_secs(2);

struct Worker {
    api: RuntimeApi,
    process: Supervised,
    /// The build generation it runs.
    generation: u64,
    last_used: std::time::Instant,
    /// Where it reads its role's credentials, when the stub forwarded some.
    credentials: Option<Grant>,
}

/// Environments whose forwarded context is kept at most; the least recently used beyond it
/// is forgotten (its next invocation runs without the forwarded context unless its stub
/// sends it again, which it does on its first invocation to a new session).
const CONTEXTS_KEPT: usize = 4096;

/// What one execution environment's stub forwarded, as of its latest invocation.
#[derive(Clone, Default)]
struct Context {
    env: Option<Arc<BTreeMap<String, String>>>,
    /// The credentials and their expiry (epoch seconds), if known.
    credentials: Option<(RoleCredentials, Option<u64>)>,
    used: Option<std::time::Instant>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Worker>>>;

/// The result of running one invocation on a worker.
pub struct Ran {
    /// The handler's outcome, or the chain's own failure as `(error_type, error JSON)`.
    pub outcome: Result<Outcome, (String, Bytes)>,
    pub worker_pid: u32,
}

/// Every worker of this `live dev`.
pub struct Workers {
    project: Project,
    slots: Mutex<HashMap<(String, String), Slot>>,
    echo: bool,
    contexts: Mutex<HashMap<(String, String), Context>>,
    /// Serves the workers' role credentials; started with the first that arrive.
    endpoint: tokio::sync::OnceCell<CredentialsEndpoint>,
    /// The functions in debug mode: their worker is whatever the IDE starts.
    debug: std::sync::OnceLock<super::debug::DebugWorkers>,
}

impl Workers {
    pub fn new(project: Project, echo: bool) -> Workers {
        Workers {
            project,
            slots: Mutex::new(HashMap::new()),
            echo,
            contexts: Mutex::new(HashMap::new()),
            endpoint: tokio::sync::OnceCell::new(),
            debug: std::sync::OnceLock::new(),
        }
    }

    /// The functions in debug mode (set once, before the first invocation).
    pub fn set_debug(&self, debug: super::debug::DebugWorkers) {
        let _ = self.debug.set(debug);
    }

    /// Note what `invocation` forwarded, and return its environment's context as of now.
    fn remember(&self, invocation: &bridge::WireInvocation) -> Context {
        let key = (invocation.function.clone(), invocation.env_id.clone());
        let mut contexts = self.contexts.lock().expect("lock");
        if contexts.len() >= CONTEXTS_KEPT && !contexts.contains_key(&key) {
            let oldest = contexts
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                contexts.remove(&oldest);
            }
        }
        let context = contexts.entry(key).or_default();
        if let Some(env) = &invocation.env {
            context.env = Some(Arc::new(env.0.clone()));
        }
        if let Some(credentials) = &invocation.credentials {
            let expires_at = credentials
                .expires_in_secs
                .map(|s| bridge::container_credentials::now_secs() + s);
            context.credentials = Some((credentials.clone(), expires_at));
        }
        context.used = Some(std::time::Instant::now());
        context.clone()
    }

    /// Run `invocation` on the worker of its execution environment, built at `generation`
    /// from `launch`, starting (or replacing) it if needed, by `deadline` (then a little
    /// more, before the worker is stopped) and until `stop` completes (the stub gave up on
    /// it: the worker is stopped, and the environment's next invocation starts afresh).
    pub async fn run(
        &self,
        invocation: &bridge::WireInvocation,
        body: Bytes,
        launch: &Launch,
        generation: u64,
        deadline: tokio::time::Instant,
        stop: impl std::future::Future<Output = ()>,
    ) -> Ran {
        if let Some(worker) = self.debug.get().and_then(|d| d.get(&invocation.function)) {
            self.remember(invocation);
            let local = RuntimeInvocation::from_wire(invocation, body);
            return Ran {
                outcome: worker.run(local, deadline, stop).await,
                worker_pid: 0,
            };
        }
        let slot = self
            .slots
            .lock()
            .expect("lock")
            .entry((invocation.function.clone(), invocation.env_id.clone()))
            .or_default()
            .clone();
        let context = self.remember(invocation);
        tokio::pin!(stop);
        let given_up = || {
            failure(
                "Live.GivenUp",
                "the stub gave up on this invocation at its deadline and sent its environment's \
                 next one; the worker was stopped, as Lambda resets an environment that timed out",
            )
        };
        // Behind the environment's previous invocation, which its stub gave up on (it is
        // being stopped), or past the deadline.
        let mut guard = tokio::select! {
            biased; // given up first: it must not take the worker its successor needs
            _ = &mut stop => return Ran { outcome: Err(given_up()), worker_pid: 0 },
            guard = slot.lock() => guard,
            _ = tokio::time::sleep_until(deadline) => return failed(
                "Sandbox.Timedout",
                format!("the worker of {} was busy until the invocation's deadline", invocation.function),
            ),
        };
        if let Some(worker) = guard.as_mut() {
            let exited = matches!(worker.process.child.try_wait(), Ok(Some(_)));
            // Started before any credentials arrived: its environment points elsewhere.
            let unserved = worker.credentials.is_none() && context.credentials.is_some();
            if exited || worker.generation != generation || unserved {
                *guard = None;
            }
        }
        if guard.is_none() {
            let started = self
                .start(
                    &invocation.function,
                    &invocation.env_id,
                    launch,
                    generation,
                    &context,
                )
                .await;
            match started {
                Ok(worker) => *guard = Some(worker),
                Err(e) => return failed("Live.WorkerNotStarted", e),
            }
        }
        let worker = guard.as_mut().expect("started above");
        // The newest credentials, before the handler sees the event.
        if let (Some(grant), Some((credentials, expires_at))) =
            (&worker.credentials, &context.credentials)
        {
            grant.set(credentials, *expires_at);
        }
        let pid = worker.process.pid;
        let local = RuntimeInvocation::from_wire(invocation, body);
        let outcome = tokio::select! {
            biased; // given up first: its event must not reach the handler
            _ = &mut stop => Err(given_up()),
            outcome = worker.api.invoke(local) => {
                outcome.ok_or_else(|| failure("Live.WorkerCrashed", "the worker's Runtime API stopped"))
            }
            status = worker.process.child.wait() => Err(failure(
                "Live.WorkerCrashed",
                &format!(
                    "the worker for {} (pid {pid}) {} during the invocation; last stderr:\n{}",
                    invocation.function,
                    status.map_or_else(|e| e.to_string(), Supervised::describe_exit),
                    worker.process.stderr_tail()
                ),
            )),
            _ = tokio::time::sleep_until(deadline + OVERRUN) => Err(failure(
                "Sandbox.Timedout",
                &format!("the handler did not answer within the invocation's {} ms; its worker was stopped", invocation.remaining_ms),
            )),
        };
        let keep = matches!(
            outcome,
            Ok(Outcome::Response { .. } | Outcome::Error { .. } | Outcome::ResponseTooLarge { .. })
        );
        if keep {
            worker.last_used = std::time::Instant::now();
        } else {
            // Crashed, timed out, or failed to initialise: the next invocation starts afresh.
            *guard = None;
        }
        Ran {
            outcome,
            worker_pid: pid,
        }
    }

    /// Stop the idle workers of `function` older than `generation`; busy ones are replaced
    /// after their invocation.
    pub fn retire(&self, function: &str, generation: u64) {
        self.stop_idle(|f, worker| f == function && worker.generation < generation);
    }

    /// Stop workers idle for longer than `idle`.
    pub fn stop_idle_for(&self, idle: Duration) {
        self.stop_idle(|_, worker| worker.last_used.elapsed() >= idle);
    }

    fn stop_idle(&self, stop: impl Fn(&str, &Worker) -> bool) {
        // Environments left without a worker are forgotten too, so that a long session does
        // not keep one entry for every environment it ever served.
        self.slots
            .lock()
            .expect("lock")
            .retain(|(function, _), slot| {
                // A busy slot is locked by its invocation, or about to be (a second
                // reference): left alone.
                let Ok(mut guard) = slot.try_lock() else {
                    return true;
                };
                if guard.as_ref().is_some_and(|w| stop(function, w)) {
                    *guard = None;
                }
                guard.is_some() || Arc::strong_count(slot) > 1
            });
    }

    /// How many execution environments have a slot (for tests).
    #[cfg(test)]
    fn slot_count(&self) -> usize {
        self.slots.lock().expect("lock").len()
    }

    async fn start(
        &self,
        function: &str,
        env_id: &str,
        launch: &Launch,
        generation: u64,
        context: &Context,
    ) -> Result<Worker, String> {
        let config = &self.project.functions[function];
        let grant = match &context.credentials {
            None => None,
            Some((credentials, expires_at)) => {
                let endpoint = self
                    .endpoint
                    .get_or_try_init(CredentialsEndpoint::start)
                    .await
                    .map_err(|e| format!("could not start the credentials endpoint: {e}"))?;
                let grant = endpoint.grant(function);
                grant.set(credentials, *expires_at);
                Some(grant)
            }
        };
        let variables = grant.as_ref().map(Grant::env);
        let deployed = Deployed {
            env: context.env.as_deref(),
            credentials: variables.as_ref(),
        };
        let info = FunctionInfo {
            name: function.to_string(),
            version: "$LATEST".into(),
            handler: handler_name(function, config),
        };
        let api = RuntimeApi::bind("127.0.0.1:0".parse().expect("address"), info)
            .await
            .map_err(|e| format!("could not bind a Runtime API port: {e}"))?;
        let cmd = runtime_command(function, config, launch, env_id, api.local_addr(), deployed);
        let echo = if self.echo {
            Echo::Prefixed(format!("[{function}] "))
        } else {
            Echo::Quiet
        };
        let process = Supervised::spawn(cmd, echo).map_err(|e| {
            format!(
                "could not start {} for function {function}: {e}; check `command` in live.toml",
                launch.program.display()
            )
        })?;
        Ok(Worker {
            api,
            process,
            generation,
            last_used: std::time::Instant::now(),
            credentials: grant,
        })
    }
}

pub fn failed(error_type: &str, message: String) -> Ran {
    Ran {
        outcome: Err(failure(error_type, &message)),
        worker_pid: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[tokio::test]
    async fn the_idle_sweep_forgets_environments_left_without_a_worker() {
        let dir = std::env::temp_dir().join(format!("live-workers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = "app = \"t\"\nstage = \"s\"\n[functions.f]\ncommand = [\"python3\"]\n";
        std::fs::write(dir.join("live.toml"), config).unwrap();
        let project = Project::load(&dir.join("live.toml")).unwrap();
        let workers = Workers::new(project, false);
        let runtime =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/raw_runtime.py");
        let launch = Launch {
            program: "python3".into(),
            args: vec![runtime.display().to_string()],
            dir: dir.clone(),
        };
        for env in ["e1", "e2", "e3"] {
            let request_id = format!("r-{env}");
            let invocation = bridge::WireInvocation {
                request_id: request_id.clone(),
                function: "f".into(),
                env_id: env.into(),
                headers: vec![("lambda-runtime-aws-request-id".into(), request_id)],
                remaining_ms: 30_000,
                attempt: 0,
                env: None,
                credentials: None,
                objects: None,
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let never = std::future::pending();
            let ran = workers
                .run(
                    &invocation,
                    Bytes::from_static(b"{}"),
                    &launch,
                    1,
                    deadline,
                    never,
                )
                .await;
            assert!(
                matches!(ran.outcome, Ok(Outcome::Response { .. })),
                "{env}: {:?}",
                ran.outcome.err()
            );
        }
        assert_eq!(workers.slot_count(), 3);
        workers.stop_idle_for(Duration::ZERO);
        assert_eq!(workers.slot_count(), 0, "every worker was idle and stopped");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
