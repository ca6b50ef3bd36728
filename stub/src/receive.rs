//! What the stub receives over its bridge connection, as an explicit state: each event (a
//! message, the link changing, the presence grace running out) is a method, so the receive
//! side is tested without a broker; `run` only waits for the next event.

use crate::sessions::Sessions;
use bridge::transport::{Connection, Link, Received};
use bridge::{DevMessage, Presence, Topic};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// The invocations waiting for results, by request id.
pub type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<(DevMessage, Bytes)>>>>;

/// The receive side: results handed to their invocations, presence records kept by
/// [`Sessions`] and published to the forwarding side.
pub struct Inbox {
    book: Sessions,
    presence: watch::Sender<HashMap<String, Presence>>,
    waiters: Waiters,
}

impl Inbox {
    pub fn new(presence: watch::Sender<HashMap<String, Presence>>, waiters: Waiters) -> Inbox {
        Inbox {
            book: Sessions::default(),
            presence,
            waiters,
        }
    }

    /// When the presence grace runs out, if it runs.
    pub fn grace(&self) -> Option<Instant> {
        self.book.confirm_by
    }

    /// A frame arrived at `now`.
    pub fn received(&mut self, received: Received, now: Instant) {
        self.book
            .connection(&self.presence.borrow(), received.generation, now);
        match received.topic {
            Topic::Results { .. } => deliver_result(&self.waiters, received.frame),
            Topic::Presence { .. } => {
                if let Ok(p) = received.frame.parse::<Presence>() {
                    let book = &mut self.book;
                    self.presence
                        .send_if_modified(|map| book.record(map, received.generation, p));
                }
            }
            // The stub subscribes to nothing else.
            Topic::Invocations { .. } | Topic::Other(_) => {}
        }
    }

    /// The link changed to `link` at `now`.
    pub fn link(&mut self, link: Link, now: Instant) {
        if let Link::Up { generation } = link {
            self.book
                .connection(&self.presence.borrow(), generation, now);
        }
    }

    /// The grace timer fired at `now`.
    pub fn grace_over(&mut self, now: Instant) {
        let book = &mut self.book;
        self.presence
            .send_if_modified(|map| book.grace_over(map, now));
    }

    /// Feed the state from `connection` until it closes.
    pub async fn run(mut self, mut connection: Connection) {
        let mut link = connection.link();
        let mut link_open = true;
        loop {
            let grace = self.grace();
            tokio::select! {
                received = connection.recv() => {
                    let Some(received) = received else { break };
                    self.received(received, Instant::now());
                }
                changed = link.changed(), if link_open => {
                    link_open = changed.is_ok();
                    let state = *link.borrow_and_update();
                    self.link(state, Instant::now());
                }
                _ = tokio::time::sleep_until(grace.unwrap_or_else(Instant::now).into()), if grace.is_some() => {
                    self.grace_over(Instant::now());
                }
            }
        }
    }
}

/// Hand a result message to the invocation waiting for it; a late or duplicate result has
/// no waiter and is dropped.
fn deliver_result(waiters: &Waiters, frame: bridge::wire::Frame) {
    let message = match frame.parse::<DevMessage>() {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!("dropped an unreadable result message: {e}");
            return;
        }
    };
    let waiter = waiters
        .lock()
        .expect("lock")
        .get(message.request_id())
        .cloned();
    if let Some(w) = waiter {
        let _ = w.send((message, frame.body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::PRESENCE_GRACE;
    use bridge::{Reassembler, PROTOCOL_VERSION};
    use std::time::Duration;

    fn frame(payload: Vec<Bytes>) -> bridge::Frame {
        Reassembler::whole_of_any_version(payload[0].clone()).unwrap()
    }

    fn record(session: &str, online: bool) -> Received {
        let presence = Presence {
            session: session.into(),
            online,
            epoch: 1,
            version: PROTOCOL_VERSION,
            functions: vec![],
            lanes: 1,
        };
        Received {
            topic: Topic::Presence {
                session: session.into(),
            },
            frame: frame(bridge::wire::encode(&presence, b"").unwrap()),
            generation: 1,
        }
    }

    fn inbox() -> (Inbox, watch::Receiver<HashMap<String, Presence>>, Waiters) {
        let (tx, rx) = watch::channel(HashMap::new());
        let waiters = Waiters::default();
        (Inbox::new(tx, waiters.clone()), rx, waiters)
    }

    fn online(presence: &watch::Receiver<HashMap<String, Presence>>) -> Vec<String> {
        let mut names: Vec<String> = presence
            .borrow()
            .values()
            .filter(|p| p.online)
            .map(|p| p.session.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_result_reaches_the_invocation_waiting_for_it_and_a_stray_one_is_dropped() {
        let (mut inbox, _presence, waiters) = inbox();
        let (tx, mut rx) = mpsc::unbounded_channel();
        waiters.lock().unwrap().insert("r1".into(), tx);
        let result = |request_id: &str| Received {
            topic: Topic::Results { env: "e".into() },
            frame: frame(
                bridge::wire::encode(
                    &DevMessage::Response {
                        request_id: request_id.into(),
                        headers: vec![],
                        in_object: false,
                    },
                    b"done",
                )
                .unwrap(),
            ),
            generation: 1,
        };
        let now = Instant::now();
        inbox.received(result("late"), now);
        inbox.received(result("r1"), now);
        let (message, body) = rx.try_recv().expect("delivered");
        assert_eq!(message.request_id(), "r1");
        assert_eq!(&body[..], b"done");
        assert!(rx.try_recv().is_err(), "the stray result went nowhere");
    }

    #[test]
    fn records_are_published_and_after_a_reconnection_the_grace_forgets_the_unannounced() {
        let (mut inbox, presence, _) = inbox();
        let t0 = Instant::now();
        inbox.link(Link::Up { generation: 1 }, t0);
        inbox.received(record("a", true), t0);
        inbox.received(record("b", true), t0);
        assert_eq!(online(&presence), ["a", "b"]);
        inbox.grace_over(t0 + PRESENCE_GRACE);
        assert_eq!(
            online(&presence),
            ["a", "b"],
            "none was known before to confirm"
        );
        assert_eq!(inbox.grace(), None);

        inbox.link(Link::Down, t0);
        inbox.link(Link::Up { generation: 2 }, t0);
        assert_eq!(inbox.grace(), Some(t0 + PRESENCE_GRACE));
        let again = Received {
            generation: 2,
            ..record("a", true)
        };
        inbox.received(again, t0 + Duration::from_millis(10));
        inbox.grace_over(t0 + PRESENCE_GRACE);
        assert_eq!(online(&presence), ["a"], "b was not announced again");
        assert_eq!(inbox.grace(), None);

        inbox.received(
            Received {
                generation: 2,
                ..record("a", false)
            },
            t0 + PRESENCE_GRACE,
        );
        assert!(online(&presence).is_empty(), "a went offline");
    }
}
