//! The broker's bounded outboxes: a client that stops reading is disconnected loudly (its
//! will fires) whatever it was sent, deliveries or the broker's own replies, and above the
//! soft bound its publishers are paced instead.

use crate::mqtt::{connect, connect_with, Options, TestClient};
use bridge::broker::{Broker, BrokerConfig};
use rumqttc::{Packet, QoS};
use std::time::Duration;

async fn broker_with(config: BrokerConfig) -> Broker {
    Broker::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("broker starts on an ephemeral port")
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
