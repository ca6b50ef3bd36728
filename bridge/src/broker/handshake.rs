//! A new connection's opening: in IoT mode the TLS handshake and the upgrade's SigV4
//! signature (refused with a 403 naming the reason), the WebSocket upgrade (answering the
//! `mqtt` subprotocol) and the CONNECT packet, checked (client id, will, credentials) and
//! refused with the CONNACK code that names the cause.

use super::router::Router;
use super::stream::Stream;
use crate::protocol::{MAX_MQTT_PAYLOAD, MAX_TOPIC_BYTES};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rumqttc::{ConnAck, ConnectReturnCode, Packet, QoS};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The largest MQTT packet read: a maximal payload, a maximal topic and the packet's own
/// header. A PUBLISH within this but with a payload above the limit is refused by name.
pub(super) const MAX_PACKET: usize = MAX_MQTT_PAYLOAD + MAX_TOPIC_BYTES + 16;

/// The largest WebSocket message read; MQTT packets may span messages, so this only bounds
/// memory.
const MAX_WS_MESSAGE: usize = 2 * MAX_PACKET;

/// The WebSocket read buffer (see `open`).
const READ_BUFFER: usize = 8 * 1024;

pub(super) type Ws = WebSocketStream<Stream>;

/// Upgrade to WebSocket (answering the `mqtt` subprotocol) and read the CONNECT packet.
pub(super) async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    router: &Router,
) -> Result<(Ws, BytesMut, rumqttc::Connect), String> {
    let iot = router.config().iot.as_ref();
    let stream = match iot {
        None => Stream::Plain(stream),
        Some(iot) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(iot.tls.clone());
            let tls = acceptor
                .accept(stream)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            Stream::Tls(Box::new(tls))
        }
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_WS_MESSAGE);
    config.max_frame_size = Some(MAX_WS_MESSAGE);
    // tungstenite zero-fills its whole read buffer before every read, including reads that
    // find nothing: at its 128 KiB default that memset was most of the broker's CPU per
    // invocation (callgrind). Larger frames still get a buffer of their size.
    config.read_buffer_size = READ_BUFFER;
    let mut refusal = None;
    // tungstenite's callback type: its error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let upgrade = |req: &Request, resp: Response| {
        if let Some(iot) = iot {
            let host = req.headers().get("host").and_then(|h| h.to_str().ok());
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            match iot.check(host.unwrap_or(""), path) {
                Ok(signed) => tracing::info!(
                    %peer,
                    access_key = signed.access_key,
                    date = signed.date,
                    signature = signed.signature,
                    "SigV4 signature verified"
                ),
                Err(reason) => {
                    let mut forbidden = ErrorResponse::new(Some(format!("Forbidden: {reason}\n")));
                    *forbidden.status_mut() = http::StatusCode::FORBIDDEN;
                    refusal = Some(reason);
                    return Err(forbidden);
                }
            }
        }
        answer_subprotocol(req, resp)
    };
    let accepted =
        tokio_tungstenite::accept_hdr_async_with_config(stream, upgrade, Some(config)).await;
    if let Some(reason) = refusal {
        tracing::warn!(%peer, "refused the WebSocket upgrade with 403: {reason}");
        return Err(format!("refused the upgrade: {reason}"));
    }
    let mut ws = accepted.map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    let mut buf = BytesMut::new();
    let packet = loop {
        match Packet::read(&mut buf, MAX_PACKET) {
            Ok(packet) => break packet,
            Err(rumqttc::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("bad first packet: {e}")),
        }
        match ws.next().await {
            Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => return Err(format!("unexpected WebSocket message {other:?}")),
            Some(Err(e)) => return Err(format!("read failed: {e}")),
            None => return Err("closed before CONNECT".into()),
        }
    };
    let Packet::Connect(connect) = packet else {
        return Err("first packet is not CONNECT".into());
    };
    if connect.client_id.len() > 128 || connect.client_id.starts_with('$') {
        refuse(&mut ws, ConnectReturnCode::BadClientId).await;
        return Err(format!("bad client id {:?}", connect.client_id));
    }
    if let Some(will) = &connect.last_will {
        if crate::topics::check_topic(&will.topic).is_err() || will.qos == QoS::ExactlyOnce {
            refuse(&mut ws, ConnectReturnCode::BadClientId).await;
            return Err(format!("bad last will on topic {:?}", will.topic));
        }
    }
    if let Some((user, pass)) = &router.config().credentials {
        let ok = connect
            .login
            .as_ref()
            .is_some_and(|l| l.username == *user && l.password == *pass);
        if !ok {
            refuse(&mut ws, ConnectReturnCode::BadUserNamePassword).await;
            return Err("bad user name or password".into());
        }
    }
    let mut connect = connect;
    if connect.client_id.is_empty() {
        static ANONYMOUS: AtomicU64 = AtomicU64::new(0);
        connect.client_id = format!("$anonymous-{}", ANONYMOUS.fetch_add(1, Ordering::Relaxed));
    }
    Ok((ws, buf, connect))
}

/// Answer CONNECT with a refusal before closing.
async fn refuse(ws: &mut Ws, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    let _ = Packet::ConnAck(ConnAck::new(code, false)).write(&mut out, MAX_PACKET);
    let _ = ws.send(Message::Binary(out.freeze())).await;
}

#[allow(clippy::result_large_err)]
fn answer_subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered: Vec<String> = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    if let Some(chosen) = ["mqtt", "mqttv3.1"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
    {
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            chosen.parse().expect("static header value"),
        );
    }
    Ok(resp)
}
