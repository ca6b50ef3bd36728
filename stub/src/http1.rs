//! HTTP/1.1 on one TCP connection, as much as the stub's Runtime API client (and its reads of a
//! credentials endpoint) need: request
//! heads written (with the body, and whatever is pipelined after, in one write), answers read
//! (heads parsed by `httparse`, bodies by `Content-Length`, chunked, or to the end of the
//! stream).

use bridge::protocol::Header;
use bridge::runtime_api::is_result_header;
use bytes::{Buf, Bytes, BytesMut};
use std::fmt::Write as _;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest body accepted from the Runtime API (Lambda's own limits are 6 MB; this only
/// stops garbage from exhausting memory).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Bodies up to this size are copied into the request's one write; larger ones are written
/// after the head, not copied.
const INLINE_BODY: usize = 64 * 1024;

/// A connection's byte stream: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One connection, with what was read from it and not consumed yet.
pub struct Connection {
    stream: Box<dyn Io>,
    buf: BytesMut,
    /// Who answers, for errors ("the Runtime API").
    peer: &'static str,
}

/// One answer.
pub struct Answer {
    pub status: u16,
    /// Names lower-cased, values as text (bytes that are not UTF-8 become U+FFFD).
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// An answer, and whether the connection ends with it.
pub struct Read {
    pub answer: Answer,
    /// The server closes the connection after this answer.
    pub closes: bool,
}

/// A request's head, with `Content-Length` when it has a body.
pub fn request_head(
    method: &str,
    path: &str,
    host: &str,
    headers: &[Header],
    body: Option<&Bytes>,
) -> Vec<u8> {
    let mut head = String::with_capacity(128);
    let _ = write!(head, "{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    for (name, value) in headers {
        // Connection-level headers are this client's own; a name or value HTTP does not
        // allow would get the whole request refused: left out.
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let text = value
            .bytes()
            .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
        if !is_result_header(name) || !token || !text {
            continue;
        }
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if let Some(body) = body {
        let _ = write!(head, "content-length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A `GET` request's head, with an `Authorization` header when given (a value with a line
/// break is left out, as it would split the head).
pub fn get_head(path: &str, host: &str, authorization: Option<&str>) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: application/json\r\n");
    if let Some(value) = authorization.filter(|v| !v.contains(['\r', '\n'])) {
        let _ = write!(head, "authorization: {value}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

impl Connection {
    /// Connect to `host_port` (the Runtime API), with Nagle's algorithm off.
    pub async fn open(host_port: &str) -> io::Result<Connection> {
        Connection::open_to(host_port, "the Runtime API").await
    }

    /// Connect to `host_port`, `peer` in errors.
    pub async fn open_to(host_port: &str, peer: &'static str) -> io::Result<Connection> {
        let stream = TcpStream::connect(host_port).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not connect to {peer} at {host_port}: {e}"),
            )
        })?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream: Box::new(stream),
            buf: BytesMut::with_capacity(8 * 1024),
            peer,
        })
    }

    /// Connect to `host_port` over TLS, checking the certificate names `server_name` under
    /// `config`; `peer` in errors.
    pub async fn open_tls(
        host_port: &str,
        server_name: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
        peer: &'static str,
    ) -> io::Result<Connection> {
        let tcp = Connection::open_to(host_port, peer).await?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp.stream)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS with {peer} failed: {e}")))?;
        Ok(Connection {
            stream: Box::new(stream),
            buf: tcp.buf,
            peer,
        })
    }

    /// Write `head`, `body` and `after` (another request, or nothing): one write unless the
    /// body is large.
    pub async fn write(&mut self, head: &[u8], body: &[u8], after: &[u8]) -> io::Result<()> {
        if body.len() <= INLINE_BODY {
            let mut all = Vec::with_capacity(head.len() + body.len() + after.len());
            all.extend_from_slice(head);
            all.extend_from_slice(body);
            all.extend_from_slice(after);
            self.stream.write_all(&all).await
        } else {
            self.stream.write_all(head).await?;
            self.stream.write_all(body).await?;
            self.stream.write_all(after).await
        }
    }

    /// Read more bytes into the buffer; end of stream is an error (an answer is awaited).
    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8 * 1024);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} closed the connection", self.peer),
            ));
        }
        Ok(())
    }

    /// Read one answer: its head (parsed by `httparse`), then its body by `Content-Length`,
    /// chunked, or to the end of the stream.
    pub async fn read_answer(&mut self) -> io::Result<Read> {
        let (status, headers) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut slots);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or(0);
                    let headers: Vec<Header> = response
                        .headers
                        .iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value);
                            if let std::borrow::Cow::Owned(_) = value {
                                // The bridge carries text; Lambda's headers are text too.
                                tracing::warn!(
                                    "header {} is not UTF-8; passed on with U+FFFD in place of its invalid bytes",
                                    h.name
                                );
                            }
                            (h.name.to_ascii_lowercase(), value.into_owned())
                        })
                        .collect();
                    self.buf.advance(len);
                    if (100..200).contains(&status) {
                        continue; // an interim answer: the real one follows
                    }
                    break (status, headers);
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => self.fill().await?,
                Ok(httparse::Status::Partial) => {
                    return Err(self.invalid("a response head too large"))
                }
                Err(e) => return Err(self.invalid(&format!("an unreadable response ({e})"))),
            }
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.trim())
        };
        let closes = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let chunked = header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
        let (body, closes) = if chunked {
            (self.read_chunked().await?, closes)
        } else if let Some(length) = header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| self.invalid("an unreadable Content-Length"))?;
            (self.read_exact(length).await?, closes)
        } else if status == 204 || status == 304 {
            (Bytes::new(), closes)
        } else {
            // No length: the body ends with the connection.
            (self.read_to_end().await?, true)
        };
        Ok(Read {
            answer: Answer {
                status,
                headers,
                body,
            },
            closes,
        })
    }

    async fn read_exact(&mut self, length: usize) -> io::Result<Bytes> {
        if length > MAX_BODY {
            return Err(self.invalid(&format!("a {length}-byte body")));
        }
        if self.buf.len() < length {
            self.buf.reserve(length - self.buf.len());
        }
        while self.buf.len() < length {
            self.fill().await?;
        }
        Ok(self.buf.split_to(length).freeze())
    }

    async fn read_chunked(&mut self) -> io::Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| self.invalid("an unreadable chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            if size > MAX_BODY - body.len() {
                return Err(self.invalid("a chunked body too large"));
            }
            body.extend_from_slice(&self.read_exact(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err(self.invalid("a chunk not followed by CRLF"));
            }
        }
    }

    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(end + 2);
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(self.invalid("a chunk line too long"));
            }
            self.fill().await?;
        }
    }

    fn invalid(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} sent {what}", self.peer),
        )
    }

    async fn read_to_end(&mut self) -> io::Result<Bytes> {
        loop {
            if self.buf.len() > MAX_BODY {
                return Err(self.invalid("a body too large"));
            }
            match self.fill().await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(self.buf.split().freeze())
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connection whose server writes `answer`, then closes.
    async fn answered(answer: &'static [u8]) -> Connection {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(answer).await.unwrap();
        });
        Connection::open(&addr).await.unwrap()
    }

    #[tokio::test]
    async fn an_interim_answer_is_skipped_and_a_body_without_length_ends_with_the_stream() {
        let mut connection =
            answered(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nall of it")
                .await;
        let read = connection.read_answer().await.unwrap();
        assert_eq!(read.answer.status, 200);
        assert_eq!(read.answer.headers, [("x-a".to_string(), "1".to_string())]);
        assert_eq!(&read.answer.body[..], b"all of it");
        assert!(read.closes, "a body read to its end closes the connection");
    }

    #[tokio::test]
    async fn answers_one_after_another_are_read_apart() {
        let mut connection = answered(
            b"HTTP/1.1 204 No Content\r\n\r\n\
              HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok\
              HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        )
        .await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let read = connection.read_answer().await.unwrap();
            statuses.push((read.answer.status, read.answer.body, read.closes));
        }
        assert_eq!(
            statuses,
            [
                (204, Bytes::new(), false),
                (202, Bytes::from("ok"), false),
                (200, Bytes::from("hi"), true)
            ]
        );
    }

    #[tokio::test]
    async fn an_answer_cut_short_or_garbled_is_an_error() {
        let short = answered(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;
        let garbled = answered(b"SMTP ready\r\n\r\n").await;
        for (mut connection, kind) in [
            (short, io::ErrorKind::UnexpectedEof),
            (garbled, io::ErrorKind::InvalidData),
        ] {
            match connection.read_answer().await {
                Ok(_) => panic!("read as an answer"),
                Err(e) => assert_eq!(e.kind(), kind, "{e}"),
            }
        }
    }

    #[test]
    fn headers_that_would_break_the_request_are_left_out() {
        let headers = [
            ("content-type".to_string(), "text/plain".to_string()),
            ("connection".to_string(), "close".to_string()),
            ("content-length".to_string(), "1".to_string()),
            ("bad name".to_string(), "x".to_string()),
            ("x-split".to_string(), "a\r\nx-injected: 1".to_string()),
        ];
        let head = request_head("POST", "/p", "h:1", &headers, Some(&Bytes::from("ok")));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /p HTTP/1.1\r\nhost: h:1\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n"
        );
    }
}
