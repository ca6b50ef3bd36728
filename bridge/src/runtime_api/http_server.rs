//! Serving HTTP/1.1 on a listener with hyper: one task per connection (TCP_NODELAY); once
//! `shutdown` completes, no new connection is taken and those open finish the requests in
//! flight (for up to [`SHUTDOWN_GRACE`]) and close; all are aborted when the serving future
//! is dropped. And reading a body under a size limit. Shared by the local Runtime API and the
//! local cloud's front door.

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How long after `shutdown` the requests in flight have to be answered before their
/// connections are aborted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serve `handle` on `listener` until `shutdown` completes, then let the requests in flight
/// be answered (up to [`SHUTDOWN_GRACE`]).
pub async fn serve<S, H, F>(
    listener: TcpListener,
    state: Arc<S>,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    S: Send + Sync + 'static,
    H: Fn(Request<Incoming>, Arc<S>) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    // Dropping the set (when this future is dropped or stops) aborts every connection.
    let mut connections = JoinSet::new();
    let (closing, closed) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors (or memory), accept fails at once until
                        // something closes: pause instead of spinning on it.
                        if !is_connection_error(&e) {
                            tracing::warn!("accepting a connection failed: {e}; retrying shortly");
                            tokio::time::sleep(ACCEPT_PAUSE).await;
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(req, state).await) }
                });
                connections.spawn(serve_connection(stream, service, closed.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, finished)
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection(s) still had requests in flight {SHUTDOWN_GRACE:?} after shutdown; closed",
            connections.len()
        );
    }
}

/// Serve one connection with `service` until it closes, or until `closed` turns true: then
/// the request in flight is answered and the connection closes (an idle one at once).
pub async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    service: S,
    mut closed: tokio::sync::watch::Receiver<bool>,
) where
    S: hyper::service::Service<
        Request<Incoming>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = async { let _ = closed.wait_for(|closed| *closed).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// How long the server pauses after an accept error that is not one connection's failure.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// An accept error that concerns only the connection being accepted.
pub fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// How much of an oversized body is read (and discarded) before answering 413.
pub const DRAIN_CAP: usize = 64 * 1024 * 1024;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit: `seen` bytes arrived (counted up to [`DRAIN_CAP`]).
    TooLarge { seen: usize },
    /// The connection broke off before the body's end.
    Broken,
}

/// Read a body of at most `limit` bytes. A larger one is read on to its end (up to
/// [`DRAIN_CAP`]) and discarded, so that the client, still sending, reads the 413 answer
/// instead of a reset connection, and the answer can say how large it was.
pub async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    // A body that arrives as one frame is kept as it is; only a second frame starts a copy.
    let (mut first, mut rest) = (None::<Bytes>, BytesMut::new());
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(BodyError::Broken);
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            match first.take() {
                None if rest.is_empty() => first = Some(data),
                Some(earlier) => {
                    rest.extend_from_slice(&earlier);
                    rest.extend_from_slice(&data);
                }
                None => rest.extend_from_slice(&data),
            }
        } else if seen > DRAIN_CAP {
            break;
        }
    }
    if seen > limit {
        Err(BodyError::TooLarge { seen })
    } else {
        Ok(first.unwrap_or_else(|| rest.freeze()))
    }
}
