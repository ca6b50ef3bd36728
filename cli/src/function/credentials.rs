//! A loopback container-credentials endpoint, as AWS SDKs read one through
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN`: one URL path
//! and one random token per grant (a `live dev` worker, an emulated function's role), each
//! serving the newest credentials set on it, so an SDK that asks again (botocore does once
//! they expire within 15 minutes) gets rotated ones without a restart. A request without the
//! grant's token is refused: 401 without one, 403 with another.

use bridge::container_credentials::{self, now_secs, AUTHORIZATION_TOKEN, FULL_URI};
use bridge::runtime_api::http_server::serve;
use bridge::RoleCredentials;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What is served for credentials whose expiry is unknown (a key pair from a stub's
/// environment: valid for its execution environment's life): valid this long from each
/// request.
pub const UNDATED_LIFETIME: u64 = 3600;

/// A running endpoint (cheap to clone); it serves until the process ends.
#[derive(Clone)]
pub struct CredentialsEndpoint {
    addr: SocketAddr,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

struct Entry {
    token: String,
    /// The newest credentials and when they expire (epoch seconds), if known.
    current: Option<(RoleCredentials, Option<u64>)>,
}

/// One path and token of the endpoint; dropping it stops serving them.
pub struct Grant {
    endpoint: CredentialsEndpoint,
    path: String,
    token: String,
}

impl CredentialsEndpoint {
    /// Listen on a free loopback port and serve in a task of its own.
    pub async fn start() -> std::io::Result<CredentialsEndpoint> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let endpoint = CredentialsEndpoint {
            addr: listener.local_addr()?,
            entries: Arc::default(),
        };
        let state = Arc::new(endpoint.clone());
        tokio::spawn(serve(listener, state, answer, std::future::pending()));
        Ok(endpoint)
    }

    /// A new path (named after `name`, for logs) and token, serving nothing until set.
    pub fn grant(&self, name: &str) -> Grant {
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let path = format!("/credentials/{name}/{}", crate::ids::env_id());
        let token = format!("{}{}", crate::ids::env_id(), crate::ids::env_id());
        self.entries.lock().expect("entries").insert(
            path.clone(),
            Entry {
                token: token.clone(),
                current: None,
            },
        );
        Grant {
            endpoint: self.clone(),
            path,
            token,
        }
    }
}

impl Grant {
    /// Serve `credentials` from now on, expiring at `expires_at` (epoch seconds) if known.
    pub fn set(&self, credentials: &RoleCredentials, expires_at: Option<u64>) {
        let mut entries = self.endpoint.entries.lock().expect("entries");
        if let Some(entry) = entries.get_mut(&self.path) {
            entry.current = Some((credentials.clone(), expires_at));
        }
    }

    /// The URL to give as `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn uri(&self) -> String {
        format!("http://{}{}", self.endpoint.addr, self.path)
    }

    /// The variables that point an SDK here: the URL and the token.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            (FULL_URI, self.uri()),
            (AUTHORIZATION_TOKEN, self.token.clone()),
        ]
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.endpoint
            .entries
            .lock()
            .expect("entries")
            .remove(&self.path);
    }
}

/// Whether `a` equals `b`, comparing every byte whatever the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn answer(
    request: Request<Incoming>,
    endpoint: Arc<CredentialsEndpoint>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    let refused = |status: StatusCode, message: &str| {
        reply(
            status,
            serde_json::json!({ "message": message }).to_string(),
        )
    };
    if request.method() != http::Method::GET {
        return refused(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let entries = endpoint.entries.lock().expect("entries");
    let Some(entry) = entries.get(request.uri().path()) else {
        return refused(
            StatusCode::NOT_FOUND,
            "no credentials are served at this path",
        );
    };
    match given {
        None => return refused(
            StatusCode::UNAUTHORIZED,
            "the Authorization header is missing: send AWS_CONTAINER_AUTHORIZATION_TOKEN's value",
        ),
        Some(token) if !same(&token, entry.token.as_bytes()) => {
            return refused(
                StatusCode::FORBIDDEN,
                "the Authorization token is not this path's",
            )
        }
        Some(_) => {}
    }
    let Some((credentials, expires_at)) = &entry.current else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "no credentials yet");
    };
    let expires_at = expires_at.unwrap_or_else(|| now_secs() + UNDATED_LIFETIME);
    reply(
        StatusCode::OK,
        container_credentials::render(credentials, expires_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `GET uri` with `authorization`, as status and body.
    async fn get(uri: &str, authorization: Option<&str>) -> (u16, String) {
        let rest = uri.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let header = authorization.map_or(String::new(), |a| format!("authorization: {a}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{header}connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    #[tokio::test]
    async fn a_grant_serves_its_newest_credentials_to_its_token_only_while_it_lives() {
        let endpoint = CredentialsEndpoint::start().await.unwrap();
        let grant = endpoint.grant("f");
        let [(_, uri), (_, token)] = grant.env();
        assert_eq!(get(&uri, Some(&token)).await.0, 503, "nothing set yet");
        let key = |id: &str| RoleCredentials {
            access_key_id: id.into(),
            secret_access_key: "s".into(),
            session_token: Some("t".into()),
            expires_in_secs: None,
        };
        grant.set(&key("ASIAONE"), Some(now_secs() + 60));
        grant.set(&key("ASIATWO"), Some(now_secs() + 60));
        let (status, body) = get(&uri, Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        let read = container_credentials::parse(body.as_bytes(), now_secs()).unwrap();
        assert_eq!(read.access_key_id, "ASIATWO", "the newest");
        assert!(read.expires_in_secs.is_some_and(|s| s <= 60));
        assert_eq!(get(&uri, None).await.0, 401);
        let (status, body) = get(&uri, Some("other")).await;
        assert_eq!(status, 403);
        assert!(!body.contains("ASIA"), "{body}");
        // Another grant's token does not open this one.
        let other = endpoint.grant("g");
        assert_eq!(get(&uri, Some(&other.env()[1].1)).await.0, 403);
        drop(grant);
        assert_eq!(get(&uri, Some(&token)).await.0, 404, "gone with its grant");
    }
}
