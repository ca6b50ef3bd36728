//! The broker in quota mode enforces IoT Core's per-connection quotas as IoT Core does: over
//! 100 publishes a second (both ways together) the excess is discarded and counted, over
//! 512 KiB/s the excess is delayed and arrives whole, the 51st subscription and the 9th
//! filter of a SUBSCRIBE are refused, short keep-alives are raised to 30 s, and a duplicate
//! client id still takes over.

use crate::mqtt::{connect, connect_with, Captured, Options, Seen, DEADLINE};
use bridge::broker::{Broker, BrokerConfig, QuotaTotals, Quotas};
use rumqttc::{Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use std::time::{Duration, Instant};

async fn broker_with(quotas: Option<Quotas>) -> Broker {
    let config = BrokerConfig {
        quotas,
        ..BrokerConfig::default()
    };
    Broker::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("broker starts on an ephemeral port")
}

async fn quota_broker() -> Broker {
    broker_with(Some(Quotas::iot_core())).await
}

fn totals(broker: &Broker) -> QuotaTotals {
    broker.quota_totals().expect("the broker is in quota mode")
}

#[tokio::test]
async fn over_100_publishes_a_second_the_excess_is_discarded_counted_and_logged() {
    let (logs, _guard) = Captured::install();
    let b = quota_broker().await;
    let mut c = connect(&b.url(), "flooder").await;
    c.subscribe("flood", QoS::AtMostOnce).await;
    let total = 300u64;
    let started = Instant::now();
    for i in 0..total {
        c.client
            .publish("flood", QoS::AtMostOnce, false, i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    // Every publish is delivered or counted as discarded, one way or the other.
    let mut delivered = 0u64;
    let deadline = started + DEADLINE;
    loop {
        let t = totals(&b);
        if delivered + t.discarded_in + t.discarded_out == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} delivered and {t:?}: not all of {total} publishes accounted for"
        );
        match tokio::time::timeout(Duration::from_millis(100), c.events.recv()).await {
            Ok(Some(Seen::Packet(Packet::Publish(_)))) => delivered += 1,
            Ok(Some(Seen::Packet(_))) | Err(_) => {}
            Ok(Some(Seen::Closed(e))) => panic!("connection closed: {e}"),
            Ok(None) => panic!("event loop gone"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let t = totals(&b);
    assert!(t.discarded_in > 0, "nothing discarded inbound: {t:?}");
    assert!(delivered > 0, "nothing delivered at all: {t:?}");
    // Each delivered message took two of the connection's publishes (in and out): a burst of
    // 100 and 100 a second after it.
    let allowed = (100.0 + 100.0 * elapsed) / 2.0 + 2.0;
    assert!(
        (delivered as f64) <= allowed,
        "{delivered} delivered in {elapsed:.2} s: more than 100 publishes a second"
    );
    c.client.disconnect().await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = logs.text();
        if text.contains("quotas limited it") && text.contains("flooder") {
            assert!(
                text.contains(&format!("{} publishes discarded inbound", t.discarded_in)),
                "the log line does not count the discards:\n{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line names the limited client:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn within_100_publishes_a_second_nothing_is_lost_and_nothing_counted() {
    let b = quota_broker().await;
    let mut c = connect(&b.url(), "steady").await;
    c.subscribe("steady", QoS::AtLeastOnce).await;
    // 40 a second each way: 80 of the connection's 100.
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..100u32 {
        pace.tick().await;
        c.client
            .publish("steady", QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    for i in 0..100u32 {
        assert_eq!(c.next_publish().await.payload[..], i.to_be_bytes());
    }
    assert_eq!(totals(&b), QuotaTotals::default());
}

#[tokio::test]
async fn a_2_mib_burst_is_delayed_to_512_kib_a_second_and_arrives_whole() {
    let b = quota_broker().await;
    let url = b.url();
    let mut sub = connect(&url, "reader").await;
    sub.subscribe("bulk", QoS::AtMostOnce).await;
    let publisher = connect(&url, "writer").await;
    let started = Instant::now();
    for i in 0..16u8 {
        let payload = vec![i; 128 * 1024];
        publisher
            .client
            .publish("bulk", QoS::AtMostOnce, false, payload)
            .await
            .unwrap();
    }
    for i in 0..16u8 {
        let message = sub.next_publish().await;
        assert_eq!(message.payload.len(), 128 * 1024);
        assert!(
            message.payload.iter().all(|b| *b == i),
            "message {i} garbled"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(3500),
        "2 MiB arrived in {elapsed:?}: faster than 512 KiB/s"
    );
    let t = totals(&b);
    assert_eq!((t.discarded_in, t.discarded_out), (0, 0), "{t:?}");
    assert!(t.delayed_bytes > 0, "{t:?}");
    assert!(t.delayed >= Duration::from_secs(3), "{t:?}");
}

#[tokio::test]
async fn the_51st_subscription_and_the_9th_filter_of_a_subscribe_are_refused() {
    let b = quota_broker().await;
    let mut c = connect(&b.url(), "subscriber").await;
    let codes = |packet: Packet| match packet {
        Packet::SubAck(ack) => ack.return_codes,
        other => panic!("expected a SUBACK, got {other:?}"),
    };
    let nine = (0..9).map(|i| SubscribeFilter::new(format!("s/{i}"), QoS::AtLeastOnce));
    c.client.subscribe_many(nine).await.unwrap();
    let got = codes(c.expect(|p| matches!(p, Packet::SubAck(_))).await);
    assert_eq!(got.len(), 9);
    assert!(got[..8]
        .iter()
        .all(|c| matches!(c, SubscribeReasonCode::Success(_))));
    assert_eq!(got[8], SubscribeReasonCode::Failure, "the 9th filter");
    for i in 0..42 {
        let got = codes(c.subscribe(&format!("t/{i}"), QoS::AtMostOnce).await);
        assert!(
            matches!(got[..], [SubscribeReasonCode::Success(_)]),
            "subscription {} refused",
            9 + i
        );
    }
    let got = codes(c.subscribe("t/42", QoS::AtMostOnce).await);
    assert_eq!(got, [SubscribeReasonCode::Failure], "the 51st subscription");
    // Subscribing again to a filter it holds takes no new place.
    let got = codes(c.subscribe("s/0", QoS::AtMostOnce).await);
    assert!(matches!(got[..], [SubscribeReasonCode::Success(_)]));
    assert_eq!(totals(&b).subscriptions_refused, 2);
}

#[tokio::test]
async fn a_keep_alive_below_30_s_is_raised_to_30_s_in_quota_mode_only() {
    let quotas = quota_broker().await;
    let plain = broker_with(None).await;
    let silent = |url: String, id: &'static str| async move {
        let opts = Options {
            keep_alive: Some(Duration::from_secs(1)),
            pause_after_suback: true,
            ..Options::default()
        };
        let mut c = connect_with(&url, id, opts).await;
        c.subscribe("ka", QoS::AtMostOnce).await;
        c
    };
    let mut raised = silent(quotas.url(), "raised").await;
    let mut honoured = silent(plain.url(), "honoured").await;
    // Silent for twice 1.5 times the keep-alive asked for.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for b in [&quotas, &plain] {
        let p = connect(&b.url(), "pub").await;
        p.client
            .publish("ka", QoS::AtMostOnce, false, "still here")
            .await
            .unwrap();
        // A marker the publisher itself receives says the broker has routed the first.
        let mut p = p;
        p.subscribe("marker", QoS::AtMostOnce).await;
        p.client
            .publish("marker", QoS::AtMostOnce, false, "m")
            .await
            .unwrap();
        p.next_publish().await;
    }
    raised.resume.take().unwrap().send(()).unwrap();
    honoured.resume.take().unwrap().send(()).unwrap();
    assert_eq!(raised.next_publish().await.payload, "still here");
    honoured.closed().await;
}

#[tokio::test]
async fn a_duplicate_client_id_disconnects_the_older_connection_in_quota_mode() {
    let b = quota_broker().await;
    let mut old = connect(&b.url(), "twin").await;
    let mut new = connect(&b.url(), "twin").await;
    old.closed().await;
    new.subscribe("twin", QoS::AtMostOnce).await;
    new.client
        .publish("twin", QoS::AtMostOnce, false, "one")
        .await
        .unwrap();
    assert_eq!(new.next_publish().await.payload, "one");
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A raw MQTT-over-WebSocket client connected as `id`: it acknowledges nothing unless told.
async fn raw_client(b: &Broker, id: &str) -> (RawWs, bytes::BytesMut) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = b.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let stream = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let mut connect = rumqttc::Connect::new(id);
    connect.keep_alive = 60;
    send(&mut ws, Packet::Connect(connect)).await;
    let mut buf = bytes::BytesMut::new();
    let connack = next_packet(&mut ws, &mut buf, DEADLINE).await;
    assert!(matches!(connack, Some(Packet::ConnAck(_))), "{connack:?}");
    (ws, buf)
}

async fn send(ws: &mut RawWs, packet: Packet) {
    use futures_util::SinkExt;
    let mut out = bytes::BytesMut::new();
    packet.write(&mut out, usize::MAX).unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        out.freeze(),
    ))
    .await
    .unwrap();
}

/// The next packet the broker sends within `wait`, `None` if none comes.
async fn next_packet(ws: &mut RawWs, buf: &mut bytes::BytesMut, wait: Duration) -> Option<Packet> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match Packet::read(buf, usize::MAX) {
            Ok(packet) => return Some(packet),
            Err(rumqttc::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("malformed packet from the broker: {e}"),
        }
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Binary(data)))) => buf.extend_from_slice(&data),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the connection ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn qos1_deliveries_beyond_the_unacknowledged_window_wait_for_a_puback() {
    let b = broker_with(Some(Quotas {
        max_unacked: 10,
        ..Quotas::iot_core()
    }))
    .await;
    let (mut ws, mut buf) = raw_client(&b, "no-acks").await;
    let filter = SubscribeFilter::new("q1".into(), QoS::AtLeastOnce);
    send(
        &mut ws,
        Packet::Subscribe(rumqttc::Subscribe::new_many([filter])),
    )
    .await;
    let suback = next_packet(&mut ws, &mut buf, DEADLINE).await;
    assert!(matches!(suback, Some(Packet::SubAck(_))), "{suback:?}");
    let publisher = connect(&b.url(), "q1-pub").await;
    for i in 0..20u8 {
        publisher
            .client
            .publish("q1", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut received = Vec::new();
    let window = |received: &mut Vec<u16>, packet: Option<Packet>, i: u8| match packet {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.payload[..], [i], "in order");
            received.push(p.pkid);
        }
        other => panic!("expected delivery {i}, got {other:?}"),
    };
    for i in 0..10 {
        let packet = next_packet(&mut ws, &mut buf, DEADLINE).await;
        window(&mut received, packet, i);
    }
    // The 11th waits for an acknowledgement.
    let early = next_packet(&mut ws, &mut buf, Duration::from_millis(500)).await;
    assert!(early.is_none(), "sent beyond the window: {early:?}");
    for pkid in &received[..5] {
        send(&mut ws, Packet::PubAck(rumqttc::PubAck::new(*pkid))).await;
    }
    for i in 10..15 {
        let packet = next_packet(&mut ws, &mut buf, DEADLINE).await;
        window(&mut received, packet, i);
    }
    let early = next_packet(&mut ws, &mut buf, Duration::from_millis(300)).await;
    assert!(early.is_none(), "sent beyond the window: {early:?}");
    for pkid in &received[5..15] {
        send(&mut ws, Packet::PubAck(rumqttc::PubAck::new(*pkid))).await;
    }
    for i in 15..20 {
        let packet = next_packet(&mut ws, &mut buf, DEADLINE).await;
        window(&mut received, packet, i);
    }
    assert!(totals(&b).is_zero(), "{:?}", totals(&b));
}
