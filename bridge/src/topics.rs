//! The topic scheme under `live/{app}/{stage}/`: topics built from names, a received topic
//! parsed back into a [`Topic`], and the topic limits every broker on the path enforces (IoT
//! Core's: 256 bytes, 7 slashes, no `$` prefix).
//!
//! ```text
//! live/{app}/{stage}/dev/{session}/inv   invocations for one developer session (stub -> dev)
//! live/{app}/{stage}/env/{env}/res       results for one stub execution environment (dev -> stub)
//! live/{app}/{stage}/presence/{session}  retained presence of one developer session
//! ```

use crate::protocol::{MAX_TOPIC_BYTES, MAX_TOPIC_SLASHES};

/// The longest app, stage, session or execution environment name.
pub const MAX_NAME_BYTES: usize = 64;

/// Why a name, topic or topic filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// A name holds characters other than ASCII letters, digits, `-`, `_` and `.`, or is empty
    /// or too long.
    #[error("{what} {name:?} must be 1-64 ASCII letters, digits, '-', '_' or '.'")]
    BadName {
        /// Which name: app, stage, session or environment.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A topic longer than [`MAX_TOPIC_BYTES`].
    #[error("topic of {0} bytes exceeds the limit of 256")]
    TooLong(usize),
    /// A topic with more than [`MAX_TOPIC_SLASHES`] slashes.
    #[error("topic with {0} slashes exceeds the limit of 7")]
    TooDeep(usize),
    /// An empty topic, a wildcard in a topic name, a misplaced wildcard in a filter, or a
    /// reserved `$` topic.
    #[error("invalid topic {0:?}")]
    Invalid(String),
}

/// What a received topic is, parsed once by the transport ([`Topics::parse`]) so that callers
/// match this instead of comparing strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// `live/{app}/{stage}/dev/{session}/inv`: invocations for developer session `session`.
    Invocations {
        /// The developer session.
        session: String,
    },
    /// `live/{app}/{stage}/env/{env}/res`: results for stub execution environment `env`.
    Results {
        /// The execution environment.
        env: String,
    },
    /// `live/{app}/{stage}/presence/{session}`: developer session `session`'s retained record.
    Presence {
        /// The developer session.
        session: String,
    },
    /// A topic outside the scheme, as received.
    Other(String),
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topic::Invocations { session } => write!(f, "the invocations of session {session}"),
            Topic::Results { env } => write!(f, "the results of environment {env}"),
            Topic::Presence { session } => write!(f, "the presence record of session {session}"),
            Topic::Other(topic) => write!(f, "topic {topic}"),
        }
    }
}

/// The topics of one app and stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// The most lanes a developer session receives on.
pub const MAX_LANES: u16 = 64;

/// The lane an execution environment sends its invocations to, of a session with `lanes`
/// lanes: the same on every side (FNV-1a of the id), so the developer side answers on the
/// lane the invocations came in on and keeps each lane's traffic in and out together.
pub fn lane_of(env: &str, lanes: u16) -> u16 {
    if lanes <= 1 {
        return 0;
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in env.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(lanes)) as u16
}

impl Topics {
    /// The topics of `app` on `stage`.
    pub fn new(app: &str, stage: &str) -> Result<Self, TopicError> {
        check_name("app", app)?;
        check_name("stage", stage)?;
        Ok(Topics {
            prefix: format!("live/{app}/{stage}"),
        })
    }

    /// Where stubs send invocations for developer session `session`.
    pub fn invocations(&self, session: &str) -> Result<String, TopicError> {
        check_name("session", session)?;
        Ok(format!("{}/dev/{session}/inv", self.prefix))
    }

    /// Where stubs send invocations for lane `lane` of developer session `session`: lane 0
    /// is [`Topics::invocations`], lane `k` that topic and `/k`.
    pub fn lane(&self, session: &str, lane: u16) -> Result<String, TopicError> {
        let topic = self.invocations(session)?;
        Ok(match lane {
            0 => topic,
            k => format!("{topic}/{k}"),
        })
    }

    /// Where developer sessions send results for execution environment `env`.
    pub fn results(&self, env: &str) -> Result<String, TopicError> {
        check_name("environment", env)?;
        Ok(format!("{}/env/{env}/res", self.prefix))
    }

    /// The retained presence record of developer session `session`.
    pub fn presence(&self, session: &str) -> Result<String, TopicError> {
        check_name("session", session)?;
        Ok(format!("{}/presence/{session}", self.prefix))
    }

