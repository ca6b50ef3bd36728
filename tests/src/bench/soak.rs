//! The soak: 10,000 invocations through the whole chain (`live dev` with its embedded cloud),
//! with the resident memory of `live dev` and of the stub that served them before and after.
//! `SOAK_TRACE=1` prints the memory every 2,500 invocations; `SOAK_ARGS` adds `live dev`
//! options (for example `--no-watch`) to compare.

use crate::http::Http;
use crate::live::{live_dev, project, raw_function};
use anyhow::bail;
use std::time::{Duration, Instant};

/// Invocations in the soak.
pub const INVOCATIONS: usize = 10_000;
/// Invocations before the first memory reading.
pub const WARMUP: usize = 1_000;

/// What the soak showed.
pub struct Report {
    pub dev_before_kb: u64,
    pub dev_after_kb: u64,
    pub stub_before_kb: u64,
    pub stub_after_kb: u64,
    pub errors: usize,
    pub elapsed: Duration,
    /// `live dev`'s memory every 2,500 invocations after the warm-up: (invocations, kB).
    pub samples: Vec<(usize, u64)>,
}

/// `VmRSS` of `pid`, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Run the soak.
pub async fn run() -> anyhow::Result<Report> {
    let dir = project("soak", &raw_function("echo"));
    let extra = std::env::var("SOAK_ARGS").unwrap_or_default();
    let dev = live_dev(&dir, &extra.split_whitespace().collect::<Vec<_>>());
    let url = format!("{}/2015-03-31/functions/echo/invocations", dev.front_door);
    let trace = std::env::var("SOAK_TRACE").is_ok();
    let http = Http::default();
    let mut errors = 0;
    let mut samples = Vec::new();
    let mut stub = 0u32;
    let (mut dev_before, mut stub_before) = (0, 0);
    let mut start = Instant::now();
    for i in 0..WARMUP + INVOCATIONS {
        if i == WARMUP {
            dev_before = rss_kb(dev.pid);
            stub_before = rss_kb(stub);
            // Time and errors count the measured invocations only.
            start = Instant::now();
            errors = 0;
        }
        if i >= WARMUP && (i - WARMUP).is_multiple_of(2500) {
            samples.push((i - WARMUP, rss_kb(dev.pid)));
        }
        if trace && i.is_multiple_of(2500) {
            eprintln!(
                "soak {i}: live dev {} kB, stub {} kB",
                rss_kb(dev.pid),
                rss_kb(stub)
            );
        }
        match http.try_send("POST", &url, &[], "{}").await {
            Ok(r) if r.status == 200 && r.header("x-amz-function-error").is_empty() => {
                stub = r.header("x-live-stub-pid").parse().unwrap_or(stub);
            }
            _ => errors += 1,
        }
    }
    if stub == 0 {
        bail!("no invocation succeeded");
    }
    let dev_after = rss_kb(dev.pid);
    samples.push((INVOCATIONS, dev_after));
    Ok(Report {
        samples,
        dev_before_kb: dev_before,
        dev_after_kb: dev_after,
        stub_before_kb: stub_before,
        stub_after_kb: rss_kb(stub),
        errors,
        elapsed: start.elapsed(),
    })
}
