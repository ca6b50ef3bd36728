//! Live reload: a save is never answered with old code, a failed build is answered at once
//! and recovered from, workers mirror execution environments, only affected functions
//! rebuild, and nothing is lost while saving under load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::http::Http;
use tests::live::{fixture_copy, live_dev, project, raw_function, set_version};
use tests::wait_until;

fn set_shared(dir: &Path, version: u64) {
    let path = dir.join("common/src/lib.rs");
    let source = std::fs::read_to_string(&path).unwrap();
    let body_start = source.find("pub fn shared() -> u64 {").unwrap();
    let updated = format!(
        "{}pub fn shared() -> u64 {{\n    {version}\n}}\n",
        &source[..body_start]
    );
    std::fs::write(&path, updated).unwrap();
}

/// The 20 delays between save and invoke: the fixed ten, then ten drawn up to 2 s.
fn delays() -> Vec<u64> {
    let mut delays = vec![0, 0, 0, 1, 2, 5, 10, 20, 50, 100];
    let mut seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("random delays seeded with {seed}");
    for _ in 0..10 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        delays.push((seed >> 33) % 2001);
    }
    delays
}

#[tokio::test]
async fn a_save_is_never_answered_with_old_code() {
    let dir = fixture_copy("reload");
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let mut stale = Vec::new();
    for (round, delay) in delays().into_iter().enumerate() {
        let version = round as u64 + 1;
        set_version(&dir, "a", version).unwrap();
        // The gap between the save and the request is the variable under test.
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let reply = http.invoke(&dev.front_door, "a", &[], "{}").await;
        reply.assert_no_function_error();
        let got = reply.json()["version"].as_u64().unwrap();
        println!("round {round}: saved {version}, invoked after {delay} ms, got {got}");
        if got != version {
            stale.push((round, delay, version, got));
        }
    }
    assert!(
        stale.is_empty(),
        "stale replies (round, delay ms, saved, got): {stale:?}"
    );
}

#[tokio::test]
async fn a_compile_error_is_answered_at_once_and_the_next_good_build_recovers() {
    let dir = fixture_copy("reload");
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let mark = dev.child.mark();
    let path = dir.join("a/src/main.rs");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{good}\nfn broken() -> u64 {{ \"not a number\" }}\n"),
    )
    .unwrap();
    let start = Instant::now();
    let reply = http.invoke(&dev.front_door, "a", &[], "{}").await;
    let took = start.elapsed();
    assert_eq!(reply.header("x-amz-function-error"), "Unhandled");
    let error = reply.json();
    assert_eq!(error["errorType"], "Live.BuildFailed");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("mismatched types"), "{message}");
    let (_, build) = dev.event_after(mark, "build_finished");
    assert_eq!(build["ok"], false);
    let build_ms = build["duration_ms"].as_f64().unwrap();
    // The answer comes with the failed build, not at the function's 30 s timeout.
    assert!(
        took.as_secs_f64() * 1e3 < build_ms + 5_000.0,
        "took {took:?} for a {build_ms} ms build"
    );

    // Invocations while it stays broken get the same error at once.
    let again = http.invoke(&dev.front_door, "a", &[], "{}").await;
    assert_eq!(again.json()["errorType"], "Live.BuildFailed");

    std::fs::write(
        &path,
        good.replace("const VERSION: u64 = 0", "const VERSION: u64 = 7"),
    )
    .unwrap();
    let fixed = http.invoke(&dev.front_door, "a", &[], "{}").await;
    fixed.assert_no_function_error();
    assert_eq!(fixed.json()["version"], 7);
}

#[tokio::test]
async fn module_state_lives_per_environment_and_restarts_with_a_rebuild() {
    let dir = fixture_copy("reload");
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let mut pids = Vec::new();
    for expected in 1..=3 {
        let reply = http.invoke(&dev.front_door, "a", &[], "{}").await;
        assert_eq!(reply.json()["count"], expected);
        pids.push(reply.json()["pid"].as_u64().unwrap());
    }
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "one environment, one worker: {pids:?}"
    );
    set_version(&dir, "a", 42).unwrap();
    let reply = http.invoke(&dev.front_door, "a", &[], "{}").await;
    assert_eq!(reply.json()["version"], 42);
    assert_eq!(
        reply.json()["count"],
        1,
        "a rebuilt function starts with fresh module state"
    );
    assert_ne!(reply.json()["pid"].as_u64().unwrap(), pids[0]);
}

