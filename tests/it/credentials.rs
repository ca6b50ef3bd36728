//! The deployed role's credentials and environment, locally: `live cloud --iot` rotating each
//! function's role (served to its stubs from a credentials endpoint), `live dev --aws` with
//! the developer's own test credentials, and a boto3 handler with none of its own calling STS
//! (moto): it signs with the key the stub forwarded, sees the function's cloud environment,
//! and after a rotation the same worker signs with the new key.

use std::path::Path;
use tests::aws::{test_credentials, Moto, ACCESS_KEY};
use tests::http::Http;
use tests::live::{live_cloud_with, live_dev_with, port_of, project, LiveCloud, LiveDev};
use tests::python;

/// The STS handler's function table, with `env` (a live.toml inline table's contents).
fn sts_function(env: &str) -> String {
    format!(
        "[functions.sts]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"sts_handler.handler\"]\ndir = \"{{fixtures}}\"\nenv = {{ {env} }}\n",
        python().display()
    )
}

/// The access keys `live cloud` issued to function `sts`, in order.
fn issued(cloud: &LiveCloud) -> Vec<String> {
    cloud
        .child
        .output()
        .lines()
        .filter(|l| l.contains("issued role credentials") && l.contains("sts"))
        .filter_map(|l| {
            let at = l.find("access_key=")? + "access_key=".len();
            Some(
                l[at..]
                    .split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .collect()
}

/// `live cloud --iot` for the project in `cloud_dir`, rotating roles every `rotate` seconds,
/// and `live dev --aws` for `dev_dir` joining its broker.
fn chain(cloud_dir: &Path, dev_dir: &Path, moto: &Moto, rotate: &str) -> (LiveCloud, LiveDev) {
    let ca = tests::aws::ca_path("credentials");
    let ca_arg = ca.to_str().unwrap();
    let args = [
        "--iot",
        "--ca-file",
        ca_arg,
        "--rotate-credentials-secs",
        rotate,
    ];
    let cloud = live_cloud_with(cloud_dir, &args, |cmd| {
        test_credentials(cmd);
    });
    let broker = cloud
        .child
        .wait_for_line(|l| l.trim_start().starts_with("broker  wss://127.0.0.1:"));
    let port = port_of(broker.split_whitespace().nth(1).expect("URL"));
    let dev = live_dev_with(dev_dir, &["--aws"], |cmd| {
        test_credentials(cmd);
        moto.endpoint(cmd)
            .env("LIVE_IOT_CONNECT_TO", format!("127.0.0.1:{port}"))
            .env("LIVE_CA_FILE", &ca);
    });
    (cloud, dev)
}

#[tokio::test]
async fn a_boto3_handler_signs_with_the_stubs_role_and_sees_it_rotate_without_a_restart() {
    let moto = Moto::start();
    // The cloud's function has an environment of its own (as deployed); the developer's
    // live.toml does not.
    let cloud_env = format!(
        "TABLE = \"orders-in-the-cloud\", AWS_ENDPOINT_URL = \"{}\"",
        moto.url
    );
    let cloud_dir = project("credentials-cloud", &sts_function(&cloud_env));
    let dev_dir = project("credentials-dev", &sts_function(""));
    // Keys live two periods: long enough for a loaded machine to start Python and boto3.
    let (cloud, dev) = chain(&cloud_dir, &dev_dir, &moto, "8");
    let http = Http::default();

    let first = http.invoke(&cloud.front_door, "sts", &[], "{}").await;
    first.assert_no_function_error();
    let first = first.json();
    let key = first["signed_with"].as_str().expect("a key").to_owned();
    assert_eq!(first["account"], "123456789012", "moto answered: {first}");
    assert!(
        key.starts_with("ASIA") && key != ACCESS_KEY,
        "signed with the developer's key or none: {first}"
    );
    assert!(
        issued(&cloud).contains(&key),
        "{key} is not a key live cloud issued: {:?}",
        issued(&cloud)
    );
    assert!(
        first["own_key_in_env"].is_null(),
        "the developer's key reached the handler: {first}"
    );
    assert_eq!(
        first["table"], "orders-in-the-cloud",
        "the cloud's environment: {first}"
    );
    let uri = first["credentials_uri"]
        .as_str()
        .expect("a credentials URI");
    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");

    // The role rotates; the next invocation goes to the same worker, which signs with the
    // new key without a restart.
    cloud.child.wait_for_line(|l| {
        l.contains("issued role credentials") && l.contains("sts") && !l.contains(&key)
    });
    let second = http.invoke(&cloud.front_door, "sts", &[], "{}").await;
    second.assert_no_function_error();
    let second = second.json();
    assert_eq!(second["pid"], first["pid"], "the same worker: {second}");
    let rotated = second["signed_with"].as_str().expect("a key").to_owned();
    let keys = issued(&cloud);
    let position = |k: &str| keys.iter().position(|i| i == k);
    assert!(
        position(&rotated) > position(&key),
        "signed with {rotated} after the rotation, not a key issued after {key}: {keys:?}"
    );
    drop(dev);
}

#[tokio::test]
async fn the_workers_credentials_endpoint_refuses_requests_without_its_token() {
    let moto = Moto::start();
    let env = format!("AWS_ENDPOINT_URL = \"{}\"", moto.url);
    let dir = project("credentials-token", &sts_function(&env));
    let (cloud, _dev) = chain(&dir, &dir, &moto, "3600");
    let http = Http::default();
    let reply = http.invoke(&cloud.front_door, "sts", &[], "{}").await;
    reply.assert_no_function_error();
    let uri = reply.json()["credentials_uri"]
        .as_str()
        .expect("a credentials URI")
        .to_owned();
    let without = http.send("GET", &uri, &[], "").await;
    assert_eq!(without.status, 401, "{:?}", without.body);
    assert!(!String::from_utf8_lossy(&without.body).contains("AccessKeyId"));
    let wrong = http
        .send("GET", &uri, &[("authorization", "not-the-token")], "")
        .await;
    assert_eq!(wrong.status, 403, "{:?}", wrong.body);
    assert!(!String::from_utf8_lossy(&wrong.body).contains("AccessKeyId"));
}
