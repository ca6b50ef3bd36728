//! The real Runtime API, as the stub's client sees it: `/next`, then `/response` or `/error`,
//! over one kept-alive HTTP/1.1 connection (`http1.rs`), with each post pipelined with the
//! next `/next` and written again on a new connection when the old one broke before its
//! answer.

use crate::http1::{request_head, Answer, Connection};
use bridge::protocol::Header;
use bridge::runtime_api::{self, is_invocation_header, ERROR_TYPE};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;

/// One invocation as `/next` returned it.
pub struct Next {
    pub request_id: String,
    /// Every `Lambda-Runtime-*` header, unchanged.
    pub headers: Vec<Header>,
    pub body: Bytes,
    /// `Lambda-Runtime-Deadline-Ms`, epoch milliseconds.
    pub deadline_ms: u64,
}

/// A client of the Runtime API at `host:port`.
///
/// A runtime makes one request at a time, and after each result it asks for the next event,
/// so the stub writes a result and the following `GET /next` together (HTTP/1.1 pipelining,
/// which hyper's client does not do) and reads the result's `202` when it reads the next
/// event. That is one write and one wake-up fewer per invocation than waiting for the `202`
/// first; the environment is frozen meanwhile anyway. A post is kept until its answer is
/// read: if the connection breaks first, it is written again on the next one.
pub struct RuntimeClient {
    host_port: String,
    /// `GET /next`, written once per invocation: built once.
    next_request: Vec<u8>,
    connection: Option<Connection>,
    /// Posts written (or to be written again) whose answers have not been read yet.
    unanswered: VecDeque<Posted>,
    /// A `GET /next` is written on the current connection and its answer not read yet.
    next_sent: bool,
}

/// A post kept until its answer is read.
struct Posted {
    path: String,
    head: Vec<u8>,
    body: Bytes,
}

impl RuntimeClient {
    pub fn new(host_port: &str) -> Self {
        RuntimeClient {
            host_port: host_port.to_string(),
            next_request: request_head("GET", runtime_api::NEXT, host_port, &[], None),
            connection: None,
            unanswered: VecDeque::new(),
            next_sent: false,
        }
    }

    /// Wait for the next invocation (no timeout: Lambda may freeze the process meanwhile).
    /// A connection found broken is replaced once (what was posted on it is posted again);
    /// an answer that cannot be read is an error, not asked for again.
    pub async fn next(&mut self) -> Result<Next, String> {
        let mut retried = false;
        let answer = loop {
            match self.try_next().await {
                Ok(answer) => break answer,
                Err(e) => {
                    self.connection = None;
                    self.next_sent = false;
                    if retried || e.kind() == io::ErrorKind::InvalidData {
                        return Err(format!("/next: {e}"));
                    }
                    tracing::warn!("the Runtime API connection failed ({e}); reconnecting");
                    retried = true;
                }
            }
        };
        if !(200..300).contains(&answer.status) {
            return Err(format!(
                "/next answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        let headers: Vec<Header> = answer
            .headers
            .into_iter()
            .filter(|(name, _)| is_invocation_header(name))
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
            body: answer.body,
            deadline_ms,
        })
    }

    async fn try_next(&mut self) -> io::Result<Answer> {
        loop {
            let fresh = self.connection.is_none();
            let connection = connected(&mut self.connection, &self.host_port).await?;
            if fresh {
                // What was posted on the last connection and not answered goes out again
                // first (a second copy of one that did arrive is refused, and reported, by
                // the Runtime API).
                for posted in &self.unanswered {
                    connection.write(&posted.head, &posted.body, &[]).await?;
                }
                self.next_sent = false;
            }
            if !self.next_sent {
                connection.write(&self.next_request, &[], &[]).await?;
                self.next_sent = true;
            }
            let mut closed = false;
            while let Some(posted) = self.unanswered.front() {
                let read = connection.read_answer().await?;
                report(&posted.path, &read.answer);
                self.unanswered.pop_front();
                if read.closes {
                    // Whatever followed on this connection (the `GET /next`) is dropped.
                    closed = true;
                    break;
                }
            }
            if closed {
                self.connection = None;
                continue;
            }
            let read = connection.read_answer().await?;
            self.next_sent = false;
            if read.closes {
                self.connection = None;
            }
            return Ok(read.answer);
        }
    }

    /// Post the handler's response, with its headers, unchanged.
    pub async fn respond(&mut self, request_id: &str, headers: &[Header], body: Bytes) {
        let path = runtime_api::response_path(request_id);
        self.post_then_next(path, headers, body).await;
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
        self.post_then_next(path, &headers, body).await;
    }

    /// Report an initialization failure, and wait for its answer (the process exits next).
    pub async fn post_init_error(&mut self, error_type: &str, body: Bytes) {
        let headers = [(ERROR_TYPE.to_string(), error_type.to_string())];
        let head = request_head(
            "POST",
            runtime_api::INIT_ERROR,
            &self.host_port,
            &headers,
            Some(&body),
        );
        let sent = async {
            let connection = connected(&mut self.connection, &self.host_port).await?;
            connection.write(&head, &body, &[]).await?;
            connection.read_answer().await
        };
        match sent.await {
            Ok(answer) => report(runtime_api::INIT_ERROR, &answer.answer),
            Err(e) => tracing::error!("could not post {}: {e}", runtime_api::INIT_ERROR),
        }
    }

    /// Write a post and, in the same write, the next `GET /next`; the post's answer is read
    /// (and reported when it is not a success) before the next event. A post that cannot be
    /// written now is written on the next connection.
    async fn post_then_next(&mut self, path: String, headers: &[Header], body: Bytes) {
        let head = request_head("POST", &path, &self.host_port, headers, Some(&body));
        let written = match connected(&mut self.connection, &self.host_port).await {
            Ok(connection) => connection.write(&head, &body, &self.next_request).await,
            Err(e) => Err(e),
        };
        self.unanswered.push_back(Posted { path, head, body });
        match written {
            Ok(()) => self.next_sent = true,
            Err(e) => {
                tracing::warn!("the Runtime API connection failed ({e}); reconnecting");
                self.connection = None;
                self.next_sent = false;
            }
        }
    }
}

/// The connection in `slot`, opened to `host_port` first if there is none.
async fn connected<'a>(
    slot: &'a mut Option<Connection>,
    host_port: &str,
) -> io::Result<&'a mut Connection> {
    if slot.is_none() {
        *slot = Some(Connection::open(host_port).await?);
    }
    Ok(slot.as_mut().expect("set above"))
}

