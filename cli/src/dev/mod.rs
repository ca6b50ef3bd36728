//! `live dev`: build the project's functions, connect a developer session to the bridge (or,
//! with no cloud configured, start the local cloud in-process), and run every invocation that
//! reaches this session on a local worker, one line per invocation.

pub mod build;
mod debounce;
mod noise;
mod output;
mod reload;
mod watch;
mod watch_tree;
pub mod watchset;
mod worker;

use crate::cloud::{load_project, CloudOptions, LocalCloud};
use anyhow::Context;
use bridge::runtime_api::{self, server::Outcome};
use bridge::transport::{session_presence, ConnectOptions, Connection, Sender};
use bridge::{DevMessage, StubMessage, Topics};
use bytes::Bytes;
use output::Output;
use reload::{Builds, NotReady};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watch::FileWatcher;
use worker::Workers;

/// Answered request ids remembered for deduplication (retransmissions arrive within seconds;
/// this bounds the memory of a long session).
const REMEMBERED: usize = 4096;

/// Lambda's longest timeout: no invocation has more time left than this.
const MAX_REMAINING_MS: u64 = 900_000;

/// How long an invocation runs before it is acknowledged on its own (a quicker result is
/// the acknowledgement); well within the stub's 1 s retransmission.
const ACK_AFTER: Duration = Duration::from_millis(200);

/// How often the kept results are swept for those past their deadline.
const RESULT_SWEEP: Duration = Duration::from_millis(1000);

/// How long past the invocation's deadline a result is still kept for a probe (the stub
/// answers before the deadline, so later probes do not come).
const RESULT_GRACE: Duration = Duration::from_millis(500);

/// Results smaller than this are copied before they are kept (see `Session::invoke`).
const COMPACT_BELOW: usize = 64 * 1024;

/// How long before the stub's deadline `live dev` stops waiting for a build, so its own
/// answer (build still running) reaches the stub in time.
const BUILD_WAIT_MARGIN: Duration = Duration::from_millis(500);

/// Options of `live dev`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live dev -c examples/hello                  # everything on this machine\n  curl http://127.0.0.1:PORT/http/            # the URL printed on the ready line\n  live dev --broker ws://127.0.0.1:1884/mqtt  # join a running `live cloud` or broker\n\nWithout live.toml, in a cargo project, every binary that depends on lambda_runtime or\nlambda_http is served under its name."
)]
pub struct DevArgs {
    /// The project's live.toml, or its directory (default: found in this directory or its
    /// parents).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Join this broker instead of starting the local cloud in-process.
    #[arg(long)]
    pub broker: Option<String>,
    /// One JSON object per line (ready, change, build_started, build_restarted,
    /// build_finished, invocation) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print only errors (and the ready line).
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not watch files: build once at start.
    #[arg(long)]
    pub no_watch: bool,
    /// Seconds an idle worker is kept before it stops (as Lambda recycles idle
    /// environments).
    #[arg(long, default_value_t = 600)]
    pub idle_timeout: u64,
    #[command(flatten)]
    pub cloud: CloudOptions,
}

