//! A team on one dev stage: two `live dev` sessions on one broker and one cloud. Every
//! invocation runs in exactly one session: none is lost when a developer leaves, none is
//! taken from a session running it when another developer joins or when that session's
//! connection drops for a moment, and a stub that was cut off while a developer left does
//! not keep sending to the one who is gone.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::http::{Http, Reply};
use tests::live::{live_broker, live_cloud, live_dev, port_of, project, raw_function, LiveDev};
use tests::proxy::FaultProxy;
use tests::wait_until;

/// Invocations sent at once in each round: enough execution environments that both sessions
/// serve some (a stub picks a session by its environment's hash).
const AT_ONCE: usize = 16;

/// Send `AT_ONCE` invocations together; their request ids, each answered without error.
async fn round(front_door: &str) -> Vec<String> {
    let http = Http::default();
    let calls: Vec<_> = (0..AT_ONCE)
        .map(|i| http.spawn_invoke(front_door, "echo", format!(r#"{{"sleep_ms":50,"i":{i}}}"#)))
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        let reply = call.await.expect("the invocation's task");
        reply.assert_no_function_error();
        ids.push(reply.header("x-live-request-id").to_string());
    }
    ids
}

/// The file the handler of invocation `i` of a [`slow_round`] writes its pid to as it starts.
fn started(dir: &Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("started-{i}.pid"))
}

/// Send `AT_ONCE` invocations that each sleep `sleep_ms` in the handler, and return once
/// every handler has started (within 30 s), with the calls.
async fn slow_round(
    front_door: &str,
    dir: &Path,
    sleep_ms: u64,
) -> Vec<tokio::task::JoinHandle<Reply>> {
    let http = Http::default();
    let started = |i| started(dir, i);
    let calls: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let event = format!(
                r#"{{"sleep_ms":{sleep_ms},"file":"{}"}}"#,
                started(i).display()
            );
            http.spawn_invoke(front_door, "echo", event)
        })
        .collect();
    wait_until(Duration::from_secs(30), "not every handler started", || {
        (0..AT_ONCE).all(|i| started(i).exists())
    })
    .await;
    calls
}

