//! The local Runtime API server: the 2018-06-01 API at the root of a loopback port, one per
//! runtime process, used by every local host (the Lambda emulator's stubs, `live dev`'s
//! workers). `/next` is held open until there is work; each invocation carries its own reply
//! channel.

use super::http_server::{read_limited, BodyError};
use super::*;
use crate::protocol::{Header, WireInvocation};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// An invocation at the Runtime API layer: what a runtime gets on `/next`. The bridge's
/// counterpart is [`WireInvocation`] (with the event beside it).
#[derive(Debug, Clone)]
pub struct RuntimeInvocation {
    /// The request id; `/response` and `/error` must name it.
    pub request_id: String,
    /// The `Lambda-Runtime-*` headers of `/next` (request id and deadline included).
    pub headers: Vec<Header>,
    /// The event, raw.
    pub body: Bytes,
}

impl RuntimeInvocation {
    /// The invocation a stub forwarded (`invocation`, with its event `body`), to be served to
    /// a local runtime unchanged: the stub's `Lambda-Runtime-*` headers as they came.
    pub fn from_wire(invocation: &WireInvocation, body: Bytes) -> RuntimeInvocation {
        RuntimeInvocation {
            request_id: invocation.request_id.clone(),
            headers: invocation.headers.clone(),
            body,
        }
    }
}

/// How the runtime answered an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `/response`: its headers and raw body.
    Response {
        /// The request's headers, connection-level ones removed.
        headers: Vec<Header>,
        /// The response, raw.
        body: Bytes,
    },
    /// `/error`: the reported error type and the raw error body, in any shape.
    Error {
        /// `Lambda-Runtime-Function-Error-Type`, when sent.
        error_type: Option<String>,
        /// The request's headers, connection-level ones removed.
        headers: Vec<Header>,
        /// The error body, raw.
        body: Bytes,
    },
    /// `/init/error`: the runtime failed to start; it is served to the pending invocation.
    InitError {
        /// `Lambda-Runtime-Function-Error-Type`, when sent.
        error_type: Option<String>,
        /// The error body, raw.
        body: Bytes,
    },
    /// `/response` above [`MAX_RESPONSE_BYTES`]; the runtime got 413.
    ResponseTooLarge {
        /// The body's size, as far as it was read (up to [`super::http_server::DRAIN_CAP`]).
        size: usize,
    },
}

impl Outcome {
    /// This outcome as an error for the caller: its error type and error JSON body.
    pub fn failure(&self) -> Option<(String, Bytes)> {
        match self {
            Outcome::Response { .. } => None,
            Outcome::Error {
                error_type, body, ..
            } => Some((error_type.clone().unwrap_or_else(|| "Unhandled".into()), body.clone())),
            Outcome::InitError { error_type, body } => Some((
                error_type.clone().unwrap_or_else(|| "Runtime.InitError".into()),
                body.clone(),
            )),
            Outcome::ResponseTooLarge { size } => Some((
                "Function.ResponseSizeTooLarge".into(),
                Bytes::from(error_body(
                    "Function.ResponseSizeTooLarge",
                    &format!(
                        "Response payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                    ),
                )),
            )),
        }
    }
}

/// What the extension API answers on register.
#[derive(Debug, Clone, Default)]
pub struct FunctionInfo {
    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub name: String,
    /// `AWS_LAMBDA_FUNCTION_VERSION`.
    pub version: String,
    /// `_HANDLER`.
    pub handler: String,
}

type Reply = oneshot::Sender<Outcome>;

struct Current {
    request_id: String,
    reply: Reply,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<(RuntimeInvocation, Reply)>>,
    current: Mutex<Option<Current>>,
    init_error: Mutex<Option<Outcome>>,
    info: FunctionInfo,
    /// Whether the runtime is waiting in `/next` with nothing queued (idle, as Lambda sees
    /// an environment it may freeze).
    idle: tokio::sync::watch::Sender<bool>,
    /// Debug mode: a `/next` while an invocation is unanswered means the worker was
    /// restarted (under a debugger): that invocation fails at once, not when the next one
    /// arrives.
    restartable: bool,
}

/// A Runtime API server for one runtime process. Dropping it stops the server.
pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<(RuntimeInvocation, Reply)>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Serve on `addr` (port 0 for an ephemeral one).
    pub async fn bind(addr: SocketAddr, info: FunctionInfo) -> std::io::Result<RuntimeApi> {
        RuntimeApi::serve(addr, info, false).await
    }

