//! IoT Core's SigV4-presigned WebSocket URL, both ways: `presign` for the clients (the token
//! appended after signing, as IoT Core demands), `verify` for the broker standing in for IoT
//! Core (every refusal named). Signatures are computed by `aws-sigv4`, never by hand.

use crate::civil::Civil;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;
use std::time::{Duration, SystemTime};

/// The SigV4 service name of IoT Core's data plane.
pub const SERVICE: &str = "iotdevicegateway";

/// How long a presigned URL is valid: it is only used to open the connection, at once.
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(300);

/// The longest validity SigV4 accepts (7 days).
const MAX_EXPIRES: u64 = 604_800;

/// How far a signing time may be ahead of the verifier's clock.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(900);

/// SigV4's query encoding: everything but RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An AWS key pair, with the session token of temporary credentials. `Debug` never shows the
/// secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AKIA...` or `ASIA...`.
    pub access_key_id: String,
    /// The secret half, never logged.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

impl AwsCredentials {
    /// The key pair from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`
    /// (what Lambda gives a function), or `None` when either half is missing.
    pub fn from_env() -> Option<AwsCredentials> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Some(AwsCredentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

impl From<&crate::protocol::RoleCredentials> for AwsCredentials {
    /// The key pair of role credentials as they travel with an invocation.
    fn from(role: &crate::protocol::RoleCredentials) -> Self {
        AwsCredentials {
            access_key_id: role.access_key_id.clone(),
            secret_access_key: role.secret_access_key.clone(),
            session_token: role.session_token.clone(),
        }
    }
}

/// Why a URL could not be presigned.
#[derive(Debug, thiserror::Error)]
#[error("cannot presign {url}: {reason}")]
pub struct PresignError {
    url: String,
    reason: String,
}

/// `url` (`wss://host[:port]/path`, any query kept) presigned for IoT Core at `time`:
/// `host` the only signed header, the session token appended as `X-Amz-Security-Token` after
/// signing.
pub fn presign(
    url: &str,
    region: &str,
    credentials: &AwsCredentials,
    time: SystemTime,
    expires: Duration,
) -> Result<String, PresignError> {
    let error = |reason: String| PresignError {
        url: url.to_owned(),
        reason,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| error("not a URL".into()))?;
    let (host, path_and_query) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let signature = signature_params(host, path_and_query, region, credentials, time, expires)
        .map_err(error)?;
    let separator = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(format!(
        "{scheme}://{host}{path_and_query}{separator}{signature}"
    ))
}

/// The query parameters that sign `GET path_and_query` on `host` for IoT Core, encoded and
/// joined.
fn signature_params(
    host: &str,
    path_and_query: &str,
    region: &str,
    credentials: &AwsCredentials,
    time: SystemTime,
    expires: Duration,
) -> Result<String, String> {
    let url = format!("https://{host}{path_and_query}");
    let signing = Signing {
        region,
        credentials,
        time,
        expires,
    };
    query_signature("GET", &url, host, &signing, Flavour::IotCore)
}

/// How a query signature is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// IoT Core's: service `iotdevicegateway`, the empty payload hashed, the session token
    /// left out of the signature (appended after).
    IotCore,
    /// S3's: service `s3`, the payload unsigned, the path neither normalised nor encoded
    /// again, the session token signed.
    S3,
}

/// Who signs, where and when, for how long.
pub(crate) struct Signing<'a> {
    pub region: &'a str,
    pub credentials: &'a AwsCredentials,
    pub time: SystemTime,
    pub expires: Duration,
}

/// The query parameters that sign `method url` (its `host` the only signed header), encoded
/// and joined, by `aws-sigv4`.
pub(crate) fn query_signature(
    method: &str,
    url: &str,
    host: &str,
    signing: &Signing<'_>,
    flavour: Flavour,
) -> Result<String, String> {
    let credentials = signing.credentials;
    let identity = Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        None,
        "live",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(signing.expires);
    let (service, body) = match flavour {
        Flavour::IotCore => {
            settings.session_token_mode = SessionTokenMode::Exclude;
            (SERVICE, SignableBody::Bytes(&[]))
        }
        Flavour::S3 => {
            settings.session_token_mode = SessionTokenMode::Include;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            ("s3", SignableBody::UnsignedPayload)
        }
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(signing.region)
        .name(service)
        .time(signing.time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(method, url, std::iter::once(("host", host)), body)
        .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let (_, query) = instructions.into_parts();
    let pairs: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY)))
        .collect();
    Ok(pairs.join("&"))
}

