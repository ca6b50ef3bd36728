//! A team on one dev stage: two `live dev` sessions on one broker and one cloud. Every
//! invocation runs in exactly one session, and none is lost when a developer leaves.

use std::time::{Duration, Instant};
use tests::http::Http;
use tests::live::{live_broker, live_cloud, live_dev, project, raw_function, LiveDev};

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
