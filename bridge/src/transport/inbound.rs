//! What arrives on a connection, on its way to [`super::Connection::recv`]: the topic parsed
//! once into a [`Topic`], frames reassembled, presence records read whole and judged, invalid
//! payloads and expired partial messages counted and dropped.

use super::presence::{Tidy, TidyUp};
use super::{ConnectOptions, Received};
use crate::topics::Topic;
use crate::wire::{Frame, ProtocolError, Reassembler};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The receiving half of a connection, owned by the task that runs it.
pub(super) struct Inbound {
    reassembler: Reassembler,
    swept: Instant,
    incoming: mpsc::Sender<Received>,
    rejected: Arc<AtomicU64>,
    tidy: Option<Tidy>,
    pacer: Option<Arc<super::pacing::Pacer>>,
}

/// What became of a publish handed to [`Inbound::deliver`].
pub(super) enum Delivered {
    /// Passed on, or dropped as invalid.
    Passed,
    /// Nobody receives any more.
    Stop,
    /// Publish this retained record to keep presence tidy.
    Tidy(TidyUp),
}

impl Inbound {
    pub(super) fn new(
        options: &ConnectOptions,
        incoming: mpsc::Sender<Received>,
        rejected: Arc<AtomicU64>,
        epoch: &Arc<AtomicU64>,
        closing: &Arc<AtomicBool>,
    ) -> Inbound {
        let tidy = options
            .presence
            .as_ref()
            .map(|presence| Tidy::new(presence, &options.subscriptions, epoch, closing));
        Inbound {
            reassembler: Reassembler::default(),
            swept: Instant::now(),
            incoming,
            rejected,
            tidy,
            pacer: None,
        }
    }

    /// Count every publish received against `pacer`'s quota.
    pub(super) fn pace(&mut self, pacer: Option<Arc<super::pacing::Pacer>>) {
        self.pacer = pacer;
    }

    /// Reassemble `publish`, received on connection `generation`, passing on a completed
    /// frame.
    pub(super) async fn deliver(
        &mut self,
        publish: rumqttc::Publish,
        generation: u64,
    ) -> Delivered {
        if let Some(pacer) = &self.pacer {
            pacer.received();
        }
        let topic = crate::Topics::parse(&publish.topic);
        if let Topic::Presence { .. } = topic {
            return self.presence(publish, topic, generation).await;
        }
        match self.reassembler.push(publish.payload, Instant::now()) {
            Ok(Some(frame)) => self.pass_on(topic, frame, generation).await,
            Ok(None) => Delivered::Passed,
            Err(e) => {
                self.reject(&e);
                Delivered::Passed
            }
        }
    }

    async fn pass_on(&self, topic: Topic, frame: Frame, generation: u64) -> Delivered {
        let received = Received {
            topic,
            frame,
            generation,
        };
        match self.incoming.send(received).await {
            Ok(()) => Delivered::Passed,
            Err(_) => Delivered::Stop,
        }
    }

    /// A presence record is one whole frame in one MQTT message, read whatever its version:
    /// it says which version its session speaks, so that its users can name the side to
    /// update. A chunk is never taken for a record (a retained record cannot be chunked:
    /// `session_presence` refuses one that does not fit). An empty payload is a cleared
    /// record: nothing to pass on; so is an unreadable one.
    async fn presence(
        &mut self,
        publish: rumqttc::Publish,
        topic: Topic,
        generation: u64,
    ) -> Delivered {
        let frame = if publish.payload.is_empty() {
            None
        } else {
            match Reassembler::whole_of_any_version(publish.payload) {
                Ok(frame) => Some(frame),
                Err(e) => {
                    // Counted, and on its own topic taken as a cleared record.
                    self.reject(&e);
                    None
                }
            }
        };
        let record = frame
            .as_ref()
            .and_then(|f| f.parse::<crate::Presence>().ok());
        let Some(tidy) = &self.tidy else {
            return match frame {
                Some(frame) => self.pass_on(topic, frame, generation).await,
                None => Delivered::Passed,
            };
        };
        let action = tidy.judge(&publish.topic, record.as_ref());
        if let (true, Some(frame)) = (tidy.pass_on, frame) {
            if let Delivered::Stop = self.pass_on(topic, frame, generation).await {
                return Delivered::Stop;
            }
        }
        action
    }

    /// Drop partial messages past their time, at most once a second.
    pub(super) fn sweep(&mut self) {
        if self.swept.elapsed() >= Duration::from_secs(1) {
            self.swept = Instant::now();
            for e in self.reassembler.expire(self.swept) {
                self.reject(&e);
            }
        }
    }

    fn reject(&self, e: &ProtocolError) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("dropped a bridge message: {e}");
    }
}
