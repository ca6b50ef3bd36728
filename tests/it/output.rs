//! `live dev`'s output never holds up its invocations: with its stdout, or its stderr, piped
//! to a reader that stops reading, invocations keep being answered.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::http::Http;
use tests::live::{fixture_target_dir, project, raw_function};
use tests::{bin, DEADLINE};

/// Linux's default pipe capacity: once this much is unread, a write to the pipe blocks.
const PIPE_BYTES: usize = 64 * 1024;

/// Invocations sent first, to fill the pipe: their lines (each about 250 bytes) are more than
/// it holds.
const FILL: usize = 400;

/// Invocations sent while nobody reads, one every [`PACE`], over the 10 s pause.
const DURING: usize = 100;
const PACE: Duration = Duration::from_millis(100);

/// How long one invocation may take while stdout is not read (usually a few ms).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The `live dev` process, killed at the end of the test whatever happens.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `live dev` with `args` serving the raw runtime's `echo` in a fresh project `name`, its
/// stdout and stderr piped to the test.
fn live_dev_piped(name: &str, args: &[&str]) -> Killed {
    let dir = project(name, &raw_function("echo"));
    let mut cmd = Command::new(bin("live"));
    cmd.arg("dev")
        .args(args)
        .arg("-c")
        .arg(&dir)
        .env("CARGO_TARGET_DIR", fixture_target_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Killed(cmd.spawn().expect("live dev starts"))
}

#[tokio::test]
async fn a_stdout_nobody_reads_does_not_stall_invocations() {
    let mut child = live_dev_piped("stalled-stdout", &["--json"]);
    // Its stderr is read all along (only stdout stalls), and shown if the test fails.
    let stderr = child.0.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let mut stdout = BufReader::new(child.0.stdout.take().expect("piped"));
    let ready = {
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            while stdout.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("\"ready\"") {
                    let _ = tx.send(line.clone());
                    break;
                }
                line.clear();
            }
            stdout
        });
        let ready = rx
            .recv_timeout(DEADLINE)
            .expect("live dev printed its ready line");
        (ready, reader.join().expect("reader"))
    };
    let (ready, mut stdout) = ready;
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("JSON ready line");
    let front_door = ready["front_door"]
        .as_str()
        .expect("front door")
        .to_string();

    // From here on nobody reads stdout. Fill the pipe with invocation lines ...
    let http = Http::default();
    let fill = async {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..FILL {
            let (http, url) = (http.clone(), front_door.clone());
            calls.spawn(async move {
                let reply = http
                    .invoke(&url, "echo", &[], format!("{{\"n\":{i}}}"))
                    .await;
                reply.assert_no_function_error();
            });
            // Eight at a time.
            if calls.len() >= 8 {
                calls.join_next().await.expect("a call").expect("answered");
            }
        }
        while let Some(call) = calls.join_next().await {
            call.expect("answered");
        }
    };
    let Ok(()) = tokio::time::timeout(Duration::from_secs(120), fill).await else {
        panic!(
            "filling stdout stalled live dev; its stderr:\n{}",
            stop(child, errors)
        );
    };

    // ... then, for 10 s, invocations keep being answered.
    let pause = Instant::now();
    for i in 0..DURING {
        let event = format!("{{\"during\":{i}}}");
        let call = http.invoke(&front_door, "echo", &[], event);
        let Ok(reply) = tokio::time::timeout(ANSWER_WITHIN, call).await else {
            panic!(
                "invocation {i} with stdout unread was not answered within {ANSWER_WITHIN:?}; \
                 live dev's stderr:\n{}",
                stop(child, errors)
            );
        };
        reply.assert_no_function_error();
        tokio::time::sleep_until((pause + PACE * (i as u32 + 1)).into()).await;
    }
    assert!(pause.elapsed() >= Duration::from_secs(10));

    // Read again: every line comes, and the pipe had been full.
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let mut line = String::new();
        let deadline = Instant::now() + DEADLINE;
        while lines.len() < FILL + DURING && Instant::now() < deadline {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.contains("\"invocation\"") {
                lines.push(line.clone());
            }
        }
        lines
    })
    .await
    .unwrap();
    let fill_bytes: usize = lines.iter().take(FILL).map(String::len).sum();
    assert!(
        fill_bytes > PIPE_BYTES,
        "the first {FILL} lines ({fill_bytes} bytes) did not fill the pipe"
    );
    assert_eq!(
        lines.len(),
        FILL + DURING,
        "every invocation's line is printed once stdout is read again"
    );
    drop(child);
}

/// With its stderr piped to nobody, `live dev` (text mode, so it echoes each worker's output
/// there) keeps answering invocations whose handlers write far more than the pipe holds.
#[tokio::test]
async fn a_stderr_nobody_reads_does_not_stall_invocations() {
    let mut child = live_dev_piped("stalled-stderr", &[]);
    // Nobody reads its stderr; its stdout is read all along, for the front door's address.
    let _unread = child.0.stderr.take().expect("piped");
    let stdout = BufReader::new(child.0.stdout.take().expect("piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(at) = line.find("/2015-03-31/functions/") {
                let start = line.find("http://").unwrap_or(0);
                let _ = tx.send(line[start..at].to_string());
            }
            seen.push(line);
        }
        seen
    });
    let front_door = rx
        .recv_timeout(DEADLINE)
        .expect("live dev printed its Invoke API address");

    // Each handler writes 10 KB to stderr, which live dev echoes: 40 of them fill the pipe
    // several times over, and the invocations after them must still be answered.
    let http = Http::default();
    for i in 0..40 + DURING / 2 {
        let event = format!("{{\"mode\":\"log\",\"lines\":100,\"n\":{i}}}");
        let call = http.invoke(&front_door, "echo", &[], event);
        let Ok(reply) = tokio::time::timeout(ANSWER_WITHIN, call).await else {
            drop(child);
            panic!(
                "invocation {i} with stderr unread was not answered within {ANSWER_WITHIN:?}; \
                 live dev's stdout:\n{}",
                reader.join().unwrap_or_default().join("\n")
            );
        };
        reply.assert_no_function_error();
    }
    drop(child);
}

/// Stop `live dev` and return what it wrote to stderr.
fn stop(child: Killed, errors: std::thread::JoinHandle<String>) -> String {
    drop(child);
    errors.join().unwrap_or_default()
}
