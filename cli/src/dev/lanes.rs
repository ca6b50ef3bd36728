//! A session's lanes: the connections it receives invocations on and answers over, each
//! inside the broker's per-connection publish quota (IoT Core discards the excess). Lane 0 is
//! the session's own connection; more are opened as the load needs and announced in its
//! presence record, from which each execution environment picks its lane.

use super::session::Session;
use bridge::topics::{lane_of, MAX_LANES};
use bridge::transport::{Announcer, ConnectOptions, Connection, Sender};
use bridge::Topics;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the lanes' load is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Publishes in and out per second on the busiest lane above which another is opened: half
/// the pace a connection keeps to, so a lane has room while stubs move to the new one.
const BUSY_PER_SECOND: f64 = 40.0;

/// The senders of the session's lanes, by lane.
pub struct Lanes {
    senders: RwLock<Vec<Sender>>,
    count: Arc<AtomicU16>,
}

impl Lanes {
    /// One lane, the session's own connection; `count` is what its presence record announces.
    pub fn new(first: Sender, count: Arc<AtomicU16>) -> Lanes {
        count.store(1, Ordering::Relaxed);
        Lanes {
            senders: RwLock::new(vec![first]),
            count,
        }
    }

    /// The sender for execution environment `env`: its lane's.
    pub fn sender(&self, env: &str) -> Sender {
        let senders = self.senders.read().expect("lanes");
        senders[usize::from(lane_of(env, senders.len() as u16))].clone()
    }

    fn len(&self) -> u16 {
        self.senders.read().expect("lanes").len() as u16
    }

    fn add(&self, sender: Sender) {
        let mut senders = self.senders.write().expect("lanes");
        senders.push(sender);
        self.count.store(senders.len() as u16, Ordering::Relaxed);
    }

    fn busiest(&self) -> Vec<u64> {
        let senders = self.senders.read().expect("lanes");
        senders.iter().map(Sender::quota_used).collect()
    }
}

/// What opening another lane takes.
pub struct Grow {
    pub lanes: Arc<Lanes>,
    /// The session's own connection's options (URL, signing, TLS, quota).
    pub template: ConnectOptions,
    pub topics: Topics,
    pub session_name: String,
    pub session: Arc<Session>,
    pub announcer: Announcer,
    /// Where the lanes' tasks run, and what stops them (closing their connections).
    pub tasks: TaskTracker,
    pub cancel: CancellationToken,
}

impl Grow {
    /// Watch the lanes' load and double them whenever the busiest is busy, up to
    /// [`MAX_LANES`]; each new lane's messages go to the session as the first lane's do.
    /// Runs until cancelled.
    pub async fn run(self) {
        let mut last = self.lanes.busiest();
        let mut tick = tokio::time::interval(LOOK_EVERY);
        loop {
            tick.tick().await;
            let now = self.lanes.busiest();
            let busiest = now
                .iter()
                .zip(last.iter().chain(std::iter::repeat(&0)))
                .map(|(n, l)| n.saturating_sub(*l))
                .max()
                .unwrap_or(0);
            last = now;
            let per_second = busiest as f64 / LOOK_EVERY.as_secs_f64();
            if per_second < BUSY_PER_SECOND || self.lanes.len() >= MAX_LANES {
                continue;
            }
            // Double at once (a burst needs many lanes soon, not one per look), opened side
            // by side, announced once.
            let have = self.lanes.len();
            let more = have.min(MAX_LANES - have);
            let opened =
                futures_util::future::join_all((have..have + more).map(|k| self.open(k))).await;
            let mut newest = None;
            for (k, opened) in (have..).zip(opened) {
                match opened {
                    // Lanes are numbered by their place: one that failed ends this round.
                    Ok(sender) if self.lanes.len() == k => {
                        newest = Some(sender.clone());
                        self.lanes.add(sender);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("could not open lane {k}: {e:#}"),
                }
            }
            if let Some(newest) = newest {
                tracing::info!(lanes = self.lanes.len(), "opened more lanes");
                // Over the newest lane, idle yet: the busy ones' pace would hold it back
                // while they are what needs relief.
                if let Err(e) = self.announcer.via(newest).announce().await {
                    tracing::warn!("could not announce the session's lanes: {e}");
                }
            }
            last = self.lanes.busiest();
        }
    }

    /// Open lane `k`, whose messages a task of its own passes to the session until `live dev`
    /// stops (then it closes the connection).
    async fn open(&self, k: u16) -> anyhow::Result<Sender> {
        let mut options = self.template.clone();
        options.client_id = format!("{}-{k}", self.template.client_id);
        options.subscriptions = vec![self.topics.lane(&self.session_name, k)?];
        options.presence = None;
        let mut connection = Connection::open(options)?;
        connection.ready(Duration::from_secs(10)).await?;
        let sender = connection.sender();
        let (session, cancel) = (self.session.clone(), self.cancel.clone());
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    received = connection.recv() => match received {
                        Some(received) => session.receive(received),
                        None => return,
                    },
                    _ = cancel.cancelled() => break,
                }
            }
            connection.close().await;
        });
        Ok(sender)
    }
}
