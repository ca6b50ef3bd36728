//! The developer session: each invocation that reaches it is deduplicated, acknowledged,
//! run on its worker once its build is current, and answered; probes are answered from the
//! kept results. Nothing here waits on a peer where a message is received: every send
//! runs in a task of the session's own [`TaskTracker`]s, so `live dev` can drain them on exit.

use super::lanes::Lanes;
use super::objects;
use super::output::Output;
use super::reload::{Builds, NotReady};
use super::seen::{Kept, SeenMap};
use super::watch::FileWatcher;
use super::worker::{self, Workers};
use bridge::runtime_api::{self, server::Outcome};
use bridge::transport::Received;
use bridge::{DevMessage, StubMessage, Topics, WireInvocation};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Lambda's longest timeout: no invocation has more time left than this.
const MAX_REMAINING_MS: u64 = 900_000;

/// How long an invocation runs before it is acknowledged on its own (a quicker result is
/// the acknowledgement); well within the stub's 1 s retransmission.
const ACK_AFTER: Duration = Duration::from_millis(200);

/// How often the kept results are swept for those past their deadline.
pub const RESULT_SWEEP: Duration = Duration::from_millis(1000);

/// Answers to retransmissions and probes being sent at most at once; beyond it they are
/// dropped (the stub asks again within a second), so a slow link never queues them
/// without bound.
const REPLIES_IN_FLIGHT: usize = 1024;

/// How long past the invocation's deadline a result is still kept for a probe (the stub
/// answers before the deadline, so later probes do not come).
const RESULT_GRACE: Duration = Duration::from_millis(500);

/// Results smaller than this are copied before they are kept (see `Session::invoke`).
const COMPACT_BELOW: usize = 64 * 1024;

/// How long before the stub's deadline `live dev` stops waiting for a build, so its own
/// answer (build still running) reaches the stub in time.
const BUILD_WAIT_MARGIN: Duration = Duration::from_millis(500);

/// What a session runs on.
pub struct Parts {
    pub topics: Topics,
    /// The connections answers go out on: an environment's on the lane its invocations
    /// come in on.
    pub lanes: Arc<Lanes>,
    pub workers: Arc<Workers>,
    pub builds: Arc<Builds>,
    pub watcher: Option<Arc<FileWatcher>>,
    pub functions: Vec<String>,
    pub out: Arc<Output>,
}

/// The developer session.
pub struct Session {
    parts: Parts,
    seen: Mutex<SeenMap>,
    /// Every invocation's task.
    invocations: TaskTracker,
    /// Every reply being sent (to a retransmission or a probe).
    replying: TaskTracker,
    /// Cancelled when `live dev` stops: invocations that arrive after it are answered with
    /// `Live.SessionStopped` instead of being run.
    stopping: CancellationToken,
    /// Cancelled when the drain gives up: invocations still running are answered with
    /// `Live.SessionStopped`.
    abandon: CancellationToken,
    replies: Arc<Semaphore>,
}

impl Session {
    pub fn new(parts: Parts) -> Arc<Session> {
        Arc::new(Session {
            parts,
            seen: Mutex::new(SeenMap::default()),
            invocations: TaskTracker::new(),
            replying: TaskTracker::new(),
            stopping: CancellationToken::new(),
            abandon: CancellationToken::new(),
            replies: Arc::new(Semaphore::new(REPLIES_IN_FLIGHT)),
        })
    }

    /// Handle one message received on the session's topic; returns at once (what it starts
    /// runs in the session's tasks).
    pub fn receive(self: &Arc<Self>, received: Received) {
        match received.frame.parse::<StubMessage>() {
            Ok(StubMessage::Invoke(invocation)) => self.arrive(invocation, received.frame.body),
            Ok(StubMessage::Probe { request_id, env_id }) => self.probed(&request_id, &env_id),
            Err(e) => tracing::warn!("dropped a message on {}: {e}", received.topic),
        }
    }

    /// Forget the kept results past their deadline.
    pub fn sweep(&self) {
        self.seen.lock().expect("lock").sweep(Instant::now());
    }

