//! What the file watcher treats as noise: build output, VCS data and editors' temporary files
//! (a built-in list), and whatever the project's ignore files (`.gitignore`, `.ignore`, nested
//! ones too, and those of the enclosing repository) exclude, so that a build's own output
//! (`target/`, `dist/`, `build/`, `.venv/`) is never watched and never triggers a build.
//!
//! A path is judged relative to the watched folder holding it, folder by folder from there
//! down, as git does: once a folder is excluded, nothing below it counts. The watched folder
//! itself and the folders above it are never judged, so a project inside an ignored folder
//! (a scratch copy under `target/`) still works.

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The ignore files read in every folder; a later one wins over an earlier one.
pub const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// Files that count whatever the ignore files say (a library's `.gitignore` often names
/// `Cargo.lock`, which still decides what is built).
const MANIFESTS: [&str; 2] = ["Cargo.toml", "Cargo.lock"];

/// Folder names whose contents never trigger a rebuild.
const IGNORED_DIRS: &[&str] = &[
    "target",
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".idea",
    ".vscode",
    // live's own files (debug mode's environment files).
    ".live",
];

/// Whether `path` (relative to the watched folder it is in) is noise by the built-in list:
/// build output, VCS data, or an editor's temporary file.
pub fn ignored(path: &Path) -> bool {
    if path.components().any(|c| match c {
        Component::Normal(n) => n.to_str().is_some_and(noisy_dir_name),
        _ => false,
    }) {
        return true;
    }
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return true;
    };
    name.ends_with('~')
        || name.starts_with(".#")
        || name.starts_with('#')
        || name == "4913"
        || name == ".DS_Store"
        || [".swp", ".swx", ".swo", ".tmp", ".pyc", ".crswap"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// One of the built-in folder names, or the temporary name cargo creates `target` under
/// before renaming it (`target` and six random letters or digits, as `tempfile` makes it):
/// on a project's first build that folder appears in the watched folder itself.
fn noisy_dir_name(name: &str) -> bool {
    IGNORED_DIRS.contains(&name)
        || name
            .strip_prefix("target")
            .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `path` is one of the ignore files (whose change refreshes the rules).
pub fn is_ignore_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| IGNORE_FILES.contains(&n))
}

/// The rules of the watched folders: the built-in list and every ignore file read so far.
#[derive(Debug, Clone, Default)]
pub struct Noise {
    /// The watched folders; a path is judged below the deepest one holding it.
    roots: Vec<PathBuf>,
    /// Each folder's ignore files as one matcher, by folder.
    rules: BTreeMap<PathBuf, Arc<Gitignore>>,
}

impl Noise {
    /// The rules for `roots`, with the ignore files of the repository enclosing each (the
    /// folders above it up to the nearest one holding `.git`); the roots' own ignore files
    /// and those below are read as the watcher walks them ([`Noise::read`]).
    pub fn new(roots: &[PathBuf]) -> Noise {
        let mut noise = Noise {
            roots: roots.to_vec(),
            rules: BTreeMap::new(),
        };
        for root in roots {
            if root.join(".git").exists() {
                continue;
            }
            let above: Vec<&Path> = root.ancestors().skip(1).collect();
            if let Some(repo) = above.iter().position(|dir| dir.join(".git").exists()) {
                for dir in &above[..=repo] {
                    noise.read(dir);
                }
            }
        }
        noise
    }

    /// (Re)read the ignore files of folder `dir`; whether its rules changed.
    pub fn read(&mut self, dir: &Path) -> bool {
        match rules_of(dir) {
            Some(rules) => {
                self.rules.insert(dir.to_path_buf(), Arc::new(rules));
                true
            }
            None => self.rules.remove(dir).is_some(),
        }
    }

    /// Whether `path` is one of the watched folders (never noise to [`FileWatcher::add`]).
    ///
    /// [`FileWatcher::add`]: super::watch::FileWatcher::add
    pub fn is_root(&self, path: &Path) -> bool {
        self.roots.iter().any(|r| r == path)
    }

