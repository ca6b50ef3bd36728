//! The front door's HTTP/1.1 loop: every connection is served by one task, a few requests
//! per turn, so that a flood of requests (a burst of `Event` invocations being throttled)
//! takes one share of `live dev`'s thread instead of queueing ahead of every step of the
//! invocations already in flight.
//!
//! With a task per connection (the Runtime API's loop, `bridge::runtime_api::http_server`),
//! each of the dozen hand-offs of a synchronous invocation (front door, emulator, broker,
//! session, worker and back) waited behind every connection that had a request ready: 64
//! clients sending events delayed a 5 ms call by 100-550 ms in a debug build.

use bridge::runtime_api::http_server::{is_connection_error, serve_connection, SHUTDOWN_GRACE};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

/// Connection polls per turn: each serves at most one request (clients do not pipeline).
const PER_TURN: usize = 4;
/// How long the loop stops accepting after an accept error that is not one connection's.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serve `handle` on `listener` until `shutdown` completes, then let the requests in flight
/// be answered (up to [`SHUTDOWN_GRACE`], as the Runtime API's loop does); dropping the
/// future ends every connection.
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
    let budget = Arc::new(AtomicUsize::new(0));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut listener = Some(listener);
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    tokio::pin!(shutdown);
    let mut connections: FuturesUnordered<Turn> = FuturesUnordered::new();
    let mut pause: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let serving = std::future::poll_fn(|cx| {
        if pause
            .as_mut()
            .is_some_and(|p| p.as_mut().poll(cx).is_ready())
        {
            pause = None;
        }
        if listener.is_some() && shutdown.as_mut().poll(cx).is_ready() {
            // No new connection; those open answer the request in flight, then close.
            listener = None;
            let _ = closing.send(true);
            grace = Some(Box::pin(tokio::time::sleep(SHUTDOWN_GRACE)));
        }
        while let (None, Some(listener)) = (&pause, &listener) {
            match listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, _))) => {
                    let _ = stream.set_nodelay(true);
                    let answering = Arc::new(AtomicBool::new(false));
                    connections.push(Turn {
                        connection: connection(
                            stream,
                            state.clone(),
                            handle,
                            answering.clone(),
                            closed.clone(),
                        ),
                        answering,
                        budget: budget.clone(),
                    });
                }
                Poll::Ready(Err(e)) if is_connection_error(&e) => {}
                Poll::Ready(Err(e)) => {
                    // Out of file descriptors (or memory), accept fails at once until
                    // something closes: pause instead of spinning on it.
                    tracing::warn!("accepting a connection failed: {e}; retrying shortly");
                    let mut sleep = Box::pin(tokio::time::sleep(ACCEPT_PAUSE));
                    if sleep.as_mut().poll(cx).is_pending() {
                        pause = Some(sleep);
                    }
                }
                Poll::Pending => break,
            }
        }
        // One turn: connections beyond the budget wake the task again, which goes to the
        // back of the runtime's queue, behind the invocations' own steps.
        budget.store(PER_TURN, Ordering::Relaxed);
        while let Poll::Ready(Some(())) = connections.poll_next_unpin(cx) {}
        if listener.is_none() {
            if connections.is_empty() {
                return Poll::Ready(());
            }
            if grace
                .as_mut()
                .is_some_and(|g| g.as_mut().poll(cx).is_ready())
            {
                tracing::warn!(
                    "{} connection(s) still had requests in flight {SHUTDOWN_GRACE:?} after shutdown; closed",
                    connections.len()
                );
                return Poll::Ready(());
            }
        }
        Poll::Pending
    });
    serving.await
}

/// Serve one connection; `answering` is set while a request's handler runs.
fn connection<S, H, F>(
    stream: tokio::net::TcpStream,
    state: Arc<S>,
    handle: H,
    answering: Arc<AtomicBool>,
    closed: tokio::sync::watch::Receiver<bool>,
) -> Connection
where
    S: Send + Sync + 'static,
    H: Fn(Request<Incoming>, Arc<S>) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (state, answering) = (state.clone(), answering.clone());
        answering.store(true, Ordering::Relaxed);
        async move {
            let response = handle(req, state).await;
            answering.store(false, Ordering::Relaxed);
            Ok::<_, Infallible>(response)
        }
    });
    Box::pin(serve_connection(stream, service, closed))
}

/// A connection that is polled only while the current turn has budget left, or at once
/// while it answers a request: what wakes it then is the end of an invocation, whose answer
/// then goes out without waiting behind new requests.
struct Turn {
    connection: Connection,
    answering: Arc<AtomicBool>,
    budget: Arc<AtomicUsize>,
}

impl Future for Turn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let answering = self.answering.load(Ordering::Relaxed);
        let took = answering
            || self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                .is_ok();
        if !took {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.connection.as_mut().poll(cx)
    }
}
