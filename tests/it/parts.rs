//! The chain's parts run on their own: `live broker`, `live cloud --broker`, `live dev
//! --broker`; child processes that never outlive `live`; a missing stub named clearly.

use std::process::Command;
use std::time::{Duration, Instant};
use tests::http::Http;
use tests::live::{live_broker, live_cloud, live_dev, project, raw_function};
use tests::{bin, Child};

#[tokio::test]
async fn broker_cloud_and_dev_run_as_separate_processes() {
    let (_broker, url) = live_broker(&[]);
    let dir = project("split", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--broker", &url]);
    let dev = live_dev(&dir, &["--broker", &url]);
    assert!(
        dev.front_door.is_empty(),
        "live dev --broker starts no front door of its own"
    );
    let reply = Http::default()
        .invoke(&cloud.front_door, "echo", &[], "{}")
        .await;
    reply.assert_no_function_error();
    assert_eq!(reply.json()["function"], "echo");
    dev.invocation(reply.header("x-live-request-id"));
}

fn alive(pid: u32) -> bool {
    // A zombie has exited: only its parent's bookkeeping is left.
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains("Z"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn no_stub_or_worker_outlives_live_dev_killed_with_sigkill() {
    let dir = project("sigkill", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let mut pids = Vec::new();
    let calls: Vec<_> = (0..4)
        .map(|_| http.spawn_invoke(&dev.front_door, "echo", "{}"))
        .collect();
    for call in calls {
        let reply = call.await.unwrap();
        pids.push(reply.header("x-live-stub-pid").parse::<u32>().unwrap());
        pids.push(reply.json()["pid"].as_u64().unwrap() as u32);
    }
    assert!(pids.iter().all(|&p| alive(p)));
    dev.child.signal(9);
    all_gone(&pids, "live dev was killed");
}

/// Wait until none of `pids` is alive, at most 10 s.
fn all_gone(pids: &[u32], after: &str) {
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running after {after}: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_missing_stub_binary_is_named_with_the_fix() {
    let dir = project("nostub", &raw_function("echo"));
    let mut cmd = Command::new(bin("live"));
    cmd.arg("cloud")
        .arg("-c")
        .arg(&dir)
        .args(["--stub", "/nonexistent/bootstrap"]);
    let mut child = Child::spawn(cmd);
    assert!(!child.wait_exit().success());
    child.wait_for_line(|l| {
        l.contains("/nonexistent/bootstrap") && l.contains("cargo build -p stub")
    });
}

#[test]
fn a_malformed_live_toml_is_named_with_its_line_and_the_fix() {
    let dir = project("badtoml", "[functions.echo]\ntimeout = \"soon\"\n");
    let mut cmd = Command::new(bin("live"));
    cmd.arg("dev").arg("-c").arg(&dir);
    let mut child = Child::spawn(cmd);
    assert!(!child.wait_exit().success());
    child.wait_for_line(|l| l.contains("live.toml") && l.contains("line 4"));
}

#[tokio::test]
async fn in_the_split_setup_no_stub_or_worker_outlives_its_killed_parent() {
    let (_broker, url) = live_broker(&[]);
    let dir = project("split-kill", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--broker", &url]);
    let dev = live_dev(&dir, &["--broker", &url]);
    let reply = Http::default()
        .invoke(&cloud.front_door, "echo", &[], "{}")
        .await;
    let stub: u32 = reply.header("x-live-stub-pid").parse().unwrap();
    let worker = reply.json()["pid"].as_u64().unwrap() as u32;
    assert!(alive(stub) && alive(worker));
    dev.child.signal(9);
    cloud.child.signal(9);
    all_gone(&[stub, worker], "their parents were killed");
}

#[tokio::test]
async fn live_cloud_direct_runs_handlers_without_stub_or_bridge() {
    let dir = project("direct", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--direct"]);
    let reply = Http::default()
        .invoke(&cloud.front_door, "echo", &[], "{}")
        .await;
    reply.assert_no_function_error();
    // The process the emulator started is the handler itself.
    assert_eq!(
        reply.header("x-live-stub-pid"),
        reply.json()["pid"].to_string()
    );
    cloud.child.wait_for_line(|l| l.contains("(none: direct)"));
}

/// Whoever starts the handler (`live dev`'s worker, or `live cloud --direct` in place of the
/// stub), it gets the environment Lambda gives a runtime, `_HANDLER` from `handler`,
/// `LAMBDA_TASK_ROOT`, and the function's own `env` over Lambda's defaults.
#[tokio::test]
async fn a_handler_gets_the_same_environment_from_live_dev_and_from_direct_mode() {
    let config = format!(
        "{}handler = \"app.main\"\nenv = {{ TZ = \"Europe/Paris\", GREETING = \"hi\" }}\n",
        raw_function("echo")
    );
    let dir = project("handler-env", &config);
    let dev = live_dev(&dir, &[]);
    let cloud = live_cloud(&dir, &["--direct"]);
    for (mode, front_door) in [("live dev", &dev.front_door), ("direct", &cloud.front_door)] {
        let reply = Http::default()
            .invoke(front_door, "echo", &[], r#"{"mode":"env"}"#)
            .await;
        reply.assert_no_function_error();
        let seen = reply.json();
        let env = |name: &str| seen["env"][name].as_str().unwrap_or("(unset)").to_string();
        assert_eq!(env("_HANDLER"), "app.main", "{mode}");
        assert_eq!(env("GREETING"), "hi", "{mode}");
        assert_eq!(env("TZ"), "Europe/Paris", "{mode}: the function's env wins");
        assert_eq!(env("AWS_LAMBDA_FUNCTION_NAME"), "echo", "{mode}");
        let root = std::fs::canonicalize(env("LAMBDA_TASK_ROOT")).expect("LAMBDA_TASK_ROOT");
        let cwd = std::fs::canonicalize(seen["cwd"].as_str().unwrap()).unwrap();
        assert_eq!(
            root, cwd,
            "{mode}: LAMBDA_TASK_ROOT is the working directory"
        );
    }
}

/// A stage may have 64 characters; the session named after it must still fit its topics.
#[tokio::test]
async fn a_stage_of_the_longest_allowed_name_serves_invocations() {
    let dir = project("long-stage", &raw_function("echo"));
    let config = dir.join("live.toml");
    let stage = format!("stage = \"{}\"", "s".repeat(bridge::topics::MAX_NAME_BYTES));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("stage = \"test\"", &stage);
    assert!(
        text.contains(&stage),
        "the fixture's stage line moved:\n{text}"
    );
    std::fs::write(&config, text).unwrap();
    let dev = live_dev(&dir, &[]);
    let reply = Http::default()
        .invoke(&dev.front_door, "echo", &[], "{}")
        .await;
    reply.assert_no_function_error();
}

/// `--idle-timeout`: a worker left idle that long is stopped (as Lambda recycles idle
/// environments), and the next invocation starts a fresh one.
#[tokio::test]
async fn an_idle_worker_is_stopped_after_the_idle_timeout_and_replaced_on_demand() {
    let dir = project("idle", &raw_function("echo"));
    let dev = live_dev(&dir, &["--idle-timeout", "1"]);
    let http = Http::default();
    let first = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    first.assert_no_function_error();
    let worker = first.json()["pid"].as_u64().unwrap() as u32;
    assert!(alive(worker));
    all_gone(&[worker], "a 1 s idle timeout");
    let second = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    second.assert_no_function_error();
    assert_ne!(second.json()["pid"].as_u64().unwrap() as u32, worker);
    assert_eq!(second.json()["count"], 1, "a fresh worker");
}

#[tokio::test]
async fn a_broker_with_credentials_serves_only_clients_that_present_them() {
    let (_broker, url) = live_broker(&["--username", "team", "--password", "s3cret"]);
    let dir = project("creds", &raw_function("echo"));
    let creds = [
        "--broker",
        url.as_str(),
        "--username",
        "team",
        "--password",
        "s3cret",
    ];
    let cloud = live_cloud(&dir, &creds);
    let dev = live_dev(&dir, &creds);
    let reply = Http::default()
        .invoke(&cloud.front_door, "echo", &[], "{}")
        .await;
    reply.assert_no_function_error();
    dev.invocation(reply.header("x-live-request-id"));

    let mut cmd = Command::new(bin("live"));
    cmd.args(["dev", "--json", "-c"]).arg(&dir).args([
        "--broker",
        &url,
        "--username",
        "team",
        "--password",
        "wrong",
    ]);
    let mut refused = Child::spawn(cmd);
    assert!(!refused.wait_exit().success());
    let output = refused.output();
    assert!(
        output.contains("could not join the bridge") && output.contains("BadUserNamePassword"),
        "{output}"
    );
    assert!(
        !output.contains("wrong"),
        "a password was printed: {output}"
    );
}

#[tokio::test]
async fn a_stub_meeting_a_session_of_another_protocol_version_says_which_side_to_update() {
    let (_broker, url) = live_broker(&[]);
    let dir = project("old-session", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--broker", &url]);
    // A developer session of bridge protocol v1 (an older `live`): its presence record, framed
    // as v1 framed it.
    let topic = bridge::Topics::new("fixture", "test")
        .unwrap()
        .presence("old")
        .unwrap();
    let record = |online: bool| {
        let header = serde_json::json!({
            "session": "old", "online": online, "epoch": 1, "version": 1, "functions": [],
        })
        .to_string();
        let mut payload = b"LV\x01\x01".to_vec();
        payload.extend_from_slice(&(header.len() as u32).to_be_bytes());
        payload.extend_from_slice(header.as_bytes());
        bytes::Bytes::from(payload)
    };
    let mut options = bridge::transport::ConnectOptions::new(&url, "dev-old".to_string());
    options.presence = Some(std::sync::Arc::new(move |_| {
        (topic.clone(), record(true), record(false))
    }));
    let mut old = bridge::transport::Connection::open(options).unwrap();
    old.ready(Duration::from_secs(10)).await.unwrap();

    let reply = Http::default()
        .invoke(&cloud.front_door, "echo", &[], "{}")
        .await;
    let error = reply.json();
    assert_eq!(error["errorType"], "Live.ProtocolMismatch", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("protocol v1")
            && message.contains("update `live` on the developer's machine"),
        "{message}"
    );
}