    /// Whether a change to `path` is noise. `is_dir` is what the event says about it, if
    /// anything; otherwise the file system is asked, and a path that is gone counts as a
    /// folder too (a removed `dist` is as much noise as `dist/` was).
    pub fn is_noise(&self, path: &Path, is_dir: Option<bool>) -> bool {
        let Some(root) = self
            .roots
            .iter()
            .filter(|r| path.starts_with(r))
            .max_by_key(|r| r.components().count())
        else {
            return false;
        };
        let relative = path.strip_prefix(root).unwrap_or(path);
        if ignored(relative) {
            return true;
        }
        let parts: Vec<Component> = relative.components().collect();
        let mut current = root.clone();
        for (i, part) in parts.iter().enumerate() {
            current.push(part);
            let excluded = if i + 1 < parts.len() {
                self.excluded(&current, true)
            } else if MANIFESTS.iter().any(|m| part.as_os_str() == *m) {
                false
            } else {
                match is_dir.or_else(|| std::fs::symlink_metadata(path).ok().map(|m| m.is_dir())) {
                    Some(dir) => self.excluded(&current, dir),
                    None => self.excluded(&current, false) || self.excluded(&current, true),
                }
            };
            if excluded {
                return true;
            }
        }
        false
    }

    /// Whether the ignore files exclude `path` itself: the rules of the deepest folder above
    /// it that says anything about it decide.
    fn excluded(&self, path: &Path, is_dir: bool) -> bool {
        for dir in path.ancestors().skip(1) {
            if let Some(rules) = self.rules.get(dir) {
                match rules.matched(path, is_dir) {
                    Match::Ignore(_) => return true,
                    Match::Whitelist(_) => return false,
                    Match::None => {}
                }
            }
        }
        false
    }
}

/// The ignore files of `dir` as one matcher, `None` if it has none (or none with a rule).
fn rules_of(dir: &Path) -> Option<Gitignore> {
    let mut builder = GitignoreBuilder::new(dir);
    let mut found = false;
    for name in IGNORE_FILES {
        let file = dir.join(name);
        if file.is_file() {
            found = true;
            if let Some(e) = builder.add(&file) {
                tracing::warn!("{}: {e}; the other rules still apply", file.display());
            }
        }
    }
    if !found {
        return None;
    }
    match builder.build() {
        Ok(rules) if !rules.is_empty() => Some(rules),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("the ignore files of {}: {e}", dir.display());
            None
        }
    }
}

/// The rules shared by the watcher's callback (which only reads them, a pointer copy under
/// a lock) and whoever reads ignore files (which swaps in a new copy).
#[derive(Debug, Clone, Default)]
pub struct SharedNoise(Arc<Mutex<Arc<Noise>>>);

impl SharedNoise {
    pub fn new(noise: Noise) -> SharedNoise {
        SharedNoise(Arc::new(Mutex::new(Arc::new(noise))))
    }

    /// The rules now.
    pub fn get(&self) -> Arc<Noise> {
        self.0.lock().expect("lock").clone()
    }

