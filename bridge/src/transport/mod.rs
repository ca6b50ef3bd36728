//! The bridge's client connection: MQTT 3.1.1 over WebSocket on `rumqttc`, with TCP_NODELAY,
//! packet limits raised above IoT Core's payload limit, reconnection with backoff and jitter,
//! resubscription after every CONNACK, a retained presence record with a matching last will,
//! and a hook that rewrites each connection attempt's HTTP request (for SigV4 presigning).
//!
//! Callers `send` messages and `recv` reassembled frames, each with its topic parsed into a
//! [`Topic`]; chunking, keep-alive and size limits stay inside. A side that announces
//! presence also keeps its stage's presence records tidy: it clears the offline records other
//! sessions left, and puts its own record back when it finds it cleared, unreadable or marked
//! offline while it is connected. A process that hosts the broker itself joins it in-process
//! instead (`Connection::open_local`, feature `broker`): the same session, presence and will,
//! no socket.
//!
//! - `client`: the two ways to the broker, and what both do alike after a CONNACK and to
//!   tidy presence;
//! - `presence`: the records, their epochs, and the tidy judgement;
//! - `inbound`: topic parsing, reassembly and presence reading on the way to `recv`;
//! - `driver`: the `rumqttc` event loop and reconnection;
//! - `signing`: the hook presigning every connection attempt for IoT Core;
//! - `pacing`: staying inside IoT Core's per-connection publish quota;
//! - `local` (feature `broker`): the in-process path.

mod client;
mod driver;
mod inbound;
#[cfg(feature = "broker")]
mod local;
mod pacing;
mod presence;
mod signing;

pub use pacing::PublishQuota;
pub use presence::{session_presence, session_presence_with_lanes, PresenceError, PresenceFn};
pub use signing::{fixed_credentials, sigv4_signer, CredentialSource};

use crate::topics::Topic;
use crate::wire::{encode, Frame, ProtocolError};
use bytes::Bytes;
use client::Client;
use inbound::Inbound;
use rumqttc::QoS;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Rewrites the WebSocket upgrade request of every connection attempt (path, query, headers),
/// for example to presign it afresh with SigV4.
pub type RequestSigner = Arc<
    dyn Fn(http::Request<()>) -> Pin<Box<dyn Future<Output = http::Request<()>> + Send>>
        + Send
        + Sync,
>;

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
    /// Rewrites each connection attempt's request (`sigv4_signer` for IoT Core).
    pub signer: Option<RequestSigner>,
    /// Publish no faster than this, in and out together (`PublishQuota::IOT_CORE` against IoT
    /// Core, which discards the excess); `None` for no limit.
    pub quota: Option<PublishQuota>,
    /// Open the TCP connection to this `host:port` instead of the URL's, keeping the URL's
    /// host for TLS (SNI, the certificate's name), the `Host` header and the signature, as
    /// curl's `--connect-to` does: for a local stand-in of an endpoint whose name does not
    /// resolve here (`LIVE_IOT_CONNECT_TO`).
    pub connect_to: Option<String>,
    /// The TLS configuration for `wss://` URLs; `None` trusts Mozilla's roots and
    /// `LIVE_CA_FILE` (`crate::tls::client_config`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
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
            let filter = presence::presence_filter(&presence(0).0);
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
            tls: None,
            quota: None,
            connect_to: None,
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
    /// The TLS configuration for a `wss://` URL cannot be made (an unreadable CA file).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    /// The topic the frame arrived on, parsed.
    pub topic: Topic,
    /// The reassembled frame.
    pub frame: Frame,
    /// The connection it arrived on, counted as [`Link::Up`] counts them: what a side learns
    /// from retained records (presence) holds from the connection they came on.
    pub generation: u64,
}

/// A live connection to the broker, reconnecting in the background until closed.
pub struct Connection {
    client: Client,
    pacer: Option<Arc<pacing::Pacer>>,
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
        let (client, eventloop) = driver::client_for(&options)?;
        let sender = Client::Mqtt(client.clone());
        Ok(Connection::assemble(&options, 0, sender, |started| {
            driver::Driver::spawn(client, eventloop, options.clone(), started)
        }))
    }

    /// Join a broker running in this process without a socket: the same session,
    /// subscriptions, presence and will as [`Connection::open`], without WebSocket framing,
    /// MQTT encoding and two loopback hops per message. The link comes up at once and stays
    /// up until closed (a broker in this process does not go away on its own).
    #[cfg(feature = "broker")]
    pub fn open_local(options: ConnectOptions, broker: &crate::broker::LocalBroker) -> Connection {
        let epoch = presence::epoch_after(0);
        let (session, inbox) = local::join(&options, epoch, broker);
        let sender = Client::Local(session.clone());
        Connection::assemble(&options, epoch, sender, |started| {
            local::spawn(session, inbox, options.clone(), started)
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
        let pacer = options.quota.map(|q| Arc::new(pacing::Pacer::new(q)));
        let mut inbound = Inbound::new(options, incoming_tx, rejected.clone(), &epoch, &closing);
        inbound.pace(pacer.clone());
        let task = start(Started {
            inbound,
            link: link_tx,
            last_error: error_tx,
            epoch: epoch.clone(),
        });
        Connection {
            client,
            pacer,
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
            pacer: self.pacer.clone(),
        }
    }

    /// A handle that publishes this side's presence record again, for when what it announces
    /// changes (more lanes); `None` for a side that does not announce itself.
    pub fn announcer(&self) -> Option<Announcer> {
        let (topic, presence) = self.presence_topic.clone()?;
        Some(Announcer {
            sender: self.sender(),
            topic,
            presence,
            epoch: self.epoch.clone(),
        })
    }

    /// How long sends on this connection have waited for the publish quota in all.
    pub fn paced(&self) -> Duration {
        self.pacer.as_ref().map_or(Duration::ZERO, |p| p.waited())
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
    pacer: Option<Arc<pacing::Pacer>>,
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

    /// Publishes sent and received on this connection under its quota so far (0 without
    /// one): how busy it is.
    pub fn quota_used(&self) -> u64 {
        self.pacer.as_ref().map_or(0, |p| p.counted())
    }

    /// Publish one raw MQTT payload.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<(), TransportError> {
        if let Some(pacer) = &self.pacer {
            pacer.send().await;
        }
        self.client.publish(topic, qos, retain, payload).await
    }
}

/// Publishes a side's presence record again (see [`Connection::announcer`]).
#[derive(Clone)]
pub struct Announcer {
    sender: Sender,
    topic: String,
    presence: PresenceFn,
    epoch: Arc<AtomicU64>,
}

impl Announcer {
    /// The same record, published over `sender`'s connection instead (another of the
    /// side's connections, whose pace is not taken up).
    pub fn via(&self, sender: Sender) -> Announcer {
        Announcer {
            sender,
            ..self.clone()
        }
    }

    /// Publish the online record of the current connection, as it reads now.
    pub async fn announce(&self) -> Result<(), TransportError> {
        let (_, online, _) = (self.presence)(self.epoch.load(Ordering::Relaxed));
        self.sender
            .publish(&self.topic, online, QoS::AtLeastOnce, true)
            .await
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
