//! live's SigV4 presigning against botocore's (`SigV4QueryAuth`, an independent signer): the
//! same URL for fixed credentials, region, host and time, with and without a session token;
//! and live's verifier accepts botocore's URLs and names each refusal.

use bridge::sigv4::{presign, verify, AwsCredentials, Refusal};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tests::python;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2026-12-04T00:47:27Z.
const AMZ_DATE: &str = "20261204T004727Z";
const TIME: u64 = 1_796_345_247;

/// What `tests/py/{script}` prints for `args` (botocore signing).
fn run_botocore(script: &str, args: &[&str]) -> String {
    let script = tests::workspace_root().join("tests/py").join(script);
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "botocore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// botocore's presigned IoT Core URL for these inputs (`tests/py/sigv4_presign.py`).
fn botocore(url: &str, region: &str, secret: &str, token: Option<&str>, date: &str) -> String {
    let args = [
        url,
        region,
        "AKIDEXAMPLE",
        secret,
        token.unwrap_or("-"),
        date,
        "300",
    ];
    run_botocore("sigv4_presign.py", &args)
}

fn credentials(token: Option<&str>) -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: SECRET.into(),
        session_token: token.map(str::to_owned),
    }
}

#[test]
fn presigned_urls_equal_botocores_with_and_without_a_session_token() {
    let time = UNIX_EPOCH + Duration::from_secs(TIME);
    let cases = [
        (
            "wss://a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com/mqtt",
            "eu-west-1",
            None,
        ),
        (
            "wss://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com/mqtt",
            "us-east-1",
            Some("IQoJb3JpZ2luX2VjE/+long=token=="),
        ),
        (
            "wss://127.0.0.1:44321/mqtt",
            "us-east-1",
            Some("FwoGZXIvYXdz"),
        ),
    ];
    for (url, region, token) in cases {
        let ours = presign(
            url,
            region,
            &credentials(token),
            time,
            Duration::from_secs(300),
        )
        .expect("presign");
        let theirs = botocore(url, region, SECRET, token, AMZ_DATE);
        assert_eq!(ours, theirs, "for {url} in {region}, token {token:?}");
        assert!(!ours.contains(":443/"), "{ours}");
    }
}

#[test]
fn the_verifier_accepts_botocores_urls_and_names_each_refusal() {
    let host = "127.0.0.1:44321";
    let url = format!("wss://{host}/mqtt");
    let token = "FwoGZXIvYXdz";
    let known = |key: &str| (key == "AKIDEXAMPLE").then(|| credentials(Some(token)));
    let now = UNIX_EPOCH + Duration::from_secs(TIME + 10);
    let check = |signed: &str, now: SystemTime| {
        let path = &signed[signed.find("/mqtt").unwrap()..];
        verify(host, path, "us-east-1", now, known)
    };
    let good = botocore(&url, "us-east-1", SECRET, Some(token), AMZ_DATE);
    assert_eq!(
        check(&good, now).map(|s| s.access_key),
        Ok("AKIDEXAMPLE".into())
    );
    let wrong_secret = botocore(&url, "us-east-1", "not-the-secret", Some(token), AMZ_DATE);
    assert_eq!(
        check(&wrong_secret, now),
        Err(Refusal::Mismatch("AKIDEXAMPLE".into()))
    );
    let expired = UNIX_EPOCH + Duration::from_secs(TIME + 301);
    assert!(matches!(
        check(&good, expired),
        Err(Refusal::Expired { .. })
    ));
    let region = botocore(&url, "eu-west-1", SECRET, Some(token), AMZ_DATE);
    assert!(matches!(check(&region, now), Err(Refusal::Region { .. })));
    let inside = botocore(
        &url,
        "us-east-1",
        SECRET,
        Some(&format!("signed:{token}")),
        AMZ_DATE,
    );
    assert_eq!(check(&inside, now), Err(Refusal::TokenSigned));
    assert_eq!(check(&url, now), Err(Refusal::Unsigned("X-Amz-Signature")));
    // Another host than the one signed (a proxy, or :443 added).
    let path = &good[good.find("/mqtt").unwrap()..];
    assert!(matches!(
        verify("127.0.0.1:44322", path, "us-east-1", now, known),
        Err(Refusal::Mismatch(_))
    ));
}

/// botocore's presigned S3 object URL (`tests/py/s3_presign.py`).
fn botocore_s3(method: &str, url: &str, token: Option<&str>) -> String {
    let token = token.unwrap_or("-");
    let args = [
        method,
        url,
        "us-east-1",
        "AKIDEXAMPLE",
        SECRET,
        token,
        AMZ_DATE,
        "1000",
    ];
    run_botocore("s3_presign.py", &args)
}

/// A URL's path and its query parameters, sorted (their order carries no meaning).
fn parts(url: &str) -> (String, Vec<String>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query.split('&').map(str::to_owned).collect();
    params.sort();
    (path.to_owned(), params)
}

#[test]
fn presigned_s3_object_urls_equal_botocores() {
    let time = UNIX_EPOCH + Duration::from_secs(TIME);
    for (method, url, token) in [
        (
            "PUT",
            "http://127.0.0.1:5000/live-bucket/live/app/stage/abc-123/event",
            Some("tok/en+="),
        ),
        (
            "GET",
            "https://live-bucket.s3.us-east-1.amazonaws.com/live/app/stage/abc-123/response",
            None,
        ),
        (
            "DELETE",
            "https://live-bucket.s3.us-east-1.amazonaws.com/live/app/stage/abc-123/event",
            Some("FwoGZXIvYXdz"),
        ),
    ] {
        let ours = bridge::s3::presign_object(
            method,
            url,
            "us-east-1",
            &credentials(token),
            time,
            Duration::from_secs(1000),
        )
        .expect("presign");
        assert_eq!(
            parts(&ours),
            parts(&botocore_s3(method, url, token)),
            "{method} {url}"
        );
    }
}