    /// (Re)read the ignore files of folder `dir`.
    pub fn read(&self, dir: &Path) {
        // Read before taking the lock; copied only when something changed.
        let rules = rules_of(dir).map(Arc::new);
        let mut current = self.0.lock().expect("lock");
        if rules.is_none() && !current.rules.contains_key(dir) {
            return;
        }
        let mut next = Noise::clone(&current);
        match rules {
            Some(rules) => next.rules.insert(dir.to_path_buf(), rules),
            None => next.rules.remove(dir),
        };
        *current = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder holding `files` (path, contents); a path ending in `/` is a folder.
    fn tree(files: &[(&str, &str)]) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "live-noise-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            if path.to_string_lossy().ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, text).unwrap();
            }
        }
        std::fs::canonicalize(&dir).unwrap()
    }

    /// The rules of `root`, every folder's ignore files read as the watcher's walk reads them.
    fn rules(root: &Path) -> Noise {
        let mut noise = Noise::new(&[root.to_path_buf()]);
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            noise.read(&dir);
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        noise
    }

    #[test]
    fn the_built_in_list_is_noise() {
        for noisy in [
            "target/debug/x",
            ".git/index",
            "src/main.rs~",
            "src/.main.rs.swp",
            "src/4913",
            "src/.#main.rs",
            "node_modules/a/b.js",
            "py/.venv/lib/site.py",
            // Cargo creates `target` under a temporary name first.
            "target5TG3qr",
            "target5TG3qr/CACHEDIR.TAG",
        ] {
            assert!(ignored(Path::new(noisy)), "{noisy}");
        }
        for real in [
            "src/main.rs",
            "Cargo.toml",
            "handler.py",
            "src/targets.rs",
            "targeting/x",
        ] {
            assert!(!ignored(Path::new(real)), "{real}");
        }
    }

    #[test]
    fn gitignore_rules_exclude_what_they_name() {
        let root = tree(&[
            (
                ".gitignore",
                "dist/\n/build\n*.log\n!keep.log\nCargo.lock\n",
            ),
            ("src/main.rs", ""),
            ("dist/app.js", ""),
            ("web/dist/app.js", ""),
            ("build/out.txt", ""),
            ("web/build/page.html", ""),
            ("a.log", ""),
            ("keep.log", ""),
            ("notes/dist", "a file, not a folder"),
        ]);
        let noise = rules(&root);
        let noisy = |p: &str| noise.is_noise(&root.join(p), None);
        assert!(noisy("dist"));
        assert!(noisy("dist/app.js"));
        assert!(noisy("web/dist/app.js"), "unanchored: at any depth");
        assert!(noisy("build/out.txt"));
        assert!(!noisy("web/build/page.html"), "anchored to the root");
        assert!(noisy("a.log"));
        assert!(!noisy("keep.log"), "re-included");
        assert!(!noisy("notes/dist"), "`dist/` names folders only");
        assert!(!noisy("src/main.rs"));
        assert!(
            !noisy("Cargo.lock"),
            "a manifest counts whatever the ignore files say"
        );
        assert!(noisy("dist/Cargo.lock"), "unless its folder is excluded");
        // A folder that is gone (its removal) is judged as one.
        assert!(noisy("gone/dist"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn nested_ignore_files_apply_below_their_folder_and_win_over_those_above() {
        let root = tree(&[
            (".gitignore", "*.gen\n"),
            ("fn/.gitignore", "out/\n!kept.gen\n"),
            ("fn/.ignore", "!out/\nscratch/\n"),
            ("fn/out/x.js", ""),
            ("fn/scratch/x", ""),
            ("other/out/x.js", ""),
            ("other/scratch/x", ""),
        ]);
        let noise = rules(&root);
        let noisy = |p: &str| noise.is_noise(&root.join(p), None);
        assert!(noisy("fn/a.gen"), "the root's rule reaches down");
        assert!(!noisy("fn/kept.gen"), "the nested file re-includes it");
        assert!(!noisy("fn/out/x.js"), ".ignore wins over .gitignore");
        assert!(noisy("fn/scratch/x"));
        assert!(!noisy("other/out/x.js"), "only below its folder");
        assert!(!noisy("other/scratch/x"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_repositorys_ignore_files_apply_but_never_to_the_project_itself() {
        // The project lives in a folder the repository ignores (as a scratch copy would).
        let repo = tree(&[
            (".git/", ""),
            (".gitignore", "scratch/\ndist/\n"),
            ("scratch/p/src/main.rs", ""),
        ]);
        let root = repo.join("scratch/p");
        let noise = rules(&root);
        assert!(!noise.is_noise(&root.join("src/main.rs"), Some(false)));
        assert!(noise.is_noise(&root.join("dist/app.js"), Some(false)));
        // Without a repository around it, folders above the project say nothing.
        let alone = tree(&[(".gitignore", "dist/\n"), ("p/src/main.rs", "")]);
        let noise = rules(&alone.join("p"));
        assert!(!noise.is_noise(&alone.join("p/dist/app.js"), Some(false)));
        std::fs::remove_dir_all(repo).unwrap();
        std::fs::remove_dir_all(alone).unwrap();
    }

    #[test]
    fn folders_and_ignore_files_created_after_start_are_judged_too() {
        let root = tree(&[(".gitignore", "build/\n"), ("src/main.rs", "")]);
        let shared = SharedNoise::new(rules(&root));
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        assert!(shared.get().is_noise(&root.join("build"), None));
        assert!(shared.get().is_noise(&root.join("target"), Some(true)));
        // A new nested ignore file counts once read, and stops counting once removed.
        std::fs::create_dir_all(root.join("web")).unwrap();
        std::fs::write(root.join("web/.gitignore"), "dist/\n").unwrap();
        assert!(!shared.get().is_noise(&root.join("web/dist/a.js"), None));
        shared.read(&root.join("web"));
        assert!(shared.get().is_noise(&root.join("web/dist/a.js"), None));
        std::fs::remove_file(root.join("web/.gitignore")).unwrap();
        shared.read(&root.join("web"));
        assert!(!shared.get().is_noise(&root.join("web/dist/a.js"), None));
        std::fs::remove_dir_all(root).unwrap();
    }
}
