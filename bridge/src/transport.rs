//! The bridge's client connection: MQTT 3.1.1 over WebSocket on `rumqttc`, with TCP_NODELAY,
//! packet limits raised above IoT Core's payload limit, reconnection with backoff and jitter,
//! resubscription after every CONNACK, a retained presence record with a matching last will,
//! and a hook that rewrites each connection attempt's HTTP request (for SigV4 presigning).
//!
//! Callers `send` messages and `recv` reassembled frames; chunking, keep-alive and size
//! limits stay inside. A side that announces presence also keeps its stage's presence
//! records tidy: it clears the offline records other sessions left, and puts its own
//! record back when it finds it cleared, unreadable or marked offline while it is
//! connected. A process that hosts the broker itself joins it in-process instead
//! (`Connection::open_local`, feature `broker`): the same session, presence and will, no
//! socket.

use crate::protocol::MAX_MQTT_PAYLOAD;
use crate::wire::{encode, Frame, ProtocolError, Reassembler};
use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, SubscribeFilter, Transport,
};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Rewrites the WebSocket upgrade request of every connection attempt (path, query, headers),
/// for example to presign it afresh with SigV4.
pub type RequestSigner = Arc<
    dyn Fn(http::Request<()>) -> Pin<Box<dyn Future<Output = http::Request<()>> + Send>>
        + Send
        + Sync,
>;

/// Builds a connection's presence records for its epoch: `(topic, online, offline)`. The
/// online record is published retained after every CONNACK; the offline one is the will.
/// The topic ends in the session's own level (`.../presence/{session}`).
pub type PresenceFn = Arc<dyn Fn(u64) -> (String, Bytes, Bytes) + Send + Sync>;

/// The presence records of developer session `session` serving `functions` (none listed:
/// every function), for [`ConnectOptions::presence`].
pub fn session_presence(
    topics: &crate::Topics,
    session: &str,
    functions: Vec<String>,
) -> Result<PresenceFn, crate::topics::TopicError> {
    let topic = topics.presence(session)?;
    let session = session.to_string();
    Ok(Arc::new(move |epoch| {
        let record = |online| {
            let p = crate::Presence {
                session: session.clone(),
                online,
                epoch,
                version: crate::PROTOCOL_VERSION,
                functions: functions.clone(),
            };
            encode(&p, b"")
                .expect("a presence record fits one frame")
                .remove(0)
        };
        (topic.clone(), record(true), record(false))
    }))
}

/// The packet size limit set on the client: a maximal payload plus a maximal topic, rounded up.
const CLIENT_MAX_PACKET: usize = 2 * MAX_MQTT_PAYLOAD;

/// Frames received but not yet taken by `recv`.
const INCOMING_QUEUE: usize = 1024;

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `ws://host:port/path` or `wss://host/path`.
    pub url: String,
    /// The MQTT client id; a second connection with the same id takes over this one.
    pub client_id: String,
    /// MQTT keep-alive: how soon a dead connection is noticed by either side.
    pub keep_alive: Duration,
    /// Topic filters subscribed (QoS 1) after every CONNACK.
    pub subscriptions: Vec<String>,
    /// Presence records for each connection, if this side announces itself.
    pub presence: Option<PresenceFn>,
    /// Rewrites each connection attempt's request.
    pub signer: Option<RequestSigner>,
    /// User name and password for brokers that require them.
    pub credentials: Option<(String, String)>,
    /// The first delay before reconnecting; it doubles up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    /// The longest delay between reconnection attempts.
    pub max_backoff: Duration,
}

impl ConnectOptions {
    /// The filters subscribed after every CONNACK: the caller's, and for a side that
    /// announces presence, every presence record of its stage (to keep them tidy).
    fn filters(&self) -> Vec<String> {
        let mut filters = self.subscriptions.clone();
        if let Some(presence) = &self.presence {
            let filter = presence_filter(&presence(0).0);
            if !filters.contains(&filter) {
                filters.push(filter);
            }
        }
        filters
    }

