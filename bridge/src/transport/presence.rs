//! Presence on the client side: the retained record a developer session announces on every
//! connection (and its offline twin, the will), each connection's epoch, and what a session
//! does with the records of its stage it reads (the tidy judgement).

use super::inbound::Delivered;
use crate::topics::TopicError;
use crate::wire::{encode_whole, ProtocolError};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Builds a connection's presence records for its epoch: `(topic, online, offline)`. The
/// online record is published retained after every CONNACK; the offline one is the will.
/// The topic ends in the session's own level (`.../presence/{session}`).
pub type PresenceFn = Arc<dyn Fn(u64) -> (String, Bytes, Bytes) + Send + Sync>;

/// Why a session's presence records cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The session's name cannot be part of a topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The record does not fit one MQTT message: a retained record is one message, so it
    /// cannot travel in chunks as other messages do.
    #[error(
        "the presence record of session {session:?}, which serves {functions} functions, \
         does not fit one MQTT message ({why}); give the functions shorter names, or split \
         them across apps so that each `live dev` serves fewer"
    )]
    TooLarge {
        /// The session.
        session: String,
        /// How many functions it serves.
        functions: usize,
        /// The size and the limit.
        why: ProtocolError,
    },
}

/// The presence records of developer session `session` serving `functions` (none listed:
/// every function), for [`super::ConnectOptions::presence`]. Refused when a record would not
/// fit one MQTT payload (about 1,900 functions of the longest names).
pub fn session_presence(
    topics: &crate::Topics,
    session: &str,
    functions: Vec<String>,
) -> Result<PresenceFn, PresenceError> {
    let one = Arc::new(std::sync::atomic::AtomicU16::new(1));
    session_presence_with_lanes(topics, session, functions, one)
}

/// [`session_presence`] for a session receiving on `lanes` connections (read afresh for
/// every record; at most [`crate::topics::MAX_LANES`]).
pub fn session_presence_with_lanes(
    topics: &crate::Topics,
    session: &str,
    functions: Vec<String>,
    lanes: Arc<std::sync::atomic::AtomicU16>,
) -> Result<PresenceFn, PresenceError> {
    let topic = topics.presence(session)?;
    let session = session.to_string();
    let count = functions.len();
    let record = move |online, epoch, lanes| {
        let p = crate::Presence {
            session: session.clone(),
            online,
            epoch,
            version: crate::PROTOCOL_VERSION,
            functions: functions.clone(),
            lanes,
        };
        encode_whole(&p, b"").map_err(|why| PresenceError::TooLarge {
            session: session.clone(),
            functions: count,
            why,
        })
    };
    // The longest record there can be: if it fits, every record of this session fits.
    record(false, u64::MAX, crate::topics::MAX_LANES)?;
    Ok(Arc::new(move |epoch| {
        let lanes = lanes
            .load(std::sync::atomic::Ordering::Relaxed)
            .clamp(1, crate::topics::MAX_LANES);
        let record =
            |online| record(online, epoch, lanes).expect("no longer than the longest record");
        (topic.clone(), record(true), record(false))
    }))
}

/// The filter of every presence record on the stage of presence topic `own`.
pub(super) fn presence_filter(own: &str) -> String {
    let stage = own.rsplit_once('/').map_or(own, |(stage, _)| stage);
    format!("{stage}/+")
}

/// A fresh presence epoch: now in milliseconds, and above `previous`.
pub(super) fn epoch_after(previous: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now.max(previous + 1)
}

/// What a side that announces presence does with the presence records it reads.
pub(super) struct Tidy {
    /// Its own presence topic, whose record it puts back.
    own: String,
    presence: PresenceFn,
    /// The epoch of its current connection.
    epoch: Arc<AtomicU64>,
    /// Set by [`super::Connection::close`]: its own offline and cleared records are to stay.
    closing: Arc<AtomicBool>,
    /// Whether the caller subscribed to presence records itself (else they stop here); only
    /// the stage's presence filter itself counts, not a wider one.
    pub(super) pass_on: bool,
}

