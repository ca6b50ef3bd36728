//! Broker conformance with `rumqttc`: QoS 0 and 1, retained messages, last wills, wildcards,
//! IoT Core's limits, silent connections and shutdown.

use crate::mqtt::{connect, connect_with, Options, TestClient};
use bridge::broker::{Broker, BrokerConfig};
use rumqttc::{LastWill, Packet, QoS, SubscribeReasonCode};
use std::time::Duration;
use tokio::io::AsyncReadExt;

async fn broker() -> Broker {
    broker_with(BrokerConfig::default()).await
}

async fn broker_with(config: BrokerConfig) -> Broker {
    Broker::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("broker starts on an ephemeral port")
}

/// Publish a marker from a fresh client and return once `sub` receives it: everything the
/// broker routed to `sub` before the marker has then arrived.
async fn marker(url: &str, sub: &mut TestClient, topic: &str) -> Vec<rumqttc::Publish> {
    let m = connect(url, "marker").await;
    m.client
        .publish(topic, QoS::AtLeastOnce, false, "marker")
        .await
        .unwrap();
    let mut before = Vec::new();
    loop {
        let p = sub.next_publish().await;
        if p.topic == topic && &p.payload[..] == b"marker" {
            return before;
        }
        before.push(p);
    }
}

#[tokio::test]
async fn qos0_and_qos1_are_delivered_and_acknowledged() {
    let b = broker().await;
    let url = b.url();
    let mut sub = connect(&url, "sub").await;
    sub.subscribe("t/a", QoS::AtLeastOnce).await;
    let mut publisher = connect(&url, "pub").await;
    publisher
        .client
        .publish("t/a", QoS::AtMostOnce, false, "zero")
        .await
        .unwrap();
    publisher
        .client
        .publish("t/a", QoS::AtLeastOnce, false, "one")
        .await
        .unwrap();
    publisher.expect(|p| matches!(p, Packet::PubAck(_))).await;
    let first = sub.next_publish().await;
    assert_eq!(
        (&first.payload[..], first.qos),
        (&b"zero"[..], QoS::AtMostOnce)
    );
    let second = sub.next_publish().await;
    assert_eq!(
        (&second.payload[..], second.qos),
        (&b"one"[..], QoS::AtLeastOnce)
    );
    assert_ne!(second.pkid, 0, "QoS 1 deliveries carry a packet id");

    // A QoS 0 subscription downgrades QoS 1 publishes.
    let mut low = connect(&url, "low").await;
    low.subscribe("t/a", QoS::AtMostOnce).await;
    publisher
        .client
        .publish("t/a", QoS::AtLeastOnce, false, "down")
        .await
        .unwrap();
    assert_eq!(low.next_publish().await.qos, QoS::AtMostOnce);
    // QoS 2 is granted as QoS 1, as in IoT Core.
    let suback = low.subscribe("t/two", QoS::ExactlyOnce).await;
    assert!(matches!(suback, Packet::SubAck(s)
        if s.return_codes == vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]));
}