/// Why the broker refuses an upgrade request: each is an HTTP 403 with this reason in its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `X-Amz-Signature` (or another of the signature's parameters) in the query.
    #[error("the request is not signed: {0} is missing (presign the URL with SigV4)")]
    Unsigned(&'static str),
    /// A parameter is there but cannot be read.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Not `AWS4-HMAC-SHA256`.
    #[error("unsupported algorithm {0:?}")]
    Algorithm(String),
    /// The access key is not one the broker knows.
    #[error("unknown access key {0}")]
    UnknownKey(String),
    /// The credential scope names another region.
    #[error("signed for region {signed:?}, this endpoint is in {expected:?}")]
    Region {
        /// The scope's region.
        signed: String,
        /// The broker's.
        expected: String,
    },
    /// The credential scope names another service.
    #[error("signed for service {0:?}, IoT Core's is \"iotdevicegateway\"")]
    Service(String),
    /// `X-Amz-Date` + `X-Amz-Expires` is past.
    #[error("the signature expired at {expired} (X-Amz-Date {date} + X-Amz-Expires {expires} s)")]
    Expired {
        /// `X-Amz-Date`.
        date: String,
        /// `X-Amz-Expires`.
        expires: u64,
        /// When it expired, as seconds since the epoch.
        expired: u64,
    },
    /// `X-Amz-Date` is too far ahead of the broker's clock.
    #[error("X-Amz-Date {0} is in the future")]
    Future(String),
    /// Signed headers other than `host` alone.
    #[error("signed headers {0:?}: IoT Core signs host only")]
    SignedHeaders(String),
    /// The session token was part of the signed query.
    #[error("the session token is inside the signed query: IoT Core wants X-Amz-Security-Token appended after signing")]
    TokenSigned,
    /// The session token does not belong to the access key.
    #[error("the session token does not match access key {0}")]
    WrongToken(String),
    /// The signature does not match (a wrong secret, or a changed URL or host).
    #[error("the signature does not match for access key {0} (wrong secret key, or the URL or Host changed after signing)")]
    Mismatch(String),
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The access key that signed.
    pub access_key: String,
    /// `X-Amz-Date`.
    pub date: String,
    /// The signature's first 8 hex digits (enough to tell two signatures apart in a log).
    pub signature: String,
}

/// The query parameters of a presigned URL, decoded.
struct Query<'a> {
    pairs: Vec<(&'a str, String)>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Result<Self, Refusal> {
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| Refusal::Malformed("query"))?;
            pairs.push((name, value.into_owned()));
        }
        Ok(Query { pairs })
    }

    fn get(&self, name: &'static str) -> Result<&str, Refusal> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .ok_or(Refusal::Unsigned(name))
    }

    /// The query without the signature's own parameters (what the client signed beside them).
    fn unsigned_rest(&self) -> String {
        let rest: Vec<String> = self
            .pairs
            .iter()
            .filter(|(n, _)| !n.starts_with("X-Amz-"))
            .map(|(n, v)| format!("{n}={}", utf8_percent_encode(v, QUERY)))
            .collect();
        rest.join("&")
    }
}

/// Seconds since the epoch as a SigV4 date (`20261204T004727Z`).
pub fn amz_date(secs: u64) -> String {
    let c = Civil::from_secs(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// A SigV4 date (`20261204T004727Z`) as a time.
fn parse_amz_date(date: &str) -> Option<SystemTime> {
    let b = date.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| date.get(r)?.parse::<i64>().ok();
    let civil = Civil {
        year: num(0..4)?,
        month: num(4..6)?,
        day: num(6..8)?,
        hour: num(9..11)?,
        minute: num(11..13)?,
        second: num(13..15)?,
    };
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(civil.to_secs()?))
}

/// Check the presigned upgrade `GET path_and_query` with `Host: host` as IoT Core does, at
/// `now`. `secret_for` looks up the secret key (and, for temporary credentials, the session
/// token) of an access key.
pub fn verify(
    host: &str,
    path_and_query: &str,
    region: &str,
    now: SystemTime,
    secret_for: impl Fn(&str) -> Option<AwsCredentials>,
) -> Result<Signed, Refusal> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let query = Query::parse(query)?;
    let signature = query.get("X-Amz-Signature")?;
    let algorithm = query.get("X-Amz-Algorithm")?;
    let credential = query.get("X-Amz-Credential")?;
    let date = query.get("X-Amz-Date")?;
    let expires = query.get("X-Amz-Expires")?;
    let signed_headers = query.get("X-Amz-SignedHeaders")?;
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(Refusal::Algorithm(algorithm.to_owned()));
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, day, signed_region, service, "aws4_request"] = scope[..] else {
        return Err(Refusal::Malformed("X-Amz-Credential"));
    };
    let time = parse_amz_date(date).ok_or(Refusal::Malformed("X-Amz-Date"))?;
    if !date.starts_with(day) {
        return Err(Refusal::Malformed("X-Amz-Credential"));
    }
    let expires: u64 = expires
        .parse()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES).contains(e))
        .ok_or(Refusal::Malformed("X-Amz-Expires"))?;
    if time > now + MAX_CLOCK_SKEW {
        return Err(Refusal::Future(date.to_owned()));
    }
    let expiry = time + Duration::from_secs(expires);
    if expiry < now {
        return Err(Refusal::Expired {
            date: date.to_owned(),
            expires,
            expired: expiry
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
    }
    if service != SERVICE {
        return Err(Refusal::Service(service.to_owned()));
    }
    if signed_region != region {
        return Err(Refusal::Region {
            signed: signed_region.to_owned(),
            expected: region.to_owned(),
        });
    }
    if signed_headers != "host" {
        return Err(Refusal::SignedHeaders(signed_headers.to_owned()));
    }
    let known = secret_for(key).ok_or_else(|| Refusal::UnknownKey(key.to_owned()))?;
    let token = query.get("X-Amz-Security-Token").ok();
    if known.session_token.is_some() && known.session_token.as_deref() != token {
        return Err(Refusal::WrongToken(key.to_owned()));
    }
    let rest = query.unsigned_rest();
    let path_and_query = if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{rest}")
    };
    // The token is never part of IoT Core's signature, so one key signs both checks.
    let signer = AwsCredentials {
        session_token: None,
        ..known
    };
    let expected = |path_and_query: &str| {
        let duration = Duration::from_secs(expires);
        let params =
            signature_params(host, path_and_query, region, &signer, time, duration).ok()?;
        let query = Query::parse(&params).ok()?;
        query.get("X-Amz-Signature").ok().map(str::to_owned)
    };
    if expected(&path_and_query).is_some_and(|e| same(&e, signature)) {
        return Ok(Signed {
            access_key: key.to_owned(),
            date: date.to_owned(),
            signature: signature.chars().take(8).collect(),
        });
    }
    // The same key with the token signed inside the query: name that mistake.
    if let Some(token) = token {
        let separator = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let included = format!(
            "{path_and_query}{separator}X-Amz-Security-Token={}",
            utf8_percent_encode(token, QUERY)
        );
        if expected(&included).is_some_and(|e| same(&e, signature)) {
            return Err(Refusal::TokenSigned);
        }
    }
    Err(Refusal::Mismatch(key.to_owned()))
}

