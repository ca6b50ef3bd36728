//! Running `live dev` and `live cloud` on test projects, and reading what they print.

use crate::{bin, Child};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A project directory under the target directory holding `live.toml` with `body` (the
/// function tables; `app` and `stage` are added). Fixture files are at `{fixtures}`.
pub fn project(name: &str, body: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = crate::target_dir().join("test-projects").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("project dir");
    let fixtures = fixtures();
    let text = format!(
        "app = \"fixture\"\nstage = \"test\"\n{}",
        body.replace("{fixtures}", &fixtures.display().to_string())
    );
    std::fs::write(dir.join("live.toml"), text).expect("write live.toml");
    dir
}

/// `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    crate::workspace_root().join("tests").join("fixtures")
}

/// The function table of the raw Python runtime (`tests/fixtures/raw_runtime.py`).
pub fn raw_function(name: &str) -> String {
    format!("[functions.{name}]\ncommand = [\"python3\", \"{{fixtures}}/raw_runtime.py\"]\n")
}

/// A fresh folder holding examples/hello's live.toml with `extra` appended.
pub fn hello_project(name: &str, extra: &str) -> PathBuf {
    let dir = project(name, "");
    let example = crate::workspace_root().join("examples/hello/live.toml");
    let text = std::fs::read_to_string(example).expect("examples/hello/live.toml");
    std::fs::write(dir.join("live.toml"), format!("{text}{extra}")).expect("write live.toml");
    dir
}

/// `cmd` with the variables of a `KEY=VALUE` file set (debug mode's `.live/debug/FN.env`,
/// as an IDE reads it).
pub fn with_env_file<'a>(cmd: &'a mut Command, file: &Path) -> &'a mut Command {
    for line in std::fs::read_to_string(file).expect("the env file").lines() {
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        cmd.env(key, value);
    }
    cmd
}

/// Set function `f`'s `VERSION` constant in a copy of the reload fixture, as an editor saving
/// the file would.
pub fn set_version(dir: &Path, f: &str, version: u64) -> std::io::Result<()> {
    let path = dir.join(f).join("src/main.rs");
    let source = std::fs::read_to_string(&path)?;
    let line = |e: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    let start = source
        .find("const VERSION: u64 = ")
        .ok_or_else(|| line("no VERSION line"))?;
    let end = start
        + source[start..]
            .find(';')
            .ok_or_else(|| line("no `;` after VERSION"))?;
    std::fs::write(
        &path,
        format!(
            "{}const VERSION: u64 = {version}{}",
            &source[..start],
            &source[end..]
        ),
    )
}

/// A scratch copy of `tests/fixtures/NAME` (without build output) that a test may edit.
pub fn fixture_copy(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = crate::target_dir().join("test-projects").join(format!(
        "{name}-copy-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&fixtures().join(name), &dir);
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&path, &target);
            }
        } else {
            std::fs::copy(&path, &target).expect("copy fixture file");
        }
    }
}

/// Where Rust fixtures are built: shared by every copy, so only their own crates rebuild.
pub fn fixture_target_dir() -> PathBuf {
    crate::target_dir().join("fixtures")
}

/// A running `live dev --json`.
pub struct LiveDev {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, when the cloud is embedded.
    pub front_door: String,
    pub broker: String,
    /// The `live` process itself.
    pub pid: u32,
}

/// Start `live dev --json -c dir` with `args` and wait for its ready line.
pub fn live_dev(dir: &Path, args: &[&str]) -> LiveDev {
    live_dev_with(dir, args, |_| {})
}

/// [`live_dev`] with the command adjusted by `adjust` first (its environment, say).
pub fn live_dev_with(dir: &Path, args: &[&str], adjust: impl FnOnce(&mut Command)) -> LiveDev {
    let mut cmd = Command::new(bin("live"));
    cmd.arg("dev").arg("--json").arg("-c").arg(dir).args(args);
    cmd.env("CARGO_TARGET_DIR", fixture_target_dir());
    adjust(&mut cmd);
    let child = Child::spawn(cmd);
    // A Rust fixture builds before `live dev` is ready.
    let ready = child.wait_for_line_within(std::time::Duration::from_secs(600), |l| {
        l.starts_with('{') && l.contains("\"ready\"")
    });
    let ready: Value = serde_json::from_str(&ready).expect("ready line is JSON");
    LiveDev {
        front_door: ready["front_door"].as_str().unwrap_or_default().to_string(),
        broker: ready["broker"].as_str().expect("broker").to_string(),
        pid: ready["pid"].as_u64().expect("pid") as u32,
        child,
    }
}

