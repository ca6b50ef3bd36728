//! Asynchronous (`Event`) invocations through `live dev`'s front door: a burst beyond the
//! queue's bound is throttled with 429 while memory stays bounded and synchronous calls stay
//! quick, and a failed invocation is retried twice under its request id, as Lambda does.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::http::{Http, Reply};
use tests::live::{live_dev, project, raw_function, LiveDev};
use tests::wait_until;

/// `Event` invocations in the burst, and the queue's bound (`--max-events`, its default).
const BURST: usize = 5_000;
const BOUND: usize = 1_000;
/// Concurrent HTTP clients sending the burst.
const CLIENTS: usize = 40;
/// `--max-envs`: events may use half, so four run at once and the rest stay queued.
const MAX_ENVS: usize = 8;

async fn event(http: &Http, base: &str, function: &str, body: String) -> Reply {
    http.invoke(base, function, &[("X-Amz-Invocation-Type", "Event")], body)
        .await
}

/// The resident set of process `pid`, in bytes, from /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time process `pid` has used (user and system), from /proc.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// How long a quick synchronous call takes, end to end.
async fn sync_call(http: &Http, base: &str) -> Duration {
    let start = Instant::now();
    let reply = http.invoke(base, "slow", &[], "{}").await;
    assert_eq!(reply.status, 200);
    reply.assert_no_function_error();
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_bound_is_throttled_and_never_delays_synchronous_calls() {
    // Events sleep long past the burst, so none finishes and the queue really fills.
    let dir = project(
        "event-burst",
        &format!("{}timeout = 120\n", raw_function("slow")),
    );
    let max_envs = MAX_ENVS.to_string();
    let dev = live_dev(&dir, &["--max-envs", &max_envs]);
    let (base, pid) = (dev.front_door.clone(), dev.pid);
    let http = Http::default();

    // Warm more environments than events may take, so a synchronous call during the burst
    // finds a warm one as it did before (as in Lambda, a cold start is not the usual time).
    let warm: Vec<_> = (0..MAX_ENVS / 2 + 2)
        .map(|_| http.spawn_invoke(&base, "slow", r#"{"sleep_ms":300}"#))
        .collect();
    for reply in warm {
        reply.await.unwrap().assert_no_function_error();
    }
    let mut before = Vec::new();
    for _ in 0..7 {
        before.push(sync_call(&http, &base).await);
    }
    let usual = median(before);

    // The burst, from many clients at once, while RSS is sampled and synchronous calls are
    // timed from a client of their own.
    let started = Instant::now();
    let cpu_before = cpu(pid);
    let senders: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, base) = (Http::default(), base.clone());
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for _ in 0..BURST / CLIENTS {
                    let body = r#"{"sleep_ms":100000}"#.to_string();
                    replies.push(event(&http, &base, "slow", body).await);
                }
                replies
            })
        })
        .collect();
    let burst = tokio::spawn(async move {
        let mut replies = Vec::new();
        for sender in senders {
            replies.extend(sender.await.unwrap());
        }
        replies
    });
    // Timed from a thread and a runtime of their own, so that the test's own clients do not
    // delay their answers.
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let (stop, base) = (stop.clone(), base.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (http, mut during) = (Http::default(), Vec::new());
                while !stop.load(Ordering::Relaxed) || during.len() < 3 {
                    during.push(sync_call(&http, &base).await);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                during
            })
        })
    };
    let mut peak_rss = 0;
    while !burst.is_finished() {
        peak_rss = peak_rss.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let replies = burst.await.unwrap();
    let took = started.elapsed();
    peak_rss = peak_rss.max(rss(pid));
    let cpu_used = cpu(pid) - cpu_before;
    let during = timer.join().unwrap();

    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let throttled: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    eprintln!(
        "burst of {BURST} in {took:?}: {accepted} accepted, {} throttled; live dev RSS peak {} \
         MB, CPU {cpu_used:?}; sync call usual {usual:?}, during the burst {during:?}",
        throttled.len(),
        peak_rss / 1_000_000
    );
    assert_eq!(
        accepted + throttled.len(),
        BURST,
        "every event is 202 or 429"
    );
    // None finishes during the burst, so exactly the bound is held.
    assert_eq!(accepted, BOUND, "at most the bound is accepted");
    let first = throttled[0];
    assert_eq!(first.header("x-amzn-errortype"), "TooManyRequestsException");
    assert_eq!(first.json()["Type"], "User");
    assert_eq!(first.json()["message"], "Rate Exceeded.");
    assert_eq!(first.header("retry-after"), "1");
    assert!(
        peak_rss < 100_000_000,
        "live dev's RSS reached {peak_rss} bytes"
    );
    // Its time during the burst, as its usual time, is the median of several calls.
    let typical = median(during.clone());
    assert!(
        typical <= usual + Duration::from_millis(100),
        "synchronous calls during the burst took {typical:?} (median), usually {usual:?}: \
         {during:?}"
    );
    drop(dev);
}

