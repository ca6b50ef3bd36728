//! Reload overhead, for `live dev` and for `cargo lambda watch` on the same handler and edit:
//! ten saves of the reload fixture's function `a` under a steady load of sequential
//! invocations.

use super::Stats;
use crate::http::Http;
use crate::live::{fixture_copy, fixture_target_dir, live_dev, set_version};
use crate::{epoch_us, Child};
use anyhow::bail;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Saves per tool.
pub const SAVES: u64 = 10;

/// What one tool showed across the saves.
pub struct Report {
    /// File write to the build's start, plus the build's end to the first new reply (live
    /// only: the peer reports neither moment).
    pub overhead: Option<Stats>,
    /// File write to the first reply from the new code, seen by the sequential client.
    pub write_to_reply: Stats,
    /// File write to the first reply from the new code, seen by the probe.
    pub write_to_probe: Stats,
    /// The build's own time.
    pub build: Stats,
    /// Invocations answered with an error or not at all, of `total`.
    pub lost: usize,
    pub total: usize,
}

/// Replies seen by the load: (receive time in µs since the epoch, version or None on error).
type Seen = Arc<Mutex<Vec<(u64, Option<u64>)>>>;

/// A probe: a fresh invocation every 20 ms, each with a 1 s timeout, recording what it saw;
/// it sees new code as soon as the tool serves it, whatever happened to other requests.
fn start_probe(url: String, stop: Arc<AtomicBool>) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let http = Http::default();
            while !stop.load(Ordering::SeqCst) {
                let call = http.try_send("POST", &url, &[], "{}");
                if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(1), call).await {
                    let version = serde_json::from_slice::<serde_json::Value>(&reply.body)
                        .ok()
                        .and_then(|v| v["version"].as_u64());
                    seen.lock().unwrap().push((epoch_us(), version));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    (seen, task)
}

