//! S3 object URLs presigned with SigV4 (query authentication): how a stub hands `live dev` a
//! large event to fetch and a place to put a large response, so the developer needs no S3
//! permission of its own, and how the stub itself puts, gets and deletes those objects over
//! plain HTTP. Signatures by `aws-sigv4`, as botocore's `S3SigV4QueryAuth` makes them.

use crate::sigv4::{query_signature, AwsCredentials, Flavour, Signing};
use std::time::{Duration, SystemTime};

/// How long the URLs handed over with an invocation are valid: at most Lambda's 15 minutes
/// of an invocation, and a margin.
pub const OBJECT_URL_EXPIRES: Duration = Duration::from_secs(1_000);

/// Payloads larger than this go through the stage's bucket when there is one. Every
/// connection of an invocation's path carries its event and its response (in and out), and
/// IoT Core lets a connection carry 512 KiB/s: measured with the broker's quotas
/// (BENCHMARKS.md, IoT mode), a 100 KB echo over the bridge took 383 ms, a 200 KB one
/// through the bucket 29 ms. Up to 64 KiB each way a round trip fits in one connection's
/// burst of 128 KiB, so the bridge, with no HTTP requests, is the faster below it.
pub const OBJECT_THRESHOLD: usize = 64 * 1024;

/// Why an object URL could not be presigned.
#[derive(Debug, thiserror::Error)]
#[error("cannot presign {method} {url}: {reason}")]
pub struct ObjectUrlError {
    method: String,
    url: String,
    reason: String,
}

/// `method` on the object at `url` (`https://BUCKET.s3.REGION.amazonaws.com/KEY`, or a
/// path-style `http://HOST:PORT/BUCKET/KEY` of a stand-in) presigned at `time` for `expires`:
/// `host` the only signed header, the payload unsigned, the session token signed (S3, unlike
/// IoT Core, wants it inside).
pub fn presign_object(
    method: &str,
    url: &str,
    region: &str,
    credentials: &AwsCredentials,
    time: SystemTime,
    expires: Duration,
) -> Result<String, ObjectUrlError> {
    let error = |reason: String| ObjectUrlError {
        method: method.to_owned(),
        url: url.to_owned(),
        reason,
    };
    let (_, rest) = url
        .split_once("://")
        .ok_or_else(|| error("not a URL".into()))?;
    let host = rest.split('/').next().unwrap_or_default();
    let signing = Signing {
        region,
        credentials,
        time,
        expires,
    };
    let query = query_signature(method, url, host, &signing, Flavour::S3).map_err(error)?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}{query}"))
}

/// The object keys of one invocation's large payloads, under the stage's prefix.
pub fn object_key(app: &str, stage: &str, request_id: &str, what: &str) -> String {
    format!("live/{app}/{stage}/{request_id}/{what}")
}
