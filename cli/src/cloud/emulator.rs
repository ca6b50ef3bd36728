//! The local Lambda emulator: runs the real stub `bootstrap` as Lambda does, one process per
//! concurrent execution environment, each under its own emulated Runtime API, reused while
//! warm, capped per function with invocations beyond the cap queued.

use crate::config::{Function, Project};
use crate::function::{handler_name, lambda_env, runtime_command, Launch, REGION};
use crate::process::{signal, Echo, Supervised};
use bridge::protocol::Header;
use bridge::runtime_api::server::{FunctionInfo, Outcome, RuntimeApi, RuntimeInvocation};
use bridge::runtime_api::{self, failure};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// The account id in the ARNs the emulator makes up.
pub const ACCOUNT: &str = "123456789012";

/// How the emulator reaches the bridge and runs stubs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What runs in each execution environment.
    pub runner: Runner,
    /// Execution environments per function at most; invocations beyond wait.
    pub max_envs: usize,
    /// How long stubs wait for a developer session before answering "no developer".
    pub no_dev_window: Duration,
    /// Echo stub output (for debugging the chain).
    pub echo_stubs: bool,
    /// Freeze idle stubs (SIGSTOP) and thaw them for the next invocation, as Lambda does.
    pub freeze: bool,
    /// Told each request id once its invocation is on its way to the stub.
    pub on_invoke: Option<OnInvoke>,
}

/// What the emulator starts in each execution environment.
#[derive(Debug, Clone)]
pub enum Runner {
    /// The stub, which forwards each invocation over the bridge at `bridge_url`.
    Stub {
        program: PathBuf,
        bridge_url: String,
        /// Broker credentials, when the broker asks for them.
        credentials: Option<(String, String)>,
        /// IoT mode: the stubs sign with their function's role and trust the broker's CA.
        iot: Option<Box<super::roles::StubIot>>,
    },
    /// Each function's own runtime client, with no stub and no bridge: the direct baseline
    /// the benchmarks compare the chain with.
    Direct(std::collections::BTreeMap<String, Launch>),
}

/// A callback with each invocation's request id once the event is on its way to the stub
/// (`live dev` starts its watcher barrier there).
#[derive(Clone)]
pub struct OnInvoke(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for OnInvoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnInvoke")
    }
}

/// What an invocation asks for.
#[derive(Debug, Default)]
pub struct Request {
    /// Set by a caller that answers before the invocation ends (an `Event`); made up here
    /// otherwise.
    pub request_id: Option<String>,
    pub body: Bytes,
    /// The decoded `X-Amz-Client-Context`, JSON.
    pub client_context: Option<String>,
    /// `X-Amzn-Trace-Id`.
    pub trace_id: Option<String>,
    /// A Cognito identity, JSON (from SDK callers).
    pub cognito_identity: Option<String>,
}

/// How an invocation ended, from the caller's point of view.
#[derive(Debug)]
pub struct Reply {
    pub request_id: String,
    /// `Ok(body)` for a response, `Err((error_type, body))` for a function error.
    pub result: Result<Bytes, (String, Bytes)>,
    /// The stub process that served it, and its environment.
    pub stub_pid: u32,
    pub env_id: String,
}

struct Env {
    api: RuntimeApi,
    process: Supervised,
    env_id: String,
    /// Where the environment stands between invocations (only used when freezing).
    freeze: Arc<Mutex<Freeze>>,
    /// Invocations run, to tell one idle period from the next.
    served: u64,
}

/// An execution environment between invocations, as Lambda treats it: it freezes one only
/// once its runtime has asked for the next invocation, so that what the runtime does after
/// posting a result (the stub acknowledging it on the bridge) is not held until the thaw.
#[derive(Debug, PartialEq, Eq)]
enum Freeze {
    Busy,
    /// Finished invocation N; frozen as soon as the runtime waits in `/next`.
    Finishing(u64),
    Frozen,
    /// Dropped: its process may be reaped, never signal it again.
    Gone,
}

impl Env {
    /// Take the environment for an invocation; whether it is frozen (to be thawed once the
    /// invocation is on its way).
    fn take(&self) -> bool {
        let mut state = self.freeze.lock().expect("lock");
        let frozen = *state == Freeze::Frozen;
        *state = Freeze::Busy;
        frozen
    }

    /// The invocation is done: freeze the environment once its runtime is idle, unless it
    /// is taken again first.
    fn finish(&mut self) {
        self.served += 1;
        let served = self.served;
        *self.freeze.lock().expect("lock") = Freeze::Finishing(served);
        let (freeze, mut idle, pid) = (self.freeze.clone(), self.api.idle(), self.process.pid);
        tokio::spawn(async move {
            if idle.wait_for(|idle| *idle).await.is_err() {
                return;
            }
            let mut state = freeze.lock().expect("lock");
            if *state == Freeze::Finishing(served) {
                signal(pid, libc::SIGSTOP);
                *state = Freeze::Frozen;
            }
        });
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        *self.freeze.lock().expect("lock") = Freeze::Gone;
    }
}

