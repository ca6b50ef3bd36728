//! A plain `rumqttc` test client whose event loop runs in a task and reports what it sees,
//! so that tests can wait for packets with a deadline instead of sleeping.

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS, Transport};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long any single expectation may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What the client's event loop reported.
#[derive(Debug)]
pub enum Seen {
    Packet(Packet),
    /// The connection ended; the loop stops.
    Closed(String),
}

pub struct TestClient {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<Seen>,
    /// Release the event loop (a `paused` client does not read until this is sent).
    pub resume: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Options {
    pub will: Option<LastWill>,
    /// Stop polling the event loop after the first SUBACK until `resume` fires.
    pub pause_after_suback: bool,
    /// Pause this long after each PUBLISH received: a reader slower than the sender.
    pub read_delay: Option<Duration>,
    /// The keep-alive asked for in CONNECT (30 s unless set).
    pub keep_alive: Option<Duration>,
}

pub async fn connect(url: &str, id: &str) -> TestClient {
    connect_with(url, id, Options::default()).await
}

/// A client that stops reading after its first SUBACK (until `resume` fires).
pub async fn connect_paused(url: &str, id: &str) -> TestClient {
    let opts = Options {
        pause_after_suback: true,
        ..Options::default()
    };
    connect_with(url, id, opts).await
}

/// Log to the test's captured output; `RUST_LOG` selects what.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub async fn connect_with(url: &str, id: &str, opts: Options) -> TestClient {
    init_logging();
    let mut mqtt = MqttOptions::new(id, url, 0);
    mqtt.set_transport(Transport::Ws)
        .set_keep_alive(opts.keep_alive.unwrap_or(Duration::from_secs(30)))
        .set_max_packet_size(512 * 1024, 512 * 1024);
    if let Some(will) = opts.will {
        mqtt.set_last_will(will);
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, 4096);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let (tx, events) = mpsc::unbounded_channel();
    let (resume_tx, resume_rx) = tokio::sync::oneshot::channel();
    let pause = opts.pause_after_suback;
    let read_delay = opts.read_delay;
    let task = tokio::spawn(async move {
        let mut resume = Some(resume_rx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    let suback = matches!(packet, Packet::SubAck(_));
                    if let (Some(delay), Packet::Publish(_)) = (read_delay, &packet) {
                        tokio::time::sleep(delay).await;
                    }
                    if tx.send(Seen::Packet(packet)).is_err() {
                        return;
                    }
                    if suback && pause {
                        if let Some(resume) = resume.take() {
                            let _ = resume.await;
                        }
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    let _ = tx.send(Seen::Closed(e.to_string()));
                    return;
                }
            }
        }
    });
    let mut c = TestClient {
        client,
        events,
        resume: Some(resume_tx),
        task,
    };
    c.expect(|p| matches!(p, Packet::ConnAck(_))).await;
    c
}

impl TestClient {
    /// Wait for the next packet matching `want`, skipping others; panics on close or deadline.
    pub async fn expect(&mut self, want: impl Fn(&Packet) -> bool) -> Packet {
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                match self.events.recv().await {
                    Some(Seen::Packet(p)) if want(&p) => return p,
                    Some(Seen::Packet(_)) => {}
                    Some(Seen::Closed(e)) => panic!("connection closed while waiting: {e}"),
                    None => panic!("event loop gone while waiting"),
                }
            }
        })
        .await;
        found.expect("expected packet within the deadline")
    }

    /// The next PUBLISH received.
    pub async fn next_publish(&mut self) -> Publish {
        match self.expect(|p| matches!(p, Packet::Publish(_))).await {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// Subscribe and wait for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Packet {
        self.client.subscribe(filter, qos).await.unwrap();
        self.expect(|p| matches!(p, Packet::SubAck(_))).await
    }

    /// Wait until the connection closes; returns the reason. Panics on the deadline.
    pub async fn closed(&mut self) -> String {
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                match self.events.recv().await {
                    Some(Seen::Closed(e)) => return e,
                    Some(Seen::Packet(_)) => {}
                    None => return "event loop gone".to_string(),
                }
            }
        })
        .await;
        found.expect("connection closed within the deadline")
    }
}

/// Captures log lines of the current thread (the test's current-thread runtime runs the
/// broker's tasks too).
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Capture this thread's log lines until the guard is dropped.
    pub fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
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
