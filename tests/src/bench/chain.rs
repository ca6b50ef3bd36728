//! The whole chain against its baselines on one echo handler (`tests/fixtures/echo`, release
//! builds): **direct** (Invoke API -> local Runtime API -> handler, `live cloud --direct`),
//! **chain** (Invoke API -> emulator -> stub -> broker -> `live dev` -> handler) and **peer**
//! (`cargo lambda watch --release`, default settings). One load client, in this process, on
//! hyper with connections kept alive for the whole run.

use super::Stats;
use crate::http::Http;
use crate::live::fixture_target_dir;
use crate::Child;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The three paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Direct,
    Chain,
    Peer,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Chain => "chain",
            Path::Peer => "peer",
        }
    }
}

/// A running path and the URL to invoke the echo function at.
pub struct Running {
    pub child: Child,
    pub url: String,
}

fn fixture() -> std::path::PathBuf {
    crate::live::fixtures().join("echo")
}

/// Start `path` and wait until it answers.
pub async fn start(path: Path) -> anyhow::Result<Running> {
    let (child, url) = match path {
        Path::Direct | Path::Chain => {
            let mut cmd = Command::new(crate::bin("live"));
            if path == Path::Direct {
                cmd.args(["cloud", "--direct", "--release", "-c"])
                    .arg(fixture());
            } else {
                cmd.args(["dev", "--release", "--json", "-c"])
                    .arg(fixture());
                // For `cargo xtask bench probe`: extra `live dev` options to compare.
                if let Ok(extra) = std::env::var("LIVE_PROBE_ARGS") {
                    cmd.args(extra.split_whitespace());
                }
            }
            cmd.env("CARGO_TARGET_DIR", fixture_target_dir());
            let child = Child::spawn(cmd);
            let line = child.wait_for_line_within(Duration::from_secs(900), |l| {
                l.starts_with("live cloud ready: ") || l.contains("\"ready\"")
            });
            let base = if path == Path::Direct {
                line.trim_start_matches("live cloud ready: ")
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string()
            } else {
                let v: serde_json::Value = serde_json::from_str(&line)?;
                v["front_door"].as_str().unwrap_or("").to_string()
            };
            (
                child,
                format!("{base}/2015-03-31/functions/echo/invocations"),
            )
        }
        Path::Peer => super::reload::cargo_lambda_watch(&fixture(), "echo", true)?,
    };
    super::wait_until_answered(
        &url,
        Duration::from_secs(120),
        Duration::from_secs(900),
        path.name(),
        &child,
    )
    .await?;
    Ok(Running { child, url })
}

/// One kept-alive HTTP/1.1 connection of the load client (hyper's connection API, no pool):
/// it stays open for the whole run, as the benchmark asks. A pooled client sometimes opens a
/// fresh connection while the last one is still on its way back to the pool, which costs the
/// server under test an accept and a new connection.
struct Kept {
    authority: String,
    path: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Kept {
    fn new(url: &str) -> anyhow::Result<Kept> {
        let uri: http::Uri = url.parse().context("the invoke URL")?;
        Ok(Kept {
            authority: uri.authority().context("no host in the URL")?.to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            sender: None,
        })
    }

    /// Invoke with `body`; the reply's body, or why it failed (its connection is then
    /// replaced for the next call).
    async fn call(&mut self, body: Bytes) -> anyhow::Result<Bytes> {
        let reply = tokio::time::timeout(Duration::from_secs(60), self.send(body))
            .await
            .context("no answer within 60 s")
            .and_then(|r| r);
        if reply.is_err() {
            self.sender = None;
        }
        let (parts, body) = reply?;
        if parts.status != 200 || parts.headers.contains_key("x-amz-function-error") {
            bail!(
                "status {}: {}",
                parts.status,
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        Ok(body)
    }

    async fn send(&mut self, body: Bytes) -> anyhow::Result<(http::response::Parts, Bytes)> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            slot => {
                let stream = tokio::net::TcpStream::connect(&self.authority).await?;
                stream.set_nodelay(true)?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                slot.insert(sender)
            }
        };
        sender.ready().await?;
        let request = http::Request::post(&self.path)
            .header(http::header::HOST, &self.authority)
            .body(Full::new(body))?;
        let (parts, body) = sender.send_request(request).await?.into_parts();
        Ok((parts, body.collect().await?.to_bytes()))
    }
}

/// Sequential latency: `warmup` then `samples` small invocations on one connection.
pub async fn sequential(url: &str, warmup: usize, samples: usize) -> anyhow::Result<Stats> {
    let mut client = Kept::new(url)?;
    let body = Bytes::from_static(br#"{"n":1}"#);
    let mut times = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let start = Instant::now();
        client.call(body.clone()).await?;
        if i >= warmup {
            times.push(start.elapsed());
        }
    }
    Ok(Stats::new(times))
}

/// Invocations per second with `connections` concurrent keep-alive connections for `span`,
/// and the errors.
pub async fn throughput(url: &str, connections: usize, span: Duration) -> (f64, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (done, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (stop, done, errors, url) =
                (stop.clone(), done.clone(), errors.clone(), url.to_string());
            tokio::spawn(async move {
                let Ok(mut client) = Kept::new(&url) else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let body = Bytes::from_static(br#"{"n":1}"#);
                while !stop.load(Ordering::Relaxed) {
                    match client.call(body.clone()).await {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let start = Instant::now();
    tokio::time::sleep(span).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    (
        counted as f64 / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

/// The median round trip of an event of `size` bytes (echoed back), over `reps`.
pub async fn payload(url: &str, size: usize, reps: usize) -> anyhow::Result<Stats> {
    let mut client = Kept::new(url)?;
    let body = Bytes::from(format!(
        r#"{{"data":"{}"}}"#,
        "x".repeat(size.saturating_sub(11))
    ));
    client.call(body.clone()).await?;
    let mut times = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let back = client.call(body.clone()).await?;
        times.push(start.elapsed());
        if back.len() != body.len() {
            bail!("{size} bytes went out, {} came back", back.len());
        }
    }
    Ok(Stats::new(times))
}

/// `n` invocations sent at once, each on its own connection: how many came back with their
/// own result, with an error, or not within `timeout`.
pub async fn in_flight(url: &str, n: usize, timeout: Duration) -> (usize, usize, usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let url = url.to_string();
            tokio::spawn(async move {
                let http = Http::default();
                let body = Bytes::from(format!(r#"{{"n":{i}}}"#));
                match tokio::time::timeout(timeout, http.try_send("POST", &url, &[], body)).await {
                    Err(_) => 2,
                    Ok(Ok(r)) if r.status == 200 && r.header("x-amz-function-error").is_empty() => {
                        let own = serde_json::from_slice::<serde_json::Value>(&r.body)
                            .map(|v| v["n"] == i)
                            .unwrap_or(false);
                        if own {
                            0
                        } else {
                            1
                        }
                    }
                    Ok(_) => 1,
                }
            })
        })
        .collect();
    let (mut ok, mut errors, mut hung) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap_or(1) {
            0 => ok += 1,
            1 => errors += 1,
            _ => hung += 1,
        }
    }
    (ok, errors, hung)
}