/// Run `live dev` until `shutdown`.
pub async fn run(args: DevArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let project = load_project(args.config.as_ref(), &args.cloud)?;
    let names: Vec<String> = project.functions.keys().cloned().collect();
    let output = Arc::new(Output::new(args.json, args.quiet));
    let builds = Builds::new(project.clone(), output.clone());
    let workers = Arc::new(Workers::new(project.clone(), !args.json));

    // The watcher starts before the first build, so no save is missed in between.
    let watcher = if args.no_watch {
        None
    } else {
        let watchset = watchset::WatchSet::compute(&project)?;
        let roots = watchset.roots();
        let (tx, rx) = tokio::sync::mpsc::channel(watch::QUEUE);
        match FileWatcher::start(&roots, tx) {
            Ok((watcher, passed)) => {
                let watcher = Arc::new(watcher);
                tokio::spawn(reload::run_watcher(
                    rx,
                    watcher.clone(),
                    passed,
                    watchset,
                    builds.clone(),
                ));
                Some(watcher)
            }
            Err(e) => {
                eprintln!("live dev: {e:#}");
                None
            }
        }
    };
    let (built_tx, mut built_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(builds.clone().run_builder(built_tx));
    // Old workers stop as soon as they are idle after a build; idle ones after a while.
    {
        let workers = workers.clone();
        let idle = Duration::from_secs(args.idle_timeout);
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(
                Duration::from_secs(1).min(idle.max(Duration::from_millis(100))),
            );
            loop {
                tokio::select! {
                    built = built_rx.recv() => match built {
                        Some((function, generation)) => workers.retire(&function, generation),
                        None => return,
                    },
                    _ = sweep.tick() => workers.stop_idle_for(idle),
                }
            }
        });
    }
    // The first build, before saying ready (its failure is reported and served as errors).
    for name in &names {
        let _ = builds
            .launch_for(
                name,
                tokio::time::Instant::now() + Duration::from_secs(3600),
            )
            .await;
    }

    let cloud = match &args.broker {
        Some(_) => None,
        None => {
            // The embedded cloud starts each request's watcher barrier once its event is on
            // its way to the stub.
            let hint = watcher
                .clone()
                .map(|w| crate::cloud::emulator::OnInvoke(Arc::new(move |id: &str| w.hint(id))));
            Some(LocalCloud::start_with(&project, &args.cloud, None, None, hint).await?)
        }
    };
    let bridge_url = match (&args.broker, &cloud) {
        (Some(url), _) => url.clone(),
        (None, Some(cloud)) => cloud.bridge_url.clone(),
        (None, None) => unreachable!("a cloud is started without --broker"),
    };
    let topics = Topics::new(&project.app, &project.stage)?;
    // The stage names the session for people reading logs; cut so that the name (and the
    // topics built from it) stays within the 64 characters a name may have.
    let stage: String = project
        .stage
        .chars()
        .take(bridge::topics::MAX_NAME_BYTES - 9)
        .collect();
    let session = format!("{stage}-{}", &crate::ids::env_id()[..8]);
    let inv_topic = topics.invocations(&session)?;
    let mut options = ConnectOptions::new(&bridge_url, format!("dev-{session}"));
    options.subscriptions = vec![inv_topic];
    options.presence = Some(session_presence(&topics, &session, names.clone())?);
    options.keep_alive = Duration::from_secs(10);
    options.credentials = args.cloud.credentials.pair();
    // The session joins its own embedded broker in-process (the stubs still cross it over
    // WebSocket); another broker, over WebSocket.
    let mut connection = match cloud.as_ref().and_then(LocalCloud::local_broker) {
        Some(broker) => Connection::open_local(options, &broker),
        None => Connection::open(options)?,
    };
    connection
        .ready(Duration::from_secs(10))
        .await
        .with_context(|| format!("could not join the bridge at {bridge_url}"))?;

    print_ready(&args, &project, &session, &bridge_url, cloud.as_ref());
    let state = Arc::new(Session {
        topics,
        sender: connection.sender(),
        workers,
        builds,
        watcher,
        functions: names,
        seen: Mutex::new(SeenMap::default()),
        out: output,
    });
    // Kept results past their deadline are forgotten by one sweep, not by a timer each.
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESULT_SWEEP);
            loop {
                tick.tick().await;
                state.seen.lock().expect("lock").sweep(Instant::now());
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            received = connection.recv() => {
                let Some(received) = received else { break };
                match received.frame.parse::<StubMessage>() {
                    Ok(StubMessage::Invoke(invocation)) => {
                        Session::invoke(&state, invocation, received.frame.body).await
                    }
                    Ok(StubMessage::Probe { request_id, env_id }) => {
                        state.probed(&request_id, &env_id).await
                    }
                    Err(e) => tracing::warn!("dropped a message on {}: {e}", received.topic),
                }
            }
        }
    }
    sweeper.abort();
    state.out.flush_lines();
    connection.close().await;
    if let Some(cloud) = cloud {
        cloud.shutdown().await;
    }
    // Invocations that finished during the shutdown printed lines too.
    state.out.flush_lines();
    if !args.json {
        eprintln!("live dev: stopped");
    }
    Ok(())
}

