//! The harness shared by the end-to-end tests and `cargo xtask`: where the built binaries are,
//! real child processes with their output captured and polled with deadlines, and the Python
//! environment the tests use.

pub mod aws;
pub mod bench;
pub mod http;
pub mod live;
mod process;
pub mod proxy;
mod python;

pub use process::{Child, DEADLINE};
pub use python::python;

use std::path::PathBuf;

/// The cargo target directory these binaries were built into.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    workspace_root().join("target")
}

/// Poll `done` every 5 ms until it holds; fail the test, saying `what` did not happen, if it
/// does not within `within`.
pub async fn wait_until(within: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Microseconds since the epoch, as `live dev --json` stamps its lines (`at_us`).
pub fn epoch_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The repository's root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A binary of the workspace, built by the test command (`cargo build --bins`) into the same
/// profile directory as the running test or task.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    // target/<profile>/deps/it-HASH or target/<profile>/xtask
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo xtask test` does, or `cargo build --bins`)",
        path.display()
    );
    path
}
