//! The AWS side as the tests stand it in: fixed test credentials and region for a command's
//! environment (nothing read from the machine's ~/.aws), and a scratch folder for CA files.

use std::path::PathBuf;
use std::process::Command;

/// The test credentials' access key id.
pub const ACCESS_KEY: &str = "ASIALIVETESTKEY00001";
/// Their secret key.
pub const SECRET_KEY: &str = "live/test+secret/KEY0000000000000000000";
/// Their session token.
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjELIVE/test+token==";
/// The region the tests use.
pub const REGION: &str = "us-east-1";

/// Give `cmd` the test credentials and region, and nothing from the machine's AWS files or
/// instance metadata, so `aws-config`'s default chain finds exactly these.
pub fn test_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("AWS_REGION", REGION)
        .env("AWS_CONFIG_FILE", "/nonexistent/live-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/live-test/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
}

/// A fresh path for a CA file under the target directory.
pub fn ca_path(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = crate::target_dir().join("test-ca");
    std::fs::create_dir_all(&dir).expect("create the CA folder");
    dir.join(format!(
        "{name}-{}-{}.pem",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// `live broker --iot` on an ephemeral port with the test credentials; returns it, its
/// `wss://` URL and its CA file.
pub fn iot_broker() -> (crate::Child, String, PathBuf) {
    let ca = ca_path("broker");
    let mut cmd = Command::new(crate::bin("live"));
    cmd.args(["broker", "--iot", "--ca-file"]).arg(&ca);
    test_credentials(&mut cmd);
    let child = crate::Child::spawn(cmd);
    let line = child.wait_for_line(|l| l.starts_with("live broker ready: "));
    let url = line.trim_start_matches("live broker ready: ").to_string();
    assert!(url.starts_with("wss://127.0.0.1:"), "{line}");
    assert!(ca.exists(), "the CA file is written before the ready line");
    (child, url, ca)
}

/// moto's server on an ephemeral port: the AWS control plane's stand-in (`AWS_ENDPOINT_URL`).
pub struct Moto {
    _child: crate::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Moto {
    /// Start it from the test environment and wait until it listens.
    pub fn start() -> Moto {
        let mut cmd = Command::new(crate::python());
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"]);
        let child = crate::Child::spawn(cmd);
        let line = child.wait_for_line(|l| l.contains("Running on http://127.0.0.1:"));
        let at = line.find("http://").expect("a URL");
        let url = line[at..]
            .split_whitespace()
            .next()
            .expect("URL")
            .to_owned();
        Moto { _child: child, url }
    }

    /// Run `tests/py/{script}` with this server's URL and `args`; its stdout, trimmed (a
    /// failure fails the test with its stderr).
    pub fn script(&self, script: &str, args: &[&str]) -> String {
        let path = crate::workspace_root().join("tests/py").join(script);
        let out = Command::new(crate::python())
            .arg(path)
            .arg(&self.url)
            .args(args)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "{script} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Point `cmd`'s AWS SDK at this server.
    pub fn endpoint<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ENDPOINT_URL", &self.url)
    }
}