fn print_ready(
    args: &DevArgs,
    project: &crate::config::Project,
    session: &str,
    bridge_url: &str,
    cloud: Option<&LocalCloud>,
) {
    if args.json {
        let urls: serde_json::Map<String, serde_json::Value> = cloud
            .map(|c| {
                c.functions
                    .iter()
                    .map(|f| (f.clone(), format!("http://{}/{f}/", c.front_door).into()))
                    .collect()
            })
            .unwrap_or_default();
        let ready = serde_json::json!({
            "event": "ready",
            "app": project.app,
            "stage": project.stage,
            "session": session,
            "broker": bridge_url,
            "pid": std::process::id(),
            "front_door": cloud.map(|c| format!("http://{}", c.front_door)),
            "urls": urls,
        });
        println!("{ready}");
        return;
    }
    match cloud {
        Some(cloud) => println!(
            "live dev ready: http://{} (app {}, stage {}, session {session})\n{}",
            cloud.front_door,
            project.app,
            project.stage,
            cloud.describe()
        ),
        None => println!(
            "live dev ready: serving {} for app {} stage {} through {bridge_url} (session {session})",
            project.functions.keys().cloned().collect::<Vec<_>>().join(", "),
            project.app,
            project.stage
        ),
    }
}

/// What this session knows of a request id: still running, or answered (kept to answer a
/// duplicate the same way).
enum Seen {
    /// Running; notified when the stub has given up on it (it sent its environment's next
    /// invocation), so that its worker stops, as Lambda resets an environment that timed out.
    Running(Arc<tokio::sync::Notify>),
    /// Answered: the result is kept to answer a probe or a duplicate (either means the
    /// stub has not got it), until the same environment's next invocation (which means it
    /// has) or the deadline (boxed: most entries are `Done`).
    Answered(Box<Kept>),
    /// Superseded or expired: only the id is kept, so a late duplicate does not run the
    /// handler again.
    Done,
}

/// A result kept for a probe or a duplicate.
struct Kept {
    message: DevMessage,
    body: Bytes,
    /// Past this, the stub has answered on its own: the sweep forgets the result.
    until: Instant,
}

impl Seen {
    /// What to send again for `request_id`: the kept answer, or an Ack while the handler runs
    /// (and once it is done, when `ack_done`).
    fn again(&self, request_id: &str, ack_done: bool) -> Option<(DevMessage, Bytes)> {
        let ack = || {
            let request_id = request_id.to_string();
            Some((DevMessage::Ack { request_id }, Bytes::new()))
        };
        match self {
            Seen::Answered(kept) => Some((kept.message.clone(), kept.body.clone())),
            Seen::Running(_) => ack(),
            Seen::Done if ack_done => ack(),
            Seen::Done => None,
        }
    }
}

#[derive(Default)]
struct SeenMap {
    map: HashMap<String, Seen>,
    order: VecDeque<String>,
    /// The latest request id of each environment whose invocation runs or whose result is
    /// kept.
    latest: HashMap<String, String>,
}

impl SeenMap {
    /// What to do with `invocation` as it arrives: run it (a new delivery; what stops the
    /// run is returned), or answer it again (a retransmission: the stub has not heard from
    /// us yet). Lambda retries an asynchronous invocation that failed under the same request
    /// id, and a stub sends a delivery at attempt 0 only once: a known id at attempt 0 that no
    /// longer runs is such a retry, and runs again.
    fn arrive(
        &mut self,
        invocation: &bridge::Invocation,
    ) -> Result<Arc<tokio::sync::Notify>, Option<(DevMessage, Bytes)>> {
        let id = &invocation.request_id;
        let new_delivery = match self.map.get(id) {
            None => true,
            Some(Seen::Running(_)) => false,
            Some(Seen::Answered(_) | Seen::Done) => invocation.attempt == 0,
        };
        if new_delivery {
            Ok(self.start(id, &invocation.env_id))
        } else {
            Err(self.map.get(id).and_then(|entry| entry.again(id, true)))
        }
    }

    /// Note new invocation `request_id` of environment `env_id` as running. Its stub has
    /// finished with the environment's previous one: a result kept for it is no longer
    /// needed, and one still running has been given up on (the stub answered at its
    /// deadline), so it is told to stop. The oldest ids beyond [`REMEMBERED`] are forgotten,
    /// but not those still running or holding a result. Returns what tells the run to stop.
    fn start(&mut self, request_id: &str, env_id: &str) -> Arc<tokio::sync::Notify> {
        let previous = self
            .latest
            .insert(env_id.to_string(), request_id.to_string());
        match previous.and_then(|p| self.map.get_mut(&p)) {
            Some(entry @ Seen::Answered(..)) => *entry = Seen::Done,
            Some(Seen::Running(stop)) => stop.notify_one(),
            _ => {}
        }
        let stop = Arc::new(tokio::sync::Notify::new());
        self.map
            .insert(request_id.to_string(), Seen::Running(stop.clone()));
        self.order.push_back(request_id.to_string());
        let mut turns = self.order.len();
        while self.order.len() > REMEMBERED && turns > 0 {
            turns -= 1;
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if matches!(self.map.get(&old), Some(Seen::Done) | None) {
                self.map.remove(&old);
            } else {
                self.order.push_back(old);
            }
        }
        stop
    }

