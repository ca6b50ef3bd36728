//! Rules of the workspace's shape that a build would not catch by itself.

use std::process::Command;

/// The deployed stub is built alone (`cargo build -p stub`); the embedded broker must not be
/// compiled into it.
#[test]
fn the_stub_built_alone_does_not_compile_the_broker() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "stub",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(tests::workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("bridge v"),
        "the stub depends on the bridge:\n{tree}"
    );
    assert!(
        !tree.contains("tokio-tungstenite"),
        "the stub pulls the broker's WebSocket server:\n{tree}"
    );
}
