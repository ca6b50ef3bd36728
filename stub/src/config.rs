//! The stub's configuration, read only from environment variables (it is a Lambda custom
//! runtime: there is nothing else to read).
//!
//! | variable | required | meaning |
//! | --- | --- | --- |
//! | `AWS_LAMBDA_RUNTIME_API` | yes (set by Lambda) | the Runtime API's `host:port` |
//! | `LIVE_BRIDGE_URL` | yes | the broker, `ws://host:port/mqtt` or `wss://host/mqtt` |
//! | `LIVE_APP` | yes | the app name, as in `live.toml` |
//! | `LIVE_STAGE` | yes | the stage |
//! | `LIVE_FUNCTION` | no | the function's name in `live.toml` (default `AWS_LAMBDA_FUNCTION_NAME`) |
//! | `LIVE_NO_DEV_WINDOW_MS` | no | how long to wait for a developer session before answering "no developer connected" (default 3000) |
//! | `LIVE_ENV_ID` | no | this execution environment's id (default: the last 32 characters of `AWS_LAMBDA_LOG_STREAM_NAME`, else random) |
//! | `LIVE_BROKER_USERNAME`, `LIVE_BROKER_PASSWORD` | no | credentials for a broker that requires them |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` | with a `wss://` URL (set by Lambda) | the function role's credentials: a `wss://` connection is presigned with them for IoT Core (SigV4), and they are forwarded to `live dev` |
//! | `AWS_CONTAINER_CREDENTIALS_FULL_URI` (or `_RELATIVE_URI`), `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `_TOKEN_FILE`) | no (set by Lambda for SnapStart) | an `http://` endpoint serving the role's credentials, read instead of the key pair and again before they expire (see `credentials.rs`) |
//! | `LIVE_BUCKET` | no | the stage's S3 bucket: with a `wss://` URL, events and responses larger than 64 KiB go through it (put by the stub, by URLs it presigns), instead of in chunks that IoT Core's 512 KiB/s would slow; `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` point it at a stand-in (path style) |
//! | `LIVE_CA_FILE` | no | a PEM file of extra certificates to trust beside Mozilla's roots (a test broker's CA) |
//! | `LIVE_IOT_CONNECT_TO` | no | `HOST:PORT` to connect to instead of the address the bridge URL's host resolves to, keeping that host for TLS, `Host` and the signature (the local emulator running a deployed function against its IoT Core stand-in) |
//! | `LIVE_STUB_TIMING` | no | print `live stub: bridge connected` to stderr once connected (cold-start benchmarks) |
//! | `LIVE_LOG` | no | the level of what the stub logs to stderr (CloudWatch): `off`, `error`, `warn` (default), `info`, `debug`, `trace`; read first, by `log.rs` |

use crate::credentials::Source;
use std::time::Duration;

/// Everything the stub needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub runtime_api: String,
    pub bridge_url: String,
    pub app: String,
    pub stage: String,
    pub function: String,
    pub no_dev_window: Duration,
    pub env_id: String,
    pub credentials: Option<(String, String)>,
    /// For a `wss://` URL: the region to presign it for (with the role's credentials).
    pub sigv4: Option<String>,
    /// Where the function role's credentials come from, if it has any.
    pub role: Option<Source>,
    /// The stage's S3 bucket for payloads too large for IoT Core's quota (`LIVE_BUCKET`;
    /// with a `wss://` URL only).
    pub bucket: Option<crate::objects::Bucket>,
    /// `LIVE_STUB_TIMING`: say on stderr when the bridge is first up.
    pub timing: bool,
    /// `LIVE_IOT_CONNECT_TO`: where to connect instead of the bridge URL's host.
    pub connect_to: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str, what: &str) -> Result<String, String> {
    var(name).ok_or_else(|| format!("{name} is not set: {what}"))
}

impl Config {
    /// Read the configuration; the error names the variable and what to set it to.
    pub fn from_env() -> Result<Config, String> {
        let runtime_api = required(
            "AWS_LAMBDA_RUNTIME_API",
            "the stub runs as a Lambda custom runtime, which sets it",
        )?;
        let bridge_url = required(
            "LIVE_BRIDGE_URL",
            "set it to the broker's URL (ws://HOST:PORT/mqtt, or the IoT endpoint's wss:// URL)",
        )?;
        let app = required("LIVE_APP", "set it to the app name from live.toml")?;
        let stage = required("LIVE_STAGE", "set it to the stage this function belongs to")?;
        let function = var("LIVE_FUNCTION")
            .or_else(|| var("AWS_LAMBDA_FUNCTION_NAME"))
            .ok_or(
                "neither LIVE_FUNCTION nor AWS_LAMBDA_FUNCTION_NAME is set: name the function",
            )?;
        let no_dev_window = match var("LIVE_NO_DEV_WINDOW_MS") {
            None => Duration::from_secs(3),
            Some(v) => Duration::from_millis(v.parse().map_err(|_| {
                format!("LIVE_NO_DEV_WINDOW_MS={v:?} is not a number of milliseconds")
            })?),
        };
        let env_id = var("LIVE_ENV_ID")
            .or_else(|| var("AWS_LAMBDA_LOG_STREAM_NAME").map(|s| env_id_from_stream(&s)))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(random_id);
        let credentials = var("LIVE_BROKER_USERNAME").zip(var("LIVE_BROKER_PASSWORD"));
        let role = Source::from_env(var)?;
        let sigv4 = match bridge_url.starts_with("wss://") {
            false => None,
            true => {
                let region = required(
                    "AWS_REGION",
                    "a wss:// bridge URL is signed for IoT Core in the function's region (Lambda sets it)",
                )?;
                if role.is_none() {
                    return Err("AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set (nor AWS_CONTAINER_CREDENTIALS_FULL_URI): a wss:// bridge URL is signed with the function role's credentials (Lambda sets them)".into());
                }
                Some(region)
            }
        };
        let bucket = match &sigv4 {
            Some(region) => crate::objects::Bucket::from_env(var, region)?,
            None => None,
        };
        Ok(Config {
            runtime_api,
            bridge_url,
            app,
            stage,
            function,
            no_dev_window,
            env_id,
            credentials,
            sigv4,
            role,
            bucket,
            timing: var("LIVE_STUB_TIMING").is_some(),
            connect_to: var("LIVE_IOT_CONNECT_TO"),
        })
    }
}

/// The last 32 characters of a log stream name (`2024/01/01/[$LATEST]<32 hex>`), the part
/// that is unique per execution environment, keeping only characters valid in a topic name.
fn env_id_from_stream(stream: &str) -> String {
    let clean: Vec<char> = stream
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    clean[clean.len().saturating_sub(32)..].iter().collect()
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_id_is_the_unique_tail_of_the_log_stream() {
        assert_eq!(
            env_id_from_stream("2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef"),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(random_id().len(), 32);
    }
}
