//! The bridge connection over the embedded broker: chunked messages end to end, their topics
//! parsed, presence with its will, presence records kept tidy (over WebSocket and in-process),
//! a presence record always one whole message (or the session refused), reconnection with
//! resubscription after the broker restarts, and the in-process connection meeting WebSocket
//! clients on the same broker.

use bridge::broker::{Broker, BrokerConfig};
use bridge::topics::Topic;
use bridge::transport::{ConnectOptions, Connection, Link};
use bridge::{DevMessage, Presence, StubMessage, Topics};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn broker_on(addr: SocketAddr) -> Broker {
    Broker::start(addr, BrokerConfig::default()).await.unwrap()
}

fn presence_for(topics: Topics, session: &str) -> bridge::transport::PresenceFn {
    bridge::transport::session_presence(&topics, session, vec!["hello".into()]).unwrap()
}

/// Options for developer session `session` on `b`: client id `dev-{session}`, with presence.
fn session_options(b: &Broker, topics: &Topics, session: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(b.url(), format!("dev-{session}"));
    options.presence = Some(presence_for(topics.clone(), session));
    options
}

async fn open(url: &str, id: &str, subs: Vec<String>) -> Connection {
    let mut options = ConnectOptions::new(url, id);
    options.subscriptions = subs;
    let mut c = Connection::open(options).unwrap();
    c.ready(WAIT).await.unwrap();
    c
}

/// The next frame `c` receives, within [`WAIT`].
async fn next(c: &mut Connection) -> bridge::transport::Received {
    tokio::time::timeout(WAIT, c.recv()).await.unwrap().unwrap()
}

/// A 6 MB message (47 chunks) sent by `from` on `topic` (session s1's invocations) reaches
/// `to` whole, its topic parsed.
async fn six_megabytes_arrive_whole(from: &Connection, to: &mut Connection, topic: &str) {
    let body: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
    let msg = StubMessage::Probe {
        request_id: "r".into(),
        env_id: "e1".into(),
    };
    from.send(topic, &msg, &body).await.unwrap();
    let got = next(to).await;
    let s1 = "s1".to_string();
    assert_eq!(got.topic, Topic::Invocations { session: s1 });
    assert_eq!(got.frame.parse::<StubMessage>().unwrap(), msg);
    assert!(got.frame.body == body);
    assert_eq!(to.rejected(), 0);
}

#[tokio::test]
async fn a_six_megabyte_message_crosses_the_broker_intact() {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let topics = Topics::new("app", "dev").unwrap();
    let inv = topics.invocations("s1").unwrap();
    let mut dev = open(&b.url(), "dev", vec![inv.clone()]).await;
    let stub = open(&b.url(), "stub", vec![]).await;
    six_megabytes_arrive_whole(&stub, &mut dev, &inv).await;
}

#[tokio::test]
async fn an_in_process_connection_meets_websocket_clients_with_presence_and_will() {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let topics = Topics::new("app", "dev").unwrap();
    let inv = topics.invocations("s1").unwrap();
    let results = topics.results("env1").unwrap();
    let mut watcher = open(&b.url(), "watcher", vec![topics.presence_filter()]).await;
    let mut stub = open(&b.url(), "stub", vec![results.clone()]).await;

    let mut options = session_options(&b, &topics, "s1");
    options.subscriptions = vec![inv.clone()];
    let mut dev = Connection::open_local(options, &b.local());
    dev.ready(WAIT).await.unwrap();
    let online: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert!(online.online && online.session == "s1");

    // A chunked message from a WebSocket client arrives whole, and an answer goes back.
    six_megabytes_arrive_whole(&stub, &mut dev, &inv).await;
    let answer = DevMessage::Ack {
        request_id: "r".into(),
    };
    dev.sender().send(&results, &answer, b"ok").await.unwrap();
    let back = next(&mut stub).await;
    assert_eq!(back.frame.parse::<DevMessage>().unwrap(), answer);
    assert_eq!(&back.frame.body[..], b"ok");

    // Dropped without closing: the will marks the session offline.
    drop(dev);
    let offline: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert!(!offline.online && offline.supersedes(&online));
}

#[tokio::test]
async fn presence_is_retained_and_its_will_marks_a_dropped_session_offline() {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let topics = Topics::new("app", "dev").unwrap();
    let mut dev = Connection::open(session_options(&b, &topics, "s1")).unwrap();
    dev.ready(WAIT).await.unwrap();

    let mut watcher = open(&b.url(), "watcher", vec![topics.presence_filter()]).await;
    let online = next(&mut watcher).await;
    let online: Presence = online.frame.parse().unwrap();
    assert!(online.online && online.session == "s1");

    drop(dev); // the task is aborted: the socket closes without DISCONNECT
    let offline = next(&mut watcher).await;
    let offline: Presence = offline.frame.parse().unwrap();
    assert!(!offline.online);
    assert!(
        offline.supersedes(&online),
        "the will must win over its own online record"
    );
}

