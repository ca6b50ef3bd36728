//! The broker's shared state: connected sessions with their outboxes, the index of their
//! subscriptions, retained messages and last wills, and the routing of each publish. Every
//! change happens under one short lock, so that a SUBACK and the retained messages it
//! replays stay ordered before later publishes.

use super::filters::Filters;
use super::outbox::{outbox, Inbox, Limits, Outbox, Queued};
use super::quotas::{ConnQuota, Direction};
use super::BrokerConfig;
use crate::protocol::MAX_MQTT_PAYLOAD;
use crate::topics::matches;
use rumqttc::{LastWill, Packet, Publish, QoS, SubAck, SubscribeFilter, SubscribeReasonCode};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A subscriber whose outbox is above the soft bound after a publish: its publisher waits
/// for room before reading more (flow control), or disconnects it if it makes no progress.
pub(crate) struct Congested {
    pub client_id: String,
    pub conn: u64,
    pub queued: Arc<Queued>,
}

struct Session {
    conn: u64,
    outbox: Outbox,
    /// Its filters (the grants are in `State::filters`).
    subscriptions: Vec<String>,
    will: Option<LastWill>,
    kick: Arc<Notify>,
    /// Its quotas, for a socket connection in quota mode.
    quota: Option<Arc<ConnQuota>>,
}

impl Session {
    /// Whether a delivery to it is within its publish rate (always, without quotas); one
    /// that is not is counted as discarded and not sent, as IoT Core does.
    fn admits_delivery(&self) -> bool {
        self.quota.as_ref().is_none_or(|q| q.admit(Direction::Out))
    }
}

/// A newly registered connection: its id, its inbox (its CONNACK first), the sending half of
/// the same outbox for its own replies, and the signal that it was taken over or overflowed.
pub(crate) struct Registration {
    pub conn: u64,
    pub inbox: Inbox,
    pub replies: Outbox,
    pub kick: Arc<Notify>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    /// Every subscription by filter (the same as the sessions' own lists), so that a publish
    /// looks up its topic once and checks each distinct wildcard filter once, however many
    /// sessions are connected: the stubs of a stage all share one presence filter.
    filters: Filters,
    retained: BTreeMap<String, Publish>,
    next_conn: u64,
}

impl State {
    /// Remove a session and its subscriptions.
    fn remove_session(&mut self, client_id: &str) -> Option<Session> {
        let session = self.sessions.remove(client_id)?;
        for filter in &session.subscriptions {
            self.filters.remove(client_id, filter);
        }
        Some(session)
    }
}

pub(crate) struct Router {
    state: Mutex<State>,
    config: BrokerConfig,
    limits: Limits,
}