    /// [`RuntimeApi::bind`] for a worker someone else starts and restarts (an IDE's
    /// debugger): a `/next` while an invocation is unanswered fails that invocation at once
    /// with `Live.WorkerRestarted`.
    pub async fn bind_restartable(
        addr: SocketAddr,
        info: FunctionInfo,
    ) -> std::io::Result<RuntimeApi> {
        RuntimeApi::serve(addr, info, true).await
    }

    async fn serve(
        addr: SocketAddr,
        info: FunctionInfo,
        restartable: bool,
    ) -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(rx),
            current: Mutex::new(None),
            init_error: Mutex::new(None),
            info,
            idle: tokio::sync::watch::Sender::new(false),
            restartable,
        });
        let task = tokio::spawn(super::http_server::serve(
            listener,
            shared.clone(),
            |req, shared| async move { route(req, &shared).await },
            std::future::pending(),
        ));
        Ok(RuntimeApi {
            addr,
            queue,
            shared,
            task,
        })
    }

    /// The address, as `AWS_LAMBDA_RUNTIME_API` wants it (`host:port`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the runtime waits in `/next` with nothing queued: `true` once it has finished
    /// with its last invocation and asked for the next one. Closed when the server stops.
    pub fn idle(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.idle.subscribe()
    }

    /// Queue `invocation` for the runtime's `/next` and wait for its outcome. `None` when the
    /// server is gone. A runtime that already reported an init error answers at once with it.
    pub async fn invoke(&self, invocation: RuntimeInvocation) -> Option<Outcome> {
        self.submit(invocation).await
    }

    /// [`RuntimeApi::invoke`], with the invocation queued now (the runtime's waiting `/next`
    /// is answered as soon as its task runs) and only the outcome left to wait for.
    pub fn submit(&self, invocation: RuntimeInvocation) -> impl Future<Output = Option<Outcome>> {
        let queued = match self.shared.init_error.lock().expect("lock").clone() {
            Some(init) => Err(Some(init)),
            None => {
                let (reply, outcome) = oneshot::channel();
                self.queue
                    .send((invocation, reply))
                    .map(|()| outcome)
                    .map_err(|_| None)
            }
        };
        async move {
            match queued {
                Ok(outcome) => outcome.await.ok(),
                Err(answer) => answer,
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("static response parts")
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    reply(status, error_body(error_type, message))
}

fn accepted() -> Response<Body> {
    reply(StatusCode::ACCEPTED, &br#"{"status":"OK"}"#[..])
}

async fn route(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, NEXT) => next(shared).await,
        (Method::POST, INIT_ERROR) => init_error(req, shared).await,
        (Method::POST, p) if p.starts_with(INVOCATION_PREFIX) => {
            let rest = &p[INVOCATION_PREFIX.len()..];
            match rest.rsplit_once('/') {
                Some((id, "response")) => result(req, shared, id.to_string(), false).await,
                Some((id, "error")) => result(req, shared, id.to_string(), true).await,
                _ => not_found(&path),
            }
        }
        (Method::POST, EXTENSION_REGISTER) => {
            let info = &shared.info;
            let body = serde_json::json!({
                "functionName": info.name,
                "functionVersion": info.version,
                "handler": info.handler,
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("lambda-extension-identifier", extension_id())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("static response parts")
        }
        // No extension events are emitted locally: hold the request open.
        (Method::GET, EXTENSION_NEXT) => std::future::pending().await,
        (Method::PUT, "/2020-08-15/logs" | "/2022-07-01/telemetry") => {
            reply(StatusCode::OK, &b"{}"[..])
        }
        _ => not_found(&path),
    }
}

fn not_found(path: &str) -> Response<Body> {
    runtime_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("no Runtime API route for {path}"),
    )
}

fn extension_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

async fn next(shared: &Shared) -> Response<Body> {
    if shared.restartable {
        if let Some(previous) = shared.current.lock().expect("lock").take() {
            let _ = previous.reply.send(Outcome::Error {
                error_type: Some("Live.WorkerRestarted".into()),
                headers: Vec::new(),
                body: Bytes::from(error_body(
                    "Live.WorkerRestarted",
                    "the worker asked for its next invocation without answering this one: it was \
                     stopped or restarted (under the debugger?) while running it",
                )),
            });
        }
    }
    let received = {
        let mut queue = shared.queue.lock().await;
        match queue.try_recv() {
            Ok(queued) => Some(queued),
            Err(_) => {
                // Idle until an invocation arrives or the request goes away.
                struct Idle<'a>(&'a tokio::sync::watch::Sender<bool>);
                impl Drop for Idle<'_> {
                    fn drop(&mut self) {
                        self.0.send_replace(false);
                    }
                }
                shared.idle.send_replace(true);
                let _idle = Idle(&shared.idle);
                queue.recv().await
            }
        }
    };
    let Some((invocation, reply_tx)) = received else {
        return runtime_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "the host stopped",
        );
    };
    let previous = shared.current.lock().expect("lock").replace(Current {
        request_id: invocation.request_id.clone(),
        reply: reply_tx,
    });
    if let Some(previous) = previous {
        let _ = previous.reply.send(Outcome::Error {
            error_type: Some("Runtime.NoResponse".into()),
            headers: Vec::new(),
            body: Bytes::from(error_body(
                "Runtime.NoResponse",
                "the runtime asked for the next invocation without answering this one",
            )),
        });
    }
    let mut response = Response::builder().status(StatusCode::OK);
    let mut has_content_type = false;
    for (name, value) in &invocation.headers {
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        // From bytes: a client context may hold UTF-8 beyond ASCII, passed on unchanged.
        response = response.header(name.as_str(), value.as_bytes());
    }
    if !has_content_type {
        response = response.header("content-type", "application/json");
    }
    response
        .body(Full::new(invocation.body))
        .unwrap_or_else(|e| {
            runtime_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &format!("invalid invocation header: {e}"),
            )
        })
}

