//! Which files affect which functions: for Rust, a function's package and its local path
//! dependencies (from `cargo metadata`) plus the workspace manifest and lock file; for others,
//! the globs of `watch` in live.toml (default: everything under the function's `dir`).
//! What counts as noise (build output, VCS folders, editors' temporary files) is
//! `noise.rs`'s to say; the watcher drops it before it gets here.

use super::noise::ignored;
use crate::config::Project;
use anyhow::Context;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The files each function depends on.
#[derive(Debug, Default)]
pub struct WatchSet {
    dirs: BTreeMap<String, Vec<PathBuf>>,
    globs: BTreeMap<String, GlobSet>,
    /// Files that affect every Rust function (the workspace's Cargo.toml and Cargo.lock).
    shared: BTreeSet<PathBuf>,
    rust: BTreeSet<String>,
    root: PathBuf,
}

impl WatchSet {
    /// Work out the watch set of every function of `project`.
    pub fn compute(project: &Project) -> anyhow::Result<WatchSet> {
        let root = canonical(&project.root);
        let mut set = WatchSet {
            root: root.clone(),
            ..WatchSet::default()
        };
        let rust: Vec<_> = project
            .functions
            .iter()
            .filter(|(_, f)| f.command.is_none())
            .collect();
        if !rust.is_empty() {
            let metadata = match &project.cargo {
                Some(known) => known.clone(),
                None => std::sync::Arc::new(crate::cargo::Metadata::load(&project.root)?),
            };
            let ws = canonical(metadata.workspace_root());
            set.shared.insert(ws.join("Cargo.toml"));
            set.shared.insert(ws.join("Cargo.lock"));
            for (name, f) in rust {
                let bin = f.bin_name(name);
                let dirs = metadata
                    .source_dirs(&bin, f.package.as_deref())
                    .with_context(|| format!("function {name}: add `bin` (and `package`) to [functions.{name}] in live.toml"))?;
                set.dirs
                    .insert(name.clone(), dirs.iter().map(|d| canonical(d)).collect());
                set.rust.insert(name.clone());
            }
        }
        for (name, f) in project
            .functions
            .iter()
            .filter(|(_, f)| f.command.is_some() || !f.watch.is_empty())
        {
            if f.watch.is_empty() {
                let dir = canonical(&root.join(f.dir.clone().unwrap_or_default()));
                set.dirs.entry(name.clone()).or_default().push(dir);
                continue;
            }
            let mut builder = GlobSetBuilder::new();
            for pattern in &f.watch {
                let glob = Glob::new(pattern).with_context(|| {
                    format!("function {name}: watch pattern {pattern:?} is not a valid glob")
                })?;
                builder.add(glob);
            }
            set.globs.insert(name.clone(), builder.build()?);
        }
        Ok(set)
    }

    /// `path` relative to the watched folder holding it (the project root, or a path
    /// dependency outside it), so that only the project's own folder names count as noise.
    fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        std::iter::once(&self.root)
            .chain(self.dirs.values().flatten())
            .filter_map(|dir| path.strip_prefix(dir).ok())
            .min_by_key(|rest| rest.components().count())
            .unwrap_or(path)
    }

    /// The functions a change to `path` affects.
    pub fn affected(&self, path: &Path) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if ignored(self.relative(path)) {
            return out;
        }
        if self.shared.contains(path) {
            out.extend(self.rust.iter().cloned());
        }
        for (name, dirs) in &self.dirs {
            if dirs.iter().any(|d| path.starts_with(d)) {
                out.insert(name.clone());
            }
        }
        if let Ok(relative) = path.strip_prefix(&self.root) {
            for (name, globs) in &self.globs {
                if globs.is_match(relative) {
                    out.insert(name.clone());
                }
            }
        }
        out
    }

    /// The directories to watch: the project root and every function's directories, without
    /// those inside another.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self.dirs.values().flatten().cloned().collect();
        all.push(self.root.clone());
        all.sort();
        all.dedup();
        let mut roots: Vec<PathBuf> = Vec::new();
        for dir in all {
            if !roots.iter().any(|r| dir.starts_with(r)) {
                roots.push(dir);
            }
        }
        roots
    }
}

/// `path` made absolute and free of symlinks where it exists, so that it compares equal to
/// the paths the watcher reports.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_dirs_select_functions() {
        let mut set = WatchSet {
            root: PathBuf::from("/p"),
            ..WatchSet::default()
        };
        set.dirs.insert(
            "a".into(),
            vec![PathBuf::from("/p/a"), PathBuf::from("/p/common")],
        );
        set.dirs.insert(
            "b".into(),
            vec![PathBuf::from("/p/b"), PathBuf::from("/p/common")],
        );
        set.rust.extend(["a".to_string(), "b".to_string()]);
        set.shared.insert(PathBuf::from("/p/Cargo.lock"));
        let mut globs = GlobSetBuilder::new();
        globs.add(Glob::new("py/**/*.py").unwrap());
        set.globs.insert("py".into(), globs.build().unwrap());
        let names = |p: &str| set.affected(Path::new(p)).into_iter().collect::<Vec<_>>();
        assert_eq!(names("/p/a/src/main.rs"), ["a"]);
        assert_eq!(names("/p/common/src/lib.rs"), ["a", "b"]);
        assert_eq!(names("/p/Cargo.lock"), ["a", "b"]);
        assert_eq!(names("/p/py/x/handler.py"), ["py"]);
        assert!(names("/p/a/target/debug/a").is_empty());
        // A project that itself lives under a folder named `target` still counts.
        let nested = WatchSet {
            root: PathBuf::from("/x/target/p"),
            dirs: [("c".to_string(), vec![PathBuf::from("/x/target/p/c")])].into(),
            ..WatchSet::default()
        };
        let names = |p: &str| {
            nested
                .affected(Path::new(p))
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(names("/x/target/p/c/src/main.rs"), ["c"]);
        assert!(names("/x/target/p/c/target/debug/c").is_empty());
        assert!(names("/p/README.md").is_empty());
        assert_eq!(set.roots(), [PathBuf::from("/p")]);
    }
}