/// One function's execution environments.
pub struct Pool {
    name: String,
    function: Function,
    app: String,
    stage: String,
    settings: Settings,
    idle: Mutex<Vec<Env>>,
    slots: Semaphore,
}

/// Every function's pool.
pub struct Emulator {
    pools: HashMap<String, Arc<Pool>>,
}

impl Emulator {
    pub fn new(project: &Project, settings: Settings) -> Emulator {
        let pools = project
            .functions
            .iter()
            .map(|(name, function)| {
                let pool = Pool {
                    name: name.clone(),
                    function: function.clone(),
                    app: project.app.clone(),
                    stage: project.stage.clone(),
                    settings: settings.clone(),
                    idle: Mutex::new(Vec::new()),
                    slots: Semaphore::new(settings.max_envs),
                };
                (name.clone(), Arc::new(pool))
            })
            .collect();
        Emulator { pools }
    }

    /// The pool of `function`, if it exists.
    pub fn pool(&self, function: &str) -> Option<Arc<Pool>> {
        self.pools.get(function).cloned()
    }

    /// The function names.
    pub fn functions(&self) -> impl Iterator<Item = &String> {
        self.pools.keys()
    }
}

/// The ARN of `function`.
pub fn arn(function: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}")
}

impl Pool {
    /// Run one invocation in a warm environment, or a new one, or wait for one.
    /// [`Pool::invoke`] in a task of its own, so that it runs to the end even if its caller
    /// goes away (a client that disconnects drops its request's future, which held the
    /// environment, and so killed the stub mid-invocation), as Lambda finishes an invocation
    /// whatever its caller does.
    pub async fn invoke_to_the_end(self: &Arc<Self>, request: Request) -> Reply {
        let pool = self.clone();
        match tokio::spawn(async move { pool.invoke(request).await }).await {
            Ok(reply) => reply,
            Err(e) => Reply {
                request_id: String::new(),
                result: Err(bridge::runtime_api::failure(
                    "Live.EmulatorFailed",
                    &format!("the invocation's task failed: {e}"),
                )),
                stub_pid: 0,
                env_id: String::new(),
            },
        }
    }

    /// The most recently used idle environment whose process is still there; those whose
    /// process ended while idle (a runtime that crashed between invocations, a stub killed)
    /// are dropped, and the invocation goes to another or a fresh one, as Lambda would.
    fn warm_env(&self) -> Option<Env> {
        let mut idle = self.idle.lock().expect("lock");
        while let Some(mut env) = idle.pop() {
            if matches!(env.process.child.try_wait(), Ok(None)) {
                return Some(env);
            }
            tracing::debug!(env = %env.env_id, "dropped an idle environment whose process ended");
        }
        None
    }

    pub async fn invoke(&self, request: Request) -> Reply {
        let request_id = request
            .request_id
            .clone()
            .unwrap_or_else(crate::ids::request_id);
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let warm = self.warm_env();
        let (mut env, frozen) = match warm {
            Some(env) => {
                let frozen = env.take();
                (env, frozen)
            }
            None => match self.start_env().await {
                Ok(env) => (env, false),
                Err(e) => {
                    return Reply {
                        request_id,
                        result: Err(failure("Live.StubNotStarted", &e)),
                        stub_pid: 0,
                        env_id: String::new(),
                    }
                }
            },
        };
        let timeout = Duration::from_secs(self.function.timeout);
        let deadline = SystemTime::now() + timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut headers: Vec<Header> = vec![
            (runtime_api::REQUEST_ID.into(), request_id.clone()),
            (runtime_api::DEADLINE_MS.into(), deadline_ms.to_string()),
            (runtime_api::FUNCTION_ARN.into(), arn(&self.name)),
            (
                runtime_api::TRACE_ID.into(),
                request.trace_id.unwrap_or_else(|| trace_id(&request_id)),
            ),
        ];
        if let Some(context) = request.client_context {
            headers.push((runtime_api::CLIENT_CONTEXT.into(), context));
        }
        if let Some(identity) = request.cognito_identity {
            headers.push((runtime_api::COGNITO_IDENTITY.into(), identity));
        }
        let invocation = RuntimeInvocation {
            request_id: request_id.clone(),
            headers,
            body: request.body,
        };
        let stub_pid = env.process.pid;
        let env_id = env.env_id.clone();
        let (outcome, on_invoke, id) = (
            env.api.submit(invocation),
            &self.settings.on_invoke,
            &request_id,
        );
        let outcome = async move {
            // The invocation is queued: let the stub's waiting `/next` be answered before
            // thawing it, so that it wakes once, to its event, rather than for the SIGCONT and
            // again for the data.
            tokio::task::yield_now().await;
            if frozen {
                signal(stub_pid, libc::SIGCONT);
            }
            // Then what waits for the request (the watcher barrier of `live dev`): it only has
            // to start after the request arrived, and has the stub's round trip to finish.
            if let Some(OnInvoke(on_invoke)) = on_invoke {
                on_invoke(id);
            }
            outcome.await
        };
        // Lambda ends an invocation at its timeout whatever the runtime does; the stub
        // answers before that, so this is the backstop for a stub that hangs.
        let result = tokio::select! {
            outcome = outcome => match outcome {
                Some(outcome) => Ok(outcome),
                None => Err(failure("Runtime.ExitError", "the stub's Runtime API stopped")),
            },
            status = env.process.child.wait() => Err(failure(
                "Runtime.ExitError",
                &format!(
                    "the stub process {}; its last output:\n{}",
                    status.map_or_else(|e| e.to_string(), Supervised::describe_exit),
                    env.process.stderr_tail()
                ),
            )),
            _ = tokio::time::sleep(timeout + Duration::from_millis(500)) => Err(failure(
                "Sandbox.Timedout",
                &format!("Task timed out after {}.00 seconds", self.function.timeout),
            )),
        };
        let healthy = match &result {
            Ok(Outcome::InitError { .. }) | Err(_) => false,
            Ok(_) => true,
        };
        if healthy {
            // Frozen between invocations, as Lambda freezes an idle execution environment:
            // the stub's thaw path (a connection possibly dead after the pause) runs every
            // time.
            if self.settings.freeze {
                env.finish();
            }
            self.idle.lock().expect("lock").push(env);
        }
        let result = match result {
            Ok(Outcome::Response { body, .. }) => Ok(body),
            Ok(other) => Err(other.failure().expect("not a response")),
            Err(failure) => Err(failure),
        };
        Reply {
            request_id,
            result,
            stub_pid,
            env_id,
        }
    }

