//! Which folders get a watch: every folder of a watched tree that is not noise, each with a
//! watch of its own (a recursive watch would cover every folder below, build output
//! included), its ignore files read before what is in it is judged; and the watch limit
//! turned into advice.

use super::noise::SharedNoise;
use notify::{RecursiveMode, Watcher as _};
use std::path::Path;

/// Watch `dir` and every folder below it that is not noise, each with a watch of its own,
/// reading each folder's ignore files before judging what is in it. Only `dir` itself and
/// the watch limit are errors; a folder that vanished or cannot be read is passed over.
pub fn watch_tree(
    watcher: &mut notify::RecommendedWatcher,
    noise: &SharedNoise,
    dir: &Path,
) -> anyhow::Result<()> {
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        noise.read(&folder);
        if let Err(e) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
            if folder == dir || at_limit(&e) {
                return Err(advice(e));
            }
            tracing::debug!("not watching {}: {e}", folder.display());
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let rules = noise.get();
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !rules.is_noise(&path, Some(true)) {
                folders.push(path);
            }
        }
    }
    Ok(())
}

/// Whether `e` is the OS's watch limit.
fn at_limit(e: &notify::Error) -> bool {
    matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28))
}

/// Turn the OS's watch limit into advice.
fn advice(e: notify::Error) -> anyhow::Error {
    if at_limit(&e) {
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

    #[test]
    fn the_watch_limit_becomes_advice_and_other_errors_stay_as_they_are() {
        // inotify_add_watch fails with ENOSPC (28) at the limit; notify may also say so itself.
        let at_limit = [
            notify::Error::io(std::io::Error::from_raw_os_error(28)),
            notify::Error::new(notify::ErrorKind::MaxFilesWatch),
        ];
        for e in at_limit {
            let told = advice(e).to_string();
            assert!(
                told.contains("sudo sysctl fs.inotify.max_user_watches=524288"),
                "{told}"
            );
        }
        let other = advice(notify::Error::path_not_found()).to_string();
        assert!(other.starts_with("the file watcher failed: "), "{other}");
        assert!(!other.contains("sysctl"), "{other}");
    }
}
