//! The function role's current credentials, as the stub has them: fixed in its environment
//! (`AWS_ACCESS_KEY_ID`...), or asked of a container-credentials endpoint
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN`, as Lambda
//! gives SnapStart functions), whose answer is kept until shortly before it expires, so that
//! credentials rotating while the stub runs are seen. Both the bridge's SigV4 signer and the
//! invocations forwarded to `live dev` read them here.

use crate::http1::{get_head, Connection};
use bridge::container_credentials::{
    self, now_secs, AUTHORIZATION_TOKEN, AUTHORIZATION_TOKEN_FILE, FULL_URI, RELATIVE_URI,
};
use bridge::protocol::RoleCredentials;
use bridge::sigv4::AwsCredentials;
use bridge::transport::CredentialSource;
use std::sync::Arc;
use std::time::Duration;

/// Credentials from an endpoint are asked for again once they expire within this.
const REFRESH_BEFORE: u64 = 5 * 60;

/// An endpoint's answer without an expiration is kept this long.
const KEEP_UNDATED: u64 = 5 * 60;

/// How long one request to the endpoint may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the role's credentials come from.
#[derive(Clone)]
pub enum Source {
    /// The environment's key pair, for the stub's life.
    Fixed(RoleCredentials),
    /// A container-credentials endpoint at `host_port` (plain HTTP on the same machine).
    Endpoint {
        host_port: String,
        path: String,
        token: Token,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Fixed(credentials) => f.debug_tuple("Fixed").field(credentials).finish(),
            Source::Endpoint {
                host_port, path, ..
            } => write!(f, "Endpoint(http://{host_port}{path})"),
        }
    }
}

/// The `Authorization` value an endpoint wants.
#[derive(Clone)]
pub enum Token {
    None,
    Value(String),
    /// Read afresh for each request (the file may be replaced).
    File(String),
}

impl Source {
    /// The source the environment names: an endpoint when one is set (it can change while
    /// the stub runs), else the key pair; `Ok(None)` when there is neither.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Source>, String> {
        let url = match (var(FULL_URI), var(RELATIVE_URI)) {
            (Some(full), _) => Some(full),
            (None, Some(relative)) => Some(format!("http://169.254.170.2{relative}")),
            (None, None) => None,
        };
        if let Some(url) = url {
            let rest = url.strip_prefix("http://").ok_or_else(|| {
                format!("{FULL_URI}={url:?}: the stub reads credentials over http:// only (a loopback or link-local endpoint)")
            })?;
            let (authority, path) = match rest.find('/') {
                Some(at) => rest.split_at(at),
                None => (rest, "/"),
            };
            let host_port = if authority.contains(':') && !authority.ends_with(']') {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
            let token = match (var(AUTHORIZATION_TOKEN_FILE), var(AUTHORIZATION_TOKEN)) {
                (Some(file), _) => Token::File(file),
                (None, Some(value)) => Token::Value(value),
                (None, None) => Token::None,
            };
            return Ok(Some(Source::Endpoint {
                host_port,
                path: path.to_string(),
                token,
            }));
        }
        let pair = var("AWS_ACCESS_KEY_ID").zip(var("AWS_SECRET_ACCESS_KEY"));
        Ok(pair.map(|(access_key_id, secret_access_key)| {
            Source::Fixed(RoleCredentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
                expires_in_secs: None,
            })
        }))
    }
}

/// The role's credentials, shared by whoever needs them (cheap to clone).
#[derive(Clone)]
pub struct Role {
    source: Arc<Source>,
    /// An endpoint's last answer and when it is to be asked again (epoch seconds), with its
    /// expiry (epoch seconds) when it named one.
    kept: Arc<tokio::sync::Mutex<Option<Kept>>>,
}

struct Kept {
    credentials: RoleCredentials,
    refresh_at: u64,
    expires_at: Option<u64>,
}

impl Role {
    pub fn new(source: Source) -> Role {
        Role {
            source: Arc::new(source),
            kept: Arc::default(),
        }
    }

    /// The current credentials, `expires_in_secs` counted from now when known.
    pub async fn current(&self) -> Result<RoleCredentials, String> {
        let (host_port, path, token) = match &*self.source {
            Source::Fixed(credentials) => return Ok(credentials.clone()),
            Source::Endpoint {
                host_port,
                path,
                token,
            } => (host_port, path, token),
        };
        let mut kept = self.kept.lock().await;
        let now = now_secs();
        let fresh = |k: &Kept| {
            let mut credentials = k.credentials.clone();
            credentials.expires_in_secs = k.expires_at.map(|at| at.saturating_sub(now));
            credentials
        };
        if let Some(k) = kept.as_ref().filter(|k| now < k.refresh_at) {
            return Ok(fresh(k));
        }
        match fetch(host_port, path, token).await {
            Ok(credentials) => {
                let expires_at = credentials.expires_in_secs.map(|s| now + s);
                let refresh_at = match expires_at {
                    Some(at) => at.saturating_sub(REFRESH_BEFORE),
                    None => now + KEEP_UNDATED,
                };
                let k = kept.insert(Kept {
                    credentials,
                    refresh_at,
                    expires_at,
                });
                Ok(fresh(k))
            }
            // Still valid: used while the endpoint does not answer.
            Err(e) => match kept
                .as_ref()
                .filter(|k| k.expires_at.is_none_or(|at| now < at))
            {
                Some(k) => {
                    tracing::warn!("{e}; using the credentials read before, still valid");
                    Ok(fresh(k))
                }
                None => Err(e),
            },
        }
    }

    /// The bridge's SigV4 signer's source: these credentials, asked for at each connection.
    pub fn signer_source(&self) -> CredentialSource {
        let role = self.clone();
        Arc::new(move || {
            let role = role.clone();
            Box::pin(async move { Ok(AwsCredentials::from(&role.current().await?)) })
        })
    }
}

/// One `GET` of the endpoint.
async fn fetch(host_port: &str, path: &str, token: &Token) -> Result<RoleCredentials, String> {
    let failed = |e: String| {
        format!("could not read the role's credentials from http://{host_port}{path}: {e}")
    };
    let authorization = match token {
        Token::None => None,
        Token::Value(value) => Some(value.clone()),
        Token::File(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| failed(format!("{AUTHORIZATION_TOKEN_FILE} {file}: {e}")))?
                .trim_end()
                .to_string(),
        ),
    };
    let exchange = async {
        let mut connection = Connection::open_to(host_port, "the credentials endpoint").await?;
        let head = get_head(path, host_port, authorization.as_deref());
        connection.write(&head, b"", b"").await?;
        connection.read_answer().await
    };
    let read = tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no answer within {FETCH_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    if read.answer.status != 200 {
        return Err(failed(format!(
            "HTTP {}: {}",
            read.answer.status,
            String::from_utf8_lossy(&read.answer.body[..read.answer.body.len().min(200)])
        )));
    }
    container_credentials::parse(&read.answer.body, now_secs()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn an_endpoint_wins_over_the_key_pair_and_https_is_refused() {
        let both = env(&[
            (FULL_URI, "http://127.0.0.1:9/creds?x=1"),
            (AUTHORIZATION_TOKEN, "t"),
            ("AWS_ACCESS_KEY_ID", "A"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
        ]);
        match Source::from_env(both).unwrap() {
            Some(Source::Endpoint {
                host_port, path, ..
            }) => assert_eq!(
                (host_port.as_str(), path.as_str()),
                ("127.0.0.1:9", "/creds?x=1")
            ),
            _ => panic!("not the endpoint"),
        }
        let pair = env(&[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")]);
        assert!(matches!(Source::from_env(pair), Ok(Some(Source::Fixed(_)))));
        assert!(matches!(Source::from_env(env(&[])), Ok(None)));
        let https = env(&[(FULL_URI, "https://example.com/creds")]);
        assert!(Source::from_env(https)
            .unwrap_err()
            .contains("http:// only"));
    }

    /// An endpoint answering each request with the next key, expiring in `lifetime` seconds;
    /// it records each request's head.
    async fn endpoint(lifetime: u64) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            for n in 1.. {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let len = stream.read(&mut buf).await.unwrap();
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..len]).into_owned());
                let body = container_credentials::render(
                    &RoleCredentials {
                        access_key_id: format!("ASIAKEY{n}"),
                        secret_access_key: "s".into(),
                        session_token: Some("t".into()),
                        expires_in_secs: None,
                    },
                    now_secs() + lifetime,
                );
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (addr, heads)
    }

    #[tokio::test]
    async fn endpoint_credentials_are_kept_until_near_their_expiry() {
        let (addr, heads) = endpoint(3600).await;
        let source = Source::Endpoint {
            host_port: addr.clone(),
            path: "/role".into(),
            token: Token::Value("secret-token".into()),
        };
        let role = Role::new(source);
        let first = role.current().await.unwrap();
        let again = role.current().await.unwrap();
        assert_eq!(first.access_key_id, "ASIAKEY1");
        assert_eq!(again.access_key_id, "ASIAKEY1", "kept: an hour left");
        assert!(first.expires_in_secs.is_some_and(|s| s > 3500));
        assert_eq!(heads.lock().unwrap().len(), 1);
        let head = heads.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.starts_with("get /role http/1.1\r\n"), "{head}");
        assert!(
            head.contains("\r\nauthorization: secret-token\r\n"),
            "{head}"
        );

        // Expiring within the refresh margin: asked again each time.
        let (addr, heads) = endpoint(60).await;
        let role = Role::new(Source::Endpoint {
            host_port: addr,
            path: "/".into(),
            token: Token::None,
        });
        assert_eq!(role.current().await.unwrap().access_key_id, "ASIAKEY1");
        assert_eq!(role.current().await.unwrap().access_key_id, "ASIAKEY2");
        assert!(!heads.lock().unwrap()[0]
            .to_ascii_lowercase()
            .contains("authorization"));
    }
}
