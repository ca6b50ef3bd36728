//! `live broker` as a user runs it: the ready line, an independent client (paho-mqtt over
//! WebSocket) checking conformance, a last will when a client process is killed, and a clean
//! stop on Ctrl+C that releases the port.

use rumqttc::QoS;
use std::process::Command;
use std::time::Duration;
use tests::{bin, python, Child, DEADLINE};

/// Start `live broker` on an ephemeral port; returns the process and its URL.
fn live_broker(args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(bin("live"));
    cmd.arg("broker").args(args);
    let child = Child::spawn(cmd);
    let line = child.wait_for_line(|l| l.starts_with("live broker ready: "));
    let url = line.trim_start_matches("live broker ready: ").to_string();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/mqtt"),
        "ready line names the URL: {line}"
    );
    (child, url)
}

/// A raw `rumqttc` subscriber; returns the client and a channel of received publishes.
async fn subscriber(
    url: &str,
    filter: &str,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    tests::bench::broker::client(url, "watcher", filter)
        .await
        .expect("subscribed within the deadline")
}

#[tokio::test]
async fn live_broker_prints_its_url_serves_and_stops_cleanly_on_ctrl_c() {
    let (mut broker, url) = live_broker(&[]);
    let (client, mut rx) = subscriber(&url, "hello/#").await;
    client
        .publish("hello/world", QoS::AtLeastOnce, false, "hi")
        .await
        .unwrap();
    let got = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"hi");

    broker.signal(2); // SIGINT, as Ctrl+C sends
    let status = broker.wait_exit();
    assert!(
        status.success(),
        "exit status {status}: {}",
        broker.output()
    );
    broker.wait_for_line(|l| l == "live broker stopped");
    let addr = url.trim_start_matches("ws://").trim_end_matches("/mqtt");
    std::net::TcpListener::bind(addr).expect("the port is released after Ctrl+C");
}

#[tokio::test]
async fn live_broker_refuses_a_busy_port_and_an_open_address_without_credentials() {
    let (_broker, url) = live_broker(&[]);
    let port = url
        .trim_start_matches("ws://127.0.0.1:")
        .trim_end_matches("/mqtt");
    let mut busy = Child::spawn({
        let mut cmd = Command::new(bin("live"));
        cmd.args(["broker", "--port", port]);
        cmd
    });
    assert!(!busy.wait_exit().success());
    busy.wait_for_line(|l| l.contains("could not listen on") && l.contains("--port"));

    let mut open = Child::spawn({
        let mut cmd = Command::new(bin("live"));
        cmd.args(["broker", "--host", "0.0.0.0"]);
        cmd
    });
    assert!(!open.wait_exit().success());
    open.wait_for_line(|l| l.contains("--username and --password"));
}

#[test]
fn paho_mqtt_over_websocket_sees_a_conformant_broker() {
    let (broker, url) = live_broker(&[]);
    let script = tests::workspace_root().join("tests/py/paho_conformance.py");
    let out = Command::new(python())
        .arg(script)
        .arg(&url)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "paho-mqtt conformance failed:\n{stdout}\n{}\nbroker:\n{}",
        String::from_utf8_lossy(&out.stderr),
        broker.output()
    );
    assert!(stdout.contains("ok: a topic with 7 slashes delivered, one with 8 refused"));
    // The refusals are logged by name, so a user can see why a client was dropped.
    broker.wait_for_line(|l| l.contains("refused PUBLISH: payload of 131073 bytes"));
}

#[tokio::test]
async fn last_will_fires_when_the_client_process_is_killed() {
    let (_broker, url) = live_broker(&[]);
    let (_client, mut rx) = subscriber(&url, "will/#").await;
    let script = tests::workspace_root().join("tests/py/paho_will.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(&url).arg("will/paho");
    let paho = Child::spawn(cmd);
    paho.wait_for_line(|l| l == "connected");
    paho.signal(9); // SIGKILL: the process cannot say goodbye
    let will = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the will arrives within 10 s")
        .unwrap();
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("will/paho", &b"killed"[..])
    );
}
