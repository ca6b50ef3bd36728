//! How a connection reaches its broker: over WebSocket (`rumqttc`'s client), or, for a broker
//! in this process, straight into its router. What both paths do alike is written here once:
//! announcing presence and subscribing after a CONNACK, and publishing presence tidy-ups.

use super::presence::TidyUp;
use super::{ConnectOptions, Link, TransportError};
use bytes::Bytes;
use rumqttc::{AsyncClient, QoS, SubscribeFilter};
use tokio::sync::watch;

/// The sending side of a connection; cheap to clone.
#[derive(Clone)]
pub(super) enum Client {
    Mqtt(AsyncClient),
    #[cfg(feature = "broker")]
    Local(std::sync::Arc<crate::broker::LocalSession>),
}

impl Client {
    /// Publish from any task but the one running the connection, waiting for room.
    pub(super) async fn publish(
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

    /// Disconnect cleanly: no will follows, and no reconnection.
    pub(super) async fn disconnect(&self) {
        match self {
            Client::Mqtt(client) => {
                let _ = client.disconnect().await;
            }
            #[cfg(feature = "broker")]
            Client::Local(session) => session.disconnect(true),
        }
    }

    /// After a CONNACK, on either path: announce this side's presence (retained, under the
    /// connection's `epoch`) and subscribe again (clean sessions forget subscriptions). With
    /// nothing to subscribe to the link is up at once, else at the SUBACK.
    pub(super) async fn connected(
        &self,
        options: &ConnectOptions,
        epoch: u64,
        link: &watch::Sender<Link>,
        generation: u64,
    ) {
        if let Some(presence) = &options.presence {
            let (topic, online, _) = presence(epoch);
            if let Err(e) = self
                .publish_in_loop(&topic, QoS::AtLeastOnce, true, online)
                .await
            {
                tracing::warn!(%topic, "could not announce presence: {e}");
            }
        }
        let filters = options.filters();
        if filters.is_empty() {
            let _ = link.send(Link::Up { generation });
            return;
        }
        match self {
            Client::Mqtt(client) => {
                let filters = filters
                    .into_iter()
                    .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                let _ = client.try_subscribe_many(filters);
            }
            #[cfg(feature = "broker")]
            Client::Local(session) => session.subscribe(&filters),
        }
    }

    /// Publish a record that keeps presence tidy, from the task running the connection,
    /// without holding it up: an in-process broker's router may deliver the record back to
    /// the very inbox that task reads, so that publish runs in a task of its own; over
    /// WebSocket it is queued at once.
    pub(super) async fn tidy(&self, tidy: TidyUp) {
        match self {
            Client::Mqtt(_) => self.tidy_now(tidy).await,
            #[cfg(feature = "broker")]
            Client::Local(_) => {
                let client = self.clone();
                tokio::spawn(async move { client.tidy_now(tidy).await });
            }
        }
    }

    async fn tidy_now(&self, tidy: TidyUp) {
        // Checked where it goes out, with no await before the publish (both kinds hand it on
        // before their first await): `close` may have begun meanwhile.
        if tidy.still_wanted() {
            let published = self
                .publish_in_loop(&tidy.topic, QoS::AtLeastOnce, true, tidy.payload)
                .await;
            if let Err(e) = published {
                tracing::warn!(topic = %tidy.topic, "could not tidy a presence record: {e}");
            }
        }
    }

    /// Publish from the task running the connection. A WebSocket client's requests are
    /// queued for that very task, which cannot wait for room in its own queue: queued at once
    /// or refused (full). In process, the publish is routed at once, then waits for flow
    /// control.
    async fn publish_in_loop(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Bytes,
    ) -> Result<(), String> {
        match self {
            Client::Mqtt(client) => client
                .try_publish(topic, qos, retain, payload.to_vec())
                .map_err(|e| e.to_string()),
            #[cfg(feature = "broker")]
            Client::Local(session) => session.publish(topic, qos, retain, payload).await,
        }
    }
}
