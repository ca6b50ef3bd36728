//! What a developer session knows of each request id, for deduplication: still running,
//! answered (its result kept for a probe or a duplicate), or done (only the id, against a
//! late duplicate); bounded to the ids still running or holding a result and the last
//! [`REMEMBERED`] others.

use bridge::{DevMessage, WireInvocation};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Answered request ids remembered for deduplication (retransmissions arrive within seconds;
/// this bounds the memory of a long session).
pub const REMEMBERED: usize = 4096;

/// What this session knows of a request id: still running, or answered (kept to answer a
/// duplicate the same way).
pub enum Seen {
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
pub struct Kept {
    pub message: DevMessage,
    pub body: Bytes,
    /// Past this, the stub has answered on its own: the sweep forgets the result.
    pub until: Instant,
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

/// Every request id this session knows, bounded.
#[derive(Default)]
pub struct SeenMap {
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
    pub fn arrive(
        &mut self,
        invocation: &WireInvocation,
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
    pub fn start(&mut self, request_id: &str, env_id: &str) -> Arc<tokio::sync::Notify> {
        // Lambda's retry of an asynchronous invocation may land in another environment: the
        // one its earlier attempt ran in must not stop it when that one moves on.
        if self.map.contains_key(request_id) {
            self.latest
                .retain(|env, id| env == env_id || id != request_id);
        }
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
    pub fn keep(&mut self, request_id: &str, env_id: &str, kept: Kept) {
        let latest = self.latest.get(env_id).is_some_and(|id| id == request_id);
        if let Some(entry) = self.map.get_mut(request_id) {
            *entry = if latest {
                Seen::Answered(Box::new(kept))
            } else {
                Seen::Done
            };
        }
    }

    /// What to send a stub that probes for `request_id`: the kept result, or an Ack while
    /// the handler runs; nothing when past its deadline, or unknown to this session (which
    /// never acknowledged it).
    pub fn probed(&self, request_id: &str) -> Option<(DevMessage, Bytes)> {
        self.map
            .get(request_id)
            .and_then(|entry| entry.again(request_id, false))
    }

    /// Forget the kept results past their deadline (keeping their ids), and the
    /// environments that have no result kept or running any more. Only each environment's
    /// latest invocation can hold a result, so this looks at one entry per environment.
    pub fn sweep(&mut self, now: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    fn delivery(request_id: &str, attempt: u32) -> WireInvocation {
        WireInvocation {
            request_id: request_id.into(),
            function: "f".into(),
            env_id: "e1".into(),
            headers: vec![],
            remaining_ms: 1000,
            attempt,
            env: None,
            credentials: None,
            objects: None,
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
    fn a_retry_in_another_environment_is_not_stopped_by_the_first_one_moving_on() {
        let mut seen = SeenMap::default();
        seen.start("r1", "e1");
        seen.map.insert("r1".into(), Seen::Done);
        // Lambda's retry of r1 runs in e2; then e1 takes its next invocation.
        let retry = seen.start("r1", "e2");
        seen.start("r2", "e1");
        // Not told to stop: no permit waits for the retry's run.
        let stopped = std::pin::pin!(retry.notified());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            std::future::Future::poll(stopped, &mut cx).is_pending(),
            "the retry was told to stop"
        );
        assert!(matches!(seen.map.get("r1"), Some(Seen::Running(_))));
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
