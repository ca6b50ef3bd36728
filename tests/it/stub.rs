//! The real stub binary against a real `live broker`: what it logs (the bridge's warnings
//! reach its stderr, which Lambda sends to CloudWatch), and the failure it answers when it
//! cannot join the bridge, named for the cause.

use rumqttc::QoS;
use std::process::Command;
use tests::http::Http;
use tests::live::{live_broker, live_cloud, project, raw_function};
use tests::{bin, Child, DEADLINE};

/// The stub, started as Lambda starts it, against the Runtime API at `runtime_api`.
fn stub(runtime_api: &str, broker: &str) -> Child {
    let mut cmd = Command::new(bin("bootstrap"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("LIVE_BRIDGE_URL", broker)
        .env("LIVE_APP", "stubtest")
        .env("LIVE_STAGE", "test")
        .env("LIVE_FUNCTION", "f")
        .env("LIVE_ENV_ID", "e1");
    Child::spawn(cmd)
}

#[tokio::test]
async fn a_bridge_warning_reaches_the_stubs_stderr() {
    let (_broker, url) = live_broker(&[]);
    // A presence record that is no bridge frame, retained: the stub reads it as it joins,
    // and the bridge drops it with a warning.
    let topic = bridge::Topics::new("stubtest", "test")
        .unwrap()
        .presence("garbled")
        .unwrap();
    let (client, mut seen) = tests::bench::broker::client(&url, "writer", &topic)
        .await
        .expect("subscribed");
    client
        .publish(
            &topic,
            QoS::AtLeastOnce,
            true,
            b"not a bridge frame".to_vec(),
        )
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, seen.recv())
        .await
        .expect("the record went through the broker");
    // A Runtime API that never answers `/next`: the stub waits there, connected.
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stub = stub(&api.local_addr().unwrap().to_string(), &url);
    let line = stub.wait_for_line(|l| l.contains("dropped a bridge message"));
    assert!(
        line.starts_with("stderr: live stub: WARN bridge"),
        "a warning of the bridge crate, on stderr: {line}"
    );
}

#[tokio::test]
async fn a_stub_whose_login_is_refused_answers_bridge_unreachable_naming_the_refusal() {
    let (_broker, url) = live_broker(&["--username", "team", "--password", "s3cret"]);
    let dir = project("refused", &raw_function("echo"));
    let cloud = live_cloud(
        &dir,
        &[
            "--broker",
            &url,
            "--username",
            "team",
            "--password",
            "pw-9f3a",
            "--no-dev-window-ms",
            "1000",
        ],
    );
    let message = bridge_unreachable(&cloud.front_door).await;
    assert!(
        message.contains("refused the login") && message.contains("BadUserNamePassword"),
        "the message names the refusal: {message}"
    );
    assert!(
        message.contains("LIVE_BROKER_USERNAME") && message.contains("LIVE_BROKER_PASSWORD"),
        "the message says what to check: {message}"
    );
    assert!(
        !message.contains("is running"),
        "a broker that refused the login is running: {message}"
    );
    assert!(
        !message.contains("pw-9f3a"),
        "the password was printed: {message}"
    );
}

#[tokio::test]
async fn a_stub_that_finds_no_broker_answers_bridge_unreachable_saying_it_may_not_run() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/mqtt");
    let dir = project("nobroker", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--broker", &url, "--no-dev-window-ms", "1000"]);
    let message = bridge_unreachable(&cloud.front_door).await;
    assert!(
        message.contains(&url) && message.contains("is running"),
        "{message}"
    );
    assert!(
        message.contains("os error") || message.contains("refused"),
        "the connection's own error is named: {message}"
    );
}

/// Invoke `echo` through the front door at `front_door`: the answer must be
/// `Live.BridgeUnreachable`; its message.
async fn bridge_unreachable(front_door: &str) -> String {
    let reply = Http::default().invoke(front_door, "echo", &[], "{}").await;
    let error = reply.json();
    assert_eq!(error["errorType"], "Live.BridgeUnreachable", "{error}");
    error["errorMessage"].as_str().unwrap().to_string()
}
