//! The real Runtime API, as the stub's client sees it: `/next`, then `/response` or `/error`.

use bridge::protocol::Header;
use bridge::runtime_api::{self, is_invocation_header, ERROR_TYPE};
use bytes::Bytes;
use http::{header::HOST, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One invocation as `/next` returned it.
pub struct Next {
    pub request_id: String,
    /// Every `Lambda-Runtime-*` header, unchanged.
    pub headers: Vec<Header>,
    pub body: Bytes,
    /// `Lambda-Runtime-Deadline-Ms`, epoch milliseconds.
    pub deadline_ms: u64,
}

/// A client of the Runtime API at `host:port`, over one kept-alive connection: a runtime
/// makes one request at a time, so a pool (and its bookkeeping task per request) buys
/// nothing.
pub struct RuntimeClient {
    host_port: String,
    connection: Option<SendRequest<Full<Bytes>>>,
}

async fn connect(host_port: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(host_port)
        .await
        .map_err(|e| format!("could not connect to the Runtime API at {host_port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("the Runtime API at {host_port}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

impl RuntimeClient {
    pub fn new(host_port: &str) -> Self {
        RuntimeClient {
            host_port: host_port.to_string(),
            connection: None,
        }
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[Header],
        body: Bytes,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host_port.as_str());
        for (name, value) in headers {
            req = req.header(name.as_str(), value.as_bytes());
        }
        let mut req = req
            .body(Full::new(body))
            .map_err(|e| format!("bad request to {path}: {e}"))?;
        // A kept connection found closed before the request went out is replaced once.
        let mut retried = false;
        let resp = loop {
            let sender = match &mut self.connection {
                Some(sender) if !sender.is_closed() => sender,
                slot => slot.insert(connect(&self.host_port).await?),
            };
            let sent = match sender.ready().await {
                Ok(()) => sender.try_send_request(req).await,
                Err(e) => return Err(self.lost(path, &e)),
            };
            match sent {
                Ok(resp) => break resp,
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !retried => {
                        self.connection = None;
                        retried = true;
                        req = unsent;
                    }
                    _ => return Err(self.lost(path, e.error())),
                },
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| self.lost(&format!("{path}: reading the body"), &e))?
            .to_bytes();
        Ok((parts, body))
    }

    /// Forget a failed connection (the next request opens another) and say what failed.
    fn lost(&mut self, what: &str, e: &hyper::Error) -> String {
        self.connection = None;
        format!("{what}: {e}")
    }

    /// Wait for the next invocation (no timeout: Lambda may freeze the process meanwhile).
    pub async fn next(&mut self) -> Result<Next, String> {
        let (parts, body) = self
            .request(Method::GET, runtime_api::NEXT, &[], Bytes::new())
            .await?;
        if !parts.status.is_success() {
            return Err(format!(
                "/next answered {}: {}",
                parts.status,
                String::from_utf8_lossy(&body)
            ));
        }
        let headers: Vec<Header> = parts
            .headers
            .iter()
            .filter(|(name, _)| is_invocation_header(name.as_str()))
            .filter_map(|(n, v)| {
                let value = std::str::from_utf8(v.as_bytes()).ok()?;
                Some((n.to_string(), value.to_string()))
            })
            .collect();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let request_id = find(runtime_api::REQUEST_ID).ok_or("/next carried no request id")?;
        let deadline_ms = find(runtime_api::DEADLINE_MS)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        Ok(Next {
            request_id,
            headers,
            body,
            deadline_ms,
        })
    }

    /// Post the handler's response, with its headers, unchanged.
    pub async fn respond(&mut self, request_id: &str, headers: &[Header], body: Bytes) {
        let path = runtime_api::response_path(request_id);
        self.post(&path, headers, body).await;
    }

    /// Post an error: the handler's own (headers and body unchanged) or the bridge's.
    pub async fn fail(
        &mut self,
        request_id: &str,
        error_type: &str,
        headers: &[Header],
        body: Bytes,
    ) {
        let mut headers = headers.to_vec();
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(ERROR_TYPE))
        {
            headers.push((ERROR_TYPE.into(), error_type.into()));
        }
        let path = runtime_api::error_path(request_id);
        self.post(&path, &headers, body).await;
    }

    /// Report an initialization failure.
    pub async fn post_init_error(&mut self, error_type: &str, body: Bytes) {
        let headers = [(ERROR_TYPE.to_string(), error_type.to_string())];
        self.post(runtime_api::INIT_ERROR, &headers, body).await;
    }

    async fn post(&mut self, path: &str, headers: &[Header], body: Bytes) {
        match self.request(Method::POST, path, headers, body).await {
            Ok((parts, _)) if parts.status.is_success() => {}
            Ok((parts, body)) => eprintln!(
                "live stub: {path} answered {}: {}",
                parts.status,
                String::from_utf8_lossy(&body)
            ),
            Err(e) => eprintln!("live stub: could not post {e}"),
        }
    }
}