/// A retained record to publish to keep presence tidy.
pub(super) struct TidyUp {
    pub(super) topic: String,
    pub(super) payload: Bytes,
    /// For this side's own record: set once it closes, when the record must not be put back.
    /// The check and the publish run with no await between them, and `close` sets it before
    /// it publishes the offline record: on a single-threaded runtime (`live dev`'s) nothing
    /// can come between.
    unless: Option<Arc<AtomicBool>>,
}

impl TidyUp {
    pub(super) fn still_wanted(&self) -> bool {
        !self
            .unless
            .as_ref()
            .is_some_and(|closing| closing.load(Ordering::Relaxed))
    }
}

impl Tidy {
    /// The judgement of a side announcing `presence`, subscribed to `subscriptions`.
    pub(super) fn new(
        presence: &PresenceFn,
        subscriptions: &[String],
        epoch: &Arc<AtomicU64>,
        closing: &Arc<AtomicBool>,
    ) -> Tidy {
        let own = presence(0).0;
        Tidy {
            pass_on: subscriptions.contains(&presence_filter(&own)),
            own,
            presence: presence.clone(),
            epoch: epoch.clone(),
            closing: closing.clone(),
        }
    }

    /// What to publish on reading `record` (`None`: cleared or unreadable) on presence topic
    /// `topic`.
    ///
    /// Another session's offline record is cleared: whoever listened when it was published
    /// has read it, and to anyone joining later an absent session and an offline one are the
    /// same, so without this every session that ever crashed (its will) would stay retained
    /// on the stage, and be sent to every stub that connects. Its own record, found cleared,
    /// unreadable or offline while connected (another session cleared its offline record as
    /// it reconnected, or the will of its previous connection came late), is put back.
    pub(super) fn judge(&self, topic: &str, record: Option<&crate::Presence>) -> Delivered {
        if topic != self.own {
            return match record {
                Some(other) if !other.online => {
                    tracing::debug!(session = %other.session, "clearing an offline session's presence record");
                    Delivered::Tidy(TidyUp {
                        topic: topic.to_string(),
                        payload: Bytes::new(),
                        unless: None,
                    })
                }
                _ => Delivered::Passed,
            };
        }
        // An online record of another epoch is left alone: two connections under one name
        // would otherwise overwrite each other's without end.
        if record.is_some_and(|own| own.online) || self.closing.load(Ordering::Relaxed) {
            return Delivered::Passed;
        }
        tracing::debug!(
            "this session's presence record was cleared or marked offline: putting it back"
        );
        let (topic, online, _) = (self.presence)(self.epoch.load(Ordering::Relaxed));
        Delivered::Tidy(TidyUp {
            topic,
            payload: online,
            unless: Some(self.closing.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MAX_MQTT_PAYLOAD;
    use crate::Reassembler;

    fn functions(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{i:0>64}")).collect()
    }

    #[test]
    fn a_record_too_large_for_one_message_is_refused_naming_the_limit() {
        let topics = crate::Topics::new("app", "dev").unwrap();
        let refused = session_presence(&topics, "s1", functions(2_000));
        let message = refused.err().expect("refused").to_string();
        assert!(message.contains("2000 functions"), "{message}");
        assert!(message.contains(&MAX_MQTT_PAYLOAD.to_string()), "{message}");
        assert!(message.contains("shorter names"), "{message}");
    }

    #[test]
    fn every_record_of_a_session_that_fits_is_one_whole_frame() {
        let topics = crate::Topics::new("app", "dev").unwrap();
        // 1,950 of the longest names fit (about 1,954 do).
        let presence = session_presence(&topics, "s1", functions(1_950)).unwrap();
        for epoch in [0, 1, u64::MAX] {
            let (_, online, offline) = presence(epoch);
            for record in [online, offline] {
                assert!(record.len() <= MAX_MQTT_PAYLOAD);
                let frame = Reassembler::whole_of_any_version(record).unwrap();
                let read: crate::Presence = frame.parse().unwrap();
                assert_eq!((read.epoch, read.functions.len()), (epoch, 1_950));
            }
        }
    }
}