    /// Options with the defaults: 30 s keep-alive, backoff 50 ms to 2 s.
    pub fn new(url: impl Into<String>, client_id: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            client_id: client_id.into(),
            keep_alive: Duration::from_secs(30),
            subscriptions: Vec::new(),
            presence: None,
            signer: None,
            credentials: None,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// The state of the link to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Not connected yet, or reconnecting.
    Down,
    /// Connected and subscribed; `generation` counts connections since `open`.
    Up {
        /// 1 for the first connection, then one more per reconnection.
        generation: u64,
    },
    /// Closed for good: the connection was dropped or closed.
    Closed,
}

/// What went wrong on the connection.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The message cannot be framed (too large, for instance).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("broker URL {0:?} is not a ws:// or wss:// URL")]
    BadUrl(String),
    /// A `wss://` URL: this build speaks plain `ws://` only.
    #[error("broker URL {0:?} needs TLS, which this build of live does not have yet: use a ws:// broker (`live broker`, `live cloud`)")]
    TlsUnsupported(String),
    /// The broker refuses the publish (over its limits); only an in-process connection
    /// hears why, a broker closes a WebSocket client's connection instead.
    #[error("the broker refuses the message: {0}")]
    Refused(String),
    /// The connection is closed for good.
    #[error("the bridge connection is closed")]
    Closed,
    /// The link did not come up in time.
    #[error("could not reach the broker at {url} within {waited:?}: {last_error}")]
    Unreachable {
        /// The broker URL.
        url: String,
        /// How long it tried.
        waited: Duration,
        /// The last error seen.
        last_error: String,
    },
}

/// One frame received, with the topic it arrived on.
#[derive(Debug, Clone)]
pub struct Received {
    /// The topic the frame arrived on.
    pub topic: String,
    /// The reassembled frame.
    pub frame: Frame,
    /// The connection it arrived on, counted as [`Link::Up`] counts them: what a side learns
    /// from retained records (presence) holds from the connection they came on.
    pub generation: u64,
}

/// How a connection reaches its broker: over WebSocket (`rumqttc`), or, for a broker in this
/// process, straight into its router.
#[derive(Clone)]
enum Client {
    Mqtt(AsyncClient),
    #[cfg(feature = "broker")]
    Local(Arc<crate::broker::LocalSession>),
}

impl Client {
    async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        match self {
            Client::Mqtt(client) => client
                .publish_bytes(topic, qos, retain, payload)
                .await
                .map_err(|_| TransportError::Closed),
            #[cfg(feature = "broker")]
            Client::Local(session) => session
                .publish(topic, qos, retain, payload)
                .await
                .map_err(TransportError::Refused),
        }
    }

    async fn disconnect(&self) {
        match self {
            Client::Mqtt(client) => {
                let _ = client.disconnect().await;
            }
            #[cfg(feature = "broker")]
            Client::Local(session) => session.disconnect(true),
        }
    }
}

/// A live connection to the broker, reconnecting in the background until closed.
pub struct Connection {
    client: Client,
    incoming: mpsc::Receiver<Received>,
    link: watch::Receiver<Link>,
    last_error: watch::Receiver<String>,
    rejected: Arc<AtomicU64>,
    presence_topic: Option<(String, PresenceFn)>,
    epoch: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    url: String,
    task: JoinHandle<()>,
}

