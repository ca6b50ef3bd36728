//! The benchmark command behind `cargo xtask bench [NAME]`: starts everything itself on
//! loopback, measures, prints the figures and rewrites its section of BENCHMARKS.md. Built in
//! release by the xtask. Sections: `broker`, `chain`, `stub`, `cold`, `iot`, `soak`, `reload`; none
//! named runs all; `probe [PATH]...` prints a short look at some paths without writing.

use std::fmt::Write as _;
use std::time::Duration;
use tests::bench::chain::{self, Path};
use tests::bench::{broker, ms, reload, soak, write_section, Stats};

const WARMUP: usize = 200;
const SAMPLES: usize = 2_000;
const PAYLOAD: usize = 64;
/// Round trips per payload size; the median is reported.
const PAYLOAD_REPS: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    if wanted.first().map(String::as_str) == Some("probe") {
        return probe(&wanted[1..]).await;
    }
    const SECTIONS: [&str; 7] = ["broker", "chain", "stub", "cold", "iot", "soak", "reload"];
    for name in SECTIONS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let section = match name {
            "broker" => broker_section().await?,
            "chain" => chain_section().await?,
            "stub" => stub_section()?,
            "cold" => cold_section().await?,
            "iot" => iot_section().await?,
            "soak" => soak_section().await?,
            "reload" => reload_section().await?,
            other => unreachable!("no section {other}"),
        };
        println!("{section}");
        write_section(name, &section)?;
    }
    eprintln!("bench: wrote BENCHMARKS.md");
    Ok(())
}

/// `cargo xtask bench probe [direct|chain|peer]...`: a short look at the sequential p50 and
/// the 32-connection throughput of some paths, printed only (BENCHMARKS.md is untouched); for
/// iterating on the hot path.
async fn probe(paths: &[String]) -> anyhow::Result<()> {
    for path in [Path::Direct, Path::Chain, Path::Peer] {
        if !paths.is_empty() && !paths.iter().any(|p| p == path.name()) {
            continue;
        }
        let running = chain::start(path).await?;
        let seq = chain::sequential(&running.url, WARMUP, SAMPLES / 2).await?;
        let before = tests::bench::cpu_ticks(running.child.pid());
        let (rate, errors) = chain::throughput(&running.url, 32, Duration::from_secs(5)).await;
        let after = tests::bench::cpu_ticks(running.child.pid());
        let invocations = rate * 5.0;
        let cpu: Vec<String> = after
            .iter()
            .map(|(name, t)| {
                let used = t - before.get(name).copied().unwrap_or(0);
                format!("{name} {:.0} us", used as f64 * 10_000.0 / invocations)
            })
            .collect();
        println!(
            "probe {}: CPU per invocation at 32 connections: {}",
            path.name(),
            cpu.join(", ")
        );
        let big = chain::payload(&running.url, 5 * 1024 * 1024, 5).await?;
        println!(
            "probe {}: p50 {} p99 {}; 32 connections {rate:.0}/s ({errors} errors); 5 MiB {}",
            path.name(),
            ms(seq.p(50.0)),
            ms(seq.p(99.0)),
            ms(big.median())
        );
    }
    Ok(())
}

fn row(out: &mut String, name: &str, s: &Stats) -> std::fmt::Result {
    writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} |",
        s.len(),
        ms(s.p(50.0)),
        ms(s.p(90.0)),
        ms(s.p(99.0)),
        ms(s.max())
    )
}

