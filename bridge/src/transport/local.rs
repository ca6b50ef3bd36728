//! The in-process path (feature `broker`): a connection to a broker running in this process
//! joins its router directly, with the same session, subscriptions, presence and will as over
//! WebSocket, without a socket.

use super::client::Client;
use super::inbound::Delivered;
use super::{ConnectOptions, Link, Started};
use crate::broker::{LocalBroker, LocalInbox, LocalSession};
use rumqttc::{LastWill, Packet, QoS};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Connect to `broker` as `options` say, with the will of `epoch`.
pub(super) fn join(
    options: &ConnectOptions,
    epoch: u64,
    broker: &LocalBroker,
) -> (Arc<LocalSession>, LocalInbox) {
    let will = options.presence.as_ref().map(|presence| {
        let (topic, _, offline) = presence(epoch);
        LastWill::new(topic, offline, QoS::AtLeastOnce, true)
    });
    let (session, inbox) = broker.connect(&options.client_id, will);
    (Arc::new(session), inbox)
}

/// Start the task running the connection: announce and subscribe after the CONNACK, then
/// reassemble what arrives, until the connection is closed or taken over. It has one
/// connection only, generation 1.
pub(super) fn spawn(
    session: Arc<LocalSession>,
    inbox: LocalInbox,
    options: ConnectOptions,
    started: Started,
) -> JoinHandle<()> {
    started.last_error.send_replace("in-process".into());
    tokio::spawn(run(Client::Local(session), inbox, options, started))
}

async fn run(client: Client, mut inbox: LocalInbox, options: ConnectOptions, started: Started) {
    let Started {
        mut inbound,
        link,
        epoch,
        ..
    } = started;
    while let Some(packet) = inbox.recv().await {
        match packet {
            Packet::ConnAck(_) => {
                let epoch = epoch.load(Ordering::Relaxed);
                client.connected(&options, epoch, &link, 1).await;
            }
            Packet::SubAck(_) => {
                let _ = link.send(Link::Up { generation: 1 });
            }
            Packet::Publish(publish) => match inbound.deliver(publish, 1).await {
                Delivered::Passed => {}
                Delivered::Stop => break,
                Delivered::Tidy(tidy) => client.tidy(tidy).await,
            },
            _ => {}
        }
        inbound.sweep();
    }
    let _ = link.send(Link::Closed);
}