impl Connection {
    /// Start connecting in the background; [`Connection::ready`] waits for the link.
    pub fn open(options: ConnectOptions) -> Result<Connection, TransportError> {
        let transport = match options.url.split("://").next() {
            Some("ws") => Transport::Ws,
            // TLS comes with the IoT Core transport, on the tree's one rustls and crypto
            // provider (rumqttc's own TLS would pull a second rustls-webpki and aws-lc-rs).
            Some("wss") => return Err(TransportError::TlsUnsupported(options.url)),
            _ => return Err(TransportError::BadUrl(options.url)),
        };
        let mut mqtt = MqttOptions::new(options.client_id.clone(), options.url.clone(), 0);
        mqtt.set_transport(transport)
            .set_keep_alive(options.keep_alive)
            .set_max_packet_size(CLIENT_MAX_PACKET, CLIENT_MAX_PACKET)
            .set_clean_session(true);
        if let Some((user, pass)) = &options.credentials {
            mqtt.set_credentials(user, pass);
        }
        if let Some(signer) = options.signer.clone() {
            mqtt.set_request_modifier(move |req| signer(req));
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, INCOMING_QUEUE);
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let mqtt_client = Client::Mqtt(client.clone());
        Ok(Connection::assemble(&options, 0, mqtt_client, |started| {
            let driver = Driver {
                client,
                options: options.clone(),
                link: started.link,
                last_error: started.last_error,
                epoch: started.epoch,
            };
            tokio::spawn(driver.run(eventloop, started.inbound))
        }))
    }

    /// Join a broker running in this process without a socket: the same session,
    /// subscriptions, presence and will as [`Connection::open`], without WebSocket framing,
    /// MQTT encoding and two loopback hops per message. The link comes up at once and stays
    /// up until closed (a broker in this process does not go away on its own).
    #[cfg(feature = "broker")]
    pub fn open_local(options: ConnectOptions, broker: &crate::broker::LocalBroker) -> Connection {
        let epoch = epoch_after(0);
        let will = options.presence.as_ref().map(|presence| {
            let (topic, _, offline) = presence(epoch);
            LastWill::new(topic, offline, QoS::AtLeastOnce, true)
        });
        let (session, inbox) = broker.connect(&options.client_id, will);
        let session = Arc::new(session);
        let local_client = Client::Local(session.clone());
        Connection::assemble(&options, epoch, local_client, |started| {
            started.last_error.send_replace("in-process".into());
            tokio::spawn(run_local(
                session,
                inbox,
                options.clone(),
                started.epoch,
                started.inbound,
                started.link,
            ))
        })
    }

    /// What both kinds of connection share: the channels to the caller, the counters, the
    /// presence state; `start` starts the task that runs the connection.
    fn assemble(
        options: &ConnectOptions,
        epoch: u64,
        client: Client,
        start: impl FnOnce(Started) -> JoinHandle<()>,
    ) -> Connection {
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        let (link_tx, link) = watch::channel(Link::Down);
        let (error_tx, last_error) = watch::channel(String::from("not tried yet"));
        let rejected = Arc::new(AtomicU64::new(0));
        let epoch = Arc::new(AtomicU64::new(epoch));
        let closing = Arc::new(AtomicBool::new(false));
        let task = start(Started {
            inbound: Inbound::new(options, incoming_tx, rejected.clone(), &epoch, &closing),
            link: link_tx,
            last_error: error_tx,
            epoch: epoch.clone(),
        });
        Connection {
            client,
            incoming,
            link,
            last_error,
            rejected,
            presence_topic: options.presence.clone().map(|p| (p(0).0, p.clone())),
            epoch,
            closing,
            url: options.url.clone(),
            task,
        }
    }