impl LiveDev {
    /// The next JSON event of kind `event` printed after `mark` (see [`Child::mark`]), with
    /// the mark after it.
    pub fn event_after(&self, mark: usize, event: &str) -> (usize, Value) {
        let tag = format!("\"event\":\"{event}\"");
        let (i, line) =
            self.child
                .wait_for_line_after(mark, std::time::Duration::from_secs(300), |l| {
                    l.contains(&tag)
                });
        (i + 1, serde_json::from_str(&line).expect("JSON event"))
    }

    /// The invocation line `live dev` printed for `request_id`.
    pub fn invocation(&self, request_id: &str) -> Value {
        let line = self
            .child
            .wait_for_line(|l| l.contains("\"invocation\"") && l.contains(request_id));
        serde_json::from_str(&line).expect("invocation line is JSON")
    }

    /// How often `live dev` has printed an invocation line for each request id so far.
    pub fn runs(&self) -> std::collections::HashMap<String, usize> {
        let mut runs = std::collections::HashMap::new();
        for line in self.child.output().lines() {
            if line.contains("\"invocation\"") {
                let v: Value = serde_json::from_str(line).expect("invocation line is JSON");
                let id = v["request_id"].as_str().expect("request_id").to_string();
                *runs.entry(id).or_default() += 1;
            }
        }
        runs
    }

    /// [`LiveDev::runs`] once every one of `ids` has a line (or 10 s have passed): a line is
    /// printed just after its result is sent, so the last ones may still be on their way when
    /// the caller has its answers.
    pub async fn runs_once_seen<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a String> + Clone,
    ) -> std::collections::HashMap<String, usize> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let runs = self.runs();
            let all = ids.clone().into_iter().all(|id| runs.contains_key(id));
            if all || std::time::Instant::now() > deadline {
                return runs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A running `live cloud`.
pub struct LiveCloud {
    pub child: Child,
    pub front_door: String,
}

impl LiveCloud {
    /// The port of its embedded `wss://` broker (IoT mode), from the lines after its ready
    /// line.
    pub fn iot_broker_port(&self) -> u16 {
        let line = self
            .child
            .wait_for_line(|l| l.trim_start().starts_with("broker  wss://127.0.0.1:"));
        port_of(line.split_whitespace().nth(1).expect("URL"))
    }
}

/// Start `live cloud -c dir` with `args` and wait for its ready line.
pub fn live_cloud(dir: &Path, args: &[&str]) -> LiveCloud {
    live_cloud_with(dir, args, |_| {})
}

/// [`live_cloud`] with the command adjusted by `adjust` first.
pub fn live_cloud_with(dir: &Path, args: &[&str], adjust: impl FnOnce(&mut Command)) -> LiveCloud {
    let mut cmd = Command::new(bin("live"));
    cmd.arg("cloud").arg("-c").arg(dir).args(args);
    adjust(&mut cmd);
    let child = Child::spawn(cmd);
    let ready = child.wait_for_line(|l| l.starts_with("live cloud ready: "));
    let front_door = ready
        .trim_start_matches("live cloud ready: ")
        .split_whitespace()
        .next()
        .expect("URL")
        .to_string();
    LiveCloud { child, front_door }
}

/// The parent pid and the executable's file name of process `pid`, from /proc.
pub fn proc_info(pid: u32) -> (u32, String) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ppid = after
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_default();
    (ppid, exe)
}

/// The state letter of process `pid` (`R`, `S`, `T` for stopped, `Z` for a zombie...), or
/// `None` once it is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// Whether process `pid` holds a socket listening on TCP `port` (from /proc/net/tcp).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            // State 0A is LISTEN.
            (local_port == port && *f.get(3)? == "0A").then(|| f.get(9).map(|s| s.to_string()))?
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| {
                let t = target.to_string_lossy();
                inodes.iter().any(|i| t == format!("socket:[{i}]"))
            })
            .unwrap_or(false)
    })
}

/// Start `live broker` with `args`; returns it and its URL.
pub fn live_broker(args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(bin("live"));
    cmd.arg("broker").args(args);
    let child = Child::spawn(cmd);
    let line = child.wait_for_line(|l| l.starts_with("live broker ready: "));
    (
        child,
        line.trim_start_matches("live broker ready: ").to_string(),
    )
}

/// The port of a `ws://127.0.0.1:PORT/mqtt` URL.
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the URL")
}