/// Compare two signatures in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
        }
    }

    fn at(date: &str) -> SystemTime {
        parse_amz_date(date).unwrap()
    }

    #[test]
    fn amz_dates_parse_to_epoch_seconds() {
        let t = at("20261204T004727Z");
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_796_345_247);
        assert_eq!(amz_date(secs), "20261204T004727Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(parse_amz_date("2026-12-04T00:47:27Z"), None);
        assert_eq!(parse_amz_date("20261304T004727Z"), None);
    }

    #[test]
    fn the_token_is_appended_after_the_signature_and_not_signed() {
        let time = at("20261204T004727Z");
        let url = "wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt";
        let plain = presign(url, "eu-west-1", &creds(None), time, PRESIGN_EXPIRES).unwrap();
        let token = "tok/en+=";
        let with = presign(url, "eu-west-1", &creds(Some(token)), time, PRESIGN_EXPIRES).unwrap();
        assert_eq!(with, format!("{plain}&X-Amz-Security-Token=tok%2Fen%2B%3D"));
        assert!(plain.contains("X-Amz-SignedHeaders=host&"), "{plain}");
        assert!(!plain.contains(":443"));
    }

    #[test]
    fn verify_accepts_its_own_presigned_urls_and_names_each_refusal() {
        let time = at("20261204T004727Z");
        let host = "127.0.0.1:8443";
        let url = format!("wss://{host}/mqtt");
        let token = "FwoGZXIvYXdzE";
        let known = |key: &str| (key == "AKIDEXAMPLE").then(|| creds(Some(token)));
        let check = |url: &str, now: SystemTime| {
            let path = &url[url.find("/mqtt").unwrap()..];
            verify(host, path, "us-east-1", now, known)
        };
        let good = presign(
            &url,
            "us-east-1",
            &creds(Some(token)),
            time,
            PRESIGN_EXPIRES,
        )
        .unwrap();
        assert_eq!(
            check(&good, time).map(|s| s.access_key),
            Ok("AKIDEXAMPLE".into())
        );
        let late = time + PRESIGN_EXPIRES + Duration::from_secs(1);
        assert!(matches!(check(&good, late), Err(Refusal::Expired { .. })));
        let mut wrong = creds(Some(token));
        wrong.secret_access_key.push('x');
        let bad = presign(&url, "us-east-1", &wrong, time, PRESIGN_EXPIRES).unwrap();
        assert_eq!(
            check(&bad, time),
            Err(Refusal::Mismatch("AKIDEXAMPLE".into()))
        );
        let region = presign(
            &url,
            "eu-west-1",
            &creds(Some(token)),
            time,
            PRESIGN_EXPIRES,
        )
        .unwrap();
        assert!(matches!(check(&region, time), Err(Refusal::Region { .. })));
        assert_eq!(check(&url, time), Err(Refusal::Unsigned("X-Amz-Signature")));
        // The token signed inside the query, as a generic presigner would.
        let inside = format!("{url}?X-Amz-Security-Token={token}");
        let signed = presign(&inside, "us-east-1", &creds(None), time, PRESIGN_EXPIRES).unwrap();
        assert_eq!(check(&signed, time), Err(Refusal::TokenSigned));
        let other = presign(
            &url,
            "us-east-1",
            &creds(Some("other")),
            time,
            PRESIGN_EXPIRES,
        )
        .unwrap();
        assert!(matches!(check(&other, time), Err(Refusal::WrongToken(_))));
    }
}
