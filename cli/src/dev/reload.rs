//! Live reload that never serves stale code: every change bumps the generation its functions
//! need; one builder brings them up to date, restarting a build when files change during it;
//! an invocation waits for the generation current when it arrived (after the watcher's
//! barrier), or gets a failed build's error at once.

use super::debounce::{collect, Raw, MAX_BATCH, QUIET};
use super::noise::is_ignore_file;
use super::output::Output;
use super::watch::{FileWatcher, Passed};
use super::watchset::WatchSet;
use crate::config::Project;
use crate::function::{build_some, BuildFailure, Launch};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

#[derive(Default)]
struct FunctionState {
    /// The generation the function's files are at.
    wanted: u64,
    /// The generation of `launch`.
    built: u64,
    launch: Option<Arc<Launch>>,
    /// The generation whose build failed, with the failure.
    failed: Option<(u64, Arc<BuildFailure>)>,
}

struct State {
    counter: u64,
    functions: BTreeMap<String, FunctionState>,
}

/// Why an invocation cannot run yet.
#[derive(Debug, Clone)]
pub enum NotReady {
    /// The latest build of the function failed.
    Failed(Arc<BuildFailure>),
    /// Its build is still running at the deadline.
    StillBuilding,
}

/// The build state of every function.
pub struct Builds {
    project: Project,
    state: Mutex<State>,
    /// Bumped on every change of `state`; waiters re-check.
    changed: watch::Sender<u64>,
    output: Arc<Output>,
}

impl Builds {
    /// Every function starts wanting generation 1, which the builder builds first.
    pub fn new(project: Project, output: Arc<Output>) -> Arc<Builds> {
        let functions = project
            .functions
            .keys()
            .map(|name| {
                let state = FunctionState {
                    wanted: 1,
                    ..FunctionState::default()
                };
                (name.clone(), state)
            })
            .collect();
        let (changed, _) = watch::channel(0);
        Arc::new(Builds {
            project,
            state: Mutex::new(State {
                counter: 1,
                functions,
            }),
            changed,
            output,
        })
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Files of `functions` changed: they now want a new generation.
    pub fn mark_changed(&self, functions: &BTreeSet<String>) {
        {
            let mut state = self.state.lock().expect("lock");
            state.counter += 1;
            let generation = state.counter;
            for name in functions {
                if let Some(f) = state.functions.get_mut(name) {
                    f.wanted = generation;
                }
            }
        }
        self.bump();
    }

    /// How to launch `function` at the generation it wants now, waiting for its build until
    /// `until`; a failed build answers at once.
    pub async fn launch_for(
        &self,
        function: &str,
        until: tokio::time::Instant,
    ) -> Result<(Arc<Launch>, u64), NotReady> {
        let mut changed = self.changed.subscribe();
        loop {
            {
                let state = self.state.lock().expect("lock");
                let Some(f) = state.functions.get(function) else {
                    return Err(NotReady::StillBuilding);
                };
                if f.built >= f.wanted {
                    if let Some(launch) = &f.launch {
                        return Ok((launch.clone(), f.built));
                    }
                }
                if let Some((generation, failure)) = &f.failed {
                    if *generation >= f.wanted {
                        return Err(NotReady::Failed(failure.clone()));
                    }
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(until) => return Err(NotReady::StillBuilding),
            }
        }
    }

    /// The functions that need a build, with the generation each would reach.
    fn work(&self) -> BTreeMap<String, u64> {
        let state = self.state.lock().expect("lock");
        state
            .functions
            .iter()
            .filter(|(_, f)| {
                f.wanted > f.built && f.failed.as_ref().is_none_or(|(g, _)| *g < f.wanted)
            })
            .map(|(name, f)| (name.clone(), f.wanted))
            .collect()
    }

    /// Build whatever is out of date, forever. `built` is told each function built and its
    /// generation (to retire old workers).
    pub async fn run_builder(self: Arc<Self>, built: mpsc::UnboundedSender<(String, u64)>) {
        let mut changed = self.changed.subscribe();
        loop {
            let targets = self.work();
            if targets.is_empty() {
                if changed.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let names: Vec<String> = targets.keys().cloned().collect();
            self.output.build_started(&names);
            let start = Instant::now();
            let build = build_some(&self.project, &names);
            tokio::pin!(build);
            let result = loop {
                tokio::select! {
                    result = &mut build => break Some(result),
                    _ = changed.changed() => {
                        // Files changed during the build: start over with the new set.
                        let now = self.work();
                        if now.iter().any(|(name, g)| targets.get(name) != Some(g)) {
                            break None;
                        }
                    }
                }
            };
            let Some(result) = result else {
                self.output.build_restarted(&names);
                continue;
            };
            let took = start.elapsed();
            {
                let mut state = self.state.lock().expect("lock");
                match &result {
                    Ok(launches) => {
                        for (name, generation) in &targets {
                            if let Some(f) = state.functions.get_mut(name) {
                                f.built = *generation;
                                f.launch = launches.get(name).cloned().map(Arc::new);
                                f.failed = None;
                            }
                        }
                    }
                    Err(failure) => {
                        let failure = Arc::new(failure.clone());
                        for (name, generation) in &targets {
                            if let Some(f) = state.functions.get_mut(name) {
                                f.failed = Some((*generation, failure.clone()));
                            }
                        }
                    }
                }
            }
            match &result {
                Ok(_) => {
                    self.output.build_finished(&names, took);
                    for (name, generation) in &targets {
                        let _ = built.send((name.clone(), *generation));
                    }
                }
                Err(failure) => self.output.build_failed(&names, &failure.first_error, took),
            }
            self.bump();
        }
    }
}

/// Turn the watcher's events into changed generations, and pass barriers only after the
/// changes before them are marked.
pub async fn run_watcher(
    mut rx: mpsc::Receiver<Raw>,
    watcher: Arc<FileWatcher>,
    passed: Passed,
    watchset: WatchSet,
    builds: Arc<Builds>,
) {
    let all: BTreeSet<String> = builds.project.functions.keys().cloned().collect();
    while let Some(first) = rx.recv().await {
        let mut batch = collect(&mut rx, first, QUIET, MAX_BATCH).await;
        passed.take_lost(&mut batch);
        let mut affected = BTreeSet::new();
        if !batch.overflow.is_empty() {
            tracing::warn!("rebuilding every function: {}", batch.overflow.join("; "));
            affected = all.clone();
        }
        // Folders that appeared need watches of their own (the watcher judged them already);
        // a folder whose ignore files changed is walked again for folders they no longer
        // exclude. Added before the change is marked, so the build that follows sees
        // whatever was written into them before their watches.
        let mut walk = Vec::new();
        for path in &batch.paths {
            affected.extend(watchset.affected(path));
            if is_ignore_file(path) {
                walk.extend(path.parent().map(Path::to_path_buf));
            } else if path.is_dir() {
                walk.push(path.clone());
            }
        }
        if !walk.is_empty() {
            let watcher = watcher.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for dir in walk {
                    watcher.add(&dir);
                }
            })
            .await;
        }
        if !affected.is_empty() {
            // `live dev -v` names what triggered a build (a build's own output, say, that an
            // ignore file should name).
            tracing::debug!("changed: {:?}", batch.paths);
            let names: Vec<String> = affected.iter().cloned().collect();
            builds.output.changed(batch.paths.len(), &names);
            builds.mark_changed(&affected);
        }
        passed.applied(&batch);
    }
}
