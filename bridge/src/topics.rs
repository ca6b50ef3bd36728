//! The topic scheme under `live/{app}/{stage}/`, and the topic limits every broker on the path
//! enforces (IoT Core's: 256 bytes, 7 slashes, no `$` prefix).
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

/// The topics of one app and stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
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

    /// Whether `topic` is a developer session's presence topic (of any app and stage).
    pub fn is_presence(topic: &str) -> bool {
        let mut levels = topic.split('/');
        levels.next() == Some("live")
            && levels.nth(2) == Some("presence")
            && levels.next().is_some()
            && levels.next().is_none()
    }

    /// The filter matching every developer session's presence on this app and stage.
    pub fn presence_filter(&self) -> String {
        format!("{}/presence/+", self.prefix)
    }
}

/// Check a name used inside topics (app, stage, function, session, environment); `what`
/// names it in the error.
pub fn check_name(what: &'static str, name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(TopicError::BadName {
            what,
            name: name.to_string(),
        })
    }
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
    fn presence_topics_are_recognised() {
        let t = Topics::new("app", "stage").unwrap();
        assert!(Topics::is_presence(&t.presence("s1").unwrap()));
        assert!(!Topics::is_presence(&t.invocations("s1").unwrap()));
        assert!(!Topics::is_presence(&t.results("e1").unwrap()));
        assert!(!Topics::is_presence("other/app/stage/presence/s1"));
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
