//! The file watcher: `notify` (inotify on Linux) reporting into a bounded channel from a
//! callback that never blocks (the batches are `debounce.rs`'s), and barriers that tell when
//! every event before a given moment has been delivered.
//!
//! Noise (`noise.rs`: the built-in list and the project's ignore files) is dropped wherever a
//! path enters: a folder that is noise gets no watch, at start or later, and an event for a
//! noisy path is dropped in the callback before it counts as pending. Every folder that is
//! not noise gets a watch of its own (`watch_tree.rs`); folders that appear later get theirs
//! from [`FileWatcher::add`].
//!
//! A barrier renames a sentinel file (`b-N` to `b-N+1`) in a directory watched by the same
//! inotify instance as the project; inotify keeps one queue per instance, in the order the
//! kernel saw the operations, so once the rename's event arrives every earlier save's event
//! has too. One rename is one system call and one read on the watcher's thread, and leaves
//! nothing to clean up.

use super::debounce::{Batch, Raw};
use super::noise::{is_ignore_file, Noise, SharedNoise};
use super::watch_tree::watch_tree;
use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events buffered between the watcher's thread and `live dev`; beyond, a rebuild of
/// everything is forced instead of blocking the watcher.
pub const QUEUE: usize = 16 * 1024;

/// Hinted barriers remembered (requests that never reach the session are forgotten).
const HINTS: usize = 1024;

/// How long a barrier waits before giving up (only if the watcher lost events).
const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);

/// The consumer's side of barriers: it says which changes it has applied and which barriers
/// have passed. While no change is waiting to be applied, the watcher's thread passes a
/// barrier itself, which spares the waiting invocation a hop through the consumer.
pub struct Passed {
    tx: Arc<watch::Sender<u64>>,
    /// Changes reported and not yet applied by the consumer (lost ones included).
    pending: Arc<AtomicUsize>,
    /// Changes that did not fit into the channel (counted in `pending` too).
    lost: Arc<AtomicUsize>,
}

impl Passed {
    /// Take the changes lost since the last batch into `batch`: lost changes mean
    /// everything is rebuilt, and they stay pending until `batch` is applied.
    pub fn take_lost(&self, batch: &mut Batch) {
        let lost = self.lost.swap(0, Ordering::SeqCst);
        if lost > 0 {
            batch.overflow.push(format!(
                "{lost} file events did not fit into the watcher's queue of {QUEUE}"
            ));
            batch.changes += lost;
        }
    }

    /// The consumer has applied `batch`'s changes; its barrier, if any, has passed.
    pub fn applied(&self, batch: &Batch) {
        self.pending.fetch_sub(batch.changes, Ordering::SeqCst);
        if let Some(token) = batch.barrier {
            self.tx.send_modify(|p| *p = (*p).max(token));
        }
    }
}

/// The running watcher and its barrier.
pub struct FileWatcher {
    watcher: Mutex<notify::RecommendedWatcher>,
    /// What is noise, shared with the callback.
    noise: SharedNoise,
    barrier_dir: PathBuf,
    /// The last sentinel token whose rename has started (the sentinel's current name).
    next: AtomicU64,
    /// Serialises sentinel renames, so concurrent callers can share one.
    writer: Mutex<()>,
    /// A rename for hinted barriers is scheduled and not yet issued.
    hint_scheduled: AtomicBool,
    /// Barriers started for request ids not yet seen by the session, oldest first.
    hints: Mutex<(HashMap<String, u64>, VecDeque<String>)>,
    passed: watch::Receiver<u64>,
}