/// Say when a post was not accepted (the Runtime API's answer is all there is to say).
fn report(path: &str, answer: &Answer) {
    if !(200..300).contains(&answer.status) {
        tracing::warn!(
            "{path} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::MAX_BODY;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const NEXT_REQUEST: &str = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n";

    /// Read from `stream` until `text` has appeared `times` times in all that was read.
    async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, text: &str, times: usize) {
        let count = |seen: &[u8]| String::from_utf8_lossy(seen).matches(text).count();
        let wait = async {
            while count(seen) < times {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the client closed the connection");
                seen.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{text:?} not seen {times} times; got:\n{}",
                    String::from_utf8_lossy(seen)
                )
            });
    }

    /// Serve one client: event `r1` for its `/next`, then wait for its result and the next
    /// `/next` to arrive; the connection, unanswered.
    async fn event_r1_then_result(listener: &TcpListener) -> TcpStream {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        read_until(&mut stream, &mut seen, NEXT_REQUEST, 1).await;
        stream
            .write_all(event("r1", "{}").as_bytes())
            .await
            .unwrap();
        read_until(&mut stream, &mut seen, NEXT_REQUEST, 2).await;
        stream
    }

    fn event(request_id: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: {request_id}\r\n\
             lambda-runtime-deadline-ms: 1234\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn a_result_and_the_next_request_go_out_before_the_results_answer_is_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            read_until(&mut stream, &mut seen, NEXT_REQUEST, 1).await;
            // A chunked event, with a chunk extension and a trailer.
            let chunked = "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\n\
                           Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n\
                           0\r\nx-trailer: 1\r\n\r\n";
            stream.write_all(chunked.as_bytes()).await.unwrap();
            // Nothing is answered until both the result and the next `/next` have arrived.
            read_until(&mut stream, &mut seen, NEXT_REQUEST, 2).await;
            let text = String::from_utf8_lossy(&seen).into_owned();
            stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 7\r\n\r\ntoo big")
                .await
                .unwrap();
            stream
                .write_all(event("r2", "{}").as_bytes())
                .await
                .unwrap();
            text
        });
        let mut client = RuntimeClient::new(&addr);
        let first = client.next().await.unwrap();
        assert_eq!(first.request_id, "r1");
        assert_eq!(&first.body[..], b"hello world");
        assert_eq!(first.headers[0].0, "lambda-runtime-aws-request-id");
        client
            .respond(
                "r1",
                &[("content-type".into(), "text/plain".into())],
                Bytes::from("ok"),
            )
            .await;
        // The post's 413 is reported and read past; the next event arrives.
        let second = client.next().await.unwrap();
        assert_eq!(second.request_id, "r2");
        assert_eq!(second.deadline_ms, 1234);
        let text = server.await.unwrap();
        let post = text
            .find("POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n")
            .expect("the result was posted");
        assert!(text[post..].contains("content-type: text/plain\r\ncontent-length: 2\r\n\r\nok"));
        assert!(text[post..].contains(NEXT_REQUEST), "{text}");
    }

    /// The client takes event `r1` and posts its result; the first connection then ends with
    /// `first_ends` written (nothing: it just breaks); on a second one the client must ask for
    /// the next event, and gets `r2`. Returns what arrived on the second connection.
    async fn result_then_a_second_connection(first_ends: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut first = event_r1_then_result(&listener).await;
            let _ = first.write_all(first_ends).await;
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            let mut again = Vec::new();
            read_until(&mut second, &mut again, NEXT_REQUEST, 1).await;
            let again = String::from_utf8_lossy(&again).into_owned();
            if again.contains("POST") {
                let accepted = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
                second.write_all(accepted).await.unwrap();
            }
            let r2 = event("r2", "{}");
            second.write_all(r2.as_bytes()).await.unwrap();
            let _ = tx.send(again);
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let mut client = RuntimeClient::new(&addr);
        assert_eq!(client.next().await.unwrap().request_id, "r1");
        client.respond("r1", &[], Bytes::from("done")).await;
        assert_eq!(client.next().await.unwrap().request_id, "r2");
        rx.await.unwrap()
    }

    #[tokio::test]
    async fn an_event_header_that_is_not_utf8_is_passed_on_not_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            read_until(&mut stream, &mut seen, NEXT_REQUEST, 1).await;
            let head: &[u8] = b"HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: r1\r\n\
                                lambda-runtime-client-context: {\"a\":\"caf\xe9\"}\r\n\
                                content-length: 2\r\n\r\n{}";
            stream.write_all(head).await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let event = RuntimeClient::new(&addr).next().await.unwrap();
        let context = event
            .headers
            .iter()
            .find(|(name, _)| name == "lambda-runtime-client-context")
            .map(|(_, value)| value.as_str());
        assert_eq!(context, Some("{\"a\":\"caf\u{fffd}\"}"));
    }

    #[tokio::test]
    async fn a_result_whose_connection_broke_before_its_answer_is_posted_again() {
        let again = result_then_a_second_connection(b"").await;
        let post = again
            .find("POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n")
            .unwrap_or_else(|| panic!("the result was not posted again:\n{again}"));
        assert!(again[post..].contains("\r\n\r\ndone"), "{again}");
        assert!(again[post..].contains(NEXT_REQUEST), "{again}");
    }

    #[tokio::test]
    async fn an_answer_that_closes_the_connection_has_next_asked_on_a_new_one() {
        // As Go's server does after some errors: answer, close, drop the pipelined GET.
        let closes =
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbad";
        let again = result_then_a_second_connection(closes).await;
        assert!(
            !again.contains("POST"),
            "an answered post was sent again:\n{again}"
        );
    }

    #[tokio::test]
    async fn a_connection_that_breaks_is_replaced_and_next_asked_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            read_until(&mut first, &mut Vec::new(), NEXT_REQUEST, 1).await;
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            read_until(&mut second, &mut Vec::new(), NEXT_REQUEST, 1).await;
            second
                .write_all(event("r9", "{}").as_bytes())
                .await
                .unwrap();
            // Held open: the client reads the event by its length, not by the close.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let next = RuntimeClient::new(&addr).next().await.unwrap();
        assert_eq!(next.request_id, "r9");
    }

    #[tokio::test]
    async fn an_event_larger_than_the_limit_is_refused_without_reading_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                read_until(&mut stream, &mut Vec::new(), NEXT_REQUEST, 1).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: r\r\ncontent-length: {}\r\n\r\n",
                    MAX_BODY + 1
                );
                stream.write_all(head.as_bytes()).await.unwrap();
            }
        });
        let err = match RuntimeClient::new(&addr).next().await {
            Ok(_) => panic!("an oversized event was accepted"),
            Err(e) => e,
        };
        assert!(
            err.contains(&format!("a {}-byte body", MAX_BODY + 1)),
            "{err}"
        );
    }
}
