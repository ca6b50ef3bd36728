//! `live broker --iot` as IoT Core's stand-in, met by an independent client: paho-mqtt over
//! TLS (trusting the broker's CA file) with a botocore-presigned URL round-trips a QoS 1
//! message; a wrong secret, an expired date and an unsigned URL are each refused with a 403
//! whose reason the broker logs, and on shutdown it reports its quota counts. And live's own
//! client (`rumqttc` under `sigv4_signer`, CA from `LIVE_CA_FILE`) connects the same way.

use bridge::sigv4::AwsCredentials;
use bridge::transport::{fixed_credentials, sigv4_signer, ConnectOptions, Connection, Link};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tests::aws::{test_credentials, ACCESS_KEY, REGION, SECRET_KEY, SESSION_TOKEN};
use tests::{bin, python, Child, DEADLINE};

fn paho(url: &str, ca: &Path, case: &str) -> String {
    let port = url
        .trim_start_matches("wss://127.0.0.1:")
        .trim_end_matches("/mqtt");
    let script = tests::workspace_root().join("tests/py/paho_iot.py");
    let out = Command::new(python())
        .arg(script)
        .args(["127.0.0.1", port])
        .arg(ca)
        .args([REGION, ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, case])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "paho case {case}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn paho_with_a_botocore_presigned_url_round_trips_and_bad_signatures_are_refused() {
    let (broker, url, ca) = tests::aws::iot_broker();
    assert!(paho(&url, &ca, "good").contains("ok: round trip"));
    broker.wait_for_line(|l| l.contains("SigV4 signature verified") && l.contains(ACCESS_KEY));
    for (case, reason) in [
        (
            "wrong-secret",
            "the signature does not match for access key",
        ),
        ("expired", "the signature expired at"),
        (
            "unsigned",
            "the request is not signed: X-Amz-Signature is missing",
        ),
    ] {
        let out = paho(&url, &ca, case);
        assert!(out.contains("refused:"), "{case}: {out}");
        broker.wait_for_line(|l| {
            l.contains("refused the WebSocket upgrade with 403") && l.contains(reason)
        });
    }
    // IoT mode enforces IoT Core's quotas; one round trip stays within them, as the
    // broker's one line on shutdown says.
    broker.signal(2);
    broker.wait_for_line(|l| {
        l.starts_with("live broker: IoT Core quotas: 0 publishes discarded inbound and 0 outbound")
    });
}

#[tokio::test]
async fn lives_own_client_signs_and_trusts_the_ca_file() {
    let (broker, url, ca) = tests::aws::iot_broker();
    let credentials = AwsCredentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: Some(SESSION_TOKEN.into()),
    };
    let mut options = ConnectOptions::new(&url, "live-client");
    options.subscriptions = vec!["live/iot/own".into()];
    options.signer = Some(sigv4_signer(REGION.into(), fixed_credentials(credentials)));
    options.tls = Some(bridge::tls::client_config(Some(&ca)).expect("the CA file reads"));
    let mut connection = Connection::open(options).expect("open");
    let mut link = connection.link();
    tokio::time::timeout(DEADLINE, link.wait_for(|l| matches!(l, Link::Up { .. })))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no link: {}\n{}",
                *connection.last_error().borrow(),
                broker.output()
            )
        })
        .unwrap();
    connection
        .send(
            "live/iot/own",
            &serde_json::json!({"over": "tls"}),
            b"signed",
        )
        .await
        .expect("send");
    let got = tokio::time::timeout(Duration::from_secs(10), connection.recv())
        .await
        .expect("the message comes back")
        .expect("a frame");
    assert_eq!(&got.frame.body[..], b"signed");
    broker.wait_for_line(|l| l.contains("SigV4 signature verified"));

    // Without the CA file the broker's certificate is not trusted: the link never comes up,
    // and the last error names the certificate.
    let mut options = ConnectOptions::new(&url, "live-client-untrusting");
    options.tls = Some(bridge::tls::client_config(None).unwrap());
    let connection = Connection::open(options).expect("open");
    let mut last = connection.last_error();
    let waited = tokio::time::timeout(DEADLINE, last.wait_for(|e| e.contains("certificate"))).await;
    let error = connection.last_error().borrow().clone();
    assert!(
        waited.is_ok(),
        "the last error names the certificate: {error}"
    );
    assert_eq!(*connection.link().borrow(), Link::Down);
}

/// The signatures a broker's log says it verified, as `(access key, signature prefix, date)`.
fn verified(log: &str) -> Vec<(String, String, String)> {
    let field = |line: &str, name: &str| {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        Some(
            line[at..]
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_owned(),
        )
    };
    log.lines()
        .filter(|l| l.contains("SigV4 signature verified"))
        .filter_map(|l| {
            Some((
                field(l, "access_key")?,
                field(l, "signature")?,
                field(l, "date")?,
            ))
        })
        .collect()
}

