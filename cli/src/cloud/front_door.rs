//! The HTTP front door of the local cloud: the Lambda Invoke API
//! (`POST /2015-03-31/functions/{name}/invocations`, so `aws lambda invoke --endpoint-url`
//! and the AWS SDKs work) and Function-URL style endpoints (`/{function}/...`).

use super::emulator::{arn, Emulator, Reply, Request};
use super::events::{Events, Throttled};
use super::http_event;
use base64::Engine;
use bridge::runtime_api::http_server::{read_limited, BodyError};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The largest synchronous request payload Lambda accepts.
const MAX_SYNC_REQUEST: usize = 6_291_456;
/// The largest asynchronous (`Event`) request payload Lambda accepts.
const MAX_EVENT_REQUEST: usize = 1_048_576;

const INVOKE_PREFIX: &str = "/2015-03-31/functions/";

type Body = Full<Bytes>;

/// What the front door hands requests to.
struct Door {
    emulator: Arc<Emulator>,
    events: Events,
}

/// Serve the front door on `listener` until `shutdown` completes; `Event` invocations go to
/// `events`.
pub async fn serve(
    listener: TcpListener,
    emulator: Arc<Emulator>,
    events: Events,
    shutdown: impl Future<Output = ()>,
) {
    super::fair_server::serve(
        listener,
        Arc::new(Door { emulator, events }),
        |req, door| async move { route(req, &door).await },
        shutdown,
    )
    .await
}

async fn route(req: hyper::Request<Incoming>, door: &Door) -> Response<Body> {
    let emulator = &*door.emulator;
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix(INVOKE_PREFIX) {
        if let Some(name) = rest.strip_suffix("/invocations") {
            if req.method() == Method::POST {
                return invoke_api(req, door, name).await;
            }
        }
        return aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("unknown operation {path}"),
        );
    }
    let trimmed = path.trim_start_matches('/');
    let (function, rest) = match trimmed.split_once('/') {
        Some((f, rest)) => (f, format!("/{rest}")),
        None => (trimmed, "/".to_string()),
    };
    match emulator.pool(function) {
        Some(_) => function_url(req, emulator, function.to_string(), rest).await,
        None => {
            let known: Vec<_> = emulator.functions().map(|f| format!("/{f}/")).collect();
            plain(
                StatusCode::NOT_FOUND,
                format!(
                    "no function at {path}: the Function URLs here are {}\n",
                    known.join(", ")
                ),
            )
        }
    }
}

fn plain(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static parts")
}

/// An AWS-style error: the type in `x-amzn-ErrorType` and the body, as the SDKs parse it.
fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "Type": "User", "message": message, "__type": error_type });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", error_type)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static parts")
}