    /// Wait until the link is up (connected and subscribed), at most `timeout`.
    pub async fn ready(&mut self, timeout: Duration) -> Result<u64, TransportError> {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                match *self.link.borrow_and_update() {
                    Link::Up { generation } => return Ok(generation),
                    Link::Closed => return Err(TransportError::Closed),
                    Link::Down => {}
                }
                if self.link.changed().await.is_err() {
                    return Err(TransportError::Closed);
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(TransportError::Unreachable {
                url: self.url.clone(),
                waited: timeout,
                last_error: self.last_error.borrow().clone(),
            })
        })
    }

    /// The link's state, to watch.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }

    /// The last error the connection met (a refused login, a failed connect), to watch: what
    /// to tell a user who waits for a link that does not come up.
    pub fn last_error(&self) -> watch::Receiver<String> {
        self.last_error.clone()
    }

    /// Payloads dropped because they were not valid bridge frames (garbage, wrong version,
    /// bad chunks, timeouts).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// A handle that sends on this connection, for other tasks.
    pub fn sender(&self) -> Sender {
        Sender {
            client: self.client.clone(),
        }
    }

    /// [`Sender::send`] on this connection.
    pub async fn send<M: Serialize>(
        &self,
        topic: &str,
        message: &M,
        body: &[u8],
    ) -> Result<(), TransportError> {
        self.sender().send(topic, message, body).await
    }

    /// Publish one raw MQTT payload.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<(), TransportError> {
        self.sender().publish(topic, payload, qos, retain).await
    }

    /// The next frame received, or `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Received> {
        self.incoming.recv().await
    }

    /// Close cleanly: mark this side offline (no will is sent on a clean disconnect), clear
    /// its retained record (those listening have just read it is offline; those that join
    /// later need not read it at all, so a stage does not collect one record for every
    /// session ever run), then disconnect and stop reconnecting.
    pub async fn close(mut self) {
        // Its own offline and cleared records come back to it; they are not to be undone.
        self.closing.store(true, Ordering::Relaxed);
        if let Some((topic, presence)) = &self.presence_topic {
            let (_, _, offline) = presence(self.epoch.load(Ordering::Relaxed));
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, offline)
                .await;
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, Bytes::new())
                .await;
        }
        self.client.disconnect().await;
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Sends on a [`Connection`] from any task; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    client: Client,
}

impl Sender {
    /// Frame `message` and `body` and publish it, in chunks when large, at QoS 0: the bridge
    /// protocol recovers losses end to end (the stub re-sends an invocation until the
    /// developer side acknowledges it, then probes for its result), so a PUBACK per hop would
    /// only add messages to every invocation.
    pub async fn send<M: Serialize>(
        &self,
        topic: &str,
        message: &M,
        body: &[u8],
    ) -> Result<(), TransportError> {
        for payload in encode(message, body)? {
            self.publish(topic, payload, QoS::AtMostOnce, false).await?;
        }
        Ok(())
    }

