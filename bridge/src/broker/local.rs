//! A client of the broker inside the broker's own process: the router's sessions,
//! subscriptions, retained messages, wills and flow control, without a socket, WebSocket
//! framing or MQTT encoding in between. `live dev` joins its embedded broker this way; the
//! stubs, and every other client, connect over WebSocket.

use super::outbox::Inbox;
use super::router::Router;
use rumqttc::{ConnAck, ConnectReturnCode, LastWill, Packet, Publish, QoS, SubscribeFilter};
use std::sync::Arc;
use tokio::sync::Notify;

/// A handle on a running broker for clients in the same process; cheap to clone.
#[derive(Clone)]
pub struct LocalBroker {
    pub(super) router: Arc<Router>,
}

/// One in-process connection.
pub(crate) struct LocalSession {
    router: Arc<Router>,
    client_id: String,
    conn: u64,
}

/// What the connection receives (its CONNACK first), and the signal that it was taken over
/// or dropped as too slow.
pub(crate) struct LocalInbox {
    inbox: Inbox,
    kick: Arc<Notify>,
}

impl LocalInbox {
    /// The next packet for this connection, `None` once it is gone.
    pub async fn recv(&mut self) -> Option<Packet> {
        let item = tokio::select! {
            item = self.inbox.rx.recv() => item?,
            _ = self.kick.notified() => return None,
        };
        self.inbox.taken(&item);
        self.inbox.drained();
        Some(item.packet)
    }
}

impl LocalBroker {
    /// Connect as `client_id` (taking over an earlier connection with that id), with `will`
    /// published if the connection ends without [`LocalSession::disconnect`].
    pub(crate) fn connect(
        &self,
        client_id: &str,
        will: Option<LastWill>,
    ) -> (LocalSession, LocalInbox) {
        let connack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false));
        // In-process clients meet no quotas: they cross no connection.
        let registration = self.router.register(client_id, will, connack, None);
        (
            LocalSession {
                router: self.router.clone(),
                client_id: client_id.to_string(),
                conn: registration.conn,
            },
            LocalInbox {
                inbox: registration.inbox,
                kick: registration.kick,
            },
        )
    }
}

impl LocalSession {
    /// Route a publish, then wait while a subscriber it reached is above the soft bound (the
    /// same checks and flow control a WebSocket publisher gets). `Err` says why the broker
    /// refuses it (a WebSocket client's connection would be closed).
    pub async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: bytes::Bytes,
    ) -> Result<(), String> {
        let mut publish = Publish::from_bytes(topic, qos, payload);
        publish.retain = retain;
        let congested = self
            .router
            .publish(publish)
            .map_err(|refused| refused.why)?;
        for subscriber in congested {
            self.router.wait_for_room(subscriber).await;
        }
        Ok(())
    }

    /// Subscribe to `filters` at QoS 1; the SUBACK arrives in the inbox.
    pub fn subscribe(&self, filters: &[String]) {
        let filters = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        self.router
            .subscribe(&self.client_id, self.conn, 1, filters);
    }

    /// End the connection; `clean` suppresses the will.
    pub fn disconnect(&self, clean: bool) {
        self.router.disconnect(&self.client_id, self.conn, clean);
    }
}

impl Drop for LocalSession {
    fn drop(&mut self) {
        // Gone without a clean disconnect: as if its socket had dropped (a no-op after one).
        self.router.disconnect(&self.client_id, self.conn, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use futures_util::FutureExt;

    /// A broker whose outboxes hold at most `max_queued_messages` packets, and a watcher
    /// subscribed to `will/#` (its CONNACK and SUBACK already read).
    fn broker_and_watcher(max_queued_messages: usize) -> (LocalBroker, LocalSession, LocalInbox) {
        let broker = LocalBroker {
            router: Arc::new(Router::new(BrokerConfig {
                max_queued_messages,
                ..BrokerConfig::default()
            })),
        };
        let (watcher, mut seen) = broker.connect("watcher", None);
        watcher.subscribe(&["will/#".to_string()]);
        assert!(matches!(
            &drain(&mut seen)[..],
            [Packet::ConnAck(_), Packet::SubAck(_)]
        ));
        (broker, watcher, seen)
    }

    /// What `inbox` holds now. Routing is synchronous: what a client will see is queued
    /// already when the call that routed it returns.
    fn drain(inbox: &mut LocalInbox) -> Vec<Packet> {
        let mut packets = Vec::new();
        while let Some(Some(packet)) = inbox.recv().now_or_never() {
            packets.push(packet);
        }
        packets
    }

    fn dropped_with_its_will(packets: &[Packet]) {
        assert!(
            matches!(packets, [Packet::Publish(will)] if will.topic == "will/deaf"),
            "the client over its bound was not dropped with its will: {packets:?}"
        );
    }

    #[tokio::test]
    async fn an_in_process_client_that_never_reads_meets_the_same_bounds_replies_included() {
        // Room for two packets: its CONNACK and SUBACK, which count like any other.
        let (broker, _watcher, mut seen) = broker_and_watcher(2);
        let will = LastWill::new("will/deaf", "gone", QoS::AtMostOnce, false);
        let (deaf, _never_read) = broker.connect("deaf", Some(will));
        deaf.subscribe(&["t".to_string()]);
        let (publisher, _inbox) = broker.connect("pub", None);
        publisher
            .publish("t", QoS::AtMostOnce, false, "one".into())
            .await
            .unwrap();
        dropped_with_its_will(&drain(&mut seen));
    }

    #[tokio::test]
    async fn a_subscriber_whose_retained_replay_overflows_is_dropped_with_its_will() {
        let (broker, _watcher, mut seen) = broker_and_watcher(3);
        let (publisher, _inbox) = broker.connect("pub", None);
        for i in 0..5 {
            publisher
                .publish(&format!("r/{i}"), QoS::AtMostOnce, true, "kept".into())
                .await
                .unwrap();
        }
        let will = LastWill::new("will/deaf", "gone", QoS::AtMostOnce, false);
        let (deaf, _never_read) = broker.connect("deaf", Some(will));
        // CONNACK, SUBACK and one retained message fit; the second overflows.
        deaf.subscribe(&["r/#".to_string()]);
        dropped_with_its_will(&drain(&mut seen));
    }
}