/// `live dev --aws` with the test credentials, finding the endpoint through moto, connecting
/// to `broker` (an address the endpoint's name stands in for) and trusting `ca`.
fn live_dev_aws(
    dir: &Path,
    moto: &tests::aws::Moto,
    broker: &str,
    ca: &Path,
) -> tests::live::LiveDev {
    tests::live::live_dev_with(dir, &["--aws"], |cmd| {
        test_credentials(cmd);
        moto.endpoint(cmd)
            .env("LIVE_IOT_CONNECT_TO", broker)
            .env("LIVE_CA_FILE", ca);
    })
}

/// `live cloud --iot` on project `dir` with the test credentials (and `extra` options),
/// its CA written to `ca`, and `live dev --aws` joining it through moto: both, and the
/// cloud's broker port.
fn iot_chain(
    dir: &Path,
    moto: &tests::aws::Moto,
    ca: &Path,
    extra: &[&str],
) -> (tests::live::LiveCloud, tests::live::LiveDev) {
    let mut args = vec!["--iot", "--ca-file", ca.to_str().expect("a UTF-8 path")];
    args.extend_from_slice(extra);
    let cloud = tests::live::live_cloud_with(dir, &args, |cmd| {
        test_credentials(cmd);
        // The stubs' S3 requests (with --bucket) go to moto too.
        moto.endpoint(cmd);
    });
    let port = cloud.iot_broker_port();
    let dev = live_dev_aws(dir, moto, &format!("127.0.0.1:{port}"), ca);
    (cloud, dev)
}