#[tokio::test]
async fn retained_messages_are_set_replayed_and_cleared_only_by_an_empty_retained_publish() {
    let b = broker().await;
    let url = b.url();
    let publisher = connect(&url, "pub").await;
    publisher
        .client
        .publish("r/x", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    // An empty publish without the retain flag does not clear it.
    publisher
        .client
        .publish("r/x", QoS::AtLeastOnce, false, "")
        .await
        .unwrap();
    let mut late = connect(&url, "late").await;
    // Marker first, so the publishes above are known to be routed before the subscription.
    late.subscribe("marker/#", QoS::AtLeastOnce).await;
    marker(&url, &mut late, "marker/1").await;
    late.subscribe("r/+", QoS::AtLeastOnce).await;
    let replayed = late.next_publish().await;
    assert_eq!(
        (&replayed.payload[..], replayed.retain),
        (&b"kept"[..], true)
    );

    publisher
        .client
        .publish("r/x", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let cleared = late.next_publish().await;
    assert!(
        cleared.payload.is_empty() && !cleared.retain,
        "live subscribers see the clear as an ordinary empty message"
    );
    let mut later = connect(&url, "later").await;
    later.subscribe("r/+", QoS::AtLeastOnce).await;
    later.subscribe("marker/#", QoS::AtLeastOnce).await;
    let before = marker(&url, &mut later, "marker/2").await;
    assert!(
        before.is_empty(),
        "nothing retained after the clear: {before:?}"
    );
}

fn will(topic: &str) -> LastWill {
    LastWill::new(topic, "gone", QoS::AtLeastOnce, false)
}

#[tokio::test]
async fn last_will_fires_on_a_dropped_connection_only() {
    let b = broker().await;
    let url = b.url();
    let mut watcher = connect(&url, "watcher").await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;

    // Dropped: the client's task is aborted, its socket closes without DISCONNECT.
    let dropped = connect_with(
        &url,
        "dropped",
        Options {
            will: Some(will("will/dropped")),
            ..Options::default()
        },
    )
    .await;
    dropped.task.abort();
    let got = watcher.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("will/dropped", &b"gone"[..])
    );

    // Clean: DISCONNECT, then the broker closes; no will.
    let mut clean = connect_with(
        &url,
        "clean",
        Options {
            will: Some(will("will/clean")),
            ..Options::default()
        },
    )
    .await;
    clean.client.disconnect().await.unwrap();
    clean.closed().await;
    let before = marker(&url, &mut watcher, "will/marker").await;
    assert!(
        before.is_empty(),
        "a clean disconnect sent a will: {before:?}"
    );
}

#[tokio::test]
async fn a_takeover_fires_the_old_will_and_keeps_the_new_one() {
    let b = broker().await;
    let url = b.url();
    let mut watcher = connect(&url, "watcher").await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    let opts = |topic: &str| Options {
        will: Some(will(topic)),
        ..Options::default()
    };
    let mut first = connect_with(&url, "same", opts("will/first")).await;
    let second = connect_with(&url, "same", opts("will/second")).await;
    assert_eq!(watcher.next_publish().await.topic, "will/first");
    first.closed().await;
    second.task.abort();
    assert_eq!(watcher.next_publish().await.topic, "will/second");
}

#[tokio::test]
async fn wildcards_match_one_level_and_the_rest() {
    let b = broker().await;
    let url = b.url();
    let mut plus = connect(&url, "plus").await;
    plus.subscribe("w/+/x", QoS::AtLeastOnce).await;
    let mut hash = connect(&url, "hash").await;
    hash.subscribe("w/#", QoS::AtLeastOnce).await;
    let p = connect(&url, "pub").await;
    for topic in ["w/a/x", "w/a/b/x", "w", "v/a/x", "w/b/x"] {
        p.client
            .publish(topic, QoS::AtLeastOnce, false, topic)
            .await
            .unwrap();
    }
    let mut got_plus = Vec::new();
    for p in marker(&url, &mut plus, "w/m/x").await {
        got_plus.push(p.topic);
    }
    assert_eq!(got_plus, ["w/a/x", "w/b/x"]);
    let mut got_hash = Vec::new();
    for p in marker(&url, &mut hash, "w/n").await {
        got_hash.push(p.topic);
    }
    // The first marker (for `plus`) also reached `hash`.
    assert_eq!(got_hash, ["w/a/x", "w/a/b/x", "w", "w/b/x", "w/m/x"]);
}

#[tokio::test]
async fn iot_core_limits_payload_131072_accepted_131073_refused() {
    let b = broker().await;
    let url = b.url();
    let mut sub = connect(&url, "sub").await;
    sub.subscribe("big/#", QoS::AtLeastOnce).await;
    let mut publisher = connect(&url, "pub").await;
    let max = vec![7u8; 131_072];
    publisher
        .client
        .publish("big/ok", QoS::AtLeastOnce, false, max.clone())
        .await
        .unwrap();
    let got = sub.next_publish().await;
    assert_eq!(got.payload.len(), 131_072);
    assert!(got.payload[..] == max[..]);
    publisher
        .client
        .publish("big/no", QoS::AtLeastOnce, false, vec![7u8; 131_073])
        .await
        .unwrap();
    publisher.closed().await;
    let before = marker(&url, &mut sub, "big/marker").await;
    assert!(before.is_empty(), "an oversized payload was delivered");
}

#[tokio::test]
async fn iot_core_limits_topics_with_eight_slashes_refused() {
    let b = broker().await;
    let url = b.url();
    let mut sub = connect(&url, "sub").await;
    sub.subscribe("#", QoS::AtLeastOnce).await;
    let refused = sub.subscribe("a/b/c/d/e/f/g/h/i", QoS::AtLeastOnce).await;
    assert!(
        matches!(refused, Packet::SubAck(s) if s.return_codes == vec![SubscribeReasonCode::Failure])
    );
    let mut deep = connect(&url, "deep").await;
    deep.client
        .publish("a/b/c/d/e/f/g/h", QoS::AtLeastOnce, false, "seven")
        .await
        .unwrap();
    deep.client
        .publish("a/b/c/d/e/f/g/h/i", QoS::AtLeastOnce, false, "eight")
        .await
        .unwrap();
    deep.closed().await;
    let before = marker(&url, &mut sub, "marker").await;
    let topics: Vec<_> = before.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, ["a/b/c/d/e/f/g/h"]);
}