impl FileWatcher {
    /// Watch `roots` (each with every folder below that is not noise), reporting into `tx`. Returns the watcher and the sender the consumer uses to mark barriers
    /// passed.
    pub fn start(
        roots: &[PathBuf],
        tx: mpsc::Sender<Raw>,
    ) -> anyhow::Result<(FileWatcher, Passed)> {
        remove_stale_barrier_dirs();
        let barrier_dir = std::env::temp_dir().join(format!("live-barrier-{}", std::process::id()));
        std::fs::create_dir_all(&barrier_dir)?;
        std::fs::write(barrier_dir.join("b-0"), b"")?;
        let barrier_dir = super::watchset::canonical(&barrier_dir);
        let sentinels = barrier_dir.clone();
        let (passed_tx, passed) = watch::channel(0);
        let passed_tx = Arc::new(passed_tx);
        let pending = Arc::new(AtomicUsize::new(0));
        let lost = Arc::new(AtomicUsize::new(0));
        let noise = SharedNoise::new(Noise::new(roots));
        let judged = noise.clone();
        let consumer = Passed {
            tx: passed_tx.clone(),
            pending: pending.clone(),
            lost: lost.clone(),
        };
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                // A change is counted pending before it is sent, so no barrier after it can
                // pass first; one that does not fit is counted lost, and the consumer's next
                // batch rebuilds everything.
                let deliver = |raw: Raw| {
                    let change = !matches!(raw, Raw::Barrier(_));
                    if change {
                        pending.fetch_add(1, Ordering::SeqCst);
                    }
                    if tx.try_send(raw).is_err() && change {
                        lost.fetch_add(1, Ordering::SeqCst);
                    }
                };
                let event = match res {
                    Ok(event) => event,
                    Err(e) => {
                        deliver(Raw::Overflow(format!("the file watcher failed ({e})")));
                        return;
                    }
                };
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                if event.need_rescan() {
                    deliver(Raw::Overflow(
                        "the kernel's inotify queue overflowed and dropped file events \
                         (`sudo sysctl fs.inotify.max_queued_events=65536` makes that rarer)"
                            .into(),
                    ));
                }
                for path in event.paths {
                    let raw = if path.starts_with(&sentinels) {
                        // The new name tells the token; the old name's events say nothing more.
                        let old_name = matches!(
                            event.kind,
                            EventKind::Remove(_)
                                | EventKind::Modify(ModifyKind::Name(
                                    RenameMode::From | RenameMode::Both
                                ))
                        );
                        match sentinel_token(&path) {
                            // Every change before it applied already: passed at once.
                            Some(n) if !old_name && pending.load(Ordering::SeqCst) == 0 => {
                                passed_tx.send_modify(|p| *p = (*p).max(n));
                                continue;
                            }
                            Some(n) if !old_name => Raw::Barrier(n),
                            _ => continue,
                        }
                    } else {
                        // A changed ignore file is read at once (one small file), so the
                        // events after it are judged by it.
                        if is_ignore_file(&path) {
                            if let Some(dir) = path.parent() {
                                judged.read(dir);
                            }
                        }
                        if judged.get().is_noise(&path, is_folder(&event.kind)) {
                            continue;
                        }
                        Raw::Changed(path)
                    };
                    deliver(raw);
                }
            })?;
        watcher.watch(&barrier_dir, RecursiveMode::NonRecursive)?;
        for root in roots {
            watch_tree(&mut watcher, &noise, root)?;
        }
        Ok((
            FileWatcher {
                watcher: Mutex::new(watcher),
                noise,
                barrier_dir,
                next: AtomicU64::new(0),
                writer: Mutex::new(()),
                hint_scheduled: AtomicBool::new(false),
                hints: Mutex::default(),
                passed,
            },
            consumer,
        ))
    }

    /// Watch a folder created after start, and every folder below it, unless it is noise;
    /// or walk a watched folder again after its ignore files changed (folders they no longer
    /// exclude get watches; reads its ignore files and those below).
    pub fn add(&self, dir: &Path) {
        let noise = self.noise.get();
        if !noise.is_root(dir) && noise.is_noise(dir, Some(true)) {
            return;
        }
        let mut watcher = self.watcher.lock().expect("lock");
        if let Err(e) = watch_tree(&mut watcher, &self.noise, dir) {
            tracing::warn!("{e:#}");
        }
    }

    /// Return once every file event that happened before this call has been delivered.
    pub async fn barrier(&self) {
        if let Some(token) = self.start_barrier() {
            self.wait_for(token).await;
        }
    }

    /// Start a barrier now for `request_id`, to be waited for by [`FileWatcher::barrier_for`]
    /// when the invocation reaches this session. The embedded cloud calls this once a
    /// request's event is on its way to the stub, so that the sentinel's round trip through
    /// the watcher overlaps the trip through the stub and the broker instead of following it.
    ///
    /// Requests that arrive together share one rename: any rename issued after a request
    /// arrived proves the order for it, so the next one to be issued is its token, and a task
    /// issues it once the requests ready now have all been hinted.
    pub fn hint(self: &Arc<Self>, request_id: &str) {
        let token = self.next.load(Ordering::SeqCst) + 1;
        {
            let mut hints = self.hints.lock().expect("lock");
            if hints.1.len() >= HINTS {
                if let Some(old) = hints.1.pop_front() {
                    hints.0.remove(&old);
                }
            }
            hints.0.insert(request_id.to_string(), token);
            hints.1.push_back(request_id.to_string());
        }
        if !self.hint_scheduled.swap(true, Ordering::SeqCst) {
            let watcher = self.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                // Cleared before the rename, so a request hinted from now on schedules
                // another if this one is already past it.
                watcher.hint_scheduled.store(false, Ordering::SeqCst);
                let _writer = watcher.writer.lock().expect("lock");
                let started = watcher.next.load(Ordering::SeqCst);
                if watcher.rename(started).is_none() {
                    // No sentinel: the invocations take the plain barrier (which says so).
                    watcher
                        .hints
                        .lock()
                        .expect("lock")
                        .0
                        .retain(|_, t| *t <= started);
                }
            });
        }
    }

    /// [`FileWatcher::barrier`] for an invocation: a barrier started when the request was
    /// received (see [`FileWatcher::hint`]) proves the same, and has usually passed already.
    pub async fn barrier_for(&self, request_id: &str) {
        let hinted = self.hints.lock().expect("lock").0.remove(request_id);
        match hinted {
            Some(token) => self.wait_for(token).await,
            None => self.barrier().await,
        }
    }

    /// Rename the sentinel, or share a rename started since this call began; the token to
    /// wait for, `None` if the sentinel cannot be written.
    fn start_barrier(&self) -> Option<u64> {
        // Concurrent invocations share sentinels: any sentinel renamed after this call began
        // proves the same order, so a caller that finds one started since its entry waits for
        // it instead of renaming again.
        let entered = self.next.load(Ordering::SeqCst);
        let _writer = self.writer.lock().expect("lock");
        let started = self.next.load(Ordering::SeqCst);
        if started > entered {
            return Some(started);
        }
        self.rename(started)
    }

    /// Rename the sentinel from token `started` to the next (the writer lock held).
    fn rename(&self, started: u64) -> Option<u64> {
        let token = started + 1;
        let from = self.barrier_dir.join(format!("b-{started}"));
        let to = self.barrier_dir.join(format!("b-{token}"));
        // Counted as started before the rename, so a later caller piggybacks on it.
        self.next.store(token, Ordering::SeqCst);
        // Should the sentinel have gone (a temp cleaner), a new one does as well.
        if let Err(e) = std::fs::rename(&from, &to).or_else(|_| std::fs::write(&to, b"")) {
            tracing::warn!(
                "could not write the watcher's sentinel {}: {e}",
                to.display()
            );
            return None;
        }
        Some(token)
    }

    async fn wait_for(&self, token: u64) {
        let mut passed = self.passed.clone();
        let reached = tokio::time::timeout(BARRIER_TIMEOUT, passed.wait_for(|p| *p >= token)).await;
        if reached.is_err() {
            tracing::warn!(
                "the file watcher did not report its sentinel within {BARRIER_TIMEOUT:?}"
            );
        }
    }
}