#[tokio::test]
async fn a_session_closed_cleanly_goes_offline_and_leaves_no_retained_record() {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let topics = Topics::new("app", "dev").unwrap();
    let mut watcher = open(&b.url(), "watcher", vec![topics.presence_filter()]).await;
    let session = |id: &str| Connection::open(session_options(&b, &topics, id)).unwrap();
    let mut s1 = session("s1");
    s1.ready(WAIT).await.unwrap();
    let online: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert!(online.online && online.session == "s1");

    s1.close().await;
    let offline: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert!(!offline.online && offline.session == "s1");
    // Another session comes online after it: the clearing between them is no error.
    let mut s2 = session("s2");
    s2.ready(WAIT).await.unwrap();
    let other: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert_eq!(other.session, "s2");
    assert_eq!(watcher.rejected(), 0);

    // Someone joining now is told of s2 only (retained records come in topic order, so a
    // record left by s1 would come first).
    let mut late = open(&b.url(), "late", vec![topics.presence_filter()]).await;
    let first: Presence = next(&mut late).await.frame.parse().unwrap();
    assert_eq!(first.session, "s2");
}

/// Assert that someone subscribing to presence now is sent the retained records
/// `expected` ((session, online), in topic order), polling for [`WAIT`] until it is so.
async fn assert_retained(b: &Broker, topics: &Topics, expected: &[(&str, bool)]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut late = open(&b.url(), "late", vec![topics.presence_filter()]).await;
        let mut records = Vec::new();
        // Retained records come right after the subscription; a quiet 100 ms ends them.
        while let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(100), late.recv()).await
        {
            let p: Presence = got.frame.parse().unwrap();
            records.push((p.session, p.online));
        }
        late.close().await;
        let got: Vec<(&str, bool)> = records.iter().map(|(s, o)| (s.as_str(), *o)).collect();
        if got == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retained {got:?}, not {expected:?}"
        );
    }
}

#[tokio::test]
async fn the_next_session_clears_the_record_a_crashed_session_left() {
    clears_a_crashed_sessions_record(true).await;
}

#[tokio::test]
async fn the_next_session_over_websocket_clears_it_too() {
    clears_a_crashed_sessions_record(false).await;
}

/// Session s1 crashes, leaving its offline will retained; s2 (in-process, as `live dev` joins
/// its embedded broker, or over WebSocket) clears it as it joins.
async fn clears_a_crashed_sessions_record(in_process: bool) {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let topics = Topics::new("app", "dev").unwrap();
    let mut s1 = Connection::open(session_options(&b, &topics, "s1")).unwrap();
    s1.ready(WAIT).await.unwrap();
    drop(s1); // crashed: its will marks it offline, retained
    assert_retained(&b, &topics, &[("s1", false)]).await;

    let options = session_options(&b, &topics, "s2");
    let mut s2 = if in_process {
        Connection::open_local(options, &b.local())
    } else {
        Connection::open(options).unwrap()
    };
    s2.ready(WAIT).await.unwrap();
    assert_retained(&b, &topics, &[("s2", true)]).await;

    // Closed: its own offline and cleared records come back to it, and are not undone.
    s2.close().await;
    assert_retained(&b, &topics, &[]).await;
}

#[tokio::test]
async fn a_session_puts_back_its_record_when_it_finds_it_cleared_unreadable_or_offline() {
    puts_back_its_record(false).await;
}

#[tokio::test]
async fn an_in_process_session_puts_back_its_record_too() {
    puts_back_its_record(true).await;
}

