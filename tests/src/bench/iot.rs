//! IoT mode end to end, TLS, SigV4 and IoT Core's quotas on both ends: `live cloud --iot`
//! (its broker standing in for IoT Core, its stubs signing with their functions' roles) and
//! `live dev --aws --release` finding the endpoint through moto's `DescribeEndpoint`, on the
//! echo fixture, large payloads through the stage's bucket on moto's S3; and the stub's cold start with the TLS handshake and signing, against
//! `live broker --iot`, beside its cold start against a plain `ws://` broker.

use crate::aws::{ca_path, test_credentials, Moto};
use crate::live::fixture_target_dir;
use crate::Child;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The chain in IoT mode, and the URL to invoke the echo function at.
pub struct Running {
    _moto: Moto,
    /// `live cloud --iot`: its output holds the broker's log.
    pub cloud: Child,
    /// `live dev --aws`.
    pub dev: Child,
    pub url: String,
}

/// Start moto, `live cloud --iot` (with the stage's bucket on moto's S3 if `bucket`) and
/// `live dev --aws` on the echo fixture, and wait until an invocation is answered.
pub async fn start(bucket: bool) -> anyhow::Result<Running> {
    let moto = Moto::start();
    let script = crate::workspace_root().join("tests/py/s3_bucket.py");
    let made = Command::new(crate::python())
        .arg(script)
        .args([moto.url.as_str(), "create", "live-bench"])
        .status()?;
    anyhow::ensure!(
        made.success(),
        "could not create the bench's bucket on moto"
    );
    let ca = ca_path("bench");
    let fixture = crate::live::fixtures().join("echo");
    let mut cmd = Command::new(crate::bin("live"));
    cmd.args(["cloud", "--iot", "--ca-file"]).arg(&ca);
    if bucket {
        cmd.args(["--bucket", "live-bench"]);
    }
    cmd.arg("-c").arg(&fixture);
    test_credentials(&mut cmd);
    moto.endpoint(&mut cmd);
    let cloud = Child::spawn(cmd);
    let ready = cloud.wait_for_line(|l| l.starts_with("live cloud ready: "));
    let front_door = ready
        .trim_start_matches("live cloud ready: ")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let broker = cloud.wait_for_line(|l| l.trim_start().starts_with("broker  wss://"));
    let broker = broker.split_whitespace().nth(1).unwrap_or_default();
    let port = crate::live::port_of(broker);
    let mut cmd = Command::new(crate::bin("live"));
    cmd.args(["dev", "--aws", "--release", "--json", "-c"])
        .arg(&fixture)
        .env("CARGO_TARGET_DIR", fixture_target_dir());
    test_credentials(&mut cmd);
    moto.endpoint(&mut cmd)
        .env("LIVE_IOT_CONNECT_TO", format!("127.0.0.1:{port}"))
        .env("LIVE_CA_FILE", &ca);
    let dev = Child::spawn(cmd);
    dev.wait_for_line_within(Duration::from_secs(900), |l| l.contains("\"ready\""));
    let url = format!("{front_door}/2015-03-31/functions/echo/invocations");
    super::wait_until_answered(
        &url,
        Duration::from_secs(60),
        Duration::from_secs(300),
        "the chain in IoT mode",
        &dev,
    )
    .await?;
    Ok(Running {
        _moto: moto,
        cloud,
        dev,
        url,
    })
}

/// Publishes the broker discarded over quota, in and out, from the totals line a stopping
/// `live cloud` or `live broker` prints (`IoT Core quotas: N publishes discarded inbound and
/// M outbound ...`).
pub fn discarded(line: &str) -> Option<(u64, u64)> {
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

impl Running {
    /// Stop `live cloud` (Ctrl-C) and read its quota totals: publishes discarded in and out.
    pub fn stop_and_count_discards(&self) -> (u64, u64) {
        self.cloud.signal(2);
        let line = self.cloud.wait_for_line(|l| l.contains("IoT Core quotas:"));
        discarded(&line).unwrap_or((u64::MAX, u64::MAX))
    }
}

/// `live broker --iot` for the cold starts: it, its URL and its CA file.
pub fn iot_broker() -> (Child, String, PathBuf) {
    let ca = ca_path("cold");
    let mut cmd = Command::new(crate::bin("live"));
    cmd.args(["broker", "--iot", "--ca-file"]).arg(&ca);
    test_credentials(&mut cmd);
    let child = Child::spawn(cmd);
    let line = child.wait_for_line(|l| l.starts_with("live broker ready: "));
    let url = line.trim_start_matches("live broker ready: ").to_string();
    (child, url, ca)
}

/// The environment a stub needs to sign for and trust `live broker --iot`'s CA `ca`.
pub fn signing_env(ca: &Path) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), crate::aws::ACCESS_KEY.into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            crate::aws::SECRET_KEY.into(),
        ),
        ("AWS_SESSION_TOKEN".into(), crate::aws::SESSION_TOKEN.into()),
        ("AWS_REGION".into(), crate::aws::REGION.into()),
        ("LIVE_CA_FILE".into(), ca.display().to_string()),
    ]
}
