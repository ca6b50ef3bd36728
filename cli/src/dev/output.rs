//! What `live dev` prints: text for a terminal (a progress line while building, one line per
//! invocation), or one JSON object per line with `--json`; `-q` keeps only errors.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
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
    /// Invocation lines not written yet: under load one write carries many.
    lines: Mutex<String>,
}

impl Output {
    pub fn new(json: bool, quiet: bool) -> Output {
        Output {
            json,
            quiet,
            tty: std::io::stderr().is_terminal(),
            last_failure: Mutex::new(None),
            lines: Mutex::new(String::new()),
        }
    }

    fn event(&self, value: serde_json::Value) {
        self.flush_lines();
        println!("{value}");
    }

    /// One invocation's line (or JSON object), printed with the burst it belongs to.
    pub fn invocation(
        self: &Arc<Self>,
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
            self.invocation_line(format_args!("{line}"));
            return;
        }
        match error_type {
            None if self.quiet => {}
            None => self.invocation_line(format_args!(
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
                self.invocation_line(format_args!(
                    "{:<12} {}  {:>8.1} ms  {error_type}: {message}  worker {worker_pid}",
                    invocation.function,
                    invocation.request_id,
                    elapsed.as_secs_f64() * 1e3
                ));
            }
        }
    }

    /// Print one invocation's line: written by a task that runs after those already
    /// waiting, together with the lines they add meanwhile (one write for a burst, not one
    /// each; every other line on stdout writes these first, so the order holds).
    fn invocation_line(self: &Arc<Self>, line: std::fmt::Arguments<'_>) {
        let first = {
            let mut lines = self.lines.lock().expect("lock");
            let first = lines.is_empty();
            let _ = std::fmt::Write::write_fmt(&mut *lines, line);
            lines.push('\n');
            first
        };
        if first {
            let out = self.clone();
            tokio::spawn(async move { out.flush_lines() });
        }
    }

    /// Write the invocation lines not written yet.
    pub fn flush_lines(&self) {
        let lines = std::mem::take(&mut *self.lines.lock().expect("lock"));
        if !lines.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(lines.as_bytes());
            let _ = stdout.flush();
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
            eprint!("building {} ...{end}", functions.join(", "));
        }
    }

    /// A build that was restarted because files changed while it ran.
    pub fn build_restarted(&self, functions: &[String]) {
        if self.json {
            self.event(serde_json::json!({"event": "build_restarted", "functions": functions, "at_us": epoch_us()}));
        } else if !self.quiet {
            self.clear_line();
            eprintln!(
                "files changed during the build of {}: restarting it",
                functions.join(", ")
            );
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
            eprintln!(
                "built {} in {:.2}s",
                functions.join(", "),
                took.as_secs_f64()
            );
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
            eprintln!("build of {} still fails (same error)", functions.join(", "));
        } else {
            eprintln!("build of {} failed:\n{first_error}", functions.join(", "));
            *last = Some(first_error.to_string());
        }
    }

    fn clear_line(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}