async fn broker_section() -> anyhow::Result<String> {
    let bare = broker::broker_round_trip(WARMUP, SAMPLES, PAYLOAD).await?;
    // On one thread of its own: both ends of the echo in one process, with no wake-up
    // across threads (on the multi-thread runtime it read 0.015 or 0.09 ms from run to run,
    // as the two tasks landed on one worker or two).
    let floor = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)?
            .block_on(broker::ws_echo_round_trip(WARMUP, SAMPLES, PAYLOAD))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the floor's thread panicked"))??;
    let mut table = String::new();
    writeln!(table, "| path | n | p50 | p90 | p99 | max |")?;
    writeln!(table, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    row(
        &mut table,
        "bare broker: QoS 1 publish, echo, back (2 rumqttc clients, `live broker`)",
        &bare,
    )?;
    row(
        &mut table,
        "floor: one WebSocket echo on loopback (no MQTT, no broker; both ends on one thread)",
        &floor,
    )?;
    let ratio = bare.median().as_secs_f64() / floor.median().as_secs_f64();
    Ok(format!(
        "## Bridge broker round trip (`cargo xtask bench broker`)\n\n\
         A QoS 1 round trip through the embedded broker between two `rumqttc` clients over \
         WebSocket: client A publishes {PAYLOAD} bytes at QoS 1 to `bench/ping`, client B \
         receives it and publishes it back to `bench/pong`, A receives it. {SAMPLES} \
         sequential round trips after {WARMUP} warm-up, the broker running as `live broker` \
         in its own process, the clients in the benchmark process (same machine).\n\n\
         {table}\n\
         The broker round trip crosses the broker twice (four WebSocket messages, each \
         answered by a PUBACK); the floor crosses one WebSocket once each way. Ratio p50 broker / floor: \
         {ratio:.1}x. Reference from design.md: a healthy broker gives ~0.3 ms p50 here, \
         `rumqttd` 0.20 gives 88 ms (no TCP_NODELAY).\n"
    ))
}

async fn reload_section() -> anyhow::Result<String> {
    let live = reload::live().await?;
    let peer = reload::peer().await?;
    let overhead = live.overhead.as_ref().expect("live reports its overhead");
    let mut table = String::new();
    writeln!(
        table,
        "| figure (median, max over {} saves) | live | cargo lambda watch | peer / live |",
        reload::SAVES
    )?;
    writeln!(table, "| --- | ---: | ---: | ---: |")?;
    writeln!(
        table,
        "| reload overhead: write -> build start + build end -> first new reply | {} (max {}) | n/a (its build start and end are not observable) | |",
        ms(overhead.median()),
        ms(overhead.max())
    )?;
    // A row of medians (and maxima) for both tools, with the peer's median over live's.
    let mut side_by_side = |figure: &str, live: &Stats, peer: &Stats| {
        writeln!(
            table,
            "| {figure} | {} (max {}) | {} (max {}) | {:.1}x |",
            ms(live.median()),
            ms(live.max()),
            ms(peer.median()),
            ms(peer.max()),
            peer.median().as_secs_f64() / live.median().as_secs_f64()
        )
    };
    side_by_side(
        "file write -> first new reply to the sequential client",
        &live.write_to_reply,
        &peer.write_to_reply,
    )?;
    side_by_side(
        "file write -> first new reply to the probe (fresh request every 20 ms, 1 s timeout)",
        &live.write_to_probe,
        &peer.write_to_probe,
    )?;
    writeln!(
        table,
        "| the build's own time | {} | {} | |",
        ms(live.build.median()),
        ms(peer.build.median())
    )?;
    writeln!(
        table,
        "| probe's write -> first new reply, minus the build | {} | {} | |",
        ms(live
            .write_to_probe
            .median()
            .saturating_sub(live.build.median())),
        ms(peer
            .write_to_probe
            .median()
            .saturating_sub(peer.build.median()))
    )?;
    writeln!(
        table,
        "| invocations lost (error or no answer in 30 s) | {} of {} | {} of {} | |",
        live.lost, live.total, peer.lost, peer.total
    )?;
    Ok(format!(
        "## Live reload (`cargo xtask bench reload`)\n\n\
         The reload fixture (`tests/fixtures/reload`, function `a` on `lambda_runtime`, debug \
         builds) saved {} times (its `VERSION` constant) while one client invokes it \
         sequentially without pause, for `live dev` (the whole chain: front door, stub, broker, \
         worker) and for `cargo lambda watch` 1.9.2 from PyPI (its default settings, local \
         emulation only) on separate copies, one after the other in one run. Overhead is \
         measured directly from `live dev --json` events: file write to `build_started`, plus \
         `build_finished` to the first reply with the new version. A probe sends a fresh \
         request every 20 ms beside the sequential client, so a tool's reload time shows even \
         when it leaves the sequential client's request hanging (the client gives up after \
         30 s and counts it lost). Target: median <= 100 ms; 0 invocations lost.\n\n{table}",
        reload::SAVES
    ))
}