    /// Publish one raw MQTT payload.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<(), TransportError> {
        self.client.publish(topic, qos, retain, payload).await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the task running a connection is given.
struct Started {
    inbound: Inbound,
    link: watch::Sender<Link>,
    last_error: watch::Sender<String>,
    epoch: Arc<AtomicU64>,
}

/// The background task that polls the event loop and reconnects.
struct Driver {
    client: AsyncClient,
    options: ConnectOptions,
    link: watch::Sender<Link>,
    last_error: watch::Sender<String>,
    epoch: Arc<AtomicU64>,
}

impl Driver {
    async fn run(self, mut eventloop: EventLoop, mut inbound: Inbound) {
        let mut backoff = self.options.min_backoff;
        let mut generation = 0;
        self.arm_will(&mut eventloop);
        loop {
            // `poll` is never raced against a timer: dropping it mid-connect would lose the
            // connection and open a second one. Partial messages are swept between events
            // instead (keep-alive pings guarantee events).
            let event = eventloop.poll().await;
            inbound.sweep();
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        let _ = self
                            .last_error
                            .send(format!("broker refused: {:?}", ack.code));
                        tracing::warn!(url = %self.options.url, "broker refused the connection: {:?}", ack.code);
                        backoff = self.pause(backoff, &mut eventloop).await;
                        continue;
                    }
                    generation += 1;
                    backoff = self.options.min_backoff;
                    self.on_connack(generation);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = self.link.send(Link::Up { generation });
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    match inbound.deliver(publish, generation).await {
                        Delivered::Passed => {}
                        Delivered::Stop => break,
                        Delivered::Tidy(tidy) => {
                            if tidy.still_wanted() {
                                let published = self.client.try_publish(
                                    &tidy.topic,
                                    QoS::AtLeastOnce,
                                    true,
                                    tidy.payload.to_vec(),
                                );
                                if let Err(e) = published {
                                    tracing::warn!(topic = %tidy.topic, "could not tidy a presence record: {e}");
                                }
                            }
                        }
                    }
                }
                // `close` asked for it (the DISCONNECT is flushed): no reconnection, and so no
                // will from the connection it would leave behind. Read on until the broker
                // closes (a second at most): dropping the socket with acknowledgements unread
                // would reset it, which a broker may take for a dropped connection.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    let drain = async { while eventloop.poll().await.is_ok() {} };
                    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                    break;
                }
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => break,
                Err(e) => {
                    let _ = self.link.send(Link::Down);
                    let _ = self.last_error.send(e.to_string());
                    tracing::debug!(url = %self.options.url, "bridge connection lost: {e}");
                    backoff = self.pause(backoff, &mut eventloop).await;
                }
            }
        }
        let _ = self.link.send(Link::Closed);
    }

    /// After a CONNACK: resubscribe (clean sessions forget subscriptions) and announce.
    fn on_connack(&self, generation: u64) {
        if let Some(presence) = &self.options.presence {
            let (topic, online, _) = presence(self.epoch.load(Ordering::Relaxed));
            let _ = self
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, online.to_vec());
        }
        let filters = self.options.filters();
        if filters.is_empty() {
            let _ = self.link.send(Link::Up { generation });
        } else {
            let filters = filters
                .into_iter()
                .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
            let _ = self.client.try_subscribe_many(filters);
        }
    }

    /// Wait out a jittered backoff, re-arm the will for the next connection, return the next
    /// backoff.
    async fn pause(&self, backoff: Duration, eventloop: &mut EventLoop) -> Duration {
        tokio::time::sleep(jitter(backoff)).await;
        self.arm_will(eventloop);
        (backoff * 2).min(self.options.max_backoff)
    }

    /// Give the next connection a fresh epoch and the matching offline will.
    fn arm_will(&self, eventloop: &mut EventLoop) {
        let Some(presence) = &self.options.presence else {
            return;
        };
        let epoch = epoch_after(self.epoch.load(Ordering::Relaxed));
        self.epoch.store(epoch, Ordering::Relaxed);
        let (topic, _, offline) = presence(epoch);
        eventloop
            .mqtt_options
            .set_last_will(LastWill::new(topic, offline, QoS::AtLeastOnce, true));
    }
}

/// An in-process connection's life: announce and subscribe after the CONNACK, then
/// reassemble what arrives, until the connection is closed or taken over.
#[cfg(feature = "broker")]
async fn run_local(
    session: Arc<crate::broker::LocalSession>,
    mut inbox: crate::broker::LocalInbox,
    options: ConnectOptions,
    epoch: Arc<AtomicU64>,
    mut inbound: Inbound,
    link: watch::Sender<Link>,
) {
    while let Some(packet) = inbox.recv().await {
        match packet {
            Packet::ConnAck(_) => {
                if let Some(presence) = &options.presence {
                    let (topic, online, _) = presence(epoch.load(Ordering::Relaxed));
                    if let Err(e) = session
                        .publish(&topic, QoS::AtLeastOnce, true, online)
                        .await
                    {
                        tracing::warn!("presence refused by the broker: {e}");
                    }
                }
                let filters = options.filters();
                if filters.is_empty() {
                    let _ = link.send(Link::Up { generation: 1 });
                } else {
                    session.subscribe(&filters);
                }
            }
            Packet::SubAck(_) => {
                let _ = link.send(Link::Up { generation: 1 });
            }
            Packet::Publish(publish) => match inbound.deliver(publish, 1).await {
                Delivered::Passed => {}
                Delivered::Stop => break,
                Delivered::Tidy(tidy) => {
                    // Not awaited here: the router may deliver it back to this very inbox.
                    let session = session.clone();
                    tokio::spawn(async move {
                        // Checked where it goes out: `close` may have begun meanwhile.
                        if tidy.still_wanted() {
                            let published = session
                                .publish(&tidy.topic, QoS::AtLeastOnce, true, tidy.payload)
                                .await;
                            if let Err(e) = published {
                                tracing::warn!(topic = %tidy.topic, "could not tidy a presence record: {e}");
                            }
                        }
                    });
                }
            },
            _ => {}
        }
        inbound.sweep();
    }
    let _ = link.send(Link::Closed);
}