    /// Keep the result of `request_id` for a probe, if the stub of `env_id` may still want
    /// it: only while it is that environment's latest invocation (the sweep looks no
    /// further); once the stub has sent its next one, it has this result or gave up on it.
    fn keep(&mut self, request_id: &str, env_id: &str, kept: Kept) {
        let latest = self.latest.get(env_id).is_some_and(|id| id == request_id);
        if let Some(entry) = self.map.get_mut(request_id) {
            *entry = if latest {
                Seen::Answered(Box::new(kept))
            } else {
                Seen::Done
            };
        }
    }

    /// Forget the kept results past their deadline (keeping their ids), and the
    /// environments that have no result kept or running any more. Only each environment's
    /// latest invocation can hold a result, so this looks at one entry per environment.
    fn sweep(&mut self, now: Instant) {
        let SeenMap { map, latest, .. } = self;
        latest.retain(|_, request_id| {
            let Some(entry) = map.get_mut(request_id.as_str()) else {
                return false;
            };
            match entry {
                Seen::Running(_) => true,
                Seen::Answered(kept) if kept.until > now => true,
                Seen::Answered(_) => {
                    *entry = Seen::Done;
                    false
                }
                Seen::Done => false,
            }
        });
    }
}

struct Session {
    topics: Topics,
    sender: Sender,
    workers: Arc<Workers>,
    builds: Arc<Builds>,
    watcher: Option<Arc<FileWatcher>>,
    functions: Vec<String>,
    seen: Mutex<SeenMap>,
    out: Arc<Output>,
}

