//! The bridge side of the stub: one connection per execution environment (its receive side
//! in `receive.rs`, the sessions' presence in `sessions.rs`), and forwarding one invocation
//! to a session until its result, an explicit failure, or the deadline.

use crate::config::Config;
use crate::context::{self, Context};
use crate::credentials::Role;
use crate::receive::{Inbox, Waiters};
use crate::reply::{self, version_mismatch, Reply};
use crate::runtime::Next;
use crate::sessions::{self, PRESENCE_GRACE};
use bridge::protocol::{RoleCredentials, WireInvocation};
use bridge::transport::{self, ConnectOptions, Connection, Link, Sender};
use bridge::{DevMessage, Presence, StubMessage, Topics};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// How long before Lambda's deadline the stub answers at the latest, so that its own answer
/// (rather than Lambda's timeout) reaches the caller.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// How often an unacknowledged invocation is sent again, and an acknowledged one probed for.
const RETRANSMIT: Duration = Duration::from_millis(1000);

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

pub struct Bridge {
    config: Config,
    /// "function F of app A on stage S", for error messages.
    place: Arc<str>,
    topics: Topics,
    sender: Sender,
    link: watch::Receiver<Link>,
    /// The last error the connection met: what an unreachable bridge is reported with.
    last_error: watch::Receiver<String>,
    presence: watch::Receiver<HashMap<String, Presence>>,
    waiters: Waiters,
    /// Lambda's deadline for the invocation being forwarded.
    deadline: Instant,
    /// The function role's credentials, if it has any.
    role: Option<Role>,
    /// Their current value, read for the invocation being forwarded.
    credentials: Option<RoleCredentials>,
    /// The function's environment, and what each session has of it and of the credentials.
    context: Mutex<Context>,
}