impl Router {
    pub fn new(mut config: BrokerConfig) -> Self {
        if config.iot.is_some() && config.quotas.is_none() {
            config.quotas = Some(super::Quotas::iot_core());
        }
        Router {
            state: Mutex::new(State::default()),
            limits: Limits::from(&config),
            config,
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Register `client_id`, queue `connack` first in its outbox, and take over any earlier
    /// connection with the same id (whose will is then published, before this one's CONNACK
    /// reaches its client). `quota` holds a socket connection's quotas in quota mode.
    pub fn register(
        &self,
        client_id: &str,
        will: Option<LastWill>,
        connack: Packet,
        quota: Option<Arc<ConnQuota>>,
    ) -> Registration {
        let mut state = self.state.lock().expect("router lock");
        state.next_conn += 1;
        let conn = state.next_conn;
        let (outbox, inbox) = outbox(self.limits);
        let kick = Arc::new(Notify::new());
        let mut wills = VecDeque::new();
        if let Some(old) = state.remove_session(client_id) {
            tracing::info!(client_id, "client id taken over by a new connection");
            old.kick.notify_one();
            wills.extend(old.will);
        }
        // A fresh outbox always has room for its first packet.
        let _ = outbox.reply(connack);
        let replies = outbox.clone();
        state.sessions.insert(
            client_id.to_string(),
            Session {
                conn,
                outbox,
                subscriptions: Vec::new(),
                will,
                kick: kick.clone(),
                quota,
            },
        );
        self.route(&mut state, wills.into_iter().map(will_publish).collect());
        Registration {
            conn,
            inbox,
            replies,
            kick,
        }
    }

    /// Remove connection `conn` of `client_id`, publishing its will unless it disconnected
    /// cleanly. A connection already taken over or dropped changes nothing.
    pub fn disconnect(&self, client_id: &str, conn: u64, clean: bool) {
        let mut state = self.state.lock().expect("router lock");
        if state.sessions.get(client_id).map(|s| s.conn) != Some(conn) {
            return;
        }
        let session = state.remove_session(client_id).expect("checked above");
        if !clean {
            if let Some(will) = session.will {
                tracing::debug!(client_id, topic = %will.topic, "publishing last will");
                self.route(&mut state, VecDeque::from([will_publish(will)]));
            }
        }
    }

    /// Route a client's PUBLISH: store or clear it if retained, deliver it to every matching
    /// subscription. Returns the subscribers now above the soft bound, which the publisher
    /// waits for, or why the broker refuses the publish (IoT Core's limits).
    pub fn publish(&self, publish: Publish) -> Result<Vec<Congested>, Refused> {
        if let Some(why) = refusal(&publish) {
            return Err(Refused {
                why,
                topic: publish.topic,
            });
        }
        let mut state = self.state.lock().expect("router lock");
        let mut congested = self.route(&mut state, VecDeque::from([publish]));
        // Not those dropped since (routing a will can overflow them).
        congested.retain(|c| {
            state
                .sessions
                .get(&c.client_id)
                .is_some_and(|s| s.conn == c.conn)
        });
        Ok(congested)
    }

    /// Flow control: wait until a congested subscriber's outbox is back under the soft bound
    /// before taking more from its publisher (a connection stops reading its socket, an
    /// in-process client waits); one that drains nothing for the stall timeout has stopped
    /// reading and is disconnected.
    pub async fn wait_for_room(&self, subscriber: Congested) {
        if subscriber.queued.wait_for_room(&self.limits).await.is_err() {
            self.drop_slow(
                &subscriber.client_id,
                subscriber.conn,
                "it drained nothing for the stall timeout",
            );
        }
    }

    /// Disconnect connection `conn` of `client_id`, which stopped reading (`why`), loudly, and
    /// publish its will. A connection already taken over or dropped changes nothing.
    pub fn drop_slow(&self, client_id: &str, conn: u64, why: &str) {
        let mut state = self.state.lock().expect("router lock");
        if state.sessions.get(client_id).map(|s| s.conn) != Some(conn) {
            return;
        }
        let pending = self.drop_overflowed(
            &mut state,
            vec![client_id.to_string()],
            VecDeque::new(),
            why,
        );
        self.route(&mut state, pending);
    }

    /// Add subscriptions for `conn`, queue the SUBACK, then the retained messages they match.
    pub fn subscribe(&self, client_id: &str, conn: u64, pkid: u16, filters: Vec<SubscribeFilter>) {
        let mut state = self.state.lock().expect("router lock");
        let State {
            sessions,
            retained,
            filters: index,
            ..
        } = &mut *state;
        let Some(session) = sessions.get_mut(client_id).filter(|s| s.conn == conn) else {
            return;
        };
        let mut codes = Vec::with_capacity(filters.len());
        let mut replay = Vec::new();
        for (nth, filter) in filters.into_iter().enumerate() {
            if let Err(e) = crate::topics::check_filter(&filter.path) {
                tracing::warn!(client_id, "refused subscription: {e}");
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            if let Some(quota) = &session.quota {
                let existing = session.subscriptions.contains(&filter.path);
                if !quota.allow_subscription(nth, session.subscriptions.len(), existing) {
                    let (per_packet, per_connection) = quota.subscription_limits();
                    tracing::warn!(
                        client_id,
                        filter = filter.path,
                        "refused subscription: over IoT Core's limits of {per_packet} filters \
                         per SUBSCRIBE and {per_connection} subscriptions per connection"
                    );
                    codes.push(SubscribeReasonCode::Failure);
                    continue;
                }
            }
            // QoS 2 is not supported, as in IoT Core: grant QoS 1.
            let qos = min_qos(filter.qos, QoS::AtLeastOnce);
            codes.push(SubscribeReasonCode::Success(qos));
            for (topic, message) in retained.iter() {
                if matches(topic, &filter.path) {
                    let mut message = message.clone();
                    message.qos = min_qos(message.qos, qos);
                    message.retain = true;
                    replay.push(message);
                }
            }
            session.subscriptions.retain(|f| *f != filter.path);
            index.add(client_id, &filter.path, qos);
            session.subscriptions.push(filter.path);
        }
        let outbox = &session.outbox;
        let mut full = outbox
            .reply(Packet::SubAck(SubAck::new(pkid, codes)))
            .is_err();
        for message in replay {
            if full {
                break;
            }
            if session.admits_delivery() {
                full = outbox.deliver(message).is_err();
            }
        }
        if full {
            let pending = self.drop_overflowed(
                &mut state,
                vec![client_id.to_string()],
                VecDeque::new(),
                "its queue is full",
            );
            self.route(&mut state, pending);
        }
    }

    /// Remove subscriptions of `conn`.
    pub fn unsubscribe(&self, client_id: &str, conn: u64, topics: &[String]) {
        let mut state = self.state.lock().expect("router lock");
        let State {
            sessions, filters, ..
        } = &mut *state;
        if let Some(session) = sessions.get_mut(client_id).filter(|s| s.conn == conn) {
            session.subscriptions.retain(|f| !topics.contains(f));
            for topic in topics {
                filters.remove(client_id, topic);
            }
        }
    }

    /// Deliver `pending` (a publish, then the wills it causes); the subscribers of the first
    /// message left above the soft bound.
    fn route(&self, state: &mut State, mut pending: VecDeque<Publish>) -> Vec<Congested> {
        let mut congested = Vec::new();
        let mut first = true;
        while let Some(publish) = pending.pop_front() {
            if publish.retain {
                if publish.payload.is_empty() {
                    state.retained.remove(&publish.topic);
                } else {
                    let mut stored = publish.clone();
                    stored.dup = false;
                    state.retained.insert(publish.topic.clone(), stored);
                }
            }
            let mut overflowed = Vec::new();
            for (client_id, granted) in state.filters.subscribers(&publish.topic) {
                let Some(session) = state.sessions.get(client_id) else {
                    continue;
                };
                if !session.admits_delivery() {
                    continue;
                }
                let mut message = publish.clone();
                message.qos = min_qos(publish.qos, granted);
                // A message delivered to an established subscription is never marked retained.
                message.retain = false;
                message.dup = false;
                if session.outbox.deliver(message).is_err() {
                    overflowed.push(client_id.to_string());
                } else if first && session.outbox.congested() {
                    congested.push(Congested {
                        client_id: client_id.to_string(),
                        conn: session.conn,
                        queued: session.outbox.queued(),
                    });
                }
            }
            first = false;
            pending = self.drop_overflowed(state, overflowed, pending, "its queue is full");
        }
        congested
    }

    /// Disconnect sessions whose outbox overflowed, loudly, and queue their wills.
    fn drop_overflowed(
        &self,
        state: &mut State,
        overflowed: Vec<String>,
        mut pending: VecDeque<Publish>,
        why: &str,
    ) -> VecDeque<Publish> {
        for client_id in overflowed {
            if let Some(session) = state.remove_session(&client_id) {
                session.outbox.warn_dropped(&client_id, why);
                session.kick.notify_one();
                pending.extend(session.will.map(will_publish));
            }
        }
        // Routing these wills may overflow others in turn; the caller's loop handles that.
        pending
    }
}

/// A PUBLISH the broker refused, and why.
pub(crate) struct Refused {
    pub why: String,
    pub topic: String,
}

/// Why the broker refuses a client's PUBLISH (IoT Core's limits: payload size, topic shape,
/// QoS 0 or 1), if it does.
fn refusal(publish: &Publish) -> Option<String> {
    if publish.payload.len() > MAX_MQTT_PAYLOAD {
        return Some(format!(
            "payload of {} bytes exceeds the limit of {MAX_MQTT_PAYLOAD}",
            publish.payload.len()
        ));
    }
    if let Err(e) = crate::topics::check_topic(&publish.topic) {
        return Some(e.to_string());
    }
    (publish.qos == QoS::ExactlyOnce).then(|| "QoS 2 is not supported".to_string())
}

fn will_publish(will: LastWill) -> Publish {
    let mut publish = Publish::from_bytes(will.topic, will.qos, will.message);
    publish.retain = will.retain;
    publish
}

fn min_qos(a: QoS, b: QoS) -> QoS {
    std::cmp::min_by_key(a, b, |q| *q as u8)
}