fn result_headers(req: &Request<Incoming>) -> Vec<Header> {
    req.headers()
        .iter()
        .filter(|(name, _)| is_result_header(name.as_str()))
        .filter_map(|(name, value)| {
            let value = std::str::from_utf8(value.as_bytes()).ok()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

fn error_type(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn result(
    req: Request<Incoming>,
    shared: &Shared,
    request_id: String,
    is_error: bool,
) -> Response<Body> {
    let current = {
        let mut current = shared.current.lock().expect("lock");
        match current.as_ref() {
            Some(c) if c.request_id == request_id => current.take(),
            _ => None,
        }
    };
    let Some(current) = current else {
        return runtime_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        );
    };
    let headers = result_headers(&req);
    let error_type = error_type(&req);
    let body = match read_limited(req.into_body(), MAX_RESPONSE_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { seen }) => {
            let _ = current.reply.send(Outcome::ResponseTooLarge { size: seen });
            return runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
            );
        }
        Err(BodyError::Broken) => {
            // The runtime's connection broke off mid-post: the invocation stays pending, for
            // a post again or for the supervisor to see the runtime exit or time out.
            shared.current.lock().expect("lock").get_or_insert(current);
            return runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                "The request body ended before its end.",
            );
        }
    };
    let outcome = if is_error {
        let (headers, body) = match built_error(&body, error_type.as_deref(), "Unhandled") {
            Some(built) => (json_headers(), built),
            None => (headers, body),
        };
        Outcome::Error {
            error_type,
            headers,
            body,
        }
    } else {
        Outcome::Response { headers, body }
    };
    let _ = current.reply.send(outcome);
    // The outcome's receiver (the invocation waiting on it) runs before this answer is
    // written, so the result heads on first and the runtime's 202 follows: on a
    // single-threaded runtime that takes a send off every invocation's critical path.
    tokio::task::yield_now().await;
    accepted()
}

/// With no payload, Lambda builds the error from the error-type header (`otherwise` if
/// there is none): the error JSON to use instead of an empty `body`.
fn built_error(body: &Bytes, error_type: Option<&str>, otherwise: &str) -> Option<Bytes> {
    body.is_empty()
        .then(|| Bytes::from(error_body(error_type.unwrap_or(otherwise), "")))
}

async fn init_error(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let error_type = error_type(&req);
    let body = read_limited(req.into_body(), MAX_RESPONSE_BYTES)
        .await
        .unwrap_or_default();
    let body = built_error(&body, error_type.as_deref(), "Runtime.InitError").unwrap_or(body);
    let outcome = Outcome::InitError { error_type, body };
    let current = shared.current.lock().expect("lock").take();
    match current {
        Some(current) => {
            let _ = current.reply.send(outcome.clone());
        }
        None => {
            // Served to whatever invocation comes next, including one already queued.
            if let Ok(mut queue) = shared.queue.try_lock() {
                while let Ok((_, reply)) = queue.try_recv() {
                    let _ = reply.send(outcome.clone());
                }
            }
        }
    }
    *shared.init_error.lock().expect("lock") = Some(outcome);
    accepted()
}