impl Bridge {
    /// Start connecting (without waiting: the first invocation waits if it must).
    pub fn connect(config: &Config) -> Result<Bridge, String> {
        let topics = Topics::new(&config.app, &config.stage).map_err(|e| e.to_string())?;
        let results = topics.results(&config.env_id).map_err(|e| e.to_string())?;
        let client_id = bridge::client_ids::stub(&config.app, &config.stage, &config.env_id);
        let mut options = ConnectOptions::new(&config.bridge_url, client_id);
        options.subscriptions = vec![results.clone(), topics.presence_filter()];
        options.credentials = config.credentials.clone();
        options.connect_to = config.connect_to.clone();
        let role = config.role.clone().map(Role::new);
        if let (Some(region), Some(role)) = (&config.sigv4, &role) {
            options.signer = Some(transport::sigv4_signer(
                region.clone(),
                role.signer_source(),
            ));
            // IoT Core discards publishes beyond its per-connection quota.
            options.quota = Some(transport::PublishQuota::IOT_CORE);
        }
        let connection = Connection::open(options).map_err(|e| e.to_string())?;
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
            last_error: connection.last_error(),
            presence,
            waiters: waiters.clone(),
            deadline: Instant::now(),
            role,
            credentials: None,
            context: Mutex::new(Context::new(context::function_env(std::env::vars()))),
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
        tokio::spawn(Inbox::new(presence_tx, waiters).run(connection));
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
        // The role's credentials as they are now (an endpoint's are read again near their
        // expiry), forwarded with the invocation if the session does not have them.
        self.credentials = match &self.role {
            None => None,
            Some(role) => match role.current().await {
                Ok(credentials) => Some(credentials),
                Err(e) => {
                    tracing::warn!("{e}; the invocation goes without the role's credentials");
                    None
                }
            },
        };

        // The link and a developer session, within the no-developer window.
        let Some(session) = self.wait_for_session(window.min(answer_by)).await else {
            if !matches!(*self.link.borrow(), Link::Up { .. }) {
                return reply::unreachable(
                    &self.config.bridge_url,
                    self.config.no_dev_window,
                    &where_,
                    &self.last_error.borrow(),
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
        session: Presence,
        answer_by: Instant,
        remaining: Duration,
        rx: &mut mpsc::UnboundedReceiver<(DevMessage, Bytes)>,
        where_: &str,
    ) -> Reply {
        // With a bucket, a large event goes through it and live dev is offered a place for a
        // large response (IoT Core carries 512 KiB/s a connection).
        let offered = match (&self.config.bucket, &self.credentials) {
            (Some(bucket), Some(role)) => {
                let (app, stage) = (&self.config.app, &self.config.stage);
                match bucket
                    .offer(app, stage, &next.request_id, &next.body, role)
                    .await
                {
                    Ok(objects) => Some(objects),
                    Err(e) => {
                        return Reply::failure(
                            "Live.PayloadUnavailable",
                            format!(
                                "could not put the event in the stage's bucket for {where_}: {e}"
                            ),
                        )
                    }
                }
            }
            _ => None,
        };
        let reply = self
            .exchange_with(
                next,
                session,
                answer_by,
                remaining,
                rx,
                where_,
                offered.as_ref(),
            )
            .await;
        match (offered, &self.config.bucket, &self.credentials) {
            (Some(objects), Some(bucket), Some(role)) => {
                let (reply, response_put) = match reply {
                    Ok(reply) => (reply, false),
                    Err(in_object) => {
                        let reply = match bucket.get_response(&objects, role).await {
                            Ok(body) => Reply::Response {
                                headers: in_object,
                                body,
                            },
                            Err(e) => Reply::failure(
                                "Live.PayloadUnavailable",
                                format!("could not get the response from the stage's bucket for {where_}: {e}"),
                            ),
                        };
                        (reply, true)
                    }
                };
                bucket.delete(&objects, response_put, role).await;
                reply
            }
            (_, _, _) => reply.unwrap_or_else(|_| {
                Reply::failure(
                    "Live.PayloadUnavailable",
                    "a response in a bucket that was not offered".into(),
                )
            }),
        }
    }

    /// [`Bridge::exchange`] once the payloads are placed: the reply, or (`Err`) the headers of
    /// a response `live dev` put in the bucket.
    #[allow(clippy::too_many_arguments)]
    async fn exchange_with(
        &mut self,
        next: &Next,
        mut session: Presence,
        answer_by: Instant,
        remaining: Duration,
        rx: &mut mpsc::UnboundedReceiver<(DevMessage, Bytes)>,
        where_: &str,
        offered: Option<&crate::objects::Objects>,
    ) -> Result<Reply, Vec<bridge::protocol::Header>> {
        let mut acked = false;
        let body = match offered {
            Some(objects) if objects.urls.event.is_some() => Bytes::new(),
            _ => next.body.clone(),
        };
        let mut message = StubMessage::Invoke(WireInvocation {
            request_id: next.request_id.clone(),
            function: self.config.function.clone(),
            env_id: self.config.env_id.clone(),
            headers: next.headers.clone(),
            remaining_ms: remaining.as_millis() as u64,
            attempt: 0,
            env: None,
            credentials: None,
            objects: offered.map(|o| Box::new(o.urls.clone())),
        });
        // Only reconnections from now on call for an early resend.
        self.link.borrow_and_update();
        if let Err(reply) = self.send_invoke(&mut message, &session, &body, false).await {
            return Ok(reply);
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
                        return Ok(Reply::failure("Live.BridgeClosed", "the bridge connection closed".into()));
                    };
                    // The session answered what was sent to it, the context included.
                    self.context
                        .lock()
                        .expect("context")
                        .delivered(&session, self.credentials.as_ref());
                    match message {
                        DevMessage::Ack { .. } => acked = true,
                        DevMessage::Response { headers, in_object: true, .. } => return Err(headers),
                        DevMessage::Response { headers, .. } => {
                            return Ok(Reply::Response { headers, body });
                        }
                        DevMessage::Error { error_type, headers, .. } => {
                            return Ok(Reply::Error {
                                error_type: error_type.unwrap_or_else(|| "Unhandled".into()),
                                headers,
                                body,
                            });
                        }
                    }
                }
                _ = retransmit.tick() => {
                    if let Err(reply) = self.send_invoke(&mut message, &session, &body, acked).await {
                        return Ok(reply);
                    }
                }
                changed = self.link.changed(), if link_open => {
                    // A reconnection loses what was in flight with the old connection (clean
                    // sessions, QoS 0), the invocation or its result: send again now rather
                    // than at the next retransmission.
                    link_open = changed.is_ok();
                    let up = matches!(*self.link.borrow_and_update(), Link::Up { .. });
                    if link_open && up {
                        if let Err(reply) = self.send_invoke(&mut message, &session, &body, acked).await {
                            return Ok(reply);
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
                            if let Err(reply) = self.send_invoke(&mut message, &session, &body, false).await {
                                return Ok(reply);
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
                    return Ok(if self.choose().is_none() {
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
                    });
                }
            }
            if move_now {
                match self.move_on(&mut message, &mut session, &body).await {
                    Err(reply) => return Ok(reply),
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
        // The session's lane for this environment: each of its connections stays under the
        // broker's per-connection quota.
        let lane = bridge::topics::lane_of(&self.config.env_id, session.lanes);
        let topic = self
            .topics
            .lane(&session.session, lane)
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
            // The environment and credentials, if this session lacks them.
            self.context.lock().expect("context").stamp(
                invocation,
                session,
                self.credentials.as_ref(),
            );
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

    /// The latest record of `session`, if it serves this function now.
    fn serving(&self, session: &str) -> Option<Presence> {
        let presence = self.presence.borrow();
        presence
            .get(session)
            .filter(|p| sessions::serves(p, &self.config.function))
            .cloned()
    }

    /// The session serving this function for this environment (see [`sessions::choose`]).
    fn choose(&self) -> Option<Presence> {
        sessions::choose(
            &self.presence.borrow(),
            &self.config.function,
            &self.config.env_id,
        )
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