/// For each of `ids`, the sessions that printed an invocation line for it, once each id has
/// appeared in one of them (or 10 s have passed).
async fn ran_in(sessions: &[&LiveDev], ids: &[String]) -> Vec<Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let runs: Vec<_> = sessions.iter().map(|dev| dev.runs()).collect();
        let found: Vec<Vec<usize>> = ids
            .iter()
            .map(|id| {
                (0..runs.len())
                    .filter(|&i| runs[i].contains_key(id))
                    .collect()
            })
            .collect();
        if found.iter().all(|f: &Vec<usize>| !f.is_empty()) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_developers_on_one_stage_each_invocation_runs_in_exactly_one_session() {
    let (_broker, url) = live_broker(&[]);
    let dir = project("team", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--broker", &url]);
    let alice = live_dev(&dir, &["--broker", &url]);
    let bob = live_dev(&dir, &["--broker", &url]);

    let first = round(&cloud.front_door).await;
    let mut served = [0usize; 2];
    for (id, ran) in first.iter().zip(ran_in(&[&alice, &bob], &first).await) {
        assert_eq!(ran.len(), 1, "{id} ran in sessions {ran:?}");
        served[ran[0]] += 1;
    }
    assert!(
        served.iter().all(|&n| n > 0),
        "both sessions serve some of {AT_ONCE} environments: {served:?}"
    );

    // Alice leaves without a word: her will marks her offline and every stub turns to Bob.
    alice.child.signal(9);
    let second = round(&cloud.front_door).await;
    for (id, ran) in second.iter().zip(ran_in(&[&bob], &second).await) {
        assert_eq!(ran, [0], "{id} was answered by Bob");
    }
    // Nothing of the first round ran a second time meanwhile.
    for (id, ran) in first.iter().zip(ran_in(&[&alice, &bob], &first).await) {
        assert_eq!(ran.len(), 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_joining_takes_no_invocation_another_is_running() {
    let (_broker, url) = live_broker(&[]);
    let dir = project("team-join", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--broker", &url]);
    let alice = live_dev(&dir, &["--broker", &url]);
    // Every environment is running an invocation in Alice's session when Bob joins; about
    // half of them would pick Bob for a new invocation (by their hash).
    let calls = slow_round(&cloud.front_door, &dir, 6000).await;
    let bob = live_dev(&dir, &["--broker", &url]);
    let ids = each_ran_once(&dir, calls).await;
    for (id, ran) in ids.iter().zip(ran_in(&[&alice, &bob], &ids).await) {
        assert_eq!(ran, [0], "{id} ran in sessions {ran:?} (0: Alice, 1: Bob)");
    }
}

/// Wait for the calls of a [`slow_round`] in `dir`: each answered without error by the
/// worker that last started it (a second run, in another worker, would have started long
/// before the first answered, and written its pid over the first's). Their request ids.
async fn each_ran_once(dir: &Path, calls: Vec<tokio::task::JoinHandle<Reply>>) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let reply = call.await.expect("the invocation's task");
        reply.assert_no_function_error();
        let answered_by = reply.json()["pid"].as_u64().expect("pid");
        let last_started = std::fs::read_to_string(started(dir, i)).expect("pid file");
        assert_eq!(
            last_started.trim(),
            answered_by.to_string(),
            "invocation {i} started again in another worker"
        );
        ids.push(reply.header("x-live-request-id").to_string());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_stay_with_a_developer_whose_connection_drops_and_comes_back() {
    let (_broker, url) = live_broker(&[]);
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", port_of(&url)).parse().unwrap()).await;
    let via = format!("ws://{}/mqtt", proxy.addr);
    let dir = project("team-blip", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--broker", &url]);
    // Only Alice's session goes through the proxy.
    let alice = live_dev(&dir, &["--broker", &via]);
    let bob = live_dev(&dir, &["--broker", &url]);
    let calls = slow_round(&cloud.front_door, &dir, 3000).await;
    // Alice's connection drops: her will marks her offline (and Bob clears it); she is back
    // well within the stubs' grace, and her invocations finish with her.
    proxy.outage(Duration::from_millis(300)).await;
    let ids = each_ran_once(&dir, calls).await;
    let ran = ran_in(&[&alice, &bob], &ids).await;
    assert!(
        ran.iter().any(|r| r == &[0]),
        "Alice served some of {AT_ONCE} environments: {ran:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stubs_cut_off_while_a_developer_left_turn_to_the_one_still_there() {
    let (_broker, url) = live_broker(&[]);
    let proxy =
        Arc::new(FaultProxy::start(format!("127.0.0.1:{}", port_of(&url)).parse().unwrap()).await);
    let via = format!("ws://{}/mqtt", proxy.addr);
    let dir = project(
        "team-cut",
        &format!("{}timeout = 10\n", raw_function("echo")),
    );
    // Only the stubs go through the proxy.
    let cloud = live_cloud(&dir, &["--broker", &via]);
    let mut alice = live_dev(&dir, &["--broker", &url]);
    let bob = live_dev(&dir, &["--broker", &url]);
    let first = round(&cloud.front_door).await;
    assert_eq!(first.len(), AT_ONCE);

    // The stubs are cut off while Alice crashes: her will marks her offline, Bob clears the
    // record, and the stubs, back, find only Bob's.
    let outage = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.outage(Duration::from_secs(3)).await })
    };
    wait_until(Duration::from_secs(10), "the outage never began", || {
        proxy.drops.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    alice.child.signal(9);
    alice.child.wait_exit();
    outage.await.unwrap();
    // Every environment serves one invocation of the next round: each goes to Bob, none to
    // the session that is gone (it would wait for an answer until the deadline).
    let second = round(&cloud.front_door).await;
    for (id, ran) in second.iter().zip(ran_in(&[&bob], &second).await) {
        assert_eq!(ran, [0], "{id} was answered by Bob");
    }
}
