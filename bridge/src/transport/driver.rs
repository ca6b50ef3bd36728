//! The MQTT-over-WebSocket path on `rumqttc`: the client's options (TCP_NODELAY, packet
//! limits raised above IoT Core's payload limit, TLS for `wss://`, the request hook), and the task that polls
//! its event loop, reconnects with jittered backoff and re-arms the will with a fresh epoch
//! before every connection.

use super::client::Client;
use super::inbound::{Delivered, Inbound};
use super::presence::epoch_after;
use super::{ConnectOptions, Link, Started, TransportError};
use crate::protocol::MAX_MQTT_PAYLOAD;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The packet size limit set on the client: a maximal payload plus a maximal topic, rounded up.
const CLIENT_MAX_PACKET: usize = 2 * MAX_MQTT_PAYLOAD;

/// The client and its event loop for `options`, not connecting yet.
pub(super) fn client_for(
    options: &ConnectOptions,
) -> Result<(AsyncClient, EventLoop), TransportError> {
    let transport = match options.url.split("://").next() {
        Some("ws") => Transport::Ws,
        Some("wss") => {
            let config = match &options.tls {
                Some(config) => config.clone(),
                None => crate::tls::client_config(crate::tls::ca_file_from_env().as_deref())?,
            };
            Transport::Wss(TlsConfiguration::Rustls(config))
        }
        _ => return Err(TransportError::BadUrl(options.url.clone())),
    };
    let url = match &options.connect_to {
        Some(addr) => redirect(&options.url, addr)?,
        None => options.url.clone(),
    };
    let mut mqtt = MqttOptions::new(options.client_id.clone(), url, 0);
    mqtt.set_transport(transport)
        .set_keep_alive(options.keep_alive)
        .set_max_packet_size(CLIENT_MAX_PACKET, CLIENT_MAX_PACKET)
        .set_clean_session(true);
    if let Some((user, pass)) = &options.credentials {
        mqtt.set_credentials(user, pass);
    }
    let signer = options.signer.clone();
    match options.connect_to.is_some() {
        // The request names the real endpoint again before it is signed and sent.
        true => {
            let real: http::Uri = options
                .url
                .parse()
                .map_err(|_| TransportError::BadUrl(options.url.clone()))?;
            mqtt.set_request_modifier(move |mut req: http::Request<()>| {
                *req.uri_mut() = real.clone();
                if let Some(host) = real.authority().and_then(|a| a.as_str().parse().ok()) {
                    req.headers_mut().insert(http::header::HOST, host);
                }
                let signer = signer.clone();
                async move {
                    match signer {
                        Some(signer) => signer(req).await,
                        None => req,
                    }
                }
            });
        }
        false => {
            if let Some(signer) = signer {
                mqtt.set_request_modifier(move |req| signer(req));
            }
        }
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, super::INCOMING_QUEUE);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    Ok((client, eventloop))
}

/// `url` with its host and port replaced by `addr` (where the TCP connection goes).
fn redirect(url: &str, addr: &str) -> Result<String, TransportError> {
    let bad = || TransportError::BadUrl(url.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let path = rest.find('/').map_or("/", |slash| &rest[slash..]);
    Ok(format!("{scheme}://{addr}{path}"))
}

/// The background task that polls the event loop and reconnects.
pub(super) struct Driver {
    client: Client,
    options: ConnectOptions,
    link: watch::Sender<Link>,
    last_error: watch::Sender<String>,
    epoch: Arc<AtomicU64>,
}

impl Driver {
    /// Start the task running `eventloop`.
    pub(super) fn spawn(
        client: AsyncClient,
        eventloop: EventLoop,
        options: ConnectOptions,
        started: Started,
    ) -> JoinHandle<()> {
        let driver = Driver {
            client: Client::Mqtt(client),
            options,
            link: started.link,
            last_error: started.last_error,
            epoch: started.epoch,
        };
        tokio::spawn(driver.run(eventloop, started.inbound))
    }

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
                    let epoch = self.epoch.load(Ordering::Relaxed);
                    self.client
                        .connected(&self.options, epoch, &self.link, generation)
                        .await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = self.link.send(Link::Up { generation });
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    match inbound.deliver(publish, generation).await {
                        Delivered::Passed => {}
                        Delivered::Stop => break,
                        Delivered::Tidy(tidy) => self.client.tidy(tidy).await,
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
                    let message = e.to_string();
                    // rumqttc reports a refused CONNACK as an error, not as an event: a refused
                    // login is worth a warning (once while it lasts), a lost link is not.
                    let repeated = *self.last_error.borrow() == message;
                    if matches!(e, ConnectionError::ConnectionRefused(_)) && !repeated {
                        tracing::warn!(url = %self.options.url, "broker refused the connection: {e}");
                    } else {
                        tracing::debug!(url = %self.options.url, "bridge connection lost: {e}");
                    }
                    let _ = self.last_error.send(message);
                    backoff = self.pause(backoff, &mut eventloop).await;
                }
            }
        }
        let _ = self.link.send(Link::Closed);
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

/// Between half and all of `d`, so that many clients do not reconnect in step.
fn jitter(d: Duration) -> Duration {
    // Without an OS random source (none seen on Linux), the clock's nanoseconds.
    let random = getrandom::u64().unwrap_or_else(|_| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |t| u64::from(t.subsec_nanos()))
    });
    d / 2 + d / 2 * (random % 1000) as u32 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all_and_varies() {
        let d = Duration::from_millis(2000);
        let delays: Vec<Duration> = (0..100).map(|_| jitter(d)).collect();
        assert!(delays.iter().all(|&j| j >= d / 2 && j <= d), "{delays:?}");
        let first = delays[0];
        assert!(delays.iter().any(|&j| j != first), "all {first:?}");
    }
}