/// A runtime client that fails (posts /error, or with "crash" exits) on the first `fails`
/// runs of each request id, counted in a file per id under the event's `dir`, then succeeds.
const FLAKY: &str = r#"
import json, os, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(API + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    path = os.path.join(event["dir"], rid)
    with open(path, "a") as f:
        f.write("run\n")
    with open(path) as f:
        runs = len(f.readlines())
    if runs <= event["fails"]:
        if event.get("crash"):
            os._exit(3)
        body = json.dumps({"errorType": "Fixture.Failed", "errorMessage": "run %d failed" % runs})
        req = urllib.request.Request(API + rid + "/error", data=body.encode(), method="POST",
                                     headers={"Lambda-Runtime-Function-Error-Type": "Fixture.Failed"})
    else:
        req = urllib.request.Request(API + rid + "/response", data=json.dumps({"runs": runs}).encode(),
                                     method="POST")
    urllib.request.urlopen(req).read()
"#;

/// The runs of request `id` that the handler counted.
fn handler_runs(dir: &Path, id: &str) -> usize {
    std::fs::read_to_string(dir.join(id))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Send an event that fails `fails` times; its request id.
async fn flaky_event(http: &Http, dev: &LiveDev, dir: &Path, fails: u32, crash: bool) -> String {
    let body = serde_json::json!({"dir": dir, "fails": fails, "crash": crash}).to_string();
    let reply = event(http, &dev.front_door, "flaky", body).await;
    assert_eq!(reply.status, 202);
    reply.header("x-amzn-requestid").to_string()
}

#[tokio::test]
async fn a_failed_event_is_retried_twice_under_its_request_id() {
    let dir = project("event-retry", "");
    let script = dir.join("flaky.py");
    std::fs::write(&script, FLAKY).unwrap();
    let table = format!(
        "[functions.flaky]\ncommand = [\"python3\", {:?}]\n",
        script.display().to_string()
    );
    let toml = std::fs::read_to_string(dir.join("live.toml")).unwrap() + &table;
    std::fs::write(dir.join("live.toml"), toml).unwrap();
    // Outside the project, whose files `live dev` watches.
    let runs_dir = dir.with_extension("runs");
    std::fs::create_dir_all(&runs_dir).unwrap();
    // Events run one at a time (half of two environments), so every attempt runs in the
    // same environment. With several, `live dev`'s seen-map keeps a retried id as the
    // latest invocation of the environment of its previous attempt, and that
    // environment's next invocation stops the retry, or the other way round (`Live.GivenUp`).
    let dev = live_dev(
        &dir,
        &["--max-envs", "2", "--event-retry-delays-ms", "100,300"],
    );
    let http = Http::default();

    let sent = Instant::now();
    let recovers = flaky_event(&http, &dev, &runs_dir, 2, false).await;
    let crashes_once = flaky_event(&http, &dev, &runs_dir, 1, true).await;
    let never = flaky_event(&http, &dev, &runs_dir, 99, false).await;

    // Failing twice, it succeeds on the second retry: three runs, the last one ok.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dev.runs().get(&recovers) != Some(&3) {
        assert!(Instant::now() < deadline, "{}", dev.child.output());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "the retries wait 100 and 300 ms"
    );
    assert_eq!(
        handler_runs(&runs_dir, &recovers),
        3,
        "{}",
        dev.child.output()
    );
    assert_eq!(
        outcomes(&dev, &recovers),
        ["error", "error", "ok"],
        "{}",
        dev.child.output()
    );

    // A crash is a function error too: retried, under the same id.
    wait_until(Duration::from_secs(30), "the retry after the crash", || {
        handler_runs(&runs_dir, &crashes_once) == 2
    })
    .await;

    // Always failing, it runs exactly three times, then is dropped with a warning.
    dev.child.wait_for_line(|l| {
        l.contains(&format!("asynchronous invocation {never} failed"))
            && l.contains("after 3 attempts")
    });
    assert_eq!(handler_runs(&runs_dir, &never), 3, "{}", dev.child.output());
    wait_until(Duration::from_secs(10), "three invocation lines", || {
        dev.runs().get(&never) == Some(&3)
    })
    .await;
    assert_eq!(outcomes(&dev, &never), ["error", "error", "error"]);
}

/// The outcomes of the runs of `request_id` that `live dev` printed, in order.
fn outcomes(dev: &LiveDev, request_id: &str) -> Vec<String> {
    dev.child
        .output()
        .lines()
        .filter(|l| l.contains("\"invocation\"") && l.contains(request_id))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["outcome"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}
