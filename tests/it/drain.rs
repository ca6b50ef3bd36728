//! `live dev` drains on exit: an invocation running at Ctrl-C finishes and its caller gets
//! the handler's answer; a second Ctrl-C stops it with a named error; then `live dev` exits.

use std::time::Duration;
use tests::http::Http;
use tests::live::{live_dev, project, raw_function};
use tests::wait_until;

/// SIGINT, as Ctrl-C sends it.
const SIGINT: i32 = 2;

/// Start `live dev`, send one invocation whose handler sleeps `sleep_ms`, and wait until the
/// handler runs.
async fn running(
    name: &str,
    sleep_ms: u64,
) -> (
    tests::live::LiveDev,
    tokio::task::JoinHandle<tests::http::Reply>,
) {
    let dir = project(name, &raw_function("slow"));
    let dev = live_dev(&dir, &[]);
    // The marker is written outside the project, whose changes would start a new worker.
    let started = dir.with_extension("started.pid");
    let event = format!(
        r#"{{"sleep_ms":{sleep_ms},"file":"{}"}}"#,
        started.display()
    );
    let call = Http::default().spawn_invoke(&dev.front_door, "slow", event);
    wait_until(Duration::from_secs(30), "the handler never started", || {
        started.exists()
    })
    .await;
    (dev, call)
}

#[tokio::test]
async fn an_invocation_running_at_ctrl_c_finishes_and_is_answered_before_live_dev_exits() {
    let (mut dev, call) = running("drain", 1500).await;
    dev.child.signal(SIGINT);
    let reply = call.await.expect("the caller got an answer");
    reply.assert_no_function_error();
    assert!(
        reply.json()["pid"].is_u64(),
        "the handler's own answer: {:?}",
        reply.body
    );
    let status = dev.child.wait_exit();
    assert!(status.success(), "live dev exited with {status}");
    let output = dev.child.output();
    assert!(
        output.contains("waiting up to"),
        "live dev said it waits for the invocation:\n{output}"
    );
}

#[tokio::test]
async fn a_second_ctrl_c_answers_the_invocation_still_running_with_a_named_error() {
    let (mut dev, call) = running("drain-again", 60_000).await;
    dev.child.signal(SIGINT);
    dev.child.wait_for_line(|l| l.contains("waiting up to"));
    dev.child.signal(SIGINT);
    let reply = call.await.expect("the caller got an answer");
    assert_eq!(
        reply.header("x-amz-function-error"),
        "Unhandled",
        "{:?}",
        reply.body
    );
    assert_eq!(reply.json()["errorType"], "Live.SessionStopped");
    let status = dev.child.wait_exit();
    assert!(status.success(), "live dev exited with {status}");
}