    /// Stop running new invocations (they are answered `Live.SessionStopped`), and wait for
    /// those running to finish and their answers, and the replies on their way, to be sent.
    pub async fn drain(&self) {
        self.stopping.cancel();
        self.invocations.close();
        self.replying.close();
        self.invocations.wait().await;
        self.replying.wait().await;
    }

    /// Invocations still running.
    pub fn running(&self) -> usize {
        self.invocations.len()
    }

    /// Answer every invocation still running with `Live.SessionStopped` (its worker is left
    /// to be stopped with `live dev`).
    pub fn abandon(&self) {
        self.abandon.cancel();
    }

    /// Send `message` to `topic` in a task of its own, or drop it when too many are on their
    /// way already: only for answers the stub asks for again if they are lost.
    fn reply(&self, env_id: &str, topic: String, message: DevMessage, body: Bytes) {
        let Ok(permit) = self.replies.clone().try_acquire_owned() else {
            tracing::debug!(
                "dropped a reply for {}: too many replies in flight; the stub asks again",
                message.request_id()
            );
            return;
        };
        let sender = self.parts.lanes.sender(env_id);
        self.replying.spawn(async move {
            let _ = sender.send(&topic, &message, &body).await;
            drop(permit);
        });
    }

    fn arrive(self: &Arc<Self>, invocation: WireInvocation, body: Bytes) {
        let Ok(results) = self.parts.topics.results(&invocation.env_id) else {
            tracing::warn!(
                "dropped an invocation with a bad environment id {:?}",
                invocation.env_id
            );
            return;
        };
        // The invocation's deadline, from the time it had left when the stub sent it (at most
        // Lambda's 15 minutes: a bad message does not overflow the clock).
        let remaining = invocation.remaining_ms.min(MAX_REMAINING_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(remaining);
        let start = self.seen.lock().expect("lock").arrive(&invocation);
        let stop = match start {
            Ok(stop) => stop,
            Err(again) => {
                // A duplicate: acknowledged again while it runs, or the same answer again
                // once answered; the handler is not run twice.
                if let Some((message, body)) = again {
                    self.reply(&invocation.env_id, results, message, body);
                }
                return;
            }
        };
        let state = self.clone();
        self.invocations.spawn(async move {
            let start = Instant::now();
            let ran = tokio::select! {
                ran = state.acknowledged_run(&invocation, body, deadline, stop.notified(), &results) => ran,
                _ = state.abandon.cancelled() => worker::failed(
                    "Live.SessionStopped",
                    "live dev was stopped before the handler answered; run `live dev` again"
                        .to_string(),
                ),
            };
            state.answer(invocation, results, ran, start).await;
        });
    }

    /// [`Session::run`], acknowledged on its own if it takes a while: the result
    /// acknowledges the invocation, and a separate acknowledgement goes out only if the result
    /// takes longer than [`ACK_AFTER`], well before the stub's retransmission.
    async fn acknowledged_run(
        &self,
        invocation: &WireInvocation,
        body: Bytes,
        deadline: tokio::time::Instant,
        stop: impl std::future::Future<Output = ()>,
        results: &str,
    ) -> worker::Ran {
        let run = async {
            // An event too large for the bridge comes from the stage's bucket.
            let body = match invocation.objects.as_ref().and_then(|o| o.event.as_deref()) {
                None => body,
                Some(url) => match objects::fetch(url).await {
                    Ok(event) => event,
                    Err(e) => {
                        return worker::failed(
                            "Live.PayloadUnavailable",
                            format!("could not fetch the event from the stage's bucket: {e}"),
                        )
                    }
                },
            };
            self.run(invocation, body, deadline, stop).await
        };
        tokio::pin!(run);
        tokio::select! {
            ran = &mut run => ran,
            _ = tokio::time::sleep(ACK_AFTER) => {
                let ack = DevMessage::Ack {
                    request_id: invocation.request_id.clone(),
                };
                let sender = self.parts.lanes.sender(&invocation.env_id);
                let _ = sender.send(results, &ack, b"").await;
                run.await
            }
        }
    }

    /// Send the result of `invocation`, print its line, and keep the result for a probe.
    async fn answer(
        &self,
        invocation: WireInvocation,
        results: String,
        ran: worker::Ran,
        start: Instant,
    ) {
        let elapsed = start.elapsed();
        let request_id = invocation.request_id.clone();
        let (message, body, error_type) = match ran.outcome {
            Ok(Outcome::Response { headers, body }) => (
                DevMessage::Response {
                    request_id,
                    headers,
                    in_object: false,
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
        let (message, sent) = offload(&invocation, message, &body).await;
        let sender = self.parts.lanes.sender(&invocation.env_id);
        if let Err(e) = sender.send(&results, &message, &sent).await {
            tracing::warn!(
                "could not send the result of {}: {e}",
                invocation.request_id
            );
        }
        // The line is printed once the result is on its way (its connection's writer
        // runs first), not on the invocation's critical path.
        tokio::task::yield_now().await;
        self.parts.out.invocation(
            &invocation,
            ran.worker_pid,
            elapsed,
            error_type.as_deref(),
            &body,
        );
        // Kept for a probe: a small body as a compact copy, not a slice pinning hyper's
        // read buffer; a large one as it is (the buffer it holds is about its size).
        let body = sent;
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
        self.seen
            .lock()
            .expect("lock")
            .keep(&invocation.request_id, &invocation.env_id, kept);
    }

    /// Run an invocation on code no older than the files were when it arrived.
    async fn run(
        &self,
        invocation: &WireInvocation,
        body: Bytes,
        deadline: tokio::time::Instant,
        stop: impl std::future::Future<Output = ()>,
    ) -> worker::Ran {
        let Parts {
            functions,
            watcher,
            builds,
            workers,
            ..
        } = &self.parts;
        if self.stopping.is_cancelled() {
            return worker::failed(
                "Live.SessionStopped",
                "live dev is stopping and runs no new invocation; run `live dev` again".into(),
            );
        }
        if !functions.contains(&invocation.function) {
            return worker::failed(
                "Live.UnknownFunction",
                format!(
                    "live dev serves {:?}, not {:?}: add [functions.{}] to live.toml",
                    functions, invocation.function, invocation.function
                ),
            );
        }
        // Every save that finished before the invocation arrived is now known to the builds.
        if let Some(watcher) = watcher {
            watcher.barrier_for(&invocation.request_id).await;
        }
        let until = deadline
            .checked_sub(BUILD_WAIT_MARGIN)
            .unwrap_or_else(tokio::time::Instant::now);
        match builds.launch_for(&invocation.function, until).await {
            Ok((launch, generation)) => {
                let ran = workers.run(invocation, body, &launch, generation, deadline, stop);
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
    fn probed(&self, request_id: &str, env_id: &str) {
        let Ok(results) = self.parts.topics.results(env_id) else {
            return;
        };
        let reply = self.seen.lock().expect("lock").probed(request_id);
        if let Some((message, body)) = reply {
            self.reply(env_id, results, message, body);
        }
    }
}

/// A response too large for the bridge, put where the stub offered (`ObjectUrls::response`):
/// the message then says so and goes with an empty body. Without an offer, or when the put
/// fails (said in a warning), it goes over the bridge as it is.
async fn offload(
    invocation: &WireInvocation,
    message: DevMessage,
    body: &Bytes,
) -> (DevMessage, Bytes) {
    let offer = invocation.objects.as_ref().map(|o| o.response.as_str());
    let (
        DevMessage::Response {
            request_id,
            headers,
            ..
        },
        Some(url),
    ) = (&message, offer)
    else {
        return (message, body.clone());
    };
    if body.len() <= objects::OBJECT_THRESHOLD {
        return (message, body.clone());
    }
    match objects::put(url, body.clone()).await {
        Ok(()) => (
            DevMessage::Response {
                request_id: request_id.clone(),
                headers: headers.clone(),
                in_object: true,
            },
            Bytes::new(),
        ),
        Err(e) => {
            tracing::warn!(
                "could not put the response of {request_id} in the stage's bucket, sent over the bridge instead: {e}"
            );
            (message, body.clone())
        }
    }
}