    /// What a received `topic` is in the scheme, of any app and stage (a connection receives
    /// only what it subscribed to, which is its own stage's); anything else, a malformed name
    /// included, is [`Topic::Other`]. The transport parses every received topic once, here.
    pub fn parse(topic: &str) -> Topic {
        let mut levels = [""; 7];
        let mut depth = 0;
        for level in topic.split('/') {
            if depth == levels.len() {
                return Topic::Other(topic.to_string());
            }
            levels[depth] = level;
            depth += 1;
        }
        let parsed = match &levels[..depth] {
            ["live", app, stage, rest @ ..] if is_name(app) && is_name(stage) => match rest {
                ["dev", session, "inv"] if is_name(session) => Some(Topic::Invocations {
                    session: session.to_string(),
                }),
                ["dev", session, "inv", lane]
                    if is_name(session) && lane.parse::<u16>().is_ok() =>
                {
                    Some(Topic::Invocations {
                        session: session.to_string(),
                    })
                }
                ["env", env, "res"] if is_name(env) => Some(Topic::Results {
                    env: env.to_string(),
                }),
                ["presence", session] if is_name(session) => Some(Topic::Presence {
                    session: session.to_string(),
                }),
                _ => None,
            },
            _ => None,
        };
        parsed.unwrap_or_else(|| Topic::Other(topic.to_string()))
    }

    /// The filter matching every developer session's presence on this app and stage.
    pub fn presence_filter(&self) -> String {
        format!("{}/presence/+", self.prefix)
    }
}

/// Check a name used inside topics (app, stage, function, session, environment); `what`
/// names it in the error.
pub fn check_name(what: &'static str, name: &str) -> Result<(), TopicError> {
    if is_name(name) {
        Ok(())
    } else {
        Err(TopicError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

/// Whether `name` is 1-64 ASCII letters, digits, `-`, `_` or `.`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_limits(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() || topic.starts_with('$') {
        return Err(TopicError::Invalid(topic.to_string()));
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong(topic.len()));
    }
    let slashes = topic.bytes().filter(|&b| b == b'/').count();
    if slashes > MAX_TOPIC_SLASHES {
        return Err(TopicError::TooDeep(slashes));
    }
    Ok(())
}

/// Check a topic name a client publishes to.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    check_limits(topic)?;
    if rumqttc::valid_topic(topic) {
        Ok(())
    } else {
        Err(TopicError::Invalid(topic.to_string()))
    }
}

/// Check a topic filter a client subscribes to.
pub fn check_filter(filter: &str) -> Result<(), TopicError> {
    check_limits(filter)?;
    if rumqttc::valid_filter(filter) {
        Ok(())
    } else {
        Err(TopicError::Invalid(filter.to_string()))
    }
}

