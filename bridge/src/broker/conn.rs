//! One client connection of the broker, after its handshake: a reader that parses MQTT
//! packets and acts on them through the router, and a writer that drains the connection's
//! outbox into the socket.

use super::handshake::{open, Ws, MAX_PACKET};
use super::outbox::{Inbox, Outbox};
use super::quotas::{self, ConnQuota, Direction};
use super::router::{Congested, Router};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rumqttc::{ConnAck, ConnectReturnCode, Packet, PubAck, QoS, UnsubAck};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// Packets are coalesced into one WebSocket message up to this many bytes.
const WRITE_BATCH: usize = 256 * 1024;

/// Why a connection ended: a clean DISCONNECT suppresses the will.
enum End {
    Clean,
    Dropped(String),
}

/// The connection as its reader acts for it.
struct Client<'a> {
    router: &'a Router,
    id: &'a str,
    conn: u64,
    /// Its own outbox, for its replies: they queue behind its deliveries, under the same
    /// bounds, without the router's lock.
    replies: Outbox,
    /// Its quotas, in quota mode.
    quota: Option<Arc<ConnQuota>>,
}

impl Client<'_> {
    /// Log what the quotas discarded or delayed on this connection, if anything.
    fn log_if_limited(&self) {
        if let Some(quota) = &self.quota {
            quota.log_if_limited(self.id);
        }
    }

    /// Queue a reply; a client whose outbox is full has stopped reading (a flood of QoS 1
    /// publishes or PINGREQs whose answers it never reads) and is disconnected loudly.
    fn reply(&self, packet: Packet) -> Option<End> {
        if self.replies.reply(packet).is_ok() {
            return None;
        }
        self.router
            .drop_slow(self.id, self.conn, "its queue is full");
        Some(End::Dropped("its outbox is full".into()))
    }
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    router: Arc<Router>,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(%peer, "could not set TCP_NODELAY: {e}");
    }
    let deadline = router.config().handshake_timeout;
    let opened = tokio::select! {
        opened = tokio::time::timeout(deadline, open(stream, peer, &router)) => opened,
        _ = stop.changed() => return,
    };
    let (ws, buf, connect) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "connection refused: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "no WebSocket upgrade and CONNECT within {deadline:?}: closed");
            return;
        }
    };
    let client_id = connect.client_id.clone();
    let quota = router.config().quotas.as_ref().map(ConnQuota::new);
    let keep_alive = quotas::keep_alive(connect.keep_alive, quota.is_some());
    let idle_limit = Duration::from_millis(u64::from(keep_alive) * 1500);
    let connack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false));
    let registration = router.register(
        &client_id,
        connect.last_will.clone(),
        connack,
        quota.clone(),
    );
    let conn = registration.conn;
    tracing::debug!(%peer, client_id, conn, keep_alive, "client connected");

    let (sink, stream) = ws.split();
    let mut writer = tokio::spawn(write_loop(sink, registration.inbox, quota.clone()));
    let client = Client {
        router: &router,
        id: &client_id,
        conn,
        replies: registration.replies,
        quota,
    };
    let reader = read_loop(stream, buf, &client, idle_limit);
    let end = tokio::select! {
        end = reader => end,
        written = &mut writer => End::Dropped(match written {
            Ok(Err(e)) => format!("write failed: {e}"),
            _ => "writer stopped".into(),
        }),
        _ = registration.kick.notified() => End::Dropped("taken over or too slow".into()),
        _ = stop.changed() => {
            writer.abort();
            client.log_if_limited();
            return;
        }
    };
    match &end {
        End::Clean => tracing::debug!(client_id, conn, "client disconnected"),
        End::Dropped(why) => tracing::debug!(client_id, conn, "connection dropped: {why}"),
    }
    // The will is routed before the socket closes, so a client that sees the close knows the
    // broker has finished with this connection.
    router.disconnect(&client_id, conn, matches!(end, End::Clean));
    writer.abort();
    client.log_if_limited();
}

async fn read_loop(
    mut stream: futures_util::stream::SplitStream<Ws>,
    mut buf: BytesMut,
    client: &Client<'_>,
    idle_limit: Duration,
) -> End {
    let client_id = client.id;
    loop {
        loop {
            let packet = match Packet::read(&mut buf, MAX_PACKET) {
                Ok(packet) => packet,
                Err(rumqttc::Error::InsufficientBytes(_)) => break,
                Err(e) => {
                    tracing::warn!(client_id, "closing connection: malformed MQTT packet: {e}");
                    return End::Dropped(format!("malformed packet: {e}"));
                }
            };
            let mut congested = Vec::new();
            if let Some(end) = handle(packet, client, &mut congested) {
                return end;
            }
            for subscriber in congested {
                client.router.wait_for_room(subscriber).await;
            }
        }
        let next = match tokio::time::timeout(idle_limit, stream.next()).await {
            Ok(next) => next,
            Err(_) => return End::Dropped(format!("silent for {idle_limit:?} (keep-alive)")),
        };
        match next {
            Some(Ok(Message::Binary(data))) => {
                // Over the throughput budget, the reader waits before acting on more: the
                // excess is delayed, not dropped, and TCP backpressure reaches the client.
                if let Some(quota) = &client.quota {
                    quota.throttle(data.len()).await;
                }
                buf.extend_from_slice(&data)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Text(_))) => {
                tracing::warn!(
                    client_id,
                    "closing connection: text frame where MQTT is binary"
                );
                return End::Dropped("text frame".into());
            }
            Some(Ok(Message::Close(_))) | None => return End::Dropped("closed".into()),
            Some(Err(e)) => return End::Dropped(format!("read failed: {e}")),
        }
    }
}

