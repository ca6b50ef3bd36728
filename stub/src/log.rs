//! The stub's log: a small `tracing` subscriber that writes each event as one line to stderr
//! (which Lambda sends to CloudWatch), at the level `LIVE_LOG` names (default `warn`), so the
//! bridge's warnings (dropped messages, a refused presence) are seen. Hand-written rather than
//! `tracing-subscriber`'s `fmt`, which the stub does not need: no spans are printed (neither
//! the stub nor the bridge opens one worth printing), no time stamps (CloudWatch adds them),
//! no colours.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The level when `LIVE_LOG` is not set.
const DEFAULT: LevelFilter = LevelFilter::WARN;

/// Install the log for the whole process, at the level `live_log` (the value of `LIVE_LOG`)
/// names; a value that names no level is reported, and the default used.
pub fn install(live_log: Option<&str>) {
    let (max, bad) = match level(live_log) {
        Ok(max) => (max, None),
        Err(e) => (DEFAULT, Some(e)),
    };
    let _ = tracing::subscriber::set_global_default(Log::new(max, Sink::Stderr));
    if let Some(e) = bad {
        tracing::warn!("{e}");
    }
}

/// The level a `LIVE_LOG` value names.
fn level(value: Option<&str>) -> Result<LevelFilter, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT),
        Some(v) => v.parse().map_err(|_| {
            format!(
                "LIVE_LOG={v:?} is not a log level: set it to off, error, warn, info, debug or trace (using warn)"
            )
        }),
    }
}

/// Where the lines go.
enum Sink {
    Stderr,
    #[cfg(test)]
    Buffer(std::sync::Arc<std::sync::Mutex<String>>),
}

struct Log {
    max: LevelFilter,
    sink: Sink,
    /// Span ids handed out (spans are not otherwise tracked; an id must not be 0).
    spans: AtomicU64,
}

impl Log {
    fn new(max: LevelFilter, sink: Sink) -> Log {
        Log {
            max,
            sink,
            spans: AtomicU64::new(1),
        }
    }
}

impl Subscriber for Log {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.spans.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = line(event);
        match &self.sink {
            // One write per line, so lines from two threads do not interleave.
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            #[cfg(test)]
            Sink::Buffer(buffer) => buffer.lock().expect("lock").push_str(&line),
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// `live stub: WARN bridge::transport: the message key=value ...`, with a line break.
fn line(event: &Event<'_>) -> String {
    let metadata = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    format!(
        "live stub: {} {}: {}{}\n",
        metadata.level(),
        metadata.target(),
        fields.message,
        fields.rest
    )
}

/// An event's message, and its other fields as ` name=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn logged(max: LevelFilter, log: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(String::new()));
        let subscriber = Log::new(max, Sink::Buffer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let out = buffer.lock().unwrap().clone();
        out
    }

    #[test]
    fn an_event_is_one_line_with_its_level_target_message_and_fields() {
        let out = logged(LevelFilter::WARN, || {
            let url = "ws://h/mqtt";
            tracing::warn!(url = %url, code = 5, "broker refused the connection: {}", "NotAuthorized");
            tracing::info!("not at warn");
        });
        assert_eq!(
            out,
            "live stub: WARN bootstrap::log::tests: broker refused the connection: NotAuthorized url=ws://h/mqtt code=5\n"
        );
    }

    #[test]
    fn live_log_sets_the_level_and_a_bad_value_is_named_with_the_choices() {
        assert_eq!(level(None), Ok(LevelFilter::WARN));
        assert_eq!(level(Some("")), Ok(LevelFilter::WARN));
        assert_eq!(level(Some("DEBUG")), Ok(LevelFilter::DEBUG));
        assert_eq!(level(Some("off")), Ok(LevelFilter::OFF));
        let e = level(Some("loud")).unwrap_err();
        assert!(
            e.contains("LIVE_LOG=\"loud\"") && e.contains("warn, info"),
            "{e}"
        );
        let out = logged(LevelFilter::DEBUG, || {
            tracing::debug!(target: "bridge::transport", "bridge connection lost");
            tracing::trace!("too fine");
        });
        assert_eq!(
            out,
            "live stub: DEBUG bridge::transport: bridge connection lost\n"
        );
    }
}
