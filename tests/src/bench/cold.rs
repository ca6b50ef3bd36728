//! Stub cold start: from process start to the bridge connected and the first `/next` sent,
//! against a bare `lambda_runtime` binary's start to its first `/next` (the echo fixture),
//! and in IoT mode (TLS and SigV4) against a plain `ws://` broker.

use super::Stats;
use bridge::broker::{Broker, BrokerConfig};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;

/// Starts per binary.
pub const RUNS: usize = 20;

/// When the first request bytes arrive on `listener` (a `/next`), after `start`.
async fn first_request(listener: &TcpListener, start: Instant) -> Duration {
    let (mut stream, _) = listener.accept().await.expect("accept");
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte).await;
    // Keep the connection open (as a Runtime API holding /next) until the caller is done.
    tokio::spawn(async move {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    start.elapsed()
}

/// One start of `binary`: time to the first `/next`, and to the bridge connected when it
/// says so (`LIVE_STUB_TIMING`).
async fn once(
    binary: &Path,
    broker: Option<&str>,
    env: &[(String, String)],
) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", listener.local_addr()?.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "echo")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(url) = broker {
        cmd.env("LIVE_BRIDGE_URL", url)
            .env("LIVE_APP", "cold")
            .env("LIVE_STAGE", "bench")
            .env("LIVE_STUB_TIMING", "1")
            .envs(env.iter().cloned());
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let connected = async {
        if broker.is_none() {
            return Duration::ZERO;
        }
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("bridge connected") {
                return start.elapsed();
            }
        }
        Duration::MAX
    };
    let (next, connected) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(first_request(&listener, start), connected)
    })
    .await?;
    let _ = child.kill().await;
    anyhow::ensure!(
        connected != Duration::MAX,
        "{} never connected",
        binary.display()
    );
    Ok(next.max(connected))
}

/// Cold starts of the stub (with an in-process broker) and of a bare `lambda_runtime` binary.
pub async fn run(stub: &Path, bare: &Path) -> anyhow::Result<(Stats, Stats)> {
    let broker = Broker::start("127.0.0.1:0".parse()?, BrokerConfig::default()).await?;
    let url = broker.url();
    let (mut stubs, mut bares) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        stubs.push(once(stub, Some(&url), &[]).await?);
        bares.push(once(bare, None, &[]).await?);
    }
    Ok((Stats::new(stubs), Stats::new(bares)))
}

/// Cold starts of the stub against a plain `ws://` broker and against `live broker --iot`
/// (`iot_url`, with `env` to sign for it and trust its CA), alternating.
pub async fn run_iot(
    stub: &Path,
    iot_url: &str,
    env: &[(String, String)],
) -> anyhow::Result<(Stats, Stats)> {
    let broker = Broker::start("127.0.0.1:0".parse()?, BrokerConfig::default()).await?;
    let url = broker.url();
    let (mut plain, mut iot) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        plain.push(once(stub, Some(&url), &[]).await?);
        iot.push(once(stub, Some(iot_url), env).await?);
    }
    Ok((Stats::new(plain), Stats::new(iot)))
}
