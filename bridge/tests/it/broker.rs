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