/// Read a request body of at most `limit` bytes (see [`read_limited`]).
async fn read_body(
    req: hyper::Request<Incoming>,
    limit: usize,
) -> Result<(http::request::Parts, Bytes), BodyError> {
    let (parts, body) = req.into_parts();
    Ok((parts, read_limited(body, limit).await?))
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn with_trace(mut builder: http::response::Builder, reply: &Reply) -> http::response::Builder {
    builder = builder
        .header("x-amzn-requestid", &reply.request_id)
        .header("x-live-request-id", &reply.request_id)
        .header("x-live-env-id", &reply.env_id)
        .header("x-live-stub-pid", reply.stub_pid.to_string());
    builder
}

/// The function a `FunctionName` path segment names, percent-decoded first (the SDKs encode
/// it): a name, `name:qualifier`, a full ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`,
/// optionally `:QUALIFIER`) or a partial one (`ACCOUNT:function:NAME[:QUALIFIER]`). The
/// emulator runs one version of each function, so any qualifier reaches it.
fn function_name(segment: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    let parts: Vec<&str> = decoded.split(':').collect();
    let name = match parts[..] {
        ["arn", _, "lambda", _, _, "function", name, ..] => name,
        [_, "function", name, ..] => name,
        [name, ..] => name,
        [] => "",
    };
    name.to_string()
}

async fn invoke_api(req: hyper::Request<Incoming>, door: &Door, name: &str) -> Response<Body> {
    let name = function_name(name);
    let Some(pool) = door.emulator.pool(&name) else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {}", arn(&name)),
        );
    };
    let invocation_type = req
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_string();
    let limit = if invocation_type == "Event" {
        MAX_EVENT_REQUEST
    } else {
        MAX_SYNC_REQUEST
    };
    let Ok((parts, body)) = read_body(req, limit).await else {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
        );
    };
    let client_context = match header(&parts, "x-amz-client-context").map(client_context) {
        None => None,
        Some(Some(context)) => Some(context),
        Some(None) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                "Client context must be a valid Base64-encoded JSON object.",
            )
        }
    };
    let request = Request {
        request_id: None,
        body,
        client_context,
        trace_id: header(&parts, "x-amzn-trace-id").map(str::to_string),
        // Not part of the Invoke API (mobile SDKs set it in the cloud): an emulator extension
        // so that tests and tools can exercise handlers that read it.
        cognito_identity: header(&parts, "x-live-cognito-identity").map(str::to_string),
    };
    match invocation_type.as_str() {
        // Answered at once, with the request id the invocation will run under, or throttled
        // as Lambda throttles (the SDKs retry a 429 after `Retry-After`).
        "Event" => match door.events.accept(&name, request) {
            Ok(request_id) => Response::builder()
                .status(StatusCode::ACCEPTED)
                .header("x-amzn-requestid", &request_id)
                .header("x-live-request-id", &request_id)
                .body(Full::new(Bytes::new()))
                .expect("static parts"),
            Err(Throttled) => {
                let mut throttled = aws_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                );
                throttled
                    .headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("1"));
                throttled
            }
        },
        "DryRun" => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .expect("static parts"),
        "RequestResponse" => {
            let reply = pool.invoke_to_the_end(request).await;
            let builder = with_trace(Response::builder(), &reply)
                .status(StatusCode::OK)
                .header("x-amz-executed-version", "$LATEST")
                .header("content-type", "application/json");
            match reply.result {
                Ok(body) => builder.body(Full::new(body)),
                Err((_, body)) => builder
                    .header("x-amz-function-error", "Unhandled")
                    .body(Full::new(body)),
            }
            .expect("static parts")
        }
        other => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("X-Amz-Invocation-Type {other:?} is not RequestResponse, Event or DryRun"),
        ),
    }
}

async fn function_url(
    req: hyper::Request<Incoming>,
    emulator: &Emulator,
    function: String,
    rest: String,
) -> Response<Body> {
    let pool = emulator.pool(&function).expect("checked by the caller");
    let Ok((parts, body)) = read_body(req, MAX_SYNC_REQUEST).await else {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body above 6 MB\n".into(),
        );
    };
    let host = header(&parts, "host").unwrap_or("127.0.0.1").to_string();
    let request_id = crate::ids::request_id();
    let event = http_event::event(
        &parts.method,
        &parts.uri,
        &rest,
        &parts.headers,
        &body,
        &request_id,
        &host,
    );
    let reply = pool
        .invoke_to_the_end(Request {
            // The event's `requestContext.requestId` is the id it runs under.
            request_id: Some(request_id.clone()),
            body: Bytes::from(event.to_string()),
            ..Request::default()
        })
        .await;
    let response = match &reply.result {
        Ok(body) => http_event::response(body),
        // A Function URL answers a function error with 502 and the error JSON.
        Err((_, body)) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .header("content-type", "application/json")
            .body(body.clone())
            .expect("static parts"),
    };
    let (mut parts, body) = response.into_parts();
    let traced = with_trace(Response::builder(), &reply)
        .body(())
        .expect("static parts");
    parts.headers.extend(traced.into_parts().0.headers);
    Response::from_parts(parts, Full::new(body))
}

/// The client context of `X-Amz-Client-Context` (base64 of a JSON object) as the runtime's
/// `Lambda-Runtime-Client-Context` header carries it, or `None` if it is not one. Its text
/// goes on as sent, except line breaks (pretty-printed JSON) and DEL, which a header cannot
/// carry: each becomes a space.
fn client_context(encoded: &str) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    if !value.is_object() {
        return None;
    }
    Some(text.replace(['\r', '\n', '\u{7f}'], " "))
}
