//! The watcher as a new user meets it: a fresh Rust project's first build (cargo creating
//! `target/` inside the watched folder) and a build step writing `dist/` trigger no build, a
//! save triggers exactly one, and a restarted build leaves none of its processes behind.

use std::path::Path;
use std::time::Duration;
use tests::http::Http;
use tests::live::{fixture_copy, fixtures, live_dev, live_dev_with, proc_state, project, LiveDev};
use tests::wait_until;

/// `live dev --json -c dir` building into the project's own `target/`, as a user's does
/// (the other tests share one target directory between fixture copies).
fn live_dev_own_target(dir: &Path) -> LiveDev {
    live_dev_with(dir, &[], |cmd| {
        cmd.env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR");
    })
}

/// The `--json` events named `event` printed so far.
fn events(dev: &LiveDev, event: &str) -> Vec<serde_json::Value> {
    let tag = format!("\"event\":\"{event}\"");
    dev.child
        .output()
        .lines()
        .filter(|l| l.starts_with('{') && l.contains(&tag))
        .map(|l| serde_json::from_str(l).expect("JSON event"))
        .collect()
}

/// Invoke `function` and wait for its invocation line. The invocation passes the watcher's
/// barrier first: every file event before it has been seen, and any build it caused has
/// printed its `build_started` before this returns.
async fn invoke(dev: &LiveDev, function: &str) -> serde_json::Value {
    let reply = Http::default()
        .invoke(&dev.front_door, function, &[], "{}")
        .await;
    reply.assert_no_function_error();
    dev.invocation(reply.header("x-live-request-id"));
    reply.json()
}

#[tokio::test]
async fn a_fresh_rust_project_builds_once_and_only_saves_trigger_builds() {
    // The echo fixture (lambda_runtime) at the project's root, as `examples/hello` is, and a
    // function whose build step writes `dist/` and `build/` into its own watched folder.
    let dir = fixture_copy("echo");
    assert!(!dir.join("target").exists(), "a fresh copy has no target/");
    std::fs::write(
        dir.join("live.toml"),
        format!(
            "app = \"fresh\"\nstage = \"test\"\n\n[functions.echo]\n\n[functions.web]\n\
             dir = \"web\"\ncommand = [\"python3\", \"{}/raw_runtime.py\"]\n\
             build = [\"sh\", \"-c\", \"mkdir -p dist build && cp index.js dist/ && date +%N > build/stamp\"]\n",
            fixtures().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), "/target\ndist/\n").unwrap();
    std::fs::create_dir(dir.join("web")).unwrap();
    std::fs::write(dir.join("web/.gitignore"), "build/\n").unwrap();
    std::fs::write(dir.join("web/index.js"), "// v1\n").unwrap();

    let dev = live_dev_own_target(&dir);
    assert!(
        dir.join("target").is_dir(),
        "cargo made target/ in the watched folder"
    );
    assert!(dir.join("web/dist/index.js").is_file());
    invoke(&dev, "echo").await;
    invoke(&dev, "web").await;
    assert_eq!(
        events(&dev, "build_restarted"),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        events(&dev, "build_started").len(),
        1,
        "{}",
        dev.child.output()
    );

    // A save of the Rust function: one build, whose writes into target/ trigger nothing.
    let main = dir.join("src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{source}\n// saved\n")).unwrap();
    invoke(&dev, "echo").await;
    invoke(&dev, "web").await;
    // A save of the other: one build, whose dist/ and build/ trigger nothing.
    std::fs::write(dir.join("web/index.js"), "// v2\n").unwrap();
    invoke(&dev, "web").await;
    invoke(&dev, "echo").await;
    assert_eq!(
        std::fs::read_to_string(dir.join("web/dist/index.js")).unwrap(),
        "// v2\n"
    );
    let started: Vec<serde_json::Value> = events(&dev, "build_started")
        .into_iter()
        .map(|e| e["functions"].clone())
        .collect();
    assert_eq!(
        started,
        [
            serde_json::json!(["echo", "web"]),
            serde_json::json!(["echo"]),
            // The Rust package is the project's root folder, so it holds `web/` too.
            serde_json::json!(["echo", "web"]),
        ],
        "{}",
        dev.child.output()
    );
    assert_eq!(
        events(&dev, "build_restarted"),
        Vec::<serde_json::Value>::new()
    );
}

/// Whether process `pid` is gone (a zombie counts: killed, not yet reaped by its new parent).
fn gone(pid: u32) -> bool {
    proc_state(pid).is_none_or(|s| s == 'Z')
}

/// Read the pid a hanging build step wrote to `file`.
async fn hung_build(file: &Path) -> u32 {
    let mut pid = None;
    wait_until(
        Duration::from_secs(30),
        "the build step never started",
        || {
            pid = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pid.is_some()
        },
    )
    .await;
    pid.expect("read")
}

#[tokio::test]
async fn a_restarted_build_and_live_dev_exiting_leave_no_build_process_behind() {
    // A build step that, while `hang` exists, starts a grandchild (as `npm run build` starts
    // esbuild), writes its pid and waits for it.
    let markers = project("markers", "");
    let (hang, pid_file) = (markers.join("hang"), markers.join("grandchild.pid"));
    let step = format!(
        "if [ -e {hang} ]; then sleep 300 & echo $! > {pid}; wait; fi",
        hang = hang.display(),
        pid = pid_file.display()
    );
    let dir = project(
        "restart",
        &format!(
            "[functions.web]\ndir = \"web\"\ncommand = [\"python3\", \"{{fixtures}}/raw_runtime.py\"]\n\
             build = [\"sh\", \"-c\", {step:?}]\n"
        ),
    );
    std::fs::create_dir(dir.join("web")).unwrap();
    let mut dev = live_dev(&dir, &[]);

    std::fs::write(&hang, "").unwrap();
    let mark = dev.child.mark();
    std::fs::write(dir.join("web/a.txt"), "1").unwrap();
    let grandchild = hung_build(&pid_file).await;
    std::fs::remove_file(&hang).unwrap();
    std::fs::remove_file(&pid_file).unwrap();
    std::fs::write(dir.join("web/b.txt"), "2").unwrap();
    dev.event_after(mark, "build_restarted");
    wait_until(
        Duration::from_secs(10),
        "the restarted build's grandchild is still running",
        || gone(grandchild),
    )
    .await;
    invoke(&dev, "web").await;

    // `live dev` stopping mid-build takes the build's processes with it.
    std::fs::write(&hang, "").unwrap();
    std::fs::write(dir.join("web/c.txt"), "3").unwrap();
    let grandchild = hung_build(&pid_file).await;
    dev.child.signal(15); // SIGTERM
    dev.child.wait_exit();
    wait_until(
        Duration::from_secs(10),
        "the build's grandchild outlived live dev",
        || gone(grandchild),
    )
    .await;
}
