//! IoT Core's per-connection quotas, enforced as IoT Core enforces them when the broker is in
//! quota mode (IoT mode, or [`BrokerConfig::quotas`](super::BrokerConfig::quotas) set): a
//! publish-rate token bucket shared by both directions (the excess discarded), a throughput
//! budget (the excess delayed), a window of unacknowledged QoS 1 deliveries, subscription
//! limits, and the counts of what each connection had discarded or delayed.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// IoT Core's per-connection quotas (reference: the General Reference's IoT Core tables).
#[derive(Debug, Clone)]
pub struct Quotas {
    /// PUBLISH packets per second per connection, client to broker and broker to client
    /// together (also the burst); beyond it a publish is discarded: an inbound one is not
    /// routed nor acknowledged, a delivery is not sent. IoT Core: 100.
    pub publishes_per_second: u32,
    /// Bytes per second per connection, both directions together; beyond it reading and
    /// writing wait (TCP backpressure does the rest), nothing is dropped. IoT Core: 512 KiB/s.
    pub bytes_per_second: u64,
    /// The bytes a connection may move at once before the throughput budget delays it: one
    /// maximal payload.
    pub byte_burst: u64,
    /// QoS 1 deliveries sent and not yet acknowledged; further ones wait for a PUBACK.
    /// IoT Core: 100.
    pub max_unacked: usize,
    /// Subscriptions per connection; a filter beyond them gets a SUBACK failure. IoT Core: 50.
    pub max_subscriptions: usize,
    /// Filters per SUBSCRIBE; those beyond get a SUBACK failure. IoT Core: 8.
    pub max_filters_per_subscribe: usize,
    /// What every connection had discarded, delayed or refused, broker-wide.
    pub counts: Arc<QuotaCounts>,
}

impl Quotas {
    /// IoT Core's values, with fresh counts.
    pub fn iot_core() -> Self {
        Quotas {
            publishes_per_second: 100,
            bytes_per_second: 512 * 1024,
            byte_burst: 128 * 1024,
            max_unacked: 100,
            max_subscriptions: 50,
            max_filters_per_subscribe: 8,
            counts: Arc::default(),
        }
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas::iot_core()
    }
}

/// Broker-wide counts of what the quotas discarded, delayed or refused, updated as it
/// happens (read them with [`QuotaCounts::totals`]).
#[derive(Debug, Default)]
pub struct QuotaCounts {
    discarded_in: AtomicU64,
    discarded_out: AtomicU64,
    delayed_bytes: AtomicU64,
    delayed_micros: AtomicU64,
    subscriptions_refused: AtomicU64,
}

/// A snapshot of quota counts, broker-wide or of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaTotals {
    /// Client PUBLISHes discarded over the publish rate (not routed, not acknowledged).
    pub discarded_in: u64,
    /// Deliveries discarded over the subscriber's publish rate (not sent).
    pub discarded_out: u64,
    /// Bytes whose reading or writing waited for the throughput budget.
    pub delayed_bytes: u64,
    /// How long they waited, reading and writing added up.
    pub delayed: Duration,
    /// SUBSCRIBE filters refused over the subscription limits.
    pub subscriptions_refused: u64,
}

impl QuotaTotals {
    /// Nothing discarded, delayed or refused.
    pub fn is_zero(&self) -> bool {
        *self == QuotaTotals::default()
    }
}

impl fmt::Display for QuotaTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} publishes discarded inbound and {} outbound (publish rate), {} bytes delayed \
             for {:.3} s (throughput), {} subscriptions refused",
            self.discarded_in,
            self.discarded_out,
            self.delayed_bytes,
            self.delayed.as_secs_f64(),
            self.subscriptions_refused
        )
    }
}

