//! The bridge broker round trip: a QoS 1 publish, echoed back, between two `rumqttc` clients
//! through `live broker`, beside its floor, one WebSocket echo.

use super::Stats;
use crate::live::live_broker;
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A plain `rumqttc` client subscribed to `filter` (SUBACK received); received publishes
/// arrive on the channel.
pub async fn client(
    url: &str,
    id: &str,
    filter: &str,
) -> anyhow::Result<(AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>)> {
    let mut options = MqttOptions::new(id, url, 0);
    options
        .set_transport(Transport::Ws)
        .set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    client.subscribe(filter, QoS::AtLeastOnce).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .context("no SUBACK within 10 s")??;
    Ok((client, rx))
}

/// QoS 1 publish, echo, back between two `rumqttc` clients through `live broker`.
pub async fn broker_round_trip(
    warmup: usize,
    samples: usize,
    size: usize,
) -> anyhow::Result<Stats> {
    let (_broker, url) = live_broker(&[]);
    let (echo, mut pings) = client(&url, "bench-echo", "bench/ping").await?;
    tokio::spawn(async move {
        while let Some(p) = pings.recv().await {
            if echo
                .publish_bytes("bench/pong", QoS::AtLeastOnce, false, p.payload)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let (origin, mut pongs) = client(&url, "bench-origin", "bench/pong").await?;
    let payload = vec![0x5a; size];
    let mut times = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let start = Instant::now();
        origin
            .publish("bench/ping", QoS::AtLeastOnce, false, payload.clone())
            .await?;
        match tokio::time::timeout(Duration::from_secs(10), pongs.recv()).await {
            Ok(Some(p)) if p.payload.len() == size => {}
            other => bail!("round trip {i} failed: {other:?}"),
        }
        if i >= warmup {
            times.push(start.elapsed());
        }
    }
    Ok(Stats::new(times))
}

/// One WebSocket message echoed by a loopback server: the transport's floor.
pub async fn ws_echo_round_trip(
    warmup: usize,
    samples: usize,
    size: usize,
) -> anyhow::Result<Stats> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_binary() && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream).await?;
    let payload = bytes::Bytes::from(vec![0x5a; size]);
    let mut times = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let start = Instant::now();
        ws.send(Message::Binary(payload.clone())).await?;
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.len() == size => {}
            other => bail!("echo {i} failed: {other:?}"),
        }
        if i >= warmup {
            times.push(start.elapsed());
        }
    }
    Ok(Stats::new(times))
}
