//! The bridge side of the stub: one connection per execution environment, the developer
//! sessions' presence, and forwarding one invocation to a session until its result, an
//! explicit failure, or the deadline.

use crate::config::Config;
use crate::runtime::Next;
use bridge::protocol::{Header, WireInvocation};
use bridge::runtime_api::failure;
use bridge::transport::{ConnectOptions, Connection, Link, Sender};
use bridge::{DevMessage, Presence, StubMessage, Topics, PROTOCOL_VERSION};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// How long before Lambda's deadline the stub answers at the latest, so that its own answer
/// (rather than Lambda's timeout) reaches the caller.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// How often an unacknowledged invocation is sent again, and an acknowledged one probed for.
const RETRANSMIT: Duration = Duration::from_millis(1000);

/// How long after a reconnection a session known before it may go unannounced before it is
/// forgotten (the broker sends the retained presence records right after the subscription),
/// and how long an invocation waits for its session to come back before it moves to
/// another (a session's connection that drops and comes back marks it offline meanwhile).
const PRESENCE_GRACE: Duration = Duration::from_secs(2);

/// A grace timer that fires this much late was asleep (the stub frozen): it starts again,
/// since the records it waited for may be waiting to be read.
const OVERSLEPT: Duration = Duration::from_millis(500);

/// Whether an invocation's session serves its function: here, gone until a time (it may come
/// back: only its connection may have dropped), or gone for longer (the invocation may move).
#[derive(Clone, Copy)]
enum Away {
    Here,
    Until(Instant),
    Long,
}

impl Away {
    fn until(self) -> Option<Instant> {
        match self {
            Away::Until(t) => Some(t),
            _ => None,
        }
    }
}

/// What to post to the real Runtime API.
pub enum Reply {
    Response {
        headers: Vec<Header>,
        body: Bytes,
    },
    Error {
        error_type: String,
        headers: Vec<Header>,
        body: Bytes,
    },
}

impl Reply {
    fn failure(error_type: &str, message: String) -> Reply {
        let (error_type, body) = failure(error_type, &message);
        Reply::Error {
            error_type,
            headers: bridge::runtime_api::json_headers(),
            body,
        }
    }
}

type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<(DevMessage, Bytes)>>>>;

