//! The embedded MQTT 3.1.1-over-WebSocket broker: what IoT Core implements, with IoT Core's
//! size and topic limits, so that it doubles as a local stand-in for it.
//!
//! QoS 0 and 1, retained messages, last wills, `+` and `#`, client-id takeover; TCP_NODELAY
//! and flushed writes; handshake and keep-alive timeouts; a bounded outbox per client for
//! every packet the broker sends it (deliveries and its own replies alike), with flow control
//! (above a soft bound its publishers wait for room) and whose overflow or stall disconnects
//! that client with a log line; graceful shutdown that releases the port. Sessions are always
//! clean (CONNACK says no session is present): the bridge protocol acknowledges at its own
//! level instead. In quota mode (IoT mode, or [`BrokerConfig::quotas`]) every socket
//! connection also meets IoT Core's per-connection quotas, counted ([`Broker::quota_totals`]).

mod conn;
mod filters;
mod handshake;
mod iot;
mod local;
mod outbox;
mod quotas;
mod router;
mod stream;

pub use iot::{GateCounts, IotMode, KeyRing};
pub use local::LocalBroker;
pub(crate) use local::{LocalInbox, LocalSession};
pub use quotas::{QuotaCounts, QuotaTotals, Quotas};

use router::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// The broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// How long a new TCP connection may take to finish the WebSocket upgrade and send CONNECT.
    pub handshake_timeout: Duration,
    /// The most packets queued for one client before it is disconnected as too slow: its
    /// deliveries and its own replies (PUBACK, PINGRESP...) alike, so that a client that
    /// never reads cannot pile up either.
    pub max_queued_messages: usize,
    /// The most payload bytes queued for one subscriber before it is disconnected as too slow.
    pub max_queued_bytes: usize,
    /// Above this many queued bytes for a subscriber, publishers to it wait for room before
    /// the broker reads more from them: flow control from the slowest reader back to the
    /// sender, instead of unbounded queues.
    pub soft_queued_bytes: usize,
    /// How long a publisher waits for a congested subscriber to make room; a subscriber that
    /// drains nothing for this long has stopped reading and is disconnected.
    pub stall_timeout: Duration,
    /// When set, every CONNECT must carry this user name and password.
    pub credentials: Option<(String, String)>,
    /// IoT mode: TLS, and SigV4-presigned upgrades only, as IoT Core. It turns quotas on
    /// (IoT Core's) when `quotas` is `None`.
    pub iot: Option<IotMode>,
    /// Quota mode: IoT Core's per-connection quotas on every socket connection (publish
    /// rate, throughput, unacknowledged QoS 1, subscriptions, keep-alive), with counts of
    /// what they discarded or delayed. Off by default without IoT mode; the in-process
    /// clients ([`LocalBroker`]) never meet them.
    pub quotas: Option<Quotas>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            handshake_timeout: Duration::from_secs(10),
            max_queued_messages: 4096,
            max_queued_bytes: 64 * 1024 * 1024,
            soft_queued_bytes: 8 * 1024 * 1024,
            stall_timeout: Duration::from_secs(10),
            credentials: None,
            iot: None,
            quotas: None,
        }
    }
}

/// How long shutdown waits for connections to close before it aborts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serve MQTT over WebSocket on `listener` until `shutdown` completes, then close every
/// connection and return, releasing the port.
pub async fn run(
    listener: TcpListener,
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve(listener, Arc::new(Router::new(config)), shutdown).await
}

async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(conn::serve(stream, peer, router.clone(), stop_rx.clone()));
                }
                // Running out of descriptors must not end the broker: log, back off, go on.
                Err(e) => {
                    tracing::warn!("broker accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
    tracing::debug!("broker stopped");
    Ok(())
}

/// A broker running in the background of this process.
pub struct Broker {
    addr: SocketAddr,
    router: Arc<Router>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Broker {
    /// Bind `addr` (port 0 for an ephemeral port) and start serving.
    pub async fn start(addr: SocketAddr, config: BrokerConfig) -> io::Result<Broker> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Arc::new(Router::new(config));
        let task = tokio::spawn(serve(listener, router.clone(), async {
            let _ = stopped.await;
        }));
        Ok(Broker {
            addr,
            router,
            stop: Some(stop),
            task,
        })
    }

    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients connect to: `ws://HOST:PORT/mqtt`, `wss://` in IoT mode.
    pub fn url(&self) -> String {
        let scheme = match self.router.config().iot {
            Some(_) => "wss",
            None => "ws",
        };
        format!("{scheme}://{}/mqtt", self.addr)
    }

    /// What the quotas discarded, delayed or refused so far, broker-wide; `None` unless in
    /// quota mode.
    pub fn quota_totals(&self) -> Option<QuotaTotals> {
        let quotas = self.router.config().quotas.as_ref()?;
        Some(quotas.counts.totals())
    }

    /// A handle for clients in this process, which join without a socket
    /// ([`crate::transport::Connection::open_local`]).
    pub fn local(&self) -> LocalBroker {
        LocalBroker {
            router: self.router.clone(),
        }
    }

    /// Stop accepting, close every connection and wait until the port is released.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(io::Error::other)?
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
