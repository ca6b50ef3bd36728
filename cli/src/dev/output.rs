//! What `live dev` prints: text for a terminal (a progress line while building, one line per
//! invocation), or one JSON object per line with `--json`; `-q` keeps only errors. Every
//! write goes through a [`Writer`] thread, so a stream nobody reads never stalls the runtime.

use crate::writer::{self, dropped_lines, Stream, Writer};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the epoch, for JSON events that benchmarks line up with their own
/// clocks.
pub fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The printer.
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    tty: bool,
    last_failure: Mutex<Option<String>>,
    stdout: Writer,
    /// The process's stderr writer, shared with the children's echoed output.
    stderr: &'static Writer,
}

impl Output {
    pub fn new(json: bool, quiet: bool) -> Output {
        Output {
            json,
            quiet,
            tty: std::io::stderr().is_terminal(),
            last_failure: Mutex::new(None),
            stdout: Writer::start(
                Stream::Stdout,
                if json { dropped_json } else { dropped_lines },
            ),
            stderr: writer::stderr(),
        }
    }

    /// A line for stdout (the ready line, JSON events, invocation lines).
    pub fn line(&self, line: impl std::fmt::Display) {
        self.stdout.write(format!("{line}\n"));
    }

    /// A line for stderr.
    pub fn noteln(&self, line: impl std::fmt::Display) {
        self.stderr.write(format!("{line}\n"));
    }

    /// Text for stderr, as it is (its own line breaks).
    pub fn note(&self, text: impl std::fmt::Display) {
        self.stderr.write(text.to_string());
    }

    /// Stop taking lines, and give those queued up to `within` to be written.
    pub async fn close(&self, within: Duration) {
        tokio::join!(self.stdout.close(within), self.stderr.close(within));
    }

    fn event(&self, value: serde_json::Value) {
        self.line(value);
    }

    /// One invocation's line (or JSON object), printed with the burst it belongs to.
    pub fn invocation(
        &self,
        invocation: &bridge::WireInvocation,
        worker_pid: u32,
        elapsed: Duration,
        error_type: Option<&str>,
        body: &[u8],
    ) {
        if self.json {
            let line = serde_json::json!({
                "at_us": epoch_us(),
                "event": "invocation",
                "function": invocation.function,
                "request_id": invocation.request_id,
                "env_id": invocation.env_id,
                "worker_pid": worker_pid,
                "duration_ms": elapsed.as_secs_f64() * 1e3,
                "outcome": if error_type.is_some() { "error" } else { "ok" },
                "error_type": error_type,
            });
            self.line(line);
            return;
        }
        match error_type {
            None if self.quiet => {}
            None => self.line(format_args!(
                "{:<12} {}  {:>8.1} ms  ok  worker {worker_pid}",
                invocation.function,
                invocation.request_id,
                elapsed.as_secs_f64() * 1e3
            )),
            Some(error_type) => {
                let message = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
                    .unwrap_or_default();
                self.line(format_args!(
                    "{:<12} {}  {:>8.1} ms  {error_type}: {message}  worker {worker_pid}",
                    invocation.function,
                    invocation.request_id,
                    elapsed.as_secs_f64() * 1e3
                ));
            }
        }
    }

    /// Files changed, affecting `functions`.
    pub fn changed(&self, paths: usize, functions: &[String]) {
        if self.json {
            self.event(serde_json::json!({"event": "change", "paths": paths, "functions": functions, "at_us": epoch_us()}));
        }
    }

    /// A build of `functions` started.
    pub fn build_started(&self, functions: &[String]) {
        if self.json {
            self.event(serde_json::json!({"event": "build_started", "functions": functions, "at_us": epoch_us()}));
        } else if !self.quiet {
            let end = if self.tty { "" } else { "\n" };
            self.note(format_args!("building {} ...{end}", functions.join(", ")));
        }
    }

    /// A build that was restarted because files changed while it ran.
    pub fn build_restarted(&self, functions: &[String]) {
        if self.json {
            self.event(serde_json::json!({"event": "build_restarted", "functions": functions, "at_us": epoch_us()}));
        } else if !self.quiet {
            self.clear_line();
            self.noteln(format_args!(
                "files changed during the build of {}: restarting it",
                functions.join(", ")
            ));
        }
    }

    /// A build finished.
    pub fn build_finished(&self, functions: &[String], took: Duration) {
        *self.last_failure.lock().expect("lock") = None;
        if self.json {
            self.event(serde_json::json!({
                "event": "build_finished", "ok": true, "functions": functions,
                "duration_ms": took.as_secs_f64() * 1e3, "at_us": epoch_us(),
            }));
        } else if !self.quiet {
            self.clear_line();
            self.noteln(format_args!(
                "built {} in {:.2}s",
                functions.join(", "),
                took.as_secs_f64()
            ));
        }
    }

    /// A build failed: shown once until the error changes or a build succeeds.
    pub fn build_failed(&self, functions: &[String], first_error: &str, took: Duration) {
        if self.json {
            self.event(serde_json::json!({
                "event": "build_finished", "ok": false, "functions": functions,
                "duration_ms": took.as_secs_f64() * 1e3, "error": first_error, "at_us": epoch_us(),
            }));
            return;
        }
        let mut last = self.last_failure.lock().expect("lock");
        self.clear_line();
        if last.as_deref() == Some(first_error) {
            self.noteln(format_args!(
                "build of {} still fails (same error)",
                functions.join(", ")
            ));
        } else {
            self.noteln(format_args!(
                "build of {} failed:\n{first_error}",
                functions.join(", ")
            ));
            *last = Some(first_error.to_string());
        }
    }

    fn clear_line(&self) {
        if self.tty {
            self.note(format_args!("\r\x1b[K"));
        }
    }
}

/// What replaces dropped lines with `--json`.
fn dropped_json(lines: u64) -> String {
    format!(
        "{}\n",
        serde_json::json!({"event": "output_dropped", "lines": lines, "at_us": epoch_us()})
    )
}