async fn soak_section() -> anyhow::Result<String> {
    let r = soak::run().await?;
    let growth = |before: u64, after: u64| after as f64 / before.max(1) as f64;
    Ok(format!(
        "## Soak (`cargo xtask bench soak`)\n\n\
         {} sequential invocations through the whole chain (`live dev` with its embedded \
         cloud: front door, emulator, stub frozen between invocations, broker, worker running \
         the raw Python runtime client), after {} warm-up. Resident memory (VmRSS) before and \
         after, and the error count.\n\n\
         | process | before | after | after / before |\n\
         | --- | ---: | ---: | ---: |\n\
         | `live dev` | {} kB | {} kB | {:.2} |\n\
         | stub (`bootstrap`) | {} kB | {} kB | {:.2} |\n\n\
         `live dev` along the way (invocations after the warm-up: kB): {}. `live dev` \
         remembers the last 4,096 answered request ids to drop duplicates; the growth while \
         that window fills is bounded, flat once it is full.\n\n\
         Errors: {} of {}. Took {:.1} s ({:.0} invocations/s, sequential).\n",
        soak::INVOCATIONS,
        soak::WARMUP,
        r.dev_before_kb,
        r.dev_after_kb,
        growth(r.dev_before_kb, r.dev_after_kb),
        r.stub_before_kb,
        r.stub_after_kb,
        growth(r.stub_before_kb, r.stub_after_kb),
        r.samples
            .iter()
            .map(|(n, kb)| format!("{n}: {kb}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.errors,
        soak::INVOCATIONS,
        r.elapsed.as_secs_f64(),
        soak::INVOCATIONS as f64 / r.elapsed.as_secs_f64()
    ))
}

struct PathFigures {
    seq: Stats,
    throughput: Vec<(usize, f64, usize)>,
    payloads: Vec<(&'static str, Stats)>,
    /// 1,000 at once: own results, errors, not answered in 60 s.
    in_flight: (usize, usize, usize),
    /// Resident memory of the serving process (`live dev` for the chain), kB: idle, and
    /// during the 32-connection throughput run.
    rss_idle_kb: u64,
    rss_load_kb: u64,
}

async fn measure(path: Path) -> anyhow::Result<PathFigures> {
    eprintln!("bench: {} ...", path.name());
    let running = chain::start(path).await?;
    let pid = running.child.pid();
    let rss_idle_kb = tests::bench::soak::rss_kb(pid);
    let seq = chain::sequential(&running.url, WARMUP, SAMPLES).await?;
    let mut throughput = Vec::new();
    let mut rss_load_kb = 0;
    for connections in [1, 8, 32] {
        let sample = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            tests::bench::soak::rss_kb(pid)
        };
        let load = chain::throughput(&running.url, connections, Duration::from_secs(10));
        let ((rate, errors), rss) = tokio::join!(load, sample);
        if connections == 32 {
            rss_load_kb = rss;
        }
        throughput.push((connections, rate, errors));
    }
    let mut payloads = Vec::new();
    for (name, size) in [
        ("1 KB", 1_000),
        ("100 KB", 100_000),
        ("1 MB", 1_000_000),
        ("5 MiB", 5 * 1024 * 1024),
    ] {
        payloads.push((
            name,
            chain::payload(&running.url, size, PAYLOAD_REPS).await?,
        ));
    }
    let in_flight = chain::in_flight(&running.url, 1000, Duration::from_secs(60)).await;
    drop(running);
    Ok(PathFigures {
        seq,
        throughput,
        payloads,
        in_flight,
        rss_idle_kb,
        rss_load_kb,
    })
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
}

async fn chain_section() -> anyhow::Result<String> {
    let bare = broker::broker_round_trip(WARMUP, SAMPLES, PAYLOAD).await?;
    let direct = measure(Path::Direct).await?;
    let chain = measure(Path::Chain).await?;
    let peer = measure(Path::Peer).await?;
    let mut t = String::new();
    writeln!(t, "Sequential latency, {SAMPLES} invocations after {WARMUP} warm-up, one keep-alive connection:\n")?;
    writeln!(t, "| path | p50 | p90 | p99 | max | p99 / p50 |")?;
    writeln!(t, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for (name, f) in [
        ("direct", &direct),
        ("chain", &chain),
        ("peer (cargo lambda watch)", &peer),
    ] {
        writeln!(
            t,
            "| {name} | {} | {} | {} | {} | {} |",
            ms(f.seq.p(50.0)),
            ms(f.seq.p(90.0)),
            ms(f.seq.p(99.0)),
            ms(f.seq.max()),
            ratio(f.seq.p(99.0), f.seq.p(50.0))
        )?;
    }
    writeln!(
        t,
        "| bare broker round trip | {} | {} | {} | {} | |",
        ms(bare.p(50.0)),
        ms(bare.p(90.0)),
        ms(bare.p(99.0)),
        ms(bare.max())
    )?;
    writeln!(t, "\nRatios (p50): chain / direct {}, chain / peer {}; chain p50 - direct p50 = {} against 1.5x the bare broker p50 = {}.\n",
        ratio(chain.seq.p(50.0), direct.seq.p(50.0)),
        ratio(chain.seq.p(50.0), peer.seq.p(50.0)),
        ms(chain.seq.p(50.0).saturating_sub(direct.seq.p(50.0))),
        ms(bare.p(50.0).mul_f64(1.5)))?;
    writeln!(t, "Throughput, invocations/s for 10 s (errors):\n")?;
    writeln!(
        t,
        "| connections | direct | chain | peer | chain / direct | chain / peer |"
    )?;
    writeln!(t, "| ---: | ---: | ---: | ---: | ---: | ---: |")?;
    for i in 0..3 {
        let (c, d, de) = direct.throughput[i];
        let (_, ch, che) = chain.throughput[i];
        let (_, p, pe) = peer.throughput[i];
        writeln!(
            t,
            "| {c} | {d:.0} ({de}) | {ch:.0} ({che}) | {p:.0} ({pe}) | {:.2} | {:.2} |",
            ch / d.max(1e-9),
            ch / p.max(1e-9)
        )?;
    }
    writeln!(
        t,
        "\nPayload round trips (event echoed back), median of {PAYLOAD_REPS} after one warm-up:\n"
    )?;
    writeln!(
        t,
        "| payload | direct | chain | peer | chain / direct | chain / peer |"
    )?;
    writeln!(t, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for i in 0..direct.payloads.len() {
        let (name, d) = (&direct.payloads[i].0, direct.payloads[i].1.median());
        let (c, p) = (chain.payloads[i].1.median(), peer.payloads[i].1.median());
        writeln!(
            t,
            "| {name} | {} | {} | {} | {} | {} |",
            ms(d),
            ms(c),
            ms(p),
            ratio(c, d),
            ratio(c, p)
        )?;
    }
    writeln!(
        t,
        "\n1,000 invocations sent at once, each on its own connection, 60 s timeout:\n"
    )?;
    writeln!(t, "| path | own result | error | no answer |")?;
    writeln!(t, "| --- | ---: | ---: | ---: |")?;
    for (name, f) in [("direct", &direct), ("chain", &chain), ("peer", &peer)] {
        let (ok, errors, hung) = f.in_flight;
        writeln!(t, "| {name} | {ok} | {errors} | {hung} |")?;
    }
    writeln!(t, "\nResident memory of the serving process (`live dev` for the chain, which holds the front door, emulator, broker and session; `live cloud --direct`; `cargo lambda watch`'s `cargo` process, not its emulator child): idle {} / {} / {} kB, under the 32-connection load {} / {} / {} kB (direct / chain / peer).",
        direct.rss_idle_kb, chain.rss_idle_kb, peer.rss_idle_kb, direct.rss_load_kb, chain.rss_load_kb, peer.rss_load_kb)?;
    Ok(format!(
        "## The whole chain against direct and the peer (`cargo xtask bench chain`)\n\n\
         One echo handler (`tests/fixtures/echo`, `lambda_runtime`, release builds) on three \
         paths, one after the other in one run: **direct** is `live cloud --direct` (Invoke \
         API -> local Runtime API -> handler, no stub, no broker); **chain** is `live dev \
         --release` with its embedded cloud (Invoke API -> emulator -> stub, frozen between \
         invocations -> broker -> `live dev` -> handler); **peer** is `cargo lambda watch \
         --release` 1.9.2 from PyPI with its default settings. The load client is this \
         benchmark process (Rust, hyper, keep-alive connections), sharing the machine.\n\n{t}"
    ))
}

/// Size of a file, and of it alone in a zip (deflate 9), as Lambda takes it.
fn sizes(path: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let size = std::fs::metadata(path)?.len();
    let zip = std::env::temp_dir().join("live-bench-stub.zip");
    let ok = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED, compresslevel=9); z.write(sys.argv[2], 'bootstrap'); z.close()"])
        .arg(&zip)
        .arg(path)
        .status()?
        .success();
    anyhow::ensure!(ok, "could not zip {}", path.display());
    Ok((size, std::fs::metadata(&zip)?.len()))
}

fn stub_section() -> anyhow::Result<String> {
    let target = tests::target_dir();
    let (release, release_zip) = sizes(&target.join("release").join("bootstrap"))?;
    let (deployed, deployed_zip) = sizes(&target.join("stub").join("bootstrap"))?;
    Ok(format!(
        "## Stub size (`cargo xtask bench stub`)\n\n\
         | build | binary | zipped (deflate 9) |\n\
         | --- | ---: | ---: |\n\
         | `cargo build --release` (workspace) | {:.2} MB | {:.2} MB |\n\
         | `cargo build --profile stub -p stub` (what is deployed: built alone, `opt-level = \"s\"`, fat LTO, one codegen unit, `panic = \"abort\"`, stripped) | {:.2} MB | {:.2} MB |\n\n\
         Target: zip <= 2 MB.\n",
        release as f64 / 1e6,
        release_zip as f64 / 1e6,
        deployed as f64 / 1e6,
        deployed_zip as f64 / 1e6
    ))
}

async fn cold_section() -> anyhow::Result<String> {
    let stub = tests::target_dir().join("stub").join("bootstrap");
    let bare = tests::live::fixture_target_dir()
        .join("release")
        .join("echo");
    anyhow::ensure!(bare.exists(), "{} is missing: run `cargo xtask bench chain` first (it builds the echo fixture in release)", bare.display());
    let (stubs, bares) = tests::bench::cold::run(&stub, &bare).await?;
    Ok(format!(
        "## Stub cold start (`cargo xtask bench cold`)\n\n\
         From process start to the bridge connected (an in-process broker on loopback) and \
         the first `/next` sent, for the deployable stub (`--profile stub`), against a bare \
         `lambda_runtime` binary (the echo fixture, release) from start to its first `/next`; \
         {} starts each, alternating.\n\n\
         | binary | p50 | max |\n\
         | --- | ---: | ---: |\n\
         | stub | {} | {} |\n\
         | bare `lambda_runtime` | {} | {} |\n\n\
         Ratio p50 stub / bare: {:.1}x (target <= 10x).\n",
        tests::bench::cold::RUNS,
        ms(stubs.median()),
        ms(stubs.max()),
        ms(bares.median()),
        ms(bares.max()),
        stubs.median().as_secs_f64() / bares.median().as_secs_f64()
    ))
}

/// The chain in IoT mode (TLS, SigV4 and IoT Core's quotas on both ends): latency,
/// throughput at 32 connections with the broker's discards, a 6 MB round trip, and the
/// stub's cold start with the TLS handshake.
async fn iot_section() -> anyhow::Result<String> {
    use tests::bench::iot;
    let stub = tests::target_dir().join("stub").join("bootstrap");
    let (_broker, iot_url, ca) = iot::iot_broker();
    let (plain, signed) =
        tests::bench::cold::run_iot(&stub, &iot_url, &iot::signing_env(&ca)).await?;
    // A fresh session met by 32 connections at once (its lanes grow from one), without a
    // bucket; then the measured run, whose sequential part grows the lanes first.
    let bare = iot::start(false).await?;
    let (bare_rate, bare_errors) = chain::throughput(&bare.url, 32, Duration::from_secs(10)).await;
    let (bare_in, bare_out) = bare.stop_and_count_discards();
    drop(bare);
    let running = iot::start(true).await?;
    let seq = chain::sequential(&running.url, WARMUP, SAMPLES / 2).await?;
    let (rate, errors) = chain::throughput(&running.url, 32, Duration::from_secs(10)).await;
    // Round trips by size: up to 64 KiB over the bridge, above it through the bucket
    // (`bridge::s3::OBJECT_THRESHOLD`: a larger payload over the bridge pays IoT Core's
    // 512 KiB/s per connection).
    let mut sizes = Vec::new();
    for (name, size) in [
        ("48 KB (bridge)", 48_000),
        ("100 KB (bucket)", 100_000),
        ("1 MB (bucket)", 1_000_000),
        ("6 MB (bucket)", 6_000_000),
    ] {
        let took = match chain::payload(&running.url, size, 3).await {
            Ok(stats) => ms(stats.median()),
            Err(e) => format!(
                "failed: {}",
                e.to_string().chars().take(160).collect::<String>()
            ),
        };
        sizes.push((name, took));
    }
    // The last "opened more lanes lanes=N" that live dev logged.
    let lanes = running
        .dev
        .output()
        .lines()
        .rev()
        .filter(|l| l.contains("opened more lanes"))
        .filter_map(|l| {
            l.split("lanes=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .next()
        .unwrap_or(1);
    let (discarded_in, discarded_out) = running.stop_and_count_discards();
    let mut t = String::new();
    writeln!(t, "| measure | value |")?;
    writeln!(t, "| --- | ---: |")?;
    writeln!(
        t,
        "| stub cold start to bridge connected, `ws://` (p50 / max of {}) | {} / {} |",
        tests::bench::cold::RUNS,
        ms(plain.median()),
        ms(plain.max())
    )?;
    writeln!(
        t,
        "| stub cold start with TLS handshake and SigV4 (p50 / max) | {} / {} |",
        ms(signed.median()),
        ms(signed.max())
    )?;
    writeln!(
        t,
        "| sequential p50 / p99 ({} invocations after {WARMUP}) | {} / {} |",
        SAMPLES / 2,
        ms(seq.p(50.0)),
        ms(seq.p(99.0))
    )?;
    writeln!(
        t,
        "| throughput at 32 connections, 10 s, at once on a fresh session (lanes growing from one; no bucket) (errors; discarded in / out) | {bare_rate:.0}/s ({bare_errors}; {bare_in} / {bare_out}) |"
    )?;
    writeln!(
        t,
        "| throughput at 32 connections, 10 s, after the sequential run (its lanes grown; with the bucket, a presigned response URL in every invocation) (errors) | {rate:.0}/s ({errors}) |"
    )?;
    writeln!(
        t,
        "| publishes the broker discarded over quota, in / out (the whole run) | {discarded_in} / {discarded_out} |"
    )?;
    for (name, took) in &sizes {
        writeln!(t, "| {name} event echoed back (median of 3) | {took} |")?;
    }
    writeln!(t, "| `live dev` lanes at the end | {lanes} |")?;
    Ok(format!(
        "## IoT mode (`cargo xtask bench iot`)\n\n\
         The chain as it meets AWS IoT Core, stood in for on loopback: `live cloud --iot` \
         (its broker with TLS, SigV4 verification and IoT Core's quotas; its stubs signing \
         with their functions' roles) and `live dev --aws --release` (the endpoint from \
         moto's `DescribeEndpoint`, every connection signed, paced to IoT Core's 100 \
         publishes a second per connection, lanes opened as the load needs), on the echo \
         fixture. Cold starts: the deployable stub against a plain `ws://` broker and \
         against `live broker --iot`, alternating. Goal: 32 connections >= 1,000 \
         invocations/s with no publish discarded.\n\n{t}"
    ))
}