/// Act on one packet; `Some` ends the connection. Subscribers a publish congested are added
/// to `congested`.
fn handle(packet: Packet, client: &Client<'_>, congested: &mut Vec<Congested>) -> Option<End> {
    let Client {
        router,
        id: client_id,
        conn,
        ..
    } = *client;
    match packet {
        Packet::Publish(publish) => {
            // Over the publish rate IoT Core discards a publish: not routed, not acknowledged.
            if let Some(quota) = &client.quota {
                if !quota.admit(Direction::In) {
                    return None;
                }
            }
            let ack = (publish.qos == QoS::AtLeastOnce).then_some(publish.pkid);
            match router.publish(publish) {
                Ok(subscribers) => congested.extend(subscribers),
                Err(refused) => {
                    tracing::warn!(
                        client_id,
                        topic = %refused.topic,
                        "refused PUBLISH: {}; closing connection",
                        refused.why
                    );
                    return Some(End::Dropped(refused.why));
                }
            }
            if let Some(pkid) = ack {
                return client.reply(Packet::PubAck(PubAck::new(pkid)));
            }
        }
        Packet::Subscribe(subscribe) => {
            router.subscribe(client_id, conn, subscribe.pkid, subscribe.filters)
        }
        Packet::Unsubscribe(unsubscribe) => {
            router.unsubscribe(client_id, conn, &unsubscribe.topics);
            return client.reply(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)));
        }
        Packet::PingReq => return client.reply(Packet::PingResp),
        Packet::Disconnect => return Some(End::Clean),
        // Acknowledgements of our QoS 1 deliveries: sessions are clean, nothing to release
        // but a place in the window of unacknowledged deliveries (quota mode).
        Packet::PubAck(_) => {
            if let Some(quota) = &client.quota {
                quota.acked();
            }
        }
        other => {
            tracing::warn!(client_id, "closing connection: unexpected packet {other:?}");
            return Some(End::Dropped("unexpected packet".into()));
        }
    }
    None
}

type Sink = futures_util::stream::SplitSink<Ws, Message>;

/// Drain the outbox into the socket, coalescing queued packets into one flushed message. In
/// quota mode a QoS 1 delivery beyond the window of unacknowledged ones waits (still in the
/// outbox, under its bounds) for a PUBACK, and every write waits for the throughput budget.
async fn write_loop(
    mut sink: Sink,
    mut inbox: Inbox,
    quota: Option<Arc<ConnQuota>>,
) -> Result<(), String> {
    let mut next_pkid: u16 = 0;
    let mut out = BytesMut::with_capacity(WRITE_BATCH);
    while let Some(first) = inbox.rx.recv().await {
        let mut item = Some(first);
        while let Some(mut outgoing) = item.take() {
            if let Packet::Publish(publish) = &mut outgoing.packet {
                if publish.qos == QoS::AtLeastOnce {
                    if let Some(quota) = quota.as_deref() {
                        if !quota.try_send_unacked() {
                            // The client can only acknowledge what it has been sent.
                            if !out.is_empty() {
                                send(&mut sink, &mut out, Some(quota)).await?;
                                inbox.drained();
                            }
                            quota.send_unacked().await;
                        }
                    }
                    next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                    publish.pkid = next_pkid;
                }
            }
            inbox.taken(&outgoing);
            outgoing
                .packet
                .write(&mut out, usize::MAX)
                .map_err(|e| format!("encode failed: {e}"))?;
            if out.len() < WRITE_BATCH {
                item = inbox.rx.try_recv().ok();
            }
        }
        send(&mut sink, &mut out, quota.as_deref()).await?;
        inbox.drained();
    }
    let _ = sink.close().await;
    Ok(())
}

/// Write `out` as one flushed message, within the throughput budget in quota mode.
async fn send(
    sink: &mut Sink,
    out: &mut BytesMut,
    quota: Option<&ConnQuota>,
) -> Result<(), String> {
    if let Some(quota) = quota {
        quota.throttle(out.len()).await;
    }
    sink.send(Message::Binary(out.split().freeze()))
        .await
        .map_err(|e| e.to_string())
}
