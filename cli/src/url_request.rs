//! HTTP/1.1 requests to a whole URL, `http://` or `https://` (rustls, Mozilla's roots and
//! `LIVE_CA_FILE`): the presigned S3 URLs of large payloads, and Lambda's code location when
//! `live attach` saves a function's code. A non-2xx answer is an error quoting its body.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long one object request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The body at `url` (answered 2xx).
pub async fn fetch(url: &str) -> Result<Bytes, String> {
    request("GET", url, Bytes::new()).await
}

/// Put `body` at `url`.
pub async fn put(url: &str, body: Bytes) -> Result<(), String> {
    request("PUT", url, body).await.map(|_| ())
}

async fn request(method: &str, url: &str, body: Bytes) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
    let authority = uri.authority().ok_or("no host in the URL")?.clone();
    let https = uri.scheme_str() == Some("https");
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let what = format!("{method} {host}{}", uri.path());
    let exchange = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return send(tcp, request).await;
        }
        let config = bridge::tls::client_config(bridge::tls::ca_file_from_env().as_deref())
            .map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send(tls, request).await
    };
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("{what}: {e}"))?;
    match status {
        200..=299 => Ok(body),
        status => Err(format!(
            "{what}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        )),
    }
}

async fn send<S>(stream: S, request: http::Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
