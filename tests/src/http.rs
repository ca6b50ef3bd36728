//! A small HTTP client for tests, on hyper's maintained client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// A response: status, headers, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Assert the invocation did not end in a function error, showing the error body if it
    /// did.
    pub fn assert_no_function_error(&self) {
        assert_eq!(
            self.header("x-amz-function-error"),
            "",
            "{}",
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
        );
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A shared client with keep-alive.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Default for Http {
    fn default() -> Self {
        Http(Client::builder(TokioExecutor::new()).build(HttpConnector::new()))
    }
}

impl Http {
    /// Send a request; panics (failing the test) when there is no answer in time.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        match tokio::time::timeout(crate::DEADLINE, self.try_send(method, url, headers, body)).await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("{method} {url}: {e}"),
            Err(_) => panic!("{method} {url}: no answer within the deadline"),
        }
    }

    /// Send a request; a connection or body error is returned, not a panic.
    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let resp = self.0.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// [`Http::invoke`] in a task of its own, for invocations a test acts on while they run.
    pub fn spawn_invoke(
        &self,
        base: &str,
        function: &str,
        body: impl Into<Bytes>,
    ) -> tokio::task::JoinHandle<Reply> {
        let (http, base, function, body) = (
            self.clone(),
            base.to_string(),
            function.to_string(),
            body.into(),
        );
        tokio::spawn(async move { http.invoke(&base, &function, &[], body).await })
    }

    /// `POST` to the Invoke API of `function` at `base` (`http://host:port`).
    pub async fn invoke(
        &self,
        base: &str,
        function: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let url = format!("{base}/2015-03-31/functions/{function}/invocations");
        self.send("POST", &url, headers, body).await
    }
}