#[tokio::test]
async fn a_worker_killed_mid_invocation_is_named_and_replaced() {
    let dir = project("killed", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let marker = dir.join("worker.pid");
    let event = format!(r#"{{"mode":"sleep","file":"{}"}}"#, marker.display());
    let call = http.spawn_invoke(&dev.front_door, "echo", event);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the handler never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let reply = call.await.unwrap();
    assert_eq!(reply.header("x-amz-function-error"), "Unhandled");
    let error = reply.json();
    assert_eq!(error["errorType"], "Live.WorkerCrashed");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("signal 9") && message.contains(&pid.to_string()),
        "{message}"
    );
    let next = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    assert_eq!(next.header("x-amz-function-error"), "");
    assert_ne!(next.json()["pid"].as_u64().unwrap(), u64::from(pid));
}

#[tokio::test]
async fn after_a_timeout_the_next_invocation_runs_at_once_on_a_fresh_worker() {
    // A handler that never answers, in a function with a 2 s timeout: the stub answers at
    // its deadline, and its environment (reused, as Lambda reuses it) takes the next one.
    let dir = project("timeout", &format!("{}timeout = 2\n", raw_function("echo")));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    // Warm: the hung call does not pay for starting the stub and the worker.
    http.invoke(&dev.front_door, "echo", &[], "{}")
        .await
        .assert_no_function_error();
    // Outside the project, whose changes would start a new worker anyway.
    let marker = dir.with_extension("worker.pid");
    let event = format!(r#"{{"mode":"sleep","file":"{}"}}"#, marker.display());
    let hung = http.invoke(&dev.front_door, "echo", &[], event).await;
    assert_eq!(hung.header("x-amz-function-error"), "Unhandled");
    assert_eq!(hung.json()["errorType"], "Live.DeadlineReached");
    let hung_pid: u64 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Before: the next one waited behind the hung one until its worker was stopped (2 s
    // past its deadline), past its own deadline, and ran after its caller had its error.
    let next = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    next.assert_no_function_error();
    assert_eq!(
        next.header("x-live-env-id"),
        hung.header("x-live-env-id"),
        "the same environment"
    );
    assert_ne!(
        next.json()["pid"].as_u64().unwrap(),
        hung_pid,
        "a fresh worker"
    );
    let stopped = dev.invocation(hung.header("x-live-request-id"));
    assert_eq!(stopped["error_type"], "Live.GivenUp", "{stopped}");
}

#[tokio::test]
async fn only_the_functions_a_change_affects_rebuild() {
    let dir = fixture_copy("reload");
    let dev = live_dev(&dir, &[]);
    let mark = dev.child.mark();
    set_version(&dir, "a", 5).unwrap();
    let (mark, started) = dev.event_after(mark, "build_started");
    assert_eq!(started["functions"], serde_json::json!(["a"]));
    let (mark, _) = dev.event_after(mark, "build_finished");
    set_shared(&dir, 9);
    let (mark, started) = dev.event_after(mark, "build_started");
    assert_eq!(started["functions"], serde_json::json!(["a", "b"]));
    dev.event_after(mark, "build_finished");
    let http = Http::default();
    for f in ["a", "b"] {
        let reply = http.invoke(&dev.front_door, f, &[], "{}").await;
        assert_eq!(reply.json()["shared"], 9, "{f}");
    }
}

// Multi-threaded: the test thread blocks waiting for build events while the load runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_saves_under_steady_load_lose_nothing() {
    let dir = fixture_copy("reload");
    let dev = live_dev(&dir, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, done) = (stop.clone(), done.clone());
        let base = dev.front_door.clone();
        tokio::spawn(async move {
            let http = Http::default();
            let mut replies = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let reply = http.invoke(&base, "a", &[], "{}").await;
                replies.push((
                    reply.status,
                    reply.header("x-amz-function-error").to_string(),
                    reply.body,
                ));
                done.fetch_add(1, Ordering::SeqCst);
            }
            replies
        })
    };
    let mut mark = dev.child.mark();
    for save in 1..=10 {
        // Saves land between, and during, a steady stream of invocations.
        let before = done.load(Ordering::SeqCst);
        wait_until_done(&done, before + 5).await;
        set_version(&dir, "a", 100 + save).unwrap();
        let (after, _) = dev.event_after(mark, "build_finished");
        mark = after;
    }
    // The request in flight when the last build finished may have begun on the old code;
    // the one after it was sent after that build was in place.
    let seen = done.load(Ordering::SeqCst);
    wait_until_done(&done, seen + 2).await;
    stop.store(true, Ordering::SeqCst);
    let replies = load.await.unwrap();
    let failed: Vec<_> = replies
        .iter()
        .filter(|(status, error, _)| *status != 200 || !error.is_empty())
        .map(|(s, e, b)| format!("{s} {e} {}", String::from_utf8_lossy(b)))
        .collect();
    println!(
        "{} invocations across 10 saves, {} failed",
        replies.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    // One sequential client: a reply never shows an older version than the one before it,
    // and the last (sent after the last save's build finished) shows the last save.
    let versions: Vec<u64> = replies
        .iter()
        .map(|(_, _, body)| {
            let reply: serde_json::Value = serde_json::from_slice(body).unwrap();
            reply["version"].as_u64().unwrap()
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "a reply went back to an older version: {versions:?}"
    );
    assert_eq!(versions.last(), Some(&110), "{versions:?}");
}

/// Wait until the load has finished `count` invocations; a stall for 30 s fails the test.
async fn wait_until_done(done: &AtomicUsize, count: usize) {
    let stalled = format!("the load stalled at {count}");
    wait_until(Duration::from_secs(30), &stalled, || {
        done.load(Ordering::SeqCst) >= count
    })
    .await;
}

#[tokio::test]
async fn a_cargo_project_without_live_toml_serves_its_lambda_binaries() {
    let dir = fixture_copy("reload");
    std::fs::remove_file(dir.join("live.toml")).unwrap();
    let dev = live_dev(&dir, &[]);
    let ready = dev.child.wait_for_line(|l| l.contains("\"ready\""));
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let functions: Vec<&String> = ready["urls"].as_object().unwrap().keys().collect();
    assert_eq!(
        functions,
        ["a", "b"],
        "the binaries that depend on lambda_runtime, not `common`"
    );
    let reply = Http::default()
        .invoke(&dev.front_door, "b", &[], "{}")
        .await;
    assert_eq!(reply.json()["function"], "b");
}