/// Hand a result message to the invocation waiting for it; a late or duplicate result has
/// no waiter and is dropped.
fn deliver_result(waiters: &Waiters, frame: bridge::wire::Frame) {
    let Ok(message) = frame.parse::<DevMessage>() else {
        eprintln!("live stub: dropped an unreadable result message");
        return;
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

/// What the stub knows of the developer sessions, connection by connection. A record is
/// taken from the current connection only, and after a reconnection the sessions known
/// before are kept only if they are announced again: a session that left while this stub
/// was cut off (or frozen past its keep-alive) may have left no record at all (a clean exit
/// clears it, and other sessions clear a crashed one's), and would otherwise stay "online"
/// here for good, its invocations unanswered.
#[derive(Default)]
struct Sessions {
    /// The connection the records come from.
    generation: u64,
    /// Sessions known from earlier connections and not announced on this one yet.
    unconfirmed: HashSet<String>,
    /// When those are forgotten.
    confirm_by: Option<Instant>,
}

impl Sessions {
    /// Connection `generation` is up (or delivering): on a new one, every session in `known`
    /// waits to be announced again.
    fn connection(&mut self, known: &HashMap<String, Presence>, generation: u64, now: Instant) {
        if generation <= self.generation {
            return;
        }
        self.generation = generation;
        self.unconfirmed = known.keys().cloned().collect();
        // A link that keeps dropping does not put off forgetting.
        let by = now + PRESENCE_GRACE;
        self.confirm_by = Some(self.confirm_by.map_or(by, |earlier| earlier.min(by)));
    }

    /// The grace timer fired at `now`: forget the sessions not announced again, unless the
    /// timer overslept (the stub was frozen), when it starts again.
    fn grace_over(&mut self, map: &mut HashMap<String, Presence>, now: Instant) -> bool {
        if let Some(by) = self.confirm_by {
            if now.saturating_duration_since(by) > OVERSLEPT {
                self.confirm_by = Some(now + PRESENCE_GRACE);
                return false;
            }
        }
        self.forget_unconfirmed(map)
    }

    /// Take record `p`, received on connection `generation`, into `map`; whether it changed.
    fn record(
        &mut self,
        map: &mut HashMap<String, Presence>,
        generation: u64,
        p: Presence,
    ) -> bool {
        if generation < self.generation {
            return false; // from a connection since replaced: what it says may be stale
        }
        self.unconfirmed.remove(&p.session);
        let changed = map
            .get(&p.session)
            .is_none_or(|old| p.supersedes(old) && *old != p);
        if changed {
            map.insert(p.session.clone(), p);
        }
        changed
    }

    /// The grace after a reconnection is over: forget the sessions not announced again.
    fn forget_unconfirmed(&mut self, map: &mut HashMap<String, Presence>) -> bool {
        self.confirm_by = None;
        let before = map.len();
        map.retain(|session, _| !self.unconfirmed.contains(session));
        self.unconfirmed.clear();
        map.len() != before
    }
}

pub struct Bridge {
    config: Config,
    /// "function F of app A on stage S", for error messages.
    place: Arc<str>,
    topics: Topics,
    sender: Sender,
    link: watch::Receiver<Link>,
    presence: watch::Receiver<HashMap<String, Presence>>,
    waiters: Waiters,
    /// Lambda's deadline for the invocation being forwarded.
    deadline: Instant,
}

impl Bridge {
    /// Start connecting (without waiting: the first invocation waits if it must).
    pub fn connect(config: &Config) -> Result<Bridge, String> {
        let topics = Topics::new(&config.app, &config.stage).map_err(|e| e.to_string())?;
        let results = topics.results(&config.env_id).map_err(|e| e.to_string())?;
        let mut options =
            ConnectOptions::new(&config.bridge_url, format!("stub-{}", config.env_id));
        options.subscriptions = vec![results.clone(), topics.presence_filter()];
        options.credentials = config.credentials.clone();
        let mut connection = Connection::open(options).map_err(|e| e.to_string())?;
        let (presence_tx, presence) = watch::channel(HashMap::new());
        let waiters: Waiters = Arc::default();
        let bridge = Bridge {
            config: config.clone(),
            place: format!(
                "function {:?} of app {:?} on stage {:?}",
                config.function, config.app, config.stage
            )
            .into(),
            topics,
            sender: connection.sender(),
            link: connection.link(),
            presence,
            waiters: waiters.clone(),
            deadline: Instant::now(),
        };
        if config.timing {
            // For cold-start measurements: say when the bridge is first up.
            let mut link = connection.link();
            tokio::spawn(async move {
                if link
                    .wait_for(|l| matches!(l, Link::Up { .. }))
                    .await
                    .is_ok()
                {
                    eprintln!("live stub: bridge connected");
                }
            });
        }
        tokio::spawn(async move {
            let mut book = Sessions::default();
            let mut link = connection.link();
            let mut link_open = true;
            loop {
                let grace = book.confirm_by;
                tokio::select! {
                    received = connection.recv() => {
                        let Some(received) = received else { break };
                        book.connection(&presence_tx.borrow(), received.generation, Instant::now());
                        if received.topic == results {
                            deliver_result(&waiters, received.frame);
                        } else if let Ok(p) = received.frame.parse::<Presence>() {
                            presence_tx.send_if_modified(|map| book.record(map, received.generation, p));
                        }
                    }
                    changed = link.changed(), if link_open => {
                        link_open = changed.is_ok();
                        let up = *link.borrow_and_update();
                        if let Link::Up { generation } = up {
                            book.connection(&presence_tx.borrow(), generation, Instant::now());
                        }
                    }
                    _ = tokio::time::sleep_until(grace.unwrap_or_else(Instant::now).into()), if grace.is_some() => {
                        presence_tx.send_if_modified(|map| book.grace_over(map, Instant::now()));
                    }
                }
            }
        });
        Ok(bridge)
    }

    /// Forward one invocation and wait for its outcome, answering before the deadline.
    pub async fn forward(&mut self, next: &Next) -> Reply {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let remaining = Duration::from_millis(next.deadline_ms.saturating_sub(now_ms));
        self.deadline = Instant::now() + remaining;
        let answer_by = Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN);
        let window = Instant::now() + self.config.no_dev_window;
        let where_ = self.place.clone();

        // The link and a developer session, within the no-developer window.
        let Some(session) = self.wait_for_session(window.min(answer_by)).await else {
            if !matches!(*self.link.borrow(), Link::Up { .. }) {
                return Reply::failure(
                    "Live.BridgeUnreachable",
                    format!(
                        "the stub could not reach the bridge at {} within {:?} for {where_}; check that the broker (`live broker`, `live cloud` or IoT Core) is running",
                        self.config.bridge_url, self.config.no_dev_window
                    ),
                );
            }
            return Reply::failure(
                "Live.NoDeveloperConnected",
                format!("no developer session is connected for {where_}; start `live dev` in the project"),
            );
        };
        if let Some(reply) = version_mismatch(&session) {
            return reply;
        }

        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiters
            .lock()
            .expect("lock")
            .insert(next.request_id.clone(), tx);
        let reply = self
            .exchange(next, session, answer_by, remaining, &mut rx, &where_)
            .await;
        self.waiters.lock().expect("lock").remove(&next.request_id);
        reply
    }

    async fn exchange(
        &mut self,
        next: &Next,
        mut session: Presence,
        answer_by: Instant,
        remaining: Duration,
        rx: &mut mpsc::UnboundedReceiver<(DevMessage, Bytes)>,
        where_: &str,
    ) -> Reply {
        let mut acked = false;
        let mut message = StubMessage::Invoke(WireInvocation {
            request_id: next.request_id.clone(),
            function: self.config.function.clone(),
            env_id: self.config.env_id.clone(),
            headers: next.headers.clone(),
            remaining_ms: remaining.as_millis() as u64,
            attempt: 0,
        });
        // Only reconnections from now on call for an early resend.
        self.link.borrow_and_update();
        if let Err(reply) = self
            .send_invoke(&mut message, &session, &next.body, false)
            .await
        {
            return reply;
        }
        let mut retransmit =
            tokio::time::interval_at(tokio::time::Instant::now() + RETRANSMIT, RETRANSMIT);
        let mut away = Away::Here;
        let (mut link_open, mut presence_open) = (true, true);
        loop {
            let mut move_now = false;
            tokio::select! {
                received = rx.recv() => {
                    let Some((message, body)) = received else {
                        return Reply::failure("Live.BridgeClosed", "the bridge connection closed".into());
                    };
                    match message {
                        DevMessage::Ack { .. } => acked = true,
                        DevMessage::Response { headers, .. } => {
                            return Reply::Response { headers, body };
                        }
                        DevMessage::Error { error_type, headers, .. } => {
                            return Reply::Error {
                                error_type: error_type.unwrap_or_else(|| "Unhandled".into()),
                                headers,
                                body,
                            };
                        }
                    }
                }
                _ = retransmit.tick() => {
                    if let Err(reply) = self.send_invoke(&mut message, &session, &next.body, acked).await {
                        return reply;
                    }
                }
                changed = self.link.changed(), if link_open => {
                    // A reconnection loses what was in flight with the old connection (clean
                    // sessions, QoS 0), the invocation or its result: send again now rather
                    // than at the next retransmission.
                    link_open = changed.is_ok();
                    let up = matches!(*self.link.borrow_and_update(), Link::Up { .. });
                    if link_open && up {
                        if let Err(reply) = self.send_invoke(&mut message, &session, &next.body, acked).await {
                            return reply;
                        }
                    }
                }
                changed = self.presence.changed(), if presence_open => {
                    presence_open = changed.is_ok();
                    // The invocation stays with its session while that serves the function: a
                    // session joining must not take an invocation another is running (it
                    // would run twice). One that reconnected is sent it again.
                    if let Some(latest) = self.serving(&session.session) {
                        away = Away::Here;
                        if latest.epoch != session.epoch {
                            session = latest;
                            acked = false;
                            if let Err(reply) = self.send_invoke(&mut message, &session, &next.body, false).await {
                                return reply;
                            }
                        }
                    } else {
                        // Gone, or only its connection dropped: it has a while to come back.
                        match away {
                            Away::Here => away = Away::Until(Instant::now() + PRESENCE_GRACE),
                            Away::Until(_) => {}
                            Away::Long => move_now = true,
                        }
                    }
                }
                _ = tokio::time::sleep_until(away.until().unwrap_or(answer_by).into()), if away.until().is_some() => {
                    (away, move_now) = (Away::Long, true);
                }
                _ = tokio::time::sleep_until(answer_by.into()) => {
                    return if self.choose().is_none() {
                        Reply::failure("Live.DeveloperGone", format!(
                            "developer session {:?} went offline and no session came back before the deadline for {where_}",
                            session.session
                        ))
                    } else if acked {
                        Reply::failure("Live.DeadlineReached", format!(
                            "developer session {:?} received the invocation but did not answer before the deadline for {where_}",
                            session.session
                        ))
                    } else {
                        Reply::failure("Live.DeadlineReached", format!(
                            "developer session {:?} did not acknowledge the invocation before the deadline for {where_}",
                            session.session
                        ))
                    };
                }
            }
            if move_now {
                match self.move_on(&mut message, &mut session, &next.body).await {
                    Err(reply) => return reply,
                    Ok(true) => (acked, away) = (false, Away::Here),
                    Ok(false) => {} // none serves it yet: the next presence change tries again
                }
            }
        }
    }

    /// Move the invocation to whichever session now serves the function, if any: whether it
    /// moved.
    async fn move_on(
        &self,
        message: &mut StubMessage,
        session: &mut Presence,
        body: &[u8],
    ) -> Result<bool, Reply> {
        let Some(next) = self.choose() else {
            return Ok(false); // none yet: a session appearing changes the presence again
        };
        if let Some(reply) = version_mismatch(&next) {
            return Err(reply);
        }
        *session = next;
        self.send_invoke(message, session, body, false).await?;
        Ok(true)
    }

    /// Send `message` (an invocation) to `session`, and count the attempt for the next send;
    /// once `acked`, only a probe for its result (which the session has, or is running).
    async fn send_invoke(
        &self,
        message: &mut StubMessage,
        session: &Presence,
        body: &[u8],
        acked: bool,
    ) -> Result<(), Reply> {
        let topic = self
            .topics
            .invocations(&session.session)
            .map_err(|e| Reply::failure("Live.BadSession", e.to_string()))?;
        if acked {
            let probe = StubMessage::Probe {
                request_id: message.request_id().to_string(),
                env_id: self.config.env_id.clone(),
            };
            // One that cannot go now goes at the next retransmission or reconnection.
            let _ = self.sender.send(&topic, &probe, b"").await;
            return Ok(());
        }
        // The time left as it goes: a session that receives it late, or only a re-send,
        // knows its deadline all the same.
        if let StubMessage::Invoke(invocation) = message {
            let left = self.deadline.saturating_duration_since(Instant::now());
            invocation.remaining_ms = left.as_millis() as u64;
        }
        let sent = self.sender.send(&topic, message, body).await;
        if let StubMessage::Invoke(invocation) = message {
            invocation.attempt += 1;
        }
        match sent {
            Ok(()) => Ok(()),
            Err(bridge::transport::TransportError::Protocol(e)) => Err(Reply::failure(
                "Live.PayloadTooLarge",
                format!("the event cannot cross the bridge: {e}"),
            )),
            Err(e) => Err(Reply::failure("Live.BridgeClosed", e.to_string())),
        }
    }

    /// Whether record `p` says its session serves this function now.
    fn serves(&self, p: &Presence) -> bool {
        p.online && (p.functions.is_empty() || p.functions.contains(&self.config.function))
    }

    /// The latest record of `session`, if it serves this function now.
    fn serving(&self, session: &str) -> Option<Presence> {
        let presence = self.presence.borrow();
        presence.get(session).filter(|p| self.serves(p)).cloned()
    }

    /// The session serving this function: online, listing the function, the same one for this
    /// environment while the set of sessions does not change.
    fn choose(&self) -> Option<Presence> {
        let presence = self.presence.borrow();
        let mut candidates: Vec<&Presence> = presence.values().filter(|p| self.serves(p)).collect();
        if candidates.is_empty() {
            return None;
        }
        // Sessions speaking this stub's protocol first; only when there are none is another
        // version chosen, for the error that names the side to update.
        if candidates.iter().any(|p| p.version == PROTOCOL_VERSION) {
            candidates.retain(|p| p.version == PROTOCOL_VERSION);
        }
        candidates.sort_by(|a, b| a.session.cmp(&b.session));
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.config.env_id.hash(&mut h);
        Some(candidates[(h.finish() % candidates.len() as u64) as usize].clone())
    }

    async fn wait_for_session(&mut self, until: Instant) -> Option<Presence> {
        let wait = async {
            loop {
                if matches!(*self.link.borrow(), Link::Up { .. }) {
                    if let Some(p) = self.choose() {
                        return Some(p);
                    }
                }
                let open = tokio::select! {
                    changed = self.presence.changed() => changed.is_ok(),
                    changed = self.link.changed() => changed.is_ok(),
                };
                if !open {
                    return None; // the connection's task ended: nothing will change
                }
            }
        };
        tokio::time::timeout_at(until.into(), wait)
            .await
            .ok()
            .flatten()
    }
}

fn version_mismatch(session: &Presence) -> Option<Reply> {
    (session.version != PROTOCOL_VERSION).then(|| {
        let update = if session.version > PROTOCOL_VERSION {
            "redeploy the stub with the newer `live`"
        } else {
            "update `live` on the developer's machine"
        };
        Reply::failure(
            "Live.ProtocolMismatch",
            format!(
                "developer session {:?} speaks bridge protocol v{}, this stub v{PROTOCOL_VERSION}: {update}",
                session.session, session.version
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(session: &str, epoch: u64) -> Presence {
        Presence {
            session: session.into(),
            online: true,
            epoch,
            version: PROTOCOL_VERSION,
            functions: vec![],
        }
    }

    fn names(map: &HashMap<String, Presence>) -> Vec<&str> {
        let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
        names.sort();
        names
    }

    #[test]
    fn after_a_reconnection_only_sessions_announced_again_are_kept() {
        let (mut book, mut map, t0) = (Sessions::default(), HashMap::new(), Instant::now());
        book.connection(&map, 1, t0);
        assert!(book.record(&mut map, 1, online("a", 1)));
        assert!(book.record(&mut map, 1, online("b", 1)));
        assert!(
            !book.forget_unconfirmed(&mut map),
            "nothing was known before"
        );

        // Reconnected: `a` is announced again, `b` left while the stub was cut off.
        book.connection(&map, 2, t0);
        assert_eq!(book.confirm_by, Some(t0 + PRESENCE_GRACE));
        assert!(!book.record(&mut map, 2, online("a", 1)), "the same record");
        assert_eq!(names(&map), ["a", "b"], "kept until the grace ends");
        assert!(book.forget_unconfirmed(&mut map));
        assert_eq!(names(&map), ["a"]);
        assert_eq!(book.confirm_by, None);
    }

    #[test]
    fn a_grace_timer_that_overslept_starts_again() {
        let (mut book, mut map, t0) = (Sessions::default(), HashMap::new(), Instant::now());
        book.connection(&map, 1, t0);
        book.record(&mut map, 1, online("a", 1));
        book.connection(&map, 2, t0);
        // Frozen through the grace: what was sent meanwhile is still to be read.
        let thawed = t0 + PRESENCE_GRACE + Duration::from_secs(5);
        assert!(!book.grace_over(&mut map, thawed));
        assert_eq!(names(&map), ["a"]);
        assert_eq!(book.confirm_by, Some(thawed + PRESENCE_GRACE));
        assert!(book.grace_over(&mut map, thawed + PRESENCE_GRACE));
        assert!(map.is_empty());
    }

    #[test]
    fn a_link_that_keeps_dropping_does_not_put_off_forgetting() {
        let (mut book, mut map, t0) = (Sessions::default(), HashMap::new(), Instant::now());
        book.connection(&map, 1, t0);
        book.record(&mut map, 1, online("a", 1));
        book.record(&mut map, 1, online("b", 1));
        book.forget_unconfirmed(&mut map);
        book.connection(&map, 2, t0);
        let later = t0 + PRESENCE_GRACE / 2;
        book.connection(&map, 3, later);
        book.record(&mut map, 3, online("a", 1));
        assert_eq!(book.confirm_by, Some(t0 + PRESENCE_GRACE));
        assert!(book.grace_over(&mut map, t0 + PRESENCE_GRACE));
        assert_eq!(names(&map), ["a"]);
    }

    #[test]
    fn a_record_from_a_replaced_connection_is_ignored() {
        let (mut book, mut map, t0) = (Sessions::default(), HashMap::new(), Instant::now());
        book.connection(&map, 1, t0);
        book.record(&mut map, 1, online("a", 1));
        book.connection(&map, 2, t0);
        // Late from connection 1: it neither adds a session nor keeps one known.
        assert!(!book.record(&mut map, 1, online("c", 1)));
        assert!(!book.record(&mut map, 1, online("a", 2)));
        book.forget_unconfirmed(&mut map);
        assert!(map.is_empty(), "{:?}", names(&map));
        // The link coming up again for the same connection changes nothing.
        book.connection(&map, 2, t0);
        assert_eq!(book.confirm_by, None);
    }
}