/// Whether `topic` matches `filter` (`+` one level, `#` the rest, including the parent).
///
/// The same answers as `rumqttc::matches`, quicker: an exact filter is one comparison, and a
/// wildcard filter whose literal prefix or suffix the topic lacks is refused without
/// splitting either into levels (the broker checks each distinct wildcard filter on every
/// publish, and a stub's presence filter against retained records).
pub fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') {
        return false;
    }
    let Some(first) = filter.find(['+', '#']) else {
        return topic == filter;
    };
    // The literal levels before the first wildcard, less the separator (`a/#` matches `a`).
    if !topic.starts_with(&filter[..first.saturating_sub(1)]) {
        return false;
    }
    // The literal levels after the last `+` when there is no `#` (which can only end a filter).
    if !filter.ends_with('#') {
        let last = filter.rfind('+').expect("a wildcard was found");
        if !topic.ends_with(&filter[last + 1..]) {
            return false;
        }
    }
    rumqttc::matches(topic, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_invocation_topics_of_their_session_and_every_side_picks_the_same() {
        let t = Topics::new("app", "stage").unwrap();
        assert_eq!(t.lane("s1", 0).unwrap(), t.invocations("s1").unwrap());
        let lane = t.lane("s1", 63).unwrap();
        assert_eq!(lane, "live/app/stage/dev/s1/inv/63");
        assert_eq!(
            Topics::parse(&lane),
            Topic::Invocations {
                session: "s1".into()
            }
        );
        assert!(matches!(
            Topics::parse("live/app/stage/dev/s1/inv/x"),
            Topic::Other(_)
        ));
        assert_eq!(lane_of("env", 1), 0);
        // FNV-1a, fixed: stubs and sessions of any build agree.
        assert_eq!(lane_of("0123456789abcdef0123456789abcdef", 64), 53);
        let spread: std::collections::HashSet<u16> =
            (0..256).map(|i| lane_of(&format!("env{i}"), 8)).collect();
        assert_eq!(spread.len(), 8, "256 environments use every one of 8 lanes");
        assert!(check_topic(&t.lane(&"s".repeat(64), MAX_LANES - 1).unwrap()).is_ok());
    }

    #[test]
    fn the_scheme_s_topics_parse_into_what_they_are() {
        let t = Topics::new("app", "stage").unwrap();
        let session = || "s1".to_string();
        assert_eq!(
            Topics::parse(&t.invocations("s1").unwrap()),
            Topic::Invocations { session: session() }
        );
        assert_eq!(
            Topics::parse(&t.results("e-1.x_y").unwrap()),
            Topic::Results {
                env: "e-1.x_y".into()
            }
        );
        assert_eq!(
            Topics::parse(&t.presence("s1").unwrap()),
            Topic::Presence { session: session() }
        );
        // Longest names: still in the scheme.
        let long = "a".repeat(MAX_NAME_BYTES);
        let t = Topics::new(&long, &long).unwrap();
        assert_eq!(
            Topics::parse(&t.presence(&long).unwrap()),
            Topic::Presence {
                session: long.clone()
            }
        );
        // Another app or stage parses alike: a connection receives only its own stage's.
        assert_eq!(
            Topics::parse("live/other/prod/dev/s2/inv"),
            Topic::Invocations {
                session: "s2".into()
            }
        );
    }

    #[test]
    fn anything_else_is_other_as_received() {
        let too_long = format!("live/app/stage/presence/{}", "x".repeat(MAX_NAME_BYTES + 1));
        for topic in [
            "",
            "live",
            "live/app/stage",
            "other/app/stage/presence/s1",
            "Live/app/stage/presence/s1",
            "live/app/stage/presence",
            "live/app/stage/presence/",
            "live/app/stage/presence/s1/x",
            "live/app/stage/presence/+",
            "live/app/stage/dev/s1",
            "live/app/stage/dev/s1/res",
            "live/app/stage/env/e1/inv",
            "live/app/stage/env//res",
            "live/app/stage/x",
            "live//stage/presence/s1",
            "live/a b/stage/presence/s1",
            "live/app/st+ge/env/e1/res",
            "live/app/stage/dev/s1/inv/more/levels",
            "/live/app/stage/dev/s1/inv",
            &too_long,
        ] {
            assert_eq!(
                Topics::parse(topic),
                Topic::Other(topic.into()),
                "{topic:?}"
            );
        }
    }

    #[test]
    fn a_parsed_topic_reads_as_what_it_is() {
        let t = Topics::parse("live/app/stage/dev/s1/inv");
        assert_eq!(t.to_string(), "the invocations of session s1");
        assert_eq!(Topics::parse("a/b").to_string(), "topic a/b");
    }

    #[test]
    fn matching_agrees_with_rumqttc() {
        let topics = [
            "a",
            "a/b",
            "a/b/c",
            "a/",
            "/a",
            "ab/c",
            "a/bc",
            "$SYS/a",
            "a/b/presence",
            "live/app/dev/dev/s1/inv",
            "live/app/dev/dev/s1/presence",
            "live/app/dev/env/e/res",
            "",
        ];
        let filters = [
            "a",
            "a/b",
            "a/#",
            "#",
            "+",
            "+/+",
            "a/+",
            "+/b",
            "a/+/c",
            "a/b/#",
            "/+",
            "+/",
            "$SYS/#",
            "$SYS/a",
            "a/+/presence",
            "live/app/dev/dev/+/presence",
            "live/app/dev/dev/s1/inv",
            "live/app/dev/env/+/res",
            "live/+/dev/#",
            "ab/#",
            "a/bc",
        ];
        for topic in topics {
            for filter in filters {
                assert_eq!(
                    matches(topic, filter),
                    rumqttc::matches(topic, filter),
                    "{topic:?} against {filter:?}"
                );
            }
        }
    }

    #[test]
    fn scheme_stays_within_iot_limits() {
        let long = "a".repeat(MAX_NAME_BYTES);
        let t = Topics::new(&long, &long).unwrap();
        for topic in [
            t.invocations(&long).unwrap(),
            t.results(&long).unwrap(),
            t.presence(&long).unwrap(),
        ] {
            check_topic(&topic).unwrap();
        }
        check_filter(&t.presence_filter()).unwrap();
        assert!(matches(&t.presence("s1").unwrap(), &t.presence_filter()));
    }

    #[test]
    fn names_that_would_break_the_scheme_are_refused() {
        for bad in ["", "a/b", "+", "#", "a b", &"x".repeat(65)] {
            assert!(Topics::new(bad, "dev").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topic_limits() {
        assert_eq!(
            check_topic("a/b/c/d/e/f/g/h/i"),
            Err(TopicError::TooDeep(8))
        );
        check_topic("a/b/c/d/e/f/g/h").unwrap();
        assert_eq!(check_topic(&"x".repeat(257)), Err(TopicError::TooLong(257)));
        check_topic(&"x".repeat(256)).unwrap();
        assert!(check_topic("a/+").is_err());
        assert!(check_topic("$aws/things").is_err());
        assert!(check_filter("a/#/b").is_err());
        check_filter("a/+/c/#").unwrap();
    }

    #[test]
    fn wildcards_match_as_mqtt_says() {
        assert!(matches("a/b/c", "a/+/c"));
        assert!(matches("a/b/c", "a/#"));
        assert!(matches("a", "a/#"));
        assert!(!matches("a/b/c", "a/+"));
        assert!(!matches("b/c", "a/#"));
    }
}