/// Session s1 (over WebSocket, or `in_process`) finds its record cleared, marked offline by a
/// stale will, then unreadable, and puts it back each time; once closed, it does not.
async fn puts_back_its_record(in_process: bool) {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let topics = Topics::new("app", "dev").unwrap();
    let options = session_options(&b, &topics, "s1");
    let mut s1 = if in_process {
        Connection::open_local(options, &b.local())
    } else {
        Connection::open(options).unwrap()
    };
    s1.ready(WAIT).await.unwrap();
    let mut watcher = open(&b.url(), "watcher", vec![topics.presence_filter()]).await;
    let online: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert!(online.online && online.session == "s1");
    let topic = topics.presence("s1").unwrap();
    let other = open(&b.url(), "other", vec![]).await;

    // Cleared, as another session clears an offline record while s1 reconnects: the
    // watcher does not see the empty record, then sees s1 online again.
    other
        .publish(&topic, Bytes::new(), rumqttc::QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let back: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert_eq!(back, online);

    // Marked offline by a late will of an earlier connection.
    let (_, _, stale) = presence_for(topics.clone(), "s1")(1);
    other
        .publish(&topic, stale, rumqttc::QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let offline: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert!(!offline.online && offline.epoch == 1);
    let back: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert_eq!(back, online);

    // Overwritten with something unreadable.
    other
        .publish(
            &topic,
            Bytes::from_static(b"garbage"),
            rumqttc::QoS::AtLeastOnce,
            true,
        )
        .await
        .unwrap();
    let back: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert_eq!(back, online);
    assert_eq!(watcher.rejected(), 1);
    assert_retained(&b, &topics, &[("s1", true)]).await;

    // Closed: its offline record goes out and is then cleared, and is not put back (not
    // even a little later: a put-back would follow the records `close` published).
    s1.close().await;
    assert_retained(&b, &topics, &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_retained(&b, &topics, &[]).await;
}

#[tokio::test]
async fn the_connection_comes_back_and_resubscribes_after_the_broker_restarts() {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let addr = b.local_addr();
    let topics = Topics::new("app", "dev").unwrap();
    let res = topics.results("env1").unwrap();
    let mut stub = open(&b.url(), "stub", vec![res.clone()]).await;
    let mut link = stub.link();
    b.shutdown().await.unwrap();
    tokio::time::timeout(WAIT, link.wait_for(|l| *l == Link::Down))
        .await
        .unwrap()
        .unwrap();
    let b = broker_on(addr).await;
    let generation = stub.ready(WAIT).await.unwrap();
    assert_eq!(generation, 2);
    let dev = open(&b.url(), "dev", vec![]).await;
    let msg = DevMessage::Ack {
        request_id: "r".into(),
    };
    dev.send(&res, &msg, b"").await.unwrap();
    let got = next(&mut stub).await;
    assert_eq!(got.frame.parse::<DevMessage>().unwrap(), msg);
    assert_eq!(got.generation, 2, "it came on the second connection");
}

#[tokio::test]
async fn garbage_on_a_bridge_topic_is_dropped_and_counted() {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let mut dev = open(&b.url(), "dev", vec!["live/app/dev/#".into()]).await;
    let other = open(&b.url(), "other", vec![]).await;
    other
        .publish(
            "live/app/dev/x",
            Bytes::from_static(b"garbage"),
            rumqttc::QoS::AtLeastOnce,
            false,
        )
        .await
        .unwrap();
    let msg = DevMessage::Ack {
        request_id: "after".into(),
    };
    other.send("live/app/dev/x", &msg, b"").await.unwrap();
    let got = next(&mut dev).await;
    assert_eq!(got.frame.parse::<DevMessage>().unwrap(), msg);
    assert_eq!(dev.rejected(), 1);
}

/// `count` function names of the longest length a name may have.
fn long_names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{i:0>64}")).collect()
}

#[tokio::test]
async fn a_presence_record_too_large_for_one_message_is_refused_at_session_start() {
    // A retained record is one MQTT message: 2,000 functions of the longest names do not fit
    // one. Before, the session started and published the record's first chunk, which no
    // reader takes for a record, and put it back every time it read it.
    let topics = Topics::new("app", "dev").unwrap();
    let refused = bridge::transport::session_presence(&topics, "s1", long_names(2_000));
    let message = refused.err().expect("refused").to_string();
    assert!(
        message.contains("131072 bytes") && message.contains("2000 functions"),
        "{message}"
    );
}

#[tokio::test]
async fn the_largest_presence_record_arrives_whole_and_a_chunked_one_is_never_read() {
    crate::mqtt::init_logging();
    let b = broker_on("127.0.0.1:0".parse().unwrap()).await;
    let topics = Topics::new("app", "dev").unwrap();
    let mut watcher = open(&b.url(), "watcher", vec![topics.presence_filter()]).await;
    for in_process in [false, true] {
        let session = if in_process { "s2" } else { "s1" };
        let mut options = ConnectOptions::new(b.url(), format!("dev-{session}"));
        let presence = bridge::transport::session_presence(&topics, session, long_names(1_950));
        options.presence = Some(presence.unwrap());
        let mut dev = if in_process {
            Connection::open_local(options, &b.local())
        } else {
            Connection::open(options).unwrap()
        };
        dev.ready(WAIT).await.unwrap();
        let online: Presence = next(&mut watcher).await.frame.parse().unwrap();
        assert_eq!((online.session.as_str(), online.online), (session, true));
        assert_eq!(online.functions, long_names(1_950));
        dev.close().await;
        let offline: Presence = next(&mut watcher).await.frame.parse().unwrap();
        assert!(!offline.online);
    }
    assert_eq!(watcher.rejected(), 0);

    // A record sent in chunks (not as a session sends one): no chunk is taken for a record.
    let other = open(&b.url(), "other", vec![]).await;
    let chunked = Presence {
        session: "s3".into(),
        online: true,
        epoch: 1,
        version: bridge::PROTOCOL_VERSION,
        functions: long_names(2_000),
        lanes: 1,
    };
    let topic = topics.presence("s3").unwrap();
    let chunks = bridge::wire::encode(&chunked, b"").unwrap();
    assert_eq!(chunks.len(), 2);
    for chunk in chunks {
        other
            .publish(&topic, chunk, rumqttc::QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    other
        .send(
            &topic,
            &Presence {
                functions: vec![],
                lanes: 1,
                ..chunked
            },
            b"",
        )
        .await
        .unwrap();
    let got: Presence = next(&mut watcher).await.frame.parse().unwrap();
    assert!(got.functions.is_empty(), "the chunked record was read");
    assert_eq!(watcher.rejected(), 2);
}