/// Sequential invocations of `a` at `url` until stopped; each with a 30 s timeout.
fn start_load(
    url: String,
    stop: Arc<AtomicBool>,
) -> (Seen, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let task = {
        let (seen, count) = (seen.clone(), count.clone());
        tokio::spawn(async move {
            let http = Http::default();
            while !stop.load(Ordering::SeqCst) {
                let call = http.try_send("POST", &url, &[], "{}");
                let version = match tokio::time::timeout(Duration::from_secs(30), call).await {
                    Ok(Ok(reply))
                        if reply.status == 200
                            && reply.header("x-amz-function-error").is_empty() =>
                    {
                        serde_json::from_slice::<serde_json::Value>(&reply.body)
                            .ok()
                            .and_then(|v| v["version"].as_u64())
                    }
                    _ => None,
                };
                seen.lock().unwrap().push((epoch_us(), version));
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    (seen, count, task)
}

/// Poll `ready` until it has a value, within 120 s.
async fn wait_for<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = ready() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The times (epoch microseconds) of the first replies showing `version` after `written`,
/// to the sequential client and to the probe, once both have come.
async fn first_replies(
    seen: &Seen,
    probed: &Seen,
    version: u64,
    written: u64,
) -> anyhow::Result<(u64, u64)> {
    let reply = wait_for("the first reply from the new code", || {
        first_reply(seen, version, written)
    })
    .await?;
    let probe = wait_for("the probe to see the new code", || {
        first_reply(probed, version, written)
    })
    .await?;
    Ok((reply, probe))
}

/// Save `version` into the fixture at `dir` once the load has made progress since the last
/// save; the write's time (epoch microseconds).
async fn save_under_load(
    count: &AtomicUsize,
    dir: &std::path::Path,
    version: u64,
) -> anyhow::Result<u64> {
    let before = count.load(Ordering::SeqCst);
    wait_for("a steady load", || {
        (count.load(Ordering::SeqCst) >= before + 3).then_some(())
    })
    .await?;
    set_version(dir, "a", version)?;
    Ok(epoch_us())
}

/// The first reply with `version` received after `after_us`.
fn first_reply(seen: &Seen, version: u64, after_us: u64) -> Option<u64> {
    seen.lock()
        .unwrap()
        .iter()
        .find(|(t, v)| *t >= after_us && *v == Some(version))
        .map(|(t, _)| *t)
}

fn us(d: u64) -> Duration {
    Duration::from_micros(d)
}

/// `live dev` on a copy of the fixture.
pub async fn live() -> anyhow::Result<Report> {
    let dir = fixture_copy("reload");
    let dev = live_dev(&dir, &[]);
    let url = format!("{}/2015-03-31/functions/a/invocations", dev.front_door);
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, load) = start_load(url.clone(), stop.clone());
    let (probed, probe) = start_probe(url, stop.clone());
    let (mut overhead, mut write_to_reply, mut build) = (Vec::new(), Vec::new(), Vec::new());
    let mut write_to_probe = Vec::new();
    let mut mark = dev.child.mark();
    for version in 1..=SAVES {
        let written = save_under_load(&count, &dir, version).await?;
        let (after_start, started) = dev.event_after(mark, "build_started");
        let (after_finish, finished) = dev.event_after(after_start, "build_finished");
        mark = after_finish;
        let (t_start, t_end) = (
            started["at_us"].as_u64().unwrap_or(0),
            finished["at_us"].as_u64().unwrap_or(0),
        );
        let (first, probe) = first_replies(&seen, &probed, version, written).await?;
        overhead.push(us(
            t_start.saturating_sub(written) + first.saturating_sub(t_end)
        ));
        write_to_probe.push(us(probe.saturating_sub(written)));
        write_to_reply.push(us(first.saturating_sub(written)));
        build.push(Duration::from_secs_f64(
            finished["duration_ms"].as_f64().unwrap_or(0.0) / 1e3,
        ));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    let _ = probe.await;
    let seen = seen.lock().unwrap();
    Ok(Report {
        overhead: Some(Stats::new(overhead)),
        write_to_reply: Stats::new(write_to_reply),
        write_to_probe: Stats::new(write_to_probe),
        build: Stats::new(build),
        lost: seen.iter().filter(|(_, v)| v.is_none()).count(),
        total: seen.len(),
    })
}

/// Start `cargo lambda watch` (the peer, default settings, `--release` when asked) in `dir`
/// on a free loopback port: the process and the Invoke API URL of `function`.
pub fn cargo_lambda_watch(
    dir: &std::path::Path,
    function: &str,
    release: bool,
) -> anyhow::Result<(Child, String)> {
    let bin = cargo_lambda_bin()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("cargo");
    cmd.args(["lambda", "watch"]);
    if release {
        cmd.arg("--release");
    }
    cmd.args(["-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", fixture_target_dir());
    let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations");
    Ok((Child::spawn(cmd), url))
}

/// The `cargo-lambda` virtual environment, installed from PyPI when missing.
pub fn cargo_lambda_bin() -> anyhow::Result<PathBuf> {
    let venv = crate::target_dir().join("live-bench-venv");
    let bin = venv.join("bin");
    if !bin.join("cargo-lambda").exists() {
        eprintln!(
            "bench: installing cargo-lambda from PyPI into {}",
            venv.display()
        );
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(bin.join("pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "cargo-lambda==1.9.2",
                ])
                .status()?
                .success();
        if !ok {
            bail!("could not install cargo-lambda from PyPI");
        }
    }
    Ok(bin)
}

/// `cargo lambda watch` (default settings) on another copy of the fixture.
pub async fn peer() -> anyhow::Result<Report> {
    let dir = fixture_copy("reload");
    let (watch, url) = cargo_lambda_watch(&dir, "a", false)?;
    // Its first build happens on the first invocation.
    super::wait_until_answered(
        &url,
        Duration::from_secs(60),
        Duration::from_secs(600),
        "cargo lambda watch",
        &watch,
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, load) = start_load(url.clone(), stop.clone());
    let (probed, probe) = start_probe(url, stop.clone());
    let (mut write_to_reply, mut build, mut write_to_probe) = (Vec::new(), Vec::new(), Vec::new());
    let mut mark = watch.mark();
    for version in 1..=SAVES {
        let written = save_under_load(&count, &dir, version).await?;
        let (first, probe) = first_replies(&seen, &probed, version, written).await?;
        write_to_reply.push(us(first.saturating_sub(written)));
        write_to_probe.push(us(probe.saturating_sub(written)));
        // Cargo's own report of the build: "Finished `dev` profile [...] target(s) in 1.23s".
        let (i, finished) = watch.wait_for_line_after(mark, Duration::from_secs(60), |l| {
            l.contains("Finished `dev`")
        });
        mark = i + 1;
        let secs: f64 = finished
            .rsplit(" in ")
            .next()
            .and_then(|t| t.trim_end_matches('s').parse().ok())
            .unwrap_or(0.0);
        build.push(Duration::from_secs_f64(secs));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    let _ = probe.await;
    let seen = seen.lock().unwrap();
    Ok(Report {
        overhead: None,
        write_to_reply: Stats::new(write_to_reply),
        write_to_probe: Stats::new(write_to_probe),
        build: Stats::new(build),
        lost: seen.iter().filter(|(_, v)| v.is_none()).count(),
        total: seen.len(),
    })
}
