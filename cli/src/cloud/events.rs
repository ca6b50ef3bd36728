//! Asynchronous (`Event`) invocations, as Lambda runs them: accepted into a bounded queue per
//! function (beyond it the caller is throttled), run on at most half of the function's
//! execution environments so that they never hold up synchronous calls, and retried twice
//! with backoff, under the same request id, when they fail.

use super::emulator::{Emulator, Pool, Request};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// How `Event` invocations are held and retried (flags of `live cloud` and `live dev`).
#[derive(Debug, Clone, clap::Args)]
pub struct EventOptions {
    /// `Event` invocations held per function at most (queued, running or waiting for a
    /// retry); beyond, the Invoke API answers 429 TooManyRequestsException, as Lambda
    /// throttles.
    #[arg(long, default_value_t = 1000)]
    pub max_events: usize,
    /// Milliseconds before each retry of a failed `Event` invocation, comma-separated; one
    /// retry per entry (Lambda: two, after about 1 and 2 minutes).
    #[arg(
        long,
        hide = true,
        env = "LIVE_EVENT_RETRY_DELAYS_MS",
        value_delimiter = ',',
        default_value = "60000,120000"
    )]
    pub event_retry_delays_ms: Vec<u64>,
}

/// The caller is throttled: the function holds as many `Event` invocations as it may.
#[derive(Debug, PartialEq, Eq)]
pub struct Throttled;

/// Every function's queue of `Event` invocations. Dropping it ends the dispatchers: what is
/// still queued is dropped, what runs finishes, and no retry is queued after that.
pub struct Events {
    queues: HashMap<String, Queue>,
}

struct Queue {
    tx: mpsc::UnboundedSender<Event>,
    /// One permit per invocation held; an event keeps its permit until it is done, retries
    /// included, so the queue's memory is bounded by `max_events` payloads.
    held: Arc<Semaphore>,
    max_events: usize,
    /// Whether the last caller was throttled, to log once when throttling starts.
    throttling: AtomicBool,
}

/// An accepted invocation: what it asks for and how often it has run.
struct Event {
    request_id: String,
    body: Bytes,
    client_context: Option<String>,
    trace_id: Option<String>,
    cognito_identity: Option<String>,
    /// The runs so far (0 before the first).
    runs: usize,
    _held: OwnedSemaphorePermit,
}

impl Event {
    fn request(&self) -> Request {
        Request {
            request_id: Some(self.request_id.clone()),
            body: self.body.clone(),
            client_context: self.client_context.clone(),
            trace_id: self.trace_id.clone(),
            cognito_identity: self.cognito_identity.clone(),
        }
    }
}

/// The environments of a function with `max_envs` that its `Event` invocations may use at
/// once: half (at least one), so that synchronous calls always find the other half.
pub fn event_envs(max_envs: usize) -> usize {
    (max_envs / 2).max(1)
}

impl Events {
    /// A queue and its dispatcher for each of the emulator's functions.
    pub fn start(emulator: &Emulator, options: &EventOptions, max_envs: usize) -> Events {
        let delays: Arc<[Duration]> = options
            .event_retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        let queues = emulator
            .functions()
            .filter_map(|name| Some((name.clone(), emulator.pool(name)?)))
            .map(|(name, pool)| {
                let (tx, rx) = mpsc::unbounded_channel();
                let dispatcher = Dispatcher {
                    pool,
                    retry: tx.downgrade(),
                    envs: Arc::new(Semaphore::new(event_envs(max_envs))),
                    delays: delays.clone(),
                };
                tokio::spawn(dispatcher.run(rx));
                let queue = Queue {
                    tx,
                    held: Arc::new(Semaphore::new(options.max_events)),
                    max_events: options.max_events,
                    throttling: AtomicBool::new(false),
                };
                (name, queue)
            })
            .collect();
        Events { queues }
    }

    /// Accept `request` for `function` (which must exist), answering the request id it will
    /// run under, or [`Throttled`] when the function holds `max_events` already.
    pub fn accept(&self, function: &str, request: Request) -> Result<String, Throttled> {
        let queue = self.queues.get(function).ok_or(Throttled)?;
        let Ok(held) = queue.held.clone().try_acquire_owned() else {
            if !queue.throttling.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    function,
                    "{function} holds {} Event invocations, its most (--max-events): answering \
                     429 TooManyRequestsException until one is done",
                    queue.max_events
                );
            }
            return Err(Throttled);
        };
        queue.throttling.store(false, Ordering::Relaxed);
        let request_id = request.request_id.unwrap_or_else(crate::ids::request_id);
        let event = Event {
            request_id: request_id.clone(),
            body: request.body,
            client_context: request.client_context,
            trace_id: request.trace_id,
            cognito_identity: request.cognito_identity,
            runs: 0,
            _held: held,
        };
        queue.tx.send(event).map_err(|_| Throttled)?;
        Ok(request_id)
    }
}

