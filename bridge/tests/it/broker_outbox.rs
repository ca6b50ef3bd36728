//! The broker's bounded outboxes: a client that stops reading is disconnected loudly (its
//! will fires) whatever it was sent, deliveries or the broker's own replies, and above the
//! soft bound its publishers are paced instead.

use crate::mqtt::{connect, connect_paused, connect_with, Captured, Options, TestClient};
use bridge::broker::{Broker, BrokerConfig};
use rumqttc::{Packet, QoS};
use std::time::Duration;

async fn broker_with(config: BrokerConfig) -> Broker {
    Broker::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("broker starts on an ephemeral port")
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
    let mut slow = connect_paused(&url, "slow").await;
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
        logs.contains("disconnecting a client that stopped reading") && logs.contains("slow"),
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
    let mut stalled = connect_paused(&url, "stalled").await;
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

/// A raw MQTT-over-WebSocket client, `id` with a will on `will_topic`, that will write and
/// never read: its socket's receive buffer is small, so what the broker sends it backs up at
/// once instead of filling megabytes of kernel buffers first.
async fn deaf_client(
    b: &Broker,
    id: &str,
    will_topic: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(b.local_addr()).await.unwrap();
    let mut request = b.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let mut connect = rumqttc::Connect::new(id);
    connect.keep_alive = 30;
    connect.last_will = Some(rumqttc::LastWill::new(
        will_topic,
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    send_packets(&mut ws, [Packet::Connect(connect)])
        .await
        .unwrap();
    ws
}

/// Encode `packets` into one WebSocket message and send it.
async fn send_packets(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    packets: impl IntoIterator<Item = Packet>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    use futures_util::SinkExt;
    let mut out = bytes::BytesMut::new();
    for packet in packets {
        packet.write(&mut out, usize::MAX).unwrap();
    }
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        out.freeze(),
    ))
    .await
}

#[tokio::test]
async fn a_client_that_publishes_qos1_and_pings_but_never_reads_is_disconnected_loudly() {
    let (logs, _guard) = Captured::install();
    let b = broker_with(BrokerConfig {
        max_queued_messages: 64,
        ..BrokerConfig::default()
    })
    .await;
    let url = b.url();
    let mut watcher = connect(&url, "watcher").await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;
    let mut deaf = deaf_client(&b, "deaf", "will/deaf").await;

    // QoS 1 publishes (each owed a PUBACK) and PINGREQs (each owed a PINGRESP), to a topic
    // nobody subscribes to, in batches, never reading a reply: the broker must not queue
    // the replies without bound, but disconnect the client and fire its will.
    let mut pkid = 0u16;
    let flood = async {
        loop {
            let batch = (0..500).flat_map(|_| {
                pkid = pkid % u16::MAX + 1;
                let mut publish = rumqttc::Publish::new("deaf/t", QoS::AtLeastOnce, "x");
                publish.pkid = pkid;
                [Packet::Publish(publish), Packet::PingReq]
            });
            let batch: Vec<Packet> = batch.collect();
            if send_packets(&mut deaf, batch).await.is_err() {
                // The broker closed the connection: wait for the will.
                std::future::pending::<()>().await;
            }
        }
    };
    let will = async {
        loop {
            match watcher.events.recv().await {
                Some(crate::mqtt::Seen::Packet(Packet::Publish(will))) => return will,
                Some(crate::mqtt::Seen::Packet(_)) => {}
                other => panic!("the watcher's connection ended: {other:?}"),
            }
        }
    };
    let will = tokio::select! {
        will = tokio::time::timeout(crate::mqtt::DEADLINE, will) => will,
        () = flood => unreachable!(),
    };
    let will = will.expect("a client that never read its PUBACKs and PINGRESPs stayed connected");
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("will/deaf", &b"gone"[..])
    );
    let logs = logs.text();
    assert!(
        logs.contains("stopped reading") && logs.contains("deaf"),
        "no log line names the client that stopped reading:\n{logs}"
    );
}
