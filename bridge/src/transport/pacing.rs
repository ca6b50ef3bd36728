//! Keeping a connection inside IoT Core's per-connection publish quota (100 publishes a
//! second, in and out together; the excess is discarded): a token bucket that what the
//! connection sends waits on, and that what it receives draws on after the fact, so that the
//! replies its own messages provoke slow its sending down.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A publish rate to stay within, in and out together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishQuota {
    /// Publishes a second, sustained.
    pub per_second: f64,
    /// Publishes at once after a quiet spell; `per_second + burst` is the most in any one
    /// second, so keep the two under the broker's limit together.
    pub burst: f64,
}

impl PublishQuota {
    /// Inside IoT Core's 100 a second in any one second: 80 a second and bursts of 20.
    pub const IOT_CORE: PublishQuota = PublishQuota {
        per_second: 80.0,
        burst: 20.0,
    };
}

/// The bucket, shared by the connection's senders and its receiving task.
#[derive(Debug)]
pub(crate) struct Pacer {
    quota: PublishQuota,
    state: Mutex<State>,
    /// Senders wait their turn here, first come first served (tokio's mutex is fair): a
    /// rare message (a presence record announcing new lanes) waits behind the ones queued
    /// before it, never behind every one that comes after.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
    waited: Duration,
    /// Publishes counted, sent and received.
    counted: u64,
}

impl Pacer {
    pub(crate) fn new(quota: PublishQuota) -> Pacer {
        Pacer {
            quota,
            state: Mutex::new(State {
                tokens: quota.burst,
                at: Instant::now(),
                waited: Duration::ZERO,
                counted: 0,
            }),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn refill(&self, state: &mut State) {
        let now = Instant::now();
        let earned = now.duration_since(state.at).as_secs_f64() * self.quota.per_second;
        state.tokens = (state.tokens + earned).min(self.quota.burst);
        state.at = now;
    }

    /// Wait until one more publish fits, in turn, and count it.
    pub(crate) async fn send(&self) {
        let _turn = self.turn.lock().await;
        loop {
            let wait = {
                let mut state = self.state.lock().expect("pacer");
                self.refill(&mut state);
                if state.tokens >= 1.0 {
                    state.tokens -= 1.0;
                    state.counted += 1;
                    return;
                }
                let wait = Duration::from_secs_f64((1.0 - state.tokens) / self.quota.per_second);
                state.waited += wait;
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Count a publish received. The debt it may leave is bounded by one second's worth, so a
    /// flood from others cannot stop this side's sending for longer than that.
    pub(crate) fn received(&self) {
        let mut state = self.state.lock().expect("pacer");
        self.refill(&mut state);
        state.tokens = (state.tokens - 1.0).max(-self.quota.per_second);
        state.counted += 1;
    }

    /// Publishes sent and received so far.
    pub(crate) fn counted(&self) -> u64 {
        self.state.lock().expect("pacer").counted
    }

    /// How long sends have waited in all.
    pub(crate) fn waited(&self) -> Duration {
        self.state.lock().expect("pacer").waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_keep_to_the_rate_and_what_arrives_slows_them() {
        let pacer = Pacer::new(PublishQuota {
            per_second: 10.0,
            burst: 5.0,
        });
        let start = Instant::now();
        for _ in 0..5 {
            pacer.send().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        for _ in 0..10 {
            pacer.send().await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(990), "{took:?}");
        // Ten received: the next ten sends wait two seconds, not one.
        for _ in 0..10 {
            pacer.received();
        }
        let again = Instant::now();
        for _ in 0..10 {
            pacer.send().await;
        }
        assert!(
            again.elapsed() >= Duration::from_millis(1990),
            "{:?}",
            again.elapsed()
        );
        assert!(pacer.waited() >= Duration::from_secs(2));
    }
}
