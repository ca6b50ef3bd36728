//! Debug mode (`live dev --debug FN`): no worker is started for the function; whatever is
//! launched with `.live/debug/FN.env` (here the raw runtime client, as an IDE would launch a
//! handler under its debugger) becomes its worker. Invocations made before it starts wait for
//! it; one running when it is killed is answered with a named error as soon as a new one
//! starts, which serves the next; the other functions run as usual meanwhile. And real gdb:
//! examples/hello's handler stopped 20 s at a breakpoint answers normally.

use std::process::Command;
use std::time::Duration;
use tests::http::Http;
use tests::live::{fixtures, live_dev_with, project, raw_function};
use tests::Child;

/// The worker an IDE would launch: the raw runtime client with the env file's variables.
fn launch_worker(env_file: &std::path::Path) -> Child {
    let mut cmd = Command::new("python3");
    cmd.arg(fixtures().join("raw_runtime.py"));
    for line in std::fs::read_to_string(env_file)
        .expect("the env file")
        .lines()
    {
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        cmd.env(key, value);
    }
    Child::spawn(cmd)
}

#[tokio::test]
async fn a_worker_launched_from_the_env_file_serves_the_function_and_a_restarted_one_takes_over() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let body = format!(
        "{}debug_port = {port}\ntimeout = 60\n{}",
        raw_function("echo"),
        raw_function("other")
    );
    let dir = project("debug", &body);
    let dev = live_dev_with(&dir, &["--debug", "echo"], |_| {});
    dev.child.wait_for_line(|l| {
        l.contains(&format!(
            "debug mode for echo: Runtime API on 127.0.0.1:{port}"
        ))
    });
    let env_file = dir.join(".live/debug/echo.env");
    let env = std::fs::read_to_string(&env_file).expect("the env file");
    for want in [
        format!("AWS_LAMBDA_RUNTIME_API=127.0.0.1:{port}"),
        "AWS_LAMBDA_FUNCTION_NAME=echo".to_owned(),
        "_HANDLER=echo".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in:\n{env}");
    }

    let http = Http::default();
    // The other function has its worker as usual, while echo has none yet.
    let other = http
        .invoke(&dev.front_door, "other", &[], r#"{"n":1}"#)
        .await;
    other.assert_no_function_error();
    // An invocation made before the debugged worker starts waits for it.
    let early = http.spawn_invoke(&dev.front_door, "echo", r#"{"n":2}"#);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!early.is_finished(), "it waits for a worker");
    let first = launch_worker(&env_file);
    let reply = early.await.unwrap();
    reply.assert_no_function_error();
    assert_eq!(reply.json()["pid"], first.pid());

    // Killed while running an invocation, and started again: that invocation fails at once,
    // naming why; the new worker answers the next.
    let pid_file = dir.join("running.pid");
    let event = serde_json::json!({"sleep_ms": 50_000, "file": pid_file}).to_string();
    let running = http.spawn_invoke(&dev.front_door, "echo", event);
    let deadline = std::time::Instant::now() + tests::DEADLINE;
    while !pid_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the handler never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first); // killed
    let started = std::time::Instant::now();
    let second = launch_worker(&env_file);
    let reply = running.await.unwrap();
    assert_eq!(
        reply.json()["errorType"],
        "Live.WorkerRestarted",
        "{:?}",
        reply.body
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered long before its deadline"
    );
    let reply = http
        .invoke(&dev.front_door, "echo", &[], r#"{"n":3}"#)
        .await;
    reply.assert_no_function_error();
    assert_eq!(reply.json()["pid"], second.pid());
}

/// A copy of examples/hello (sources, manifests, live.toml with `extra` in hello's table).
fn hello_copy(extra: &str) -> std::path::PathBuf {
    let dir = project("debug-gdb", "");
    let example = tests::workspace_root().join("examples/hello");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/bin/hello.rs",
        "src/bin/http.rs",
    ] {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example.join(file), to).unwrap();
    }
    let toml = std::fs::read_to_string(example.join("live.toml")).unwrap();
    std::fs::write(
        dir.join("live.toml"),
        toml.replace(
            "[functions.hello]\n",
            &format!("[functions.hello]\n{extra}"),
        ),
    )
    .unwrap();
    dir
}

/// `hello` under gdb, stopped at its handler's breakpoint for `pause_s`, then continued.
fn hello_under_gdb(dir: &std::path::Path, pause_s: u32) -> Child {
    let binary = tests::live::fixture_target_dir().join("debug/hello");
    assert!(binary.exists(), "live dev built {}", binary.display());
    let mut gdb = Command::new("gdb");
    gdb.args(["-nx", "-batch", "-ex", "set breakpoint pending on"])
        .args(["-ex", "break hello::handler", "-ex", "run"])
        .args(["-ex", &format!("shell sleep {pause_s}"), "-ex", "continue"])
        .arg(&binary);
    tests::live::with_env_file(&mut gdb, &dir.join(".live/debug/hello.env"));
    Child::spawn(gdb)
}

/// A copy of examples/hello with `timeout` for hello, served by `live dev --debug hello`.
fn debugged_hello(timeout: u32) -> (std::path::PathBuf, tests::live::LiveDev) {
    let dir = hello_copy(&format!("timeout = {timeout}\n"));
    let dev = live_dev_with(&dir, &["--debug", "hello"], |_| {});
    dev.child
        .wait_for_line(|l| l.contains("debug mode for hello"));
    (dir, dev)
}

#[tokio::test]
async fn a_handler_paused_past_its_timeout_gets_lambdas_timeout_error_at_the_deadline() {
    let (dir, dev) = debugged_hello(5);
    let http = Http::default();
    let started = std::time::Instant::now();
    let call = http.spawn_invoke(&dev.front_door, "hello", r#"{"name":"Ada"}"#);
    let _gdb = hello_under_gdb(&dir, 12);
    let reply = call.await.unwrap();
    let took = started.elapsed();
    let error = reply.json();
    assert_eq!(error["errorType"], "Sandbox.Timedout", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Task timed out after"),
        "{error}"
    );
    // At the function's 5 s deadline: not at once, not after the pause, no hang.
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn the_handler_paused_20_s_at_a_gdb_breakpoint_answers_normally_while_the_cloud_waits() {
    let (dir, dev) = debugged_hello(60);
    let http = Http::default();
    let started = std::time::Instant::now();
    // Made before the pause, and given longer than the test harness's usual 30 s.
    let call = {
        let (http, url) = (
            http.clone(),
            format!("{}/2015-03-31/functions/hello/invocations", dev.front_door),
        );
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(90),
                http.try_send("POST", &url, &[], r#"{"name":"Ada"}"#),
            )
            .await
            .expect("an answer within 90 s")
            .expect("an answer")
        })
    };
    // The handler under real gdb: stopped at its breakpoint for 20 s, then continued. gdb's
    // own output to a pipe is not flushed while it sleeps: the answer's timing shows the
    // pause (unpaused, it comes in milliseconds).
    let gdb = hello_under_gdb(&dir, 20);
    let reply = call.await.unwrap();
    reply.assert_no_function_error();
    assert_eq!(reply.json()["message"], "Hello, Ada!");
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "answered after {:?}, before the pause ended",
        started.elapsed()
    );
    drop(gdb);
}