/// What arrives on a connection, on its way to [`Connection::recv`]: reassembled, with
/// invalid payloads and expired partial messages counted and dropped.
struct Inbound {
    reassembler: Reassembler,
    swept: Instant,
    incoming: mpsc::Sender<Received>,
    rejected: Arc<AtomicU64>,
    tidy: Option<Tidy>,
}

/// What a side that announces presence does with the presence records it reads.
struct Tidy {
    /// Its own presence topic and records.
    own: String,
    presence: PresenceFn,
    /// The epoch of its current connection.
    epoch: Arc<AtomicU64>,
    /// Set by [`Connection::close`]: its own offline and cleared records are to stay.
    closing: Arc<AtomicBool>,
    /// Whether the caller subscribed to presence records itself (else they stop here); only
    /// the stage's presence filter itself counts, not a wider one.
    pass_on: bool,
}

/// What became of a publish handed to [`Inbound::deliver`].
enum Delivered {
    /// Passed on, or dropped as invalid.
    Passed,
    /// Nobody receives any more.
    Stop,
    /// Publish this retained record to keep presence tidy.
    Tidy(TidyUp),
}

/// A retained record to publish to keep presence tidy.
struct TidyUp {
    topic: String,
    payload: Bytes,
    /// For this side's own record: set once it closes, when the record must not be put back.
    /// The check and the publish run with no await between them, and `close` sets it before
    /// it publishes the offline record: on a single-threaded runtime (`live dev`'s) nothing
    /// can come between.
    unless: Option<Arc<AtomicBool>>,
}

impl TidyUp {
    fn still_wanted(&self) -> bool {
        !self
            .unless
            .as_ref()
            .is_some_and(|closing| closing.load(Ordering::Relaxed))
    }
}

impl Inbound {
    fn new(
        options: &ConnectOptions,
        incoming: mpsc::Sender<Received>,
        rejected: Arc<AtomicU64>,
        epoch: &Arc<AtomicU64>,
        closing: &Arc<AtomicBool>,
    ) -> Inbound {
        let tidy = options.presence.as_ref().map(|presence| {
            let own = presence(0).0;
            Tidy {
                pass_on: options.subscriptions.contains(&presence_filter(&own)),
                own,
                presence: presence.clone(),
                epoch: epoch.clone(),
                closing: closing.clone(),
            }
        });
        Inbound {
            reassembler: Reassembler::default(),
            swept: Instant::now(),
            incoming,
            rejected,
            tidy,
        }
    }

    /// Reassemble `publish`, received on connection `generation`, passing on a completed
    /// frame.
    async fn deliver(&mut self, publish: rumqttc::Publish, generation: u64) -> Delivered {
        if crate::Topics::is_presence(&publish.topic) {
            return self.presence(publish, generation).await;
        }
        match self.reassembler.push(publish.payload, Instant::now()) {
            Ok(Some(frame)) => self.pass_on(publish.topic, frame, generation).await,
            Ok(None) => Delivered::Passed,
            Err(e) => {
                self.reject(&e);
                Delivered::Passed
            }
        }
    }

