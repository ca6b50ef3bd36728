//! What the file watcher reports, and the debounce: a pure function that gathers the
//! watcher's events into one batch, testable under paused time with synthetic events.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a batch stays open after its last event, and at most.
pub const QUIET: Duration = Duration::from_millis(10);
pub const MAX_BATCH: Duration = Duration::from_millis(50);

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// A path was created, written, renamed or removed.
    Changed(PathBuf),
    /// The sentinel was renamed to barrier N.
    Barrier(u64),
    /// Events were lost (the queue or the kernel's overflowed, the watcher failed): assume
    /// everything changed. The cause, for the log.
    Overflow(String),
}

/// One debounced batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub paths: BTreeSet<PathBuf>,
    /// The highest barrier seen in the batch.
    pub barrier: Option<u64>,
    /// Why events were lost, if they were: everything is rebuilt.
    pub overflow: Vec<String>,
    /// How many changes (paths and overflows) the batch took from the channel.
    pub changes: usize,
}

impl Batch {
    fn add(&mut self, raw: Raw) {
        if !matches!(raw, Raw::Barrier(_)) {
            self.changes += 1;
        }
        match raw {
            Raw::Changed(p) => {
                self.paths.insert(p);
            }
            Raw::Barrier(n) => self.barrier = self.barrier.max(Some(n)),
            Raw::Overflow(cause) => {
                if !self.overflow.contains(&cause) {
                    self.overflow.push(cause);
                }
            }
        }
    }
}

/// Collect a batch starting with `first`: more events until `quiet` passes without one or
/// `max` since the first, and at once when a barrier arrives (a waiting invocation needs the
/// batch now).
pub async fn collect(
    rx: &mut mpsc::Receiver<Raw>,
    first: Raw,
    quiet: Duration,
    max: Duration,
) -> Batch {
    let mut batch = Batch::default();
    let until = tokio::time::Instant::now() + max;
    batch.add(first);
    while batch.barrier.is_none() {
        let wait = quiet.min(until.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(raw)) => batch.add(raw),
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_saves_becomes_one_batch() {
        let (tx, mut rx) = mpsc::channel(16);
        for i in 0..5 {
            tx.send(Raw::Changed(PathBuf::from(format!("/p/{i}"))))
                .await
                .unwrap();
        }
        let first = rx.recv().await.unwrap();
        let batch = collect(&mut rx, first, QUIET, MAX_BATCH).await;
        assert_eq!(batch.paths.len(), 5);
        assert_eq!(batch.barrier, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_closes_after_the_quiet_period_or_the_maximum() {
        let (tx, mut rx) = mpsc::channel(64);
        // Events every 5 ms keep it open until the 50 ms maximum.
        let feeder = tokio::spawn(async move {
            for i in 0..40 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if tx
                    .send(Raw::Changed(PathBuf::from(format!("/p/{i}"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let start = tokio::time::Instant::now();
        let batch = collect(&mut rx, Raw::Changed("/p/first".into()), QUIET, MAX_BATCH).await;
        let took = start.elapsed();
        assert!(took <= MAX_BATCH + Duration::from_millis(5), "{took:?}");
        assert!(
            batch.paths.len() >= 9 && batch.paths.len() <= 11,
            "{}",
            batch.paths.len()
        );
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_barrier_flushes_the_batch_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(Raw::Changed("/p/a".into())).await.unwrap();
        tx.send(Raw::Barrier(3)).await.unwrap();
        tx.send(Raw::Changed("/p/later".into())).await.unwrap();
        let first = rx.recv().await.unwrap();
        let start = tokio::time::Instant::now();
        let batch = collect(&mut rx, first, QUIET, MAX_BATCH).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(batch.barrier, Some(3));
        assert_eq!(batch.paths, BTreeSet::from([PathBuf::from("/p/a")]));
        assert_eq!(rx.recv().await, Some(Raw::Changed("/p/later".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_names_each_cause_of_lost_events_once() {
        let (tx, mut rx) = mpsc::channel(16);
        for cause in [
            "the kernel's queue overflowed",
            "the kernel's queue overflowed",
            "x",
        ] {
            tx.send(Raw::Overflow(cause.into())).await.unwrap();
        }
        let first = rx.recv().await.unwrap();
        let batch = collect(&mut rx, first, QUIET, MAX_BATCH).await;
        assert_eq!(batch.overflow, ["the kernel's queue overflowed", "x"]);
        assert_eq!(batch.changes, 3);
    }
}