#[tokio::test]
async fn the_whole_chain_in_iot_mode_signs_both_sides_and_re_signs_after_a_broker_restart() {
    let moto = tests::aws::Moto::start();
    let ca = tests::aws::ca_path("chain");
    let start_broker = |port: &str| {
        let mut cmd = Command::new(bin("live"));
        cmd.args(["broker", "--iot", "--port", port, "--ca-file"])
            .arg(&ca);
        test_credentials(&mut cmd);
        let child = Child::spawn(cmd);
        let line = child.wait_for_line(|l| l.starts_with("live broker ready: "));
        let url = line.trim_start_matches("live broker ready: ").to_string();
        (child, url)
    };
    let (mut broker, url) = start_broker("0");
    let port = tests::live::port_of(&url).to_string();
    let dir = tests::live::project("iot-chain", &tests::live::raw_function("echo"));
    let cloud = tests::live::live_cloud_with(&dir, &["--broker", &url], |cmd| {
        test_credentials(cmd).env("LIVE_CA_FILE", &ca);
    });
    let dev = live_dev_aws(&dir, &moto, &format!("127.0.0.1:{port}"), &ca);
    // The endpoint is moto's answer to DescribeEndpoint, not the broker's address.
    assert!(
        dev.broker.starts_with("wss://")
            && dev.broker.contains("-ats.iot.us-east-1.amazonaws.com/mqtt"),
        "{}",
        dev.broker
    );
    let http = tests::http::Http::default();
    let reply = http
        .invoke(&cloud.front_door, "echo", &[], r#"{"n":1}"#)
        .await;
    reply.assert_no_function_error();
    assert_eq!(reply.json()["function"], "echo");
    // Both sides signed: the stub and live dev (two client connections), both verified.
    let before = verified(&broker.output());
    let keys =
        |list: &[(String, String, String)]| list.iter().filter(|s| s.0 == ACCESS_KEY).count();
    assert!(
        keys(&before) >= 2,
        "verified: {before:?}\n{}",
        broker.output()
    );
    // SigV4 is deterministic to the second: let the clock pass the last signing second, so
    // that a URL signed again differs from one kept from before.
    let last = before.iter().map(|s| s.2.clone()).max().unwrap();
    let amz_now = || {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        bridge::sigv4::amz_date(secs)
    };
    tests::wait_until(Duration::from_secs(3), "the clock moves on", || {
        amz_now() > last
    })
    .await;

    broker.signal(9);
    broker.wait_exit();
    let (broker, again) = start_broker(&port);
    assert_eq!(again, url);
    let reply = http
        .invoke(&cloud.front_door, "echo", &[], r#"{"n":2}"#)
        .await;
    reply.assert_no_function_error();
    assert_eq!(reply.json()["function"], "echo");
    // Both reconnected (the stub, thawed for the invocation, and live dev), each with a URL
    // signed after the restart.
    let after = verified(&broker.output());
    assert!(
        keys(&after) >= 2,
        "after the restart: {after:?}\n{}",
        broker.output()
    );
    for signed in &after {
        assert!(
            signed.2 > last,
            "signed before the restart: {signed:?}\nbefore: {before:?}"
        );
    }
}

#[tokio::test]
async fn live_cloud_iot_gives_each_function_a_role_its_broker_accepts() {
    let moto = tests::aws::Moto::start();
    let ca = tests::aws::ca_path("cloud");
    let dir = tests::live::project("iot-cloud", &tests::live::raw_function("echo"));
    let (cloud, dev) = iot_chain(&dir, &moto, &ca, &[]);
    let reply = tests::http::Http::default()
        .invoke(&cloud.front_door, "echo", &[], r#"{"role":true}"#)
        .await;
    reply.assert_no_function_error();
    let signed = verified(&cloud.child.output());
    // live dev signed with the developer's key, the stub with its function's role.
    assert!(signed.iter().any(|s| s.0 == ACCESS_KEY), "{signed:?}");
    assert!(
        signed
            .iter()
            .any(|s| s.0.starts_with("ASIA") && s.0 != ACCESS_KEY),
        "{signed:?}"
    );
    drop(dev);
}

#[tokio::test]
async fn three_hundred_invocations_at_concurrency_32_in_iot_mode_all_complete_once() {
    let moto = tests::aws::Moto::start();
    let ca = tests::aws::ca_path("load");
    let dir = tests::live::project("iot-load", &tests::live::raw_function("echo"));
    let (cloud, dev) = iot_chain(&dir, &moto, &ca, &["--max-envs", "32"]);
    let http = tests::http::Http::default();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (http, next, base) = (http.clone(), next.clone(), cloud.front_door.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 300 {
                    let reply = http.invoke(&base, "echo", &[], r#"{"n":1}"#).await;
                    reply.assert_no_function_error();
                    ids.push(reply.header("x-live-request-id").to_string());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for w in workers {
        ids.extend(w.await.unwrap());
    }
    println!(
        "300 invocations at c=32 in IoT mode: {:?}",
        started.elapsed()
    );
    assert_eq!(ids.len(), 300);
    let runs = dev.runs_once_seen(&ids).await;
    for id in &ids {
        assert_eq!(runs.get(id), Some(&1), "{id} ran {:?} times", runs.get(id));
    }
    // Both sides kept inside IoT Core's quotas: the broker discarded nothing.
    assert_nothing_discarded(&cloud);
}

#[test]
fn live_dev_aws_without_credentials_or_an_api_to_reach_says_what_to_do_before_building() {
    // Its build step leaves a mark: a failure said before building leaves none.
    let function = format!(
        "{}build = [\"sh\", \"-c\", \"touch built.mark\"]\n",
        tests::live::raw_function("echo")
    );
    let dir = tests::live::project("iot-errors", &function);
    let run = |adjust: &dyn Fn(&mut Command)| {
        let mut cmd = Command::new(bin("live"));
        cmd.args(["dev", "--aws", "-c"]).arg(&dir);
        test_credentials(&mut cmd);
        adjust(&mut cmd);
        let out = cmd.output().expect("live runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let no_credentials = run(&|cmd| {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN");
    });
    assert!(
        no_credentials.contains("no AWS credentials to join IoT Core with: run `aws sso login`"),
        "{no_credentials}"
    );
    assert!(!dir.join("built.mark").exists(), "it built first");
    // A port nothing listens on, for the AWS API.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = run(&|cmd| {
        cmd.env("AWS_ENDPOINT_URL", &url);
    });
    assert!(
        unreachable.contains("could not reach the AWS API for IoT in us-east-1: check the network, or AWS_ENDPOINT_URL"),
        "{unreachable}"
    );
    assert!(!dir.join("built.mark").exists(), "it built first");
}

/// Stop `live cloud` (Ctrl-C) and check its broker discarded no publish over IoT Core's
/// quotas, in or out.
fn assert_nothing_discarded(cloud: &tests::live::LiveCloud) {
    cloud.child.signal(2);
    let totals = cloud
        .child
        .wait_for_line(|l| l.contains("IoT Core quotas:"));
    assert!(
        totals.contains(" 0 publishes discarded inbound and 0 outbound"),
        "{totals}"
    );
}

/// `tests/py/s3_bucket.py` against moto.
fn s3_bucket(moto: &tests::aws::Moto, command: &str, bucket: &str) -> String {
    moto.script("s3_bucket.py", &[command, bucket])
}

#[tokio::test]
async fn a_six_megabyte_event_and_response_go_through_the_stages_bucket_and_leave_nothing() {
    let moto = tests::aws::Moto::start();
    assert_eq!(s3_bucket(&moto, "create", "live-stage"), "created");
    let ca = tests::aws::ca_path("objects");
    let function = format!("{}timeout = 60\n", tests::live::raw_function("echo"));
    let dir = tests::live::project("iot-objects", &function);
    let (cloud, dev) = iot_chain(&dir, &moto, &ca, &["--bucket", "live-stage"]);
    let http = tests::http::Http::default();
    let event = format!(
        r#"{{"mode":"echo","data":"{}"}}"#,
        "x".repeat(6_000_000 - 25)
    );
    assert_eq!(event.len(), 6_000_000);
    let started = std::time::Instant::now();
    let reply = http
        .invoke(&cloud.front_door, "echo", &[], event.clone())
        .await;
    reply.assert_no_function_error();
    println!(
        "6 MB there and back through the bucket: {:?}",
        started.elapsed()
    );
    assert!(
        reply.body == event.as_bytes(),
        "the echo came back whole ({} bytes)",
        reply.body.len()
    );
    // Used, then deleted: nothing is left for the expiry rule.
    assert_eq!(s3_bucket(&moto, "count", "live-stage"), "0");
    // The chunks did not cross the broker: nothing was delayed for long or discarded.
    assert_nothing_discarded(&cloud);
    drop(dev);
}