impl QuotaCounts {
    /// What has been counted so far.
    pub fn totals(&self) -> QuotaTotals {
        QuotaTotals {
            discarded_in: self.discarded_in.load(Ordering::Relaxed),
            discarded_out: self.discarded_out.load(Ordering::Relaxed),
            delayed_bytes: self.delayed_bytes.load(Ordering::Relaxed),
            delayed: Duration::from_micros(self.delayed_micros.load(Ordering::Relaxed)),
            subscriptions_refused: self.subscriptions_refused.load(Ordering::Relaxed),
        }
    }
}

/// The keep-alive a connection gets: 0 or more than 1,200 s count as 1,200 s, as in IoT Core;
/// in quota mode less than 30 s counts as 30 s too (otherwise honoured, so that local tests
/// notice dead clients quickly).
pub(super) fn keep_alive(asked: u16, quotas: bool) -> u16 {
    match asked {
        0 => 1200,
        k if quotas => k.clamp(30, 1200),
        k => k.min(1200),
    }
}

/// Which way a publish goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Direction {
    /// Client to broker.
    In,
    /// Broker to client (a delivery).
    Out,
}

/// A token bucket: `rate` tokens a second up to `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            rate,
            burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }

    /// Take one token if there is one.
    fn take_one(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take `n` tokens, going into debt: how long until the debt is paid off.
    fn take_owing(&mut self, n: f64) -> Duration {
        self.refill();
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One socket connection's quotas: its buckets, its window of unacknowledged QoS 1
/// deliveries, and its own counts (added to the broker-wide ones as they happen). Shared by
/// its reader, its writer and the router (which checks its deliveries).
pub(super) struct ConnQuota {
    publishes: Mutex<Bucket>,
    bytes: Mutex<Bucket>,
    unacked: Semaphore,
    outstanding: AtomicUsize,
    max_subscriptions: usize,
    max_filters_per_subscribe: usize,
    own: QuotaCounts,
    broker: Arc<QuotaCounts>,
}

impl ConnQuota {
    pub fn new(quotas: &Quotas) -> Arc<Self> {
        let publishes = f64::from(quotas.publishes_per_second.max(1));
        let rate = quotas.bytes_per_second.max(1) as f64;
        Arc::new(ConnQuota {
            publishes: Mutex::new(Bucket::new(publishes, publishes)),
            bytes: Mutex::new(Bucket::new(rate, quotas.byte_burst as f64)),
            unacked: Semaphore::new(quotas.max_unacked.max(1)),
            outstanding: AtomicUsize::new(0),
            max_subscriptions: quotas.max_subscriptions,
            max_filters_per_subscribe: quotas.max_filters_per_subscribe,
            own: QuotaCounts::default(),
            broker: quotas.counts.clone(),
        })
    }

    fn add(&self, field: impl Fn(&QuotaCounts) -> &AtomicU64, n: u64) {
        field(&self.own).fetch_add(n, Ordering::Relaxed);
        field(&self.broker).fetch_add(n, Ordering::Relaxed);
    }

    /// Whether a PUBLISH going `direction` is within the publish rate; one that is not is
    /// counted as discarded.
    pub fn admit(&self, direction: Direction) -> bool {
        if self.publishes.lock().expect("publish bucket").take_one() {
            return true;
        }
        match direction {
            Direction::In => self.add(|c| &c.discarded_in, 1),
            Direction::Out => self.add(|c| &c.discarded_out, 1),
        }
        false
    }

    /// Account for `bytes` read or about to be written, waiting while the connection is over
    /// its throughput budget (counted as delayed).
    pub async fn throttle(&self, bytes: usize) {
        let wait = self
            .bytes
            .lock()
            .expect("byte bucket")
            .take_owing(bytes as f64);
        if wait.is_zero() {
            return;
        }
        self.add(|c| &c.delayed_bytes, bytes as u64);
        let started = Instant::now();
        tokio::time::sleep(wait).await;
        let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.add(|c| &c.delayed_micros, waited);
    }

    /// Take a place in the window of unacknowledged QoS 1 deliveries, if one is free.
    pub fn try_send_unacked(&self) -> bool {
        match self.unacked.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.outstanding.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Wait for a place in the window (a PUBACK of the client's).
    pub async fn send_unacked(&self) {
        if let Ok(permit) = self.unacked.acquire().await {
            permit.forget();
            self.outstanding.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The client acknowledged a QoS 1 delivery: a place in the window is free again (a
    /// PUBACK for nothing outstanding frees nothing).
    pub fn acked(&self) {
        let released = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if released {
            self.unacked.add_permits(1);
        }
    }

    /// Whether the `index`-th filter of a SUBSCRIBE (from 0) may be added to a connection
    /// holding `subscriptions` already, and `existing` says whether it holds this filter
    /// already (a re-subscription takes no new place); one refused is counted.
    pub fn allow_subscription(&self, index: usize, subscriptions: usize, existing: bool) -> bool {
        let allowed = index < self.max_filters_per_subscribe
            && (existing || subscriptions < self.max_subscriptions);
        if !allowed {
            self.add(|c| &c.subscriptions_refused, 1);
        }
        allowed
    }

    /// The limits a refused filter went over, for its log line.
    pub fn subscription_limits(&self) -> (usize, usize) {
        (self.max_filters_per_subscribe, self.max_subscriptions)
    }

    /// Log, as a warning naming the client, what this connection had discarded, delayed or
    /// refused, if anything (called when it ends).
    pub fn log_if_limited(&self, client_id: &str) {
        let totals = self.own.totals();
        if !totals.is_zero() {
            tracing::warn!(
                client_id,
                "connection ended after IoT Core's per-connection quotas limited it: {totals}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_clamped_as_iot_core_does_in_quota_mode() {
        assert_eq!(keep_alive(0, true), 1200);
        assert_eq!(keep_alive(5000, true), 1200);
        assert_eq!(keep_alive(5, true), 30);
        assert_eq!(keep_alive(60, true), 60);
        assert_eq!(keep_alive(0, false), 1200);
        assert_eq!(keep_alive(5000, false), 1200);
        assert_eq!(keep_alive(5, false), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_publish_bucket_holds_a_burst_of_100_and_refills_100_a_second_for_both_ways() {
        let quota = ConnQuota::new(&Quotas::iot_core());
        let admitted = (0..150)
            .filter(|i| {
                quota.admit(if i % 2 == 0 {
                    Direction::In
                } else {
                    Direction::Out
                })
            })
            .count();
        assert_eq!(admitted, 100);
        let t = quota.own.totals();
        assert_eq!((t.discarded_in, t.discarded_out), (25, 25));
        tokio::time::advance(Duration::from_millis(500)).await;
        let admitted = (0..100).filter(|_| quota.admit(Direction::In)).count();
        assert!((49..=51).contains(&admitted), "{admitted} after 0.5 s");
    }

    #[tokio::test(start_paused = true)]
    async fn throughput_over_the_budget_waits_and_is_counted() {
        let quotas = Quotas::iot_core();
        let quota = ConnQuota::new(&quotas);
        let started = Instant::now();
        quota.throttle(128 * 1024).await;
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "the burst passes at once"
        );
        quota.throttle(512 * 1024).await;
        assert!(started.elapsed() >= Duration::from_millis(999));
        let t = quotas.counts.totals();
        assert_eq!(t.delayed_bytes, 512 * 1024);
        assert!(t.delayed >= Duration::from_millis(999));
    }

    #[tokio::test]
    async fn the_unacked_window_frees_a_place_per_puback_only() {
        let quota = ConnQuota::new(&Quotas {
            max_unacked: 2,
            ..Quotas::iot_core()
        });
        assert!(quota.try_send_unacked());
        assert!(quota.try_send_unacked());
        assert!(!quota.try_send_unacked());
        quota.acked();
        assert!(quota.try_send_unacked());
        quota.acked();
        quota.acked();
        quota.acked(); // nothing outstanding: frees nothing
        assert!(quota.try_send_unacked());
        assert!(quota.try_send_unacked());
        assert!(!quota.try_send_unacked());
    }
}