/// Runs one function's queue in order, at most `envs` at a time.
struct Dispatcher {
    pool: Arc<Pool>,
    /// Where a retry goes back in; weak, so that the queue ends once [`Events`] is dropped.
    retry: mpsc::WeakUnboundedSender<Event>,
    envs: Arc<Semaphore>,
    delays: Arc<[Duration]>,
}

impl Dispatcher {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let this = Arc::new(self);
        while let Some(event) = rx.recv().await {
            let Ok(env) = this.envs.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(this.clone().attempt(event, env));
        }
    }

    /// Run `event` once on an environment (`env` is its share); on a function error, queue
    /// it again after the next delay, or drop it once every retry failed, as Lambda does
    /// without an on-failure destination.
    async fn attempt(self: Arc<Self>, mut event: Event, env: OwnedSemaphorePermit) {
        let reply = self.pool.invoke(event.request()).await;
        drop(env);
        event.runs += 1;
        let Err((error_type, _)) = reply.result else {
            return;
        };
        let id = &event.request_id;
        let Some(delay) = self.delays.get(event.runs - 1).copied() else {
            tracing::warn!(
                request_id = %id,
                "asynchronous invocation {id} failed ({error_type}) after {} attempts; dropped",
                event.runs
            );
            return;
        };
        tracing::info!(
            request_id = %id,
            "asynchronous invocation {id} failed ({error_type}); retrying in {} ms",
            delay.as_millis()
        );
        tokio::time::sleep(delay).await;
        if let Some(tx) = self.retry.upgrade() {
            let _ = tx.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::emulator::{Runner, Settings};

    /// An emulator whose function `f` fails every invocation at once (nothing was built to
    /// run it), and its events with `max_events` and `delays_ms`.
    fn events(max_events: usize, delays_ms: Vec<u64>) -> Events {
        let dir = std::env::temp_dir().join(format!(
            "live-events-{}-{max_events}-{}",
            std::process::id(),
            delays_ms.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = "app = \"a\"\nstage = \"s\"\n[functions.f]\ncommand = [\"true\"]\n";
        std::fs::write(dir.join("live.toml"), toml).unwrap();
        let project = crate::config::Project::load(&dir.join("live.toml")).unwrap();
        let settings = Settings {
            runner: Runner::Direct(Default::default()),
            max_envs: 2,
            no_dev_window: Duration::from_secs(1),
            echo_stubs: false,
            freeze: false,
            on_invoke: None,
        };
        let emulator = Emulator::new(&project, settings);
        let options = EventOptions {
            max_events,
            event_retry_delays_ms: delays_ms,
        };
        Events::start(&emulator, &options, 2)
    }

    #[tokio::test]
    async fn beyond_the_bound_events_are_throttled_until_one_is_done() {
        // Waiting an hour for its retry, each event stays held.
        let held = events(3, vec![3_600_000]);
        for _ in 0..3 {
            held.accept("f", Request::default()).unwrap();
        }
        assert_eq!(held.accept("f", Request::default()), Err(Throttled));

        // With no retry, each is done after its one failed run, and its place is free again.
        let done = events(2, vec![]);
        for _ in 0..2 {
            done.accept("f", Request::default()).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while done.accept("f", Request::default()).is_err() {
            assert!(std::time::Instant::now() < deadline, "no place came free");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn the_retry_delays_are_lambdas_unless_told() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            events: EventOptions,
        }
        let cli = Cli::parse_from(["live"]);
        assert_eq!(cli.events.max_events, 1000);
        assert_eq!(cli.events.event_retry_delays_ms, [60_000, 120_000]);
        let cli = Cli::parse_from(["live", "--event-retry-delays-ms", "5,10,20"]);
        assert_eq!(cli.events.event_retry_delays_ms, [5, 10, 20]);
    }

    #[test]
    fn events_get_half_the_environments() {
        assert_eq!(event_envs(64), 32);
        assert_eq!(event_envs(3), 1);
        assert_eq!(event_envs(1), 1);
    }
}