/// Remove the sentinel folders of `live dev` processes that are gone (killed before they
/// could clean up).
fn remove_stale_barrier_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("live-barrier-"));
        if let Some(pid) = pid.filter(|p| p.parse::<u32>().is_ok()) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
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

/// What an event says about its path: a folder, a file, or nothing.
fn is_folder(kind: &EventKind) -> Option<bool> {
    use notify::event::{CreateKind, RemoveKind};
    match kind {
        EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => Some(true),
        EventKind::Create(CreateKind::File) | EventKind::Remove(RemoveKind::File) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Paths received until `last` arrives (within 10 s).
    async fn received_until(rx: &mut mpsc::Receiver<Raw>, last: &Path) -> Vec<PathBuf> {
        let mut seen = Vec::new();
        let deadline = Duration::from_secs(10);
        while !seen.iter().any(|p| p == last) {
            match tokio::time::timeout(deadline, rx.recv()).await {
                Ok(Some(Raw::Changed(path))) => seen.push(path),
                Ok(Some(other)) => panic!("unexpected {other:?}"),
                _ => panic!("{} never arrived; got {seen:?}", last.display()),
            }
        }
        seen
    }

    #[tokio::test]
    async fn noise_never_reaches_the_channel_at_start_or_later() {
        let root = std::env::temp_dir().join(format!("live-watch-noise-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("dist")).unwrap();
        std::fs::write(root.join(".gitignore"), "dist/\n*.log\n").unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let (watcher, _passed) = FileWatcher::start(std::slice::from_ref(&root), tx).unwrap();

        // Cargo's first build: `target` made under a temporary name, then renamed.
        std::fs::create_dir(root.join("targetAb12Cd")).unwrap();
        std::fs::rename(root.join("targetAb12Cd"), root.join("target")).unwrap();
        std::fs::write(root.join("target/out"), "x").unwrap();
        std::fs::write(root.join("dist/app.js"), "x").unwrap();
        std::fs::remove_dir_all(root.join("dist")).unwrap();
        std::fs::create_dir(root.join("dist")).unwrap();
        std::fs::create_dir(root.join(".venv")).unwrap();
        std::fs::write(root.join("build.log"), "x").unwrap();
        // None of it counts as pending: the barrier passes on the watcher's thread alone.
        watcher.barrier().await;
        assert!(rx.try_recv().is_err(), "noise reached the channel");

        // A folder that appears is watched once added, by its own ignore files too.
        std::fs::create_dir(root.join("web")).unwrap();
        std::fs::write(root.join("web/.gitignore"), "out/\n").unwrap();
        let seen = received_until(&mut rx, &root.join("web")).await;
        assert_eq!(seen, [root.join("web")]);
        watcher.add(&root.join("web"));
        std::fs::create_dir(root.join("web/out")).unwrap();
        std::fs::write(root.join("web/page.js"), "x").unwrap();
        let seen = received_until(&mut rx, &root.join("web/page.js")).await;
        assert!(
            seen.iter().all(|p| p == &root.join("web/page.js")),
            "{seen:?}"
        );
        // An ignore file written later applies to the events after it.
        std::fs::write(root.join("web/.gitignore"), "out/\nlib/\n").unwrap();
        std::fs::create_dir(root.join("web/lib")).unwrap();
        std::fs::write(root.join("src/main.rs"), "x").unwrap();
        let seen = received_until(&mut rx, &root.join("src/main.rs")).await;
        assert!(!seen.contains(&root.join("web/lib")), "{seen:?}");
        drop(watcher);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn lost_changes_rebuild_everything_and_say_why() {
        let (tx, _) = watch::channel(0);
        let passed = Passed {
            tx: Arc::new(tx),
            pending: Arc::new(AtomicUsize::new(3)),
            lost: Arc::new(AtomicUsize::new(3)),
        };
        let mut batch = Batch::default();
        passed.take_lost(&mut batch);
        assert_eq!(
            batch.overflow,
            ["3 file events did not fit into the watcher's queue of 16384"]
        );
        assert_eq!(batch.changes, 3);
        passed.applied(&batch);
        assert_eq!(passed.pending.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn sentinel_names_carry_their_token() {
        assert_eq!(sentinel_token(Path::new("/tmp/x/b-42")), Some(42));
        assert_eq!(sentinel_token(Path::new("/tmp/x/other")), None);
    }
}