#[tokio::test]
async fn a_connection_that_never_handshakes_blocks_nobody_and_is_closed() {
    let b = broker_with(BrokerConfig {
        handshake_timeout: Duration::from_millis(500),
        ..BrokerConfig::default()
    })
    .await;
    let url = b.url();
    let mut silent = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    let mut half = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Others connect and exchange messages while those two hang.
    let mut sub = connect(&url, "sub").await;
    sub.subscribe("x", QoS::AtLeastOnce).await;
    marker(&url, &mut sub, "x").await;
    // Both are closed once the handshake timeout passes.
    for stream in [&mut silent, &mut half] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
}

#[tokio::test]
async fn shutdown_closes_clients_and_releases_the_port() {
    let b = broker().await;
    let addr = b.local_addr();
    let mut client = connect(&b.url(), "c").await;
    b.shutdown().await.unwrap();
    client.closed().await;
    tokio::net::TcpListener::bind(addr)
        .await
        .expect("the port is free again after shutdown");
}

#[tokio::test]
async fn garbage_on_the_websocket_closes_only_that_connection() {
    let b = broker().await;
    let url = b.url();
    let mut sub = connect(&url, "sub").await;
    sub.subscribe("g", QoS::AtLeastOnce).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .map(|mut r| {
            r.headers_mut()
                .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
            r
        })
        .unwrap(),
    )
    .await
    .unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0x01].into(),
    ))
    .await
    .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "garbage did not close the connection");
    marker(&url, &mut sub, "g").await;
}

