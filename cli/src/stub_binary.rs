//! Where the stub binary (`bootstrap`) is: `--stub` or `LIVE_STUB`, else built beside `live`.
//! `live deploy` prefers cargo's `stub` profile build (small, quick to cold-start) in the same
//! target directory; `live cloud` takes whichever build sits beside `live`.

use anyhow::bail;
use std::path::{Path, PathBuf};

/// The stub binary `live cloud` runs: `given`, else `bootstrap` beside `live`.
pub fn find(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return named(path);
    }
    match exe_dir().map(|dir| dir.join("bootstrap")) {
        Some(path) if path.is_file() => Ok(path),
        _ => bail!(
            "could not find the stub binary `bootstrap` beside `live`: build both with \
             `cargo build --bins` (or `cargo build -p stub`), or name it with --stub PATH or \
             LIVE_STUB"
        ),
    }
}

/// The stub binary `live deploy` packages, and whether it is the `stub` profile's build:
/// `given`, else `target/stub/bootstrap` of `live`'s target directory, else `bootstrap`
/// beside `live`.
pub fn find_for_deploy(given: Option<PathBuf>) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(path) = given {
        return named(path).map(|p| (p, true));
    }
    let small = exe_dir().and_then(|dir| dir.parent().map(|t| t.join("stub").join("bootstrap")));
    if let Some(path) = small.filter(|p| p.is_file()) {
        return Ok((path, true));
    }
    find(None).map(|p| (p, false)).map_err(|_| {
        anyhow::anyhow!(
            "could not find the stub to deploy: build it with `cargo build --profile stub -p stub` \
             (it lands in target/stub/bootstrap, where `live deploy` looks), or name it with \
             --stub PATH or LIVE_STUB"
        )
    })
}

fn named(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path);
    }
    bail!(
        "the stub binary {} does not exist (from --stub or LIVE_STUB): build it with \
         `cargo build -p stub` (`--profile stub` for the small build `live deploy` wants) and \
         point there",
        path.display()
    )
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
}
