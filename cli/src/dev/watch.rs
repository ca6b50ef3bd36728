//! The file watcher: `notify` (inotify on Linux) reporting into a bounded channel from a
//! callback that never blocks, a pure debounce over a batch of events, and barriers that tell
//! when every event before a given moment has been delivered.
//!
//! A barrier writes a sentinel file into a directory watched by the same inotify instance as
//! the project; inotify keeps one queue per instance, in the order the kernel saw the
//! operations, so once the sentinel's event arrives every earlier save's event has too.

use super::watchset::ignored;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events buffered between the watcher's thread and `live dev`; beyond, a rebuild of
/// everything is forced instead of blocking the watcher.
pub const QUEUE: usize = 16 * 1024;

/// How long a batch stays open after its last event, and at most.
pub const QUIET: Duration = Duration::from_millis(10);
pub const MAX_BATCH: Duration = Duration::from_millis(50);

/// How long a barrier waits before giving up (only if the watcher lost events).
const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// A path was created, written, renamed or removed.
    Changed(PathBuf),
    /// The sentinel of barrier N was written.
    Barrier(u64),
    /// Events were lost (the queue or the kernel's overflowed): assume everything changed.
    Overflow,
}

/// One debounced batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub paths: BTreeSet<PathBuf>,
    /// The highest barrier seen in the batch.
    pub barrier: Option<u64>,
    pub overflow: bool,
}

impl Batch {
    fn add(&mut self, raw: Raw) {
        match raw {
            Raw::Changed(p) => {
                self.paths.insert(p);
            }
            Raw::Barrier(n) => self.barrier = self.barrier.max(Some(n)),
            Raw::Overflow => self.overflow = true,
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

/// The running watcher and its barrier.
pub struct FileWatcher {
    watcher: Mutex<notify::RecommendedWatcher>,
    barrier_dir: PathBuf,
    /// The last sentinel token whose write has started.
    next: AtomicU64,
    /// Serialises sentinel writes, so concurrent callers can share one.
    writer: tokio::sync::Mutex<()>,
    cleaned: AtomicU64,
    passed: watch::Receiver<u64>,
}

impl FileWatcher {
    /// Watch `roots` (each recursively, but without build output and VCS folders), reporting
    /// into `tx`. Returns the watcher and the sender the consumer uses to mark barriers
    /// passed.
    pub fn start(
        roots: &[PathBuf],
        tx: mpsc::Sender<Raw>,
    ) -> anyhow::Result<(FileWatcher, watch::Sender<u64>)> {
        let barrier_dir = std::env::temp_dir().join(format!("live-barrier-{}", std::process::id()));
        std::fs::create_dir_all(&barrier_dir)?;
        let barrier_dir = super::watchset::canonical(&barrier_dir);
        let sentinels = barrier_dir.clone();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let event = match res {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!("file watcher: {e}; rebuilding everything to be safe");
                        let _ = tx.try_send(Raw::Overflow);
                        return;
                    }
                };
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                if event.need_rescan() {
                    let _ = tx.try_send(Raw::Overflow);
                }
                for path in event.paths {
                    let raw = if path.starts_with(&sentinels) {
                        match (event.kind, sentinel_token(&path)) {
                            (EventKind::Remove(_), _) | (_, None) => continue,
                            (_, Some(n)) => Raw::Barrier(n),
                        }
                    } else {
                        Raw::Changed(path)
                    };
                    if tx.try_send(raw).is_err() {
                        let _ = tx.try_send(Raw::Overflow);
                    }
                }
            })?;
        watcher.watch(&barrier_dir, RecursiveMode::NonRecursive)?;
        for root in roots {
            watch_tree(&mut watcher, root)?;
        }
        let (passed_tx, passed) = watch::channel(0);
        Ok((
            FileWatcher {
                watcher: Mutex::new(watcher),
                barrier_dir,
                next: AtomicU64::new(0),
                writer: tokio::sync::Mutex::new(()),
                cleaned: AtomicU64::new(0),
                passed,
            },
            passed_tx,
        ))
    }

    /// Watch a directory created after start (a new top-level folder).
    pub fn add(&self, dir: &Path) {
        let mut watcher = self.watcher.lock().expect("lock");
        if let Err(e) = watch_tree(&mut watcher, dir) {
            tracing::warn!("{e:#}");
        }
    }

    /// Return once every file event that happened before this call has been delivered.
    pub async fn barrier(&self) {
        // Concurrent invocations share sentinels: any sentinel written after this call began
        // proves the same order, so a caller that finds one started since its entry waits for
        // it instead of writing its own.
        let entered = self.next.load(Ordering::SeqCst);
        let token = {
            let _writer = self.writer.lock().await;
            let started = self.next.load(Ordering::SeqCst);
            if started > entered {
                started
            } else {
                let token = started + 1;
                let path = self.barrier_dir.join(format!("b-{token}"));
                // Counted as started before the write, so a later caller piggybacks on it.
                self.next.store(token, Ordering::SeqCst);
                if let Err(e) = std::fs::write(&path, b"") {
                    tracing::warn!(
                        "could not write the watcher's sentinel {}: {e}",
                        path.display()
                    );
                    return;
                }
                token
            }
        };
        let mut passed = self.passed.clone();
        let reached = tokio::time::timeout(BARRIER_TIMEOUT, passed.wait_for(|p| *p >= token)).await;
        if reached.is_err() {
            tracing::warn!(
                "the file watcher did not report its sentinel within {BARRIER_TIMEOUT:?}"
            );
        }
    }

    /// Remove the sentinels of barriers up to `token`.
    pub fn clean(&self, token: u64) {
        let from = self.cleaned.fetch_max(token, Ordering::SeqCst);
        for n in from + 1..=token {
            let _ = std::fs::remove_file(self.barrier_dir.join(format!("b-{n}")));
        }
    }
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.barrier_dir);
    }
}

fn sentinel_token(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("b-")?.parse().ok()
}

/// Watch `dir` itself and each of its subfolders that is not ignored, recursively; build
/// output and VCS folders get no watches at all.
fn watch_tree(watcher: &mut notify::RecommendedWatcher, dir: &Path) -> anyhow::Result<()> {
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(advice)?;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = Path::new(entry.file_name().as_os_str()).join("x");
        if entry.file_type().is_ok_and(|t| t.is_dir()) && !ignored(&name) {
            watcher
                .watch(&path, RecursiveMode::Recursive)
                .map_err(advice)?;
        }
    }
    Ok(())
}

/// Turn the OS's watch limit into advice.
fn advice(e: notify::Error) -> anyhow::Error {
    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28));
    if limit {
        anyhow::anyhow!(
            "the file watcher reached the system's inotify watch limit: raise it with \
             `sudo sysctl fs.inotify.max_user_watches=524288` (and add the setting to \
             /etc/sysctl.conf to keep it); until then saves are not picked up"
        )
    } else {
        anyhow::anyhow!("the file watcher failed: {e}")
    }
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

    #[test]
    fn sentinel_names_carry_their_token() {
        assert_eq!(sentinel_token(Path::new("/tmp/x/b-42")), Some(42));
        assert_eq!(sentinel_token(Path::new("/tmp/x/other")), None);
    }
}