/// Captures log lines of the current thread (the test's current-thread runtime runs the
/// broker's tasks too).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Capture this thread's log lines until the guard is dropped.
    fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_loudly_never_skipped() {
    let (logs, _guard) = Captured::install();

    let b = broker_with(BrokerConfig {
        max_queued_messages: 64,
        max_queued_bytes: 4 * 1024 * 1024,
        ..BrokerConfig::default()
    })
    .await;
    let url = b.url();
    let mut slow = connect_with(
        &url,
        "slow",
        Options {
            pause_after_suback: true,
            ..Options::default()
        },
    )
    .await;
    slow.subscribe("flood", QoS::AtLeastOnce).await;
    let mut fast = connect(&url, "fast").await;
    fast.subscribe("flood", QoS::AtLeastOnce).await;
    let publisher = connect(&url, "pub").await;
    let total = 600u32;
    // Publish in windows of 10 that the fast subscriber reads in full, in order, before the
    // next: its queue stays small while the slow one's grows.
    for window in 0..total / 10 {
        for i in window * 10..window * 10 + 10 {
            let mut payload = vec![0u8; 100_000];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            publisher
                .client
                .publish("flood", QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        for i in window * 10..window * 10 + 10 {
            assert_eq!(fast.next_publish().await.payload[..4], i.to_be_bytes());
        }
    }

    // The slow one gets a gap-free prefix, then the broker's close: nothing skipped silently.
    slow.resume.take().unwrap().send(()).unwrap();
    let mut next = 0u32;
    let reason = loop {
        match tokio::time::timeout(crate::mqtt::DEADLINE, slow.events.recv()).await {
            Ok(Some(crate::mqtt::Seen::Packet(Packet::Publish(p)))) => {
                assert_eq!(p.payload[..4], next.to_be_bytes(), "a message was skipped");
                next += 1;
            }
            Ok(Some(crate::mqtt::Seen::Packet(_))) => {}
            Ok(Some(crate::mqtt::Seen::Closed(reason))) => break reason,
            other => panic!("slow subscriber neither read nor closed: {other:?}"),
        }
    };
    assert!(
        next < total,
        "the slow subscriber was not disconnected ({reason})"
    );
    let logs = logs.text();
    assert!(
        logs.contains("disconnecting a subscriber that stopped reading") && logs.contains("slow"),
        "no log line names the slow subscriber:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_a_slow_reader_is_paced_not_dropped() {
    // The outbox may hold 4 MiB; a 20 MB burst to a reader slower than the sender fits only
    // because the broker makes the publisher wait above 1 MiB.
    let b = broker_with(BrokerConfig {
        soft_queued_bytes: 1024 * 1024,
        max_queued_bytes: 4 * 1024 * 1024,
        ..BrokerConfig::default()
    })
    .await;
    let url = b.url();
    let mut slow = connect_with(
        &url,
        "slow-reader",
        Options {
            read_delay: Some(Duration::from_millis(3)),
            ..Options::default()
        },
    )
    .await;
    slow.subscribe("burst", QoS::AtLeastOnce).await;
    let publisher = connect(&url, "burster").await;
    burst_of_200_arrives_in_order(publisher, "burst", &mut slow).await;
}

/// `publisher` sends 200 numbered messages of 100 KB on `topic` from a task while `reader`
/// reads them: every one arrives, in order.
async fn burst_of_200_arrives_in_order(
    publisher: TestClient,
    topic: &'static str,
    reader: &mut TestClient,
) {
    let total = 200u32;
    let send = tokio::spawn(async move {
        for i in 0..total {
            let mut payload = vec![0u8; 100_000];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            publisher
                .client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        publisher
    });
    for i in 0..total {
        let p = reader.next_publish().await;
        assert_eq!(
            p.payload[..4],
            i.to_be_bytes(),
            "message {i} lost or reordered"
        );
    }
    let _publisher = send.await.unwrap();
}

#[tokio::test]
async fn a_subscriber_that_stalls_between_the_bounds_is_disconnected_and_its_publisher_goes_on() {
    let (logs, _guard) = Captured::install();

    // 20 MB goes out: above the soft bound, so the publisher waits for the subscriber that
    // stopped reading, and below the hard bound, so only the stall timeout lets it go on.
    let b = broker_with(BrokerConfig {
        soft_queued_bytes: 1024 * 1024,
        max_queued_bytes: 64 * 1024 * 1024,
        stall_timeout: Duration::from_millis(300),
        ..BrokerConfig::default()
    })
    .await;
    let url = b.url();
    let mut stalled = connect_with(
        &url,
        "stalled",
        Options {
            pause_after_suback: true,
            ..Options::default()
        },
    )
    .await;
    stalled.subscribe("flow", QoS::AtLeastOnce).await;
    let mut reader = connect(&url, "reader").await;
    reader.subscribe("flow", QoS::AtLeastOnce).await;
    let publisher = connect(&url, "pub").await;
    burst_of_200_arrives_in_order(publisher, "flow", &mut reader).await;
    let logs = logs.text();
    assert!(
        logs.contains("it drained nothing for the stall timeout") && logs.contains("stalled"),
        "no log line names the stalled subscriber and the stall:\n{logs}"
    );
}