impl Session {
    async fn invoke(state: &Arc<Session>, invocation: bridge::Invocation, body: Bytes) {
        let Ok(results) = state.topics.results(&invocation.env_id) else {
            tracing::warn!(
                "dropped an invocation with a bad environment id {:?}",
                invocation.env_id
            );
            return;
        };
        let ack = DevMessage::Ack {
            request_id: invocation.request_id.clone(),
        };
        // The invocation's deadline, from the time it had left when the stub sent it (at most
        // Lambda's 15 minutes: a bad message does not overflow the clock).
        let remaining = invocation.remaining_ms.min(MAX_REMAINING_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(remaining);
        let start = state.seen.lock().expect("lock").arrive(&invocation);
        let stop = match start {
            Ok(stop) => stop,
            Err(again) => {
                // A duplicate: acknowledged again while it runs, or the same answer again
                // once answered; the handler is not run twice.
                if let Some((message, body)) = again {
                    let _ = state.sender.send(&results, &message, &body).await;
                }
                return;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            // The result acknowledges the invocation; a separate acknowledgement goes out
            // only if the result takes a while, well before the stub's retransmission.
            let run = state.run(&invocation, body, deadline, stop.notified());
            tokio::pin!(run);
            let ran = tokio::select! {
                ran = &mut run => ran,
                _ = tokio::time::sleep(ACK_AFTER) => {
                    let _ = state.sender.send(&results, &ack, b"").await;
                    run.await
                }
            };
            let elapsed = start.elapsed();
            let request_id = invocation.request_id.clone();
            let (message, body, error_type) = match ran.outcome {
                Ok(Outcome::Response { headers, body }) => (
                    DevMessage::Response {
                        request_id,
                        headers,
                    },
                    body,
                    None,
                ),
                Ok(outcome) => {
                    let (error_type, body) = outcome.failure().expect("not a response");
                    let headers = match outcome {
                        Outcome::Error { headers, .. } => headers,
                        _ => runtime_api::json_headers(),
                    };
                    (
                        DevMessage::Error {
                            request_id,
                            error_type: Some(error_type.clone()),
                            headers,
                        },
                        body,
                        Some(error_type),
                    )
                }
                Err((error_type, body)) => (
                    DevMessage::Error {
                        request_id,
                        error_type: Some(error_type.clone()),
                        headers: runtime_api::json_headers(),
                    },
                    body,
                    Some(error_type),
                ),
            };
            if let Err(e) = state.sender.send(&results, &message, &body).await {
                tracing::warn!(
                    "could not send the result of {}: {e}",
                    invocation.request_id
                );
            }
            // The line is printed once the result is on its way (its connection's writer
            // runs first), not on the invocation's critical path.
            tokio::task::yield_now().await;
            state.out.invocation(
                &invocation,
                ran.worker_pid,
                elapsed,
                error_type.as_deref(),
                &body,
            );
            // Kept for a probe: a small body as a compact copy, not a slice pinning hyper's
            // read buffer; a large one as it is (the buffer it holds is about its size).
            let body = if body.len() < COMPACT_BELOW {
                Bytes::copy_from_slice(&body)
            } else {
                body
            };
            // A result published while the link was down is lost with the broker's session:
            // the stub probes for it until it arrives. Kept until the same environment's next
            // invocation or, by the sweep, the deadline.
            let until = start + Duration::from_millis(invocation.remaining_ms) + RESULT_GRACE;
            let kept = Kept {
                message,
                body,
                until,
            };
            state
                .seen
                .lock()
                .expect("lock")
                .keep(&invocation.request_id, &invocation.env_id, kept);
        });
    }

    /// Run an invocation on code no older than the files were when it arrived.
    async fn run(
        &self,
        invocation: &bridge::Invocation,
        body: Bytes,
        deadline: tokio::time::Instant,
        stop: impl std::future::Future<Output = ()>,
    ) -> worker::Ran {
        if !self.functions.contains(&invocation.function) {
            return worker::failed(
                "Live.UnknownFunction",
                format!(
                    "live dev serves {:?}, not {:?}: add [functions.{}] to live.toml",
                    self.functions, invocation.function, invocation.function
                ),
            );
        }
        // Every save that finished before the invocation arrived is now known to the builds.
        if let Some(watcher) = &self.watcher {
            watcher.barrier_for(&invocation.request_id).await;
        }
        let until = deadline
            .checked_sub(BUILD_WAIT_MARGIN)
            .unwrap_or_else(tokio::time::Instant::now);
        match self.builds.launch_for(&invocation.function, until).await {
            Ok((launch, generation)) => {
                let ran = self.workers.run(invocation, body, &launch, generation, deadline, stop);
                ran.await
            }
            Err(NotReady::Failed(failure)) => worker::failed(
                "Live.BuildFailed",
                format!("the build of {} failed: {}", invocation.function, failure.first_error),
            ),
            Err(NotReady::StillBuilding) => worker::failed(
                "Live.BuildInProgress",
                format!(
                    "the build of {} started by a change is still running at the invocation's deadline",
                    invocation.function
                ),
            ),
        }
    }

    /// A stub still waits for the result of `request_id`: send it again if it is kept (it
    /// was lost on the way), or acknowledge again while the handler runs.
    async fn probed(&self, request_id: &str, env_id: &str) {
        let Ok(results) = self.topics.results(env_id) else {
            return;
        };
        // Nothing when past its deadline, or unknown to this session (which never
        // acknowledged it).
        let reply = self
            .seen
            .lock()
            .expect("lock")
            .map
            .get(request_id)
            .and_then(|entry| entry.again(request_id, false));
        if let Some((message, body)) = reply {
            let _ = self.sender.send(&results, &message, &body).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(request_id: &str, until: Instant) -> Seen {
        Seen::Answered(Box::new(Kept {
            message: DevMessage::Ack {
                request_id: request_id.into(),
            },
            body: Bytes::new(),
            until,
        }))
    }

    #[test]
    fn the_sweep_forgets_results_past_their_deadline_and_keeps_the_rest() {
        let now = Instant::now();
        let mut seen = SeenMap::default();
        for (env, request_id, entry) in [
            ("e1", "running", Seen::Running(Arc::default())),
            (
                "e2",
                "expired",
                answered("expired", now - Duration::from_millis(1)),
            ),
            ("e3", "kept", answered("kept", now + Duration::from_secs(5))),
            ("e4", "done", Seen::Done),
        ] {
            seen.map.insert(request_id.into(), entry);
            seen.latest.insert(env.into(), request_id.into());
        }
        seen.sweep(now);
        let state = |id: &str| match seen.map.get(id) {
            Some(Seen::Running(_)) => "running",
            Some(Seen::Answered(_)) => "answered",
            Some(Seen::Done) => "done",
            None => "forgotten",
        };
        assert_eq!(state("running"), "running");
        assert_eq!(
            state("expired"),
            "done",
            "its id stays, against a late duplicate"
        );
        assert_eq!(state("kept"), "answered");
        assert_eq!(state("done"), "done");
        let mut envs: Vec<_> = seen.latest.keys().cloned().collect();
        envs.sort();
        assert_eq!(envs, ["e1", "e3"]);
    }

    #[test]
    fn a_result_that_finishes_after_its_environment_moved_on_is_not_kept() {
        let now = Instant::now();
        let mut seen = SeenMap::default();
        for id in ["old", "new"] {
            seen.map.insert(id.into(), Seen::Running(Arc::default()));
        }
        seen.latest.insert("e1".into(), "new".into());
        let kept = |id: &str| match answered(id, now + Duration::from_secs(5)) {
            Seen::Answered(kept) => *kept,
            _ => unreachable!(),
        };
        seen.keep("old", "e1", kept("old"));
        seen.keep("new", "e1", kept("new"));
        assert!(
            matches!(seen.map.get("old"), Some(Seen::Done)),
            "the sweep would never reach it"
        );
        assert!(matches!(seen.map.get("new"), Some(Seen::Answered(_))));
    }

    fn delivery(request_id: &str, attempt: u32) -> bridge::Invocation {
        bridge::Invocation {
            request_id: request_id.into(),
            function: "f".into(),
            env_id: "e1".into(),
            headers: vec![],
            remaining_ms: 1000,
            attempt,
        }
    }

    #[test]
    fn a_retransmission_is_answered_again_and_lambdas_retry_runs_again() {
        let mut seen = SeenMap::default();
        assert!(seen.arrive(&delivery("r1", 0)).is_ok(), "new");
        // The stub sends it again (attempt 1) while it runs: acknowledged, not run.
        assert!(matches!(seen.arrive(&delivery("r1", 1)), Err(Some(_))));
        // A first send of a running id (another stub's) does not run it twice either.
        assert!(seen.arrive(&delivery("r1", 0)).is_err());
        seen.map.insert("r1".into(), Seen::Done);
        assert!(
            seen.arrive(&delivery("r1", 2)).is_err(),
            "a late retransmission"
        );
        // Lambda retries a failed asynchronous invocation under its id: a new delivery.
        assert!(
            seen.arrive(&delivery("r1", 0)).is_ok(),
            "Lambda's retry runs"
        );
        assert!(matches!(seen.map.get("r1"), Some(Seen::Running(_))));
    }

    #[tokio::test]
    async fn the_next_invocation_of_an_environment_stops_the_one_its_stub_gave_up_on() {
        let mut seen = SeenMap::default();
        let first = seen.start("r1", "e1");
        let other = seen.start("r2", "e2");
        let _second = seen.start("r3", "e1");
        let stopped = tokio::time::timeout(Duration::from_secs(5), first.notified()).await;
        assert!(stopped.is_ok(), "r1 was not told to stop");
        let untouched = tokio::time::timeout(Duration::from_millis(50), other.notified()).await;
        assert!(
            untouched.is_err(),
            "another environment's invocation was stopped"
        );
    }

    #[test]
    fn ids_still_running_or_holding_a_result_are_not_forgotten() {
        let mut seen = SeenMap::default();
        let _running = seen.start("long", "e-long");
        seen.start("answered", "e-answered");
        seen.keep(
            "answered",
            "e-answered",
            match answered("answered", Instant::now() + Duration::from_secs(60)) {
                Seen::Answered(kept) => *kept,
                _ => unreachable!(),
            },
        );
        for i in 0..REMEMBERED + 10 {
            let id = format!("r{i}");
            seen.start(&id, &format!("e{i}"));
            seen.map.insert(id, Seen::Done);
        }
        assert!(matches!(seen.map.get("long"), Some(Seen::Running(_))));
        assert!(matches!(seen.map.get("answered"), Some(Seen::Answered(_))));
        assert!(!seen.map.contains_key("r0"), "the oldest done ids go");
        assert_eq!(seen.order.len(), REMEMBERED);
    }
}
