//! A connection's outbox: the queue of every packet the broker sends one client, bounded in
//! messages and bytes, with the soft bound above which its publishers wait for room (flow
//! control) and the warning that names a client dropped for overflowing it.

use super::BrokerConfig;
use rumqttc::{Packet, Publish};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// An outbox's bounds (from [`BrokerConfig`], whose fields say why each exists).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub soft_bytes: usize,
    pub stall_timeout: Duration,
}

impl From<&BrokerConfig> for Limits {
    fn from(config: &BrokerConfig) -> Self {
        Limits {
            // At least the CONNACK fits.
            max_messages: config.max_queued_messages.max(1),
            max_bytes: config.max_queued_bytes,
            soft_bytes: config.soft_queued_bytes,
            stall_timeout: config.stall_timeout,
        }
    }
}

/// A packet queued for one connection. Every packet counts as one message against the
/// queue's bounds, and a delivery also by its size in bytes (its payload and topic); the
/// connection's own replies (CONNACK, SUBACK, PUBACK, UNSUBACK, PINGRESP) weigh no bytes, so
/// the message bound is what stops a client that never reads from piling them up.
pub(crate) struct Outgoing {
    pub packet: Packet,
    pub size: usize,
}

/// The sending half of a connection's outbox.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<Queued>,
    limits: Limits,
}

/// The receiving half, owned by the connection's writer (or the in-process client).
pub(crate) struct Inbox {
    pub rx: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<Queued>,
}

/// What a connection's outbox holds now; the writer decrements as it sends and wakes the
/// publishers waiting for room.
#[derive(Default)]
pub(crate) struct Queued {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    drained: Notify,
}

/// The outbox is over its bounds: its client has stopped reading.
pub(crate) struct Full;

/// The outbox drained nothing for the stall timeout: its client has stopped reading.
pub(crate) struct Stalled;

/// A new, empty outbox.
pub(crate) fn outbox(limits: Limits) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(Queued::default());
    let inbox = Inbox {
        rx,
        queued: queued.clone(),
    };
    (Outbox { tx, queued, limits }, inbox)
}

impl Outbox {
    /// Queue a delivery, counted by its payload and topic bytes, unless the outbox is over
    /// its bounds.
    pub fn deliver(&self, message: Publish) -> Result<(), Full> {
        let size = message.payload.len() + message.topic.len();
        self.push(Packet::Publish(message), size)
    }

    /// Queue one of the connection's own replies (CONNACK, SUBACK, PUBACK, UNSUBACK,
    /// PINGRESP) unless the outbox is over its bounds: replies wait in the same queue, under
    /// the same bounds, as deliveries.
    pub fn reply(&self, packet: Packet) -> Result<(), Full> {
        self.push(packet, 0)
    }

    fn push(&self, packet: Packet, size: usize) -> Result<(), Full> {
        let messages = self.queued.messages.load(Ordering::Relaxed);
        let bytes = self.queued.bytes.load(Ordering::Relaxed);
        if messages >= self.limits.max_messages || bytes + size > self.limits.max_bytes {
            return Err(Full);
        }
        self.queued.messages.fetch_add(1, Ordering::Relaxed);
        self.queued.bytes.fetch_add(size, Ordering::Relaxed);
        // A send fails only when the connection is already gone, which loses nothing new.
        let _ = self.tx.send(Outgoing { packet, size });
        Ok(())
    }

    /// Whether the outbox is above its soft bound: its publishers should wait for room.
    pub fn congested(&self) -> bool {
        self.queued.bytes.load(Ordering::Relaxed) > self.limits.soft_bytes
    }

    /// What a publisher waits on while this outbox is congested.
    pub fn queued(&self) -> Arc<Queued> {
        self.queued.clone()
    }

    /// Log, as a warning naming the client, that it is being disconnected for `why`.
    pub fn warn_dropped(&self, client_id: &str, why: &str) {
        tracing::warn!(
            client_id,
            queued_messages = self.queued.messages.load(Ordering::Relaxed),
            queued_bytes = self.queued.bytes.load(Ordering::Relaxed),
            max_messages = self.limits.max_messages,
            max_bytes = self.limits.max_bytes,
            "disconnecting a client that stopped reading: {why}"
        );
    }
}

impl Queued {
    /// Flow control: wait until the outbox is back under the soft bound; `Stalled` when it
    /// drains nothing for the stall timeout.
    pub async fn wait_for_room(&self, limits: &Limits) -> Result<(), Stalled> {
        loop {
            let drained = self.drained.notified();
            // Checked after registering for the signal, so a drain in between is not missed.
            if self.bytes.load(Ordering::Relaxed) <= limits.soft_bytes {
                return Ok(());
            }
            if tokio::time::timeout(limits.stall_timeout, drained)
                .await
                .is_err()
            {
                return Err(Stalled);
            }
        }
    }
}

impl Inbox {
    /// Account for one packet taken off the queue.
    pub fn taken(&self, item: &Outgoing) {
        self.queued.messages.fetch_sub(1, Ordering::Relaxed);
        self.queued.bytes.fetch_sub(item.size, Ordering::Relaxed);
    }

    /// Tell waiting publishers that the outbox drained (after a write).
    pub fn drained(&self) {
        self.queued.drained.notify_waiters();
    }
}
