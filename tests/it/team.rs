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

/// Which of the sessions printed an invocation line for `id`, waiting for one to.
fn ran_in(sessions: &[&LiveDev], id: &str) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<usize> = sessions
            .iter()
            .enumerate()
            .filter(|(_, dev)| {
                dev.child
                    .output()
                    .lines()
                    .any(|l| l.contains("\"invocation\"") && l.contains(id))
            })
            .map(|(i, _)| i)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
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
    for id in &first {
        let ran = ran_in(&[&alice, &bob], id);
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
    for id in &second {
        assert_eq!(ran_in(&[&bob], id), [0], "{id} was answered by Bob");
    }
    // Nothing of the first round ran a second time meanwhile.
    for id in &first {
        assert_eq!(ran_in(&[&alice, &bob], id).len(), 1, "{id}");
    }
}
