//! Presence tracking: what the stub knows of the developer sessions from their retained
//! presence records, connection by connection (`Sessions`), and which session serves this
//! execution environment (`choose`).

use bridge::{Presence, PROTOCOL_VERSION};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long after a reconnection a session known before it may go unannounced before it is
/// forgotten (the broker sends the retained presence records right after the subscription),
/// and how long an invocation waits for its session to come back before it moves to
/// another (a session's connection that drops and comes back marks it offline meanwhile).
pub const PRESENCE_GRACE: Duration = Duration::from_secs(2);

/// A grace timer that fires this much late was asleep (the stub frozen): it starts again,
/// since the records it waited for may be waiting to be read.
const OVERSLEPT: Duration = Duration::from_millis(500);

/// What the stub knows of the developer sessions, connection by connection. A record is
/// taken from the current connection only, and after a reconnection the sessions known
/// before are kept only if they are announced again: a session that left while this stub
/// was cut off (or frozen past its keep-alive) may have left no record at all (a clean exit
/// clears it, and other sessions clear a crashed one's), and would otherwise stay "online"
/// here for good, its invocations unanswered.
#[derive(Default)]
pub struct Sessions {
    /// The connection the records come from.
    generation: u64,
    /// Sessions known from earlier connections and not announced on this one yet.
    unconfirmed: HashSet<String>,
    /// When those are forgotten.
    pub confirm_by: Option<Instant>,
}

impl Sessions {
    /// Connection `generation` is up (or delivering): on a new one, every session in `known`
    /// waits to be announced again.
    pub fn connection(&mut self, known: &HashMap<String, Presence>, generation: u64, now: Instant) {
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
    pub fn grace_over(&mut self, map: &mut HashMap<String, Presence>, now: Instant) -> bool {
        if let Some(by) = self.confirm_by {
            if now.saturating_duration_since(by) > OVERSLEPT {
                self.confirm_by = Some(now + PRESENCE_GRACE);
                return false;
            }
        }
        self.forget_unconfirmed(map)
    }

    /// Take record `p`, received on connection `generation`, into `map`; whether it changed.
    pub fn record(
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
    pub fn forget_unconfirmed(&mut self, map: &mut HashMap<String, Presence>) -> bool {
        self.confirm_by = None;
        let before = map.len();
        map.retain(|session, _| !self.unconfirmed.contains(session));
        self.unconfirmed.clear();
        map.len() != before
    }
}

/// Whether record `p` says its session serves `function` now.
pub fn serves(p: &Presence, function: &str) -> bool {
    p.online && (p.functions.is_empty() || p.functions.iter().any(|f| f == function))
}

/// The session serving `function` for environment `env_id`: online, listing the function, the
/// same one for this environment while the set of sessions does not change.
pub fn choose(
    presence: &HashMap<String, Presence>,
    function: &str,
    env_id: &str,
) -> Option<Presence> {
    let mut candidates: Vec<&Presence> =
        presence.values().filter(|p| serves(p, function)).collect();
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
    env_id.hash(&mut h);
    Some(candidates[(h.finish() % candidates.len() as u64) as usize].clone())
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
            lanes: 1,
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

    #[test]
    fn an_environment_keeps_its_session_and_prefers_its_own_protocol() {
        let mut map = HashMap::new();
        for s in ["a", "b", "c"] {
            map.insert(s.to_string(), online(s, 1));
        }
        let chosen = choose(&map, "f", "env-1").unwrap().session;
        for _ in 0..10 {
            assert_eq!(choose(&map, "f", "env-1").unwrap().session, chosen);
        }
        // Only sessions of another protocol version, or not serving the function, besides one.
        for s in ["a", "b", "c"] {
            let p = map.get_mut(s).unwrap();
            if s == "b" {
                p.functions = vec!["f".into()];
            } else if s == "a" {
                (p.version, p.functions) = (PROTOCOL_VERSION + 1, vec!["f".into()]);
            } else {
                p.functions = vec!["other".into()];
            }
        }
        assert_eq!(choose(&map, "f", "env-1").unwrap().session, "b");
        map.get_mut("b").unwrap().online = false;
        assert_eq!(
            choose(&map, "f", "env-1").unwrap().session,
            "a",
            "for the error"
        );
        assert!(choose(&map, "g", "env-1").is_none());
    }
}
