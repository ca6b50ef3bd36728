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

    #[test]
    fn events_get_half_the_environments() {
        assert_eq!(event_envs(64), 32);
        assert_eq!(event_envs(3), 1);
        assert_eq!(event_envs(1), 1);
    }
}