    async fn pass_on(&self, topic: String, frame: Frame, generation: u64) -> Delivered {
        let received = Received {
            topic,
            frame,
            generation,
        };
        match self.incoming.send(received).await {
            Ok(()) => Delivered::Passed,
            Err(_) => Delivered::Stop,
        }
    }

    /// A presence record is one whole frame, read whatever its version: it says which
    /// version its session speaks, so that its users can name the side to update. An empty
    /// payload is a cleared record: nothing to pass on; so is an unreadable one.
    async fn presence(&mut self, publish: rumqttc::Publish, generation: u64) -> Delivered {
        let frame = if publish.payload.is_empty() {
            None
        } else {
            match Reassembler::whole_of_any_version(publish.payload) {
                Ok(frame) => Some(frame),
                Err(e) => {
                    // Counted, and on its own topic taken as a cleared record.
                    self.reject(&e);
                    None
                }
            }
        };
        let record = frame
            .as_ref()
            .and_then(|f| f.parse::<crate::Presence>().ok());
        let Some(tidy) = &self.tidy else {
            return match frame {
                Some(frame) => self.pass_on(publish.topic, frame, generation).await,
                None => Delivered::Passed,
            };
        };
        let action = tidy.judge(&publish.topic, record.as_ref());
        if let (true, Some(frame)) = (tidy.pass_on, frame) {
            if let Delivered::Stop = self.pass_on(publish.topic, frame, generation).await {
                return Delivered::Stop;
            }
        }
        action
    }

    /// Drop partial messages past their time, at most once a second.
    fn sweep(&mut self) {
        if self.swept.elapsed() >= Duration::from_secs(1) {
            self.swept = Instant::now();
            for e in self.reassembler.expire(self.swept) {
                self.reject(&e);
            }
        }
    }

    fn reject(&self, e: &ProtocolError) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("dropped a bridge message: {e}");
    }
}

impl Tidy {
    /// What to publish on reading `record` (`None`: cleared or unreadable) on `topic`.
    ///
    /// Another session's offline record is cleared: whoever listened when it was published
    /// has read it, and to anyone joining later an absent session and an offline one are the
    /// same, so without this every session that ever crashed (its will) would stay retained
    /// on the stage, and be sent to every stub that connects. Its own record, found cleared,
    /// unreadable or offline while connected (another session cleared its offline record as
    /// it reconnected, or the will of its previous connection came late), is put back.
    fn judge(&self, topic: &str, record: Option<&crate::Presence>) -> Delivered {
        if topic != self.own {
            return match record {
                Some(other) if !other.online => {
                    tracing::debug!(session = %other.session, "clearing an offline session's presence record");
                    Delivered::Tidy(TidyUp {
                        topic: topic.to_string(),
                        payload: Bytes::new(),
                        unless: None,
                    })
                }
                _ => Delivered::Passed,
            };
        }
        // An online record of another epoch is left alone: two connections under one name
        // would otherwise overwrite each other's without end.
        if record.is_some_and(|own| own.online) || self.closing.load(Ordering::Relaxed) {
            return Delivered::Passed;
        }
        tracing::debug!(
            "this session's presence record was cleared or marked offline: putting it back"
        );
        let (topic, online, _) = (self.presence)(self.epoch.load(Ordering::Relaxed));
        Delivered::Tidy(TidyUp {
            topic,
            payload: online,
            unless: Some(self.closing.clone()),
        })
    }
}

/// The filter of every presence record on the stage of presence topic `own`.
fn presence_filter(own: &str) -> String {
    let stage = own.rsplit_once('/').map_or(own, |(stage, _)| stage);
    format!("{stage}/+")
}

/// A fresh presence epoch: now in milliseconds, and above `previous`.
fn epoch_after(previous: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now.max(previous + 1)
}

/// Between half and all of `d`, so that many clients do not reconnect in step.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let fraction = (h.finish() % 1000) as u32;
    d / 2 + d / 2 * fraction / 1000
}