    async fn start_env(&self) -> Result<Env, String> {
        let handler = match &self.settings.runner {
            Runner::Direct(_) => handler_name(&self.name, &self.function),
            Runner::Stub { .. } => "bootstrap".into(),
        };
        let info = FunctionInfo {
            name: self.name.clone(),
            version: "$LATEST".into(),
            handler,
        };
        let api = RuntimeApi::bind("127.0.0.1:0".parse().expect("address"), info)
            .await
            .map_err(|e| format!("could not bind a Runtime API port: {e}"))?;
        let env_id = crate::ids::env_id();
        let (cmd, program) = match &self.settings.runner {
            Runner::Direct(launches) => {
                let launch = launches
                    .get(&self.name)
                    .ok_or_else(|| format!("nothing was built to run {} directly", self.name))?;
                let cmd = runtime_command(
                    &self.name,
                    &self.function,
                    launch,
                    &env_id,
                    api.local_addr(),
                    crate::function::Deployed::default(),
                );
                (cmd, &launch.program)
            }
            Runner::Stub {
                program,
                bridge_url,
                credentials,
                iot,
            } => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("LIVE_BRIDGE_URL", bridge_url)
                    .env("LIVE_APP", &self.app)
                    .env("LIVE_STAGE", &self.stage)
                    .env("LIVE_FUNCTION", &self.name)
                    .env(
                        "LIVE_NO_DEV_WINDOW_MS",
                        self.settings.no_dev_window.as_millis().to_string(),
                    )
                    .envs(lambda_env(&self.name, &self.function, &env_id))
                    .env("AWS_LAMBDA_RUNTIME_API", api.local_addr().to_string())
                    .env("_HANDLER", "bootstrap");
                if let Some((user, password)) = credentials {
                    cmd.env("LIVE_BROKER_USERNAME", user)
                        .env("LIVE_BROKER_PASSWORD", password);
                }
                if let Some(iot) = iot {
                    cmd.env("AWS_REGION", &iot.region)
                        .env("AWS_DEFAULT_REGION", &iot.region)
                        .envs(iot.roles.stub_env(&self.name))
                        .env(bridge::tls::CA_FILE_ENV, &iot.ca_file);
                    if let Some(addr) = iot.redirect.as_ref().filter(|a| !a.is_empty()) {
                        cmd.env("LIVE_IOT_CONNECT_TO", addr);
                    }
                    if let Some(bucket) = &iot.bucket {
                        cmd.env("LIVE_BUCKET", bucket);
                    }
                    if iot.bucket.is_some() || self.function.env.contains_key("LIVE_BUCKET") {
                        for name in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] {
                            if let Some(url) = std::env::var_os(name) {
                                cmd.env(name, url);
                            }
                        }
                    }
                }
                // The function's environment, as deploying it would configure it.
                cmd.envs(&self.function.env);
                (cmd, program)
            }
        };
        let echo = if self.settings.echo_stubs {
            Echo::Prefixed(format!("[stub {}] ", self.name))
        } else {
            Echo::Quiet
        };
        let process = Supervised::spawn(cmd, echo)
            .map_err(|e| format!("could not start {}: {e}", program.display()))?;
        Ok(Env {
            api,
            process,
            env_id,
            freeze: Arc::new(Mutex::new(Freeze::Busy)),
            served: 0,
        })
    }
}

fn trace_id(request_id: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let hex: String = request_id.chars().filter(|c| *c != '-').take(24).collect();
    format!(
        "Root=1-{secs:08x}-{hex};Parent={};Sampled=0",
        &hex[..16.min(hex.len())]
    )
}
