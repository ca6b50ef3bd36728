//! The local Runtime API server as runtime clients see it: `/next` held until there is work,
//! results matched by request id, RIE's status codes for the edge cases, lenient error bodies,
//! `/init/error` served to the pending invocation, and the no-op Extensions API.

use bridge::runtime_api::server::{FunctionInfo, Outcome, RuntimeApi, RuntimeInvocation};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

struct Runtime {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Runtime {
    fn new(api: &RuntimeApi) -> Runtime {
        Runtime {
            base: format!("http://{}", api.local_addr()),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (u16, http::HeaderMap, Bytes) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = tokio::time::timeout(
            WAIT,
            self.client
                .request(req.body(Full::new(body.into())).unwrap()),
        )
        .await
        .expect("answered")
        .unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status.as_u16(),
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }
}

async fn api() -> RuntimeApi {
    RuntimeApi::bind("127.0.0.1:0".parse().unwrap(), FunctionInfo::default())
        .await
        .unwrap()
}

fn invocation(id: &str, body: &'static [u8]) -> RuntimeInvocation {
    RuntimeInvocation {
        request_id: id.into(),
        headers: vec![
            ("lambda-runtime-aws-request-id".into(), id.into()),
            ("lambda-runtime-deadline-ms".into(), "1700000000000".into()),
            (
                "lambda-runtime-client-context".into(),
                r#"{"k":"ü"}"#.into(),
            ),
        ],
        body: Bytes::from_static(body),
    }
}

#[tokio::test]
async fn next_waits_for_work_and_a_response_comes_back_unchanged() {
    let api = api().await;
    let rt = Runtime::new(&api);
    let next = tokio::spawn(async move {
        let got = rt
            .call("GET", "/2018-06-01/runtime/invocation/next", &[], "")
            .await;
        (rt, got)
    });
    let invoke = api.invoke(invocation("r1", b"{\"n\":9007199254740993}"));
    let (outcome, ()) = tokio::join!(invoke, async {
        let (rt, (status, headers, body)) = next.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(headers["lambda-runtime-aws-request-id"], "r1");
        assert_eq!(
            headers["lambda-runtime-client-context"].as_bytes(),
            r#"{"k":"ü"}"#.as_bytes()
        );
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body.as_ref(), b"{\"n\":9007199254740993}");
        let posted = rt
            .call(
                "POST",
                "/2018-06-01/runtime/invocation/r1/response",
                &[("content-type", "text/plain")],
                "résumé",
            )
            .await;
        assert_eq!(posted.0, 202);
        // A second response for the same id, and a response for an unknown id.
        let again = rt
            .call(
                "POST",
                "/2018-06-01/runtime/invocation/r1/response",
                &[],
                "x",
            )
            .await;
        assert_eq!(again.0, 400);
        assert!(String::from_utf8_lossy(&again.2).contains("InvalidRequestID"));
        let wrong = rt
            .call(
                "POST",
                "/2018-06-01/runtime/invocation/nope/response",
                &[],
                "x",
            )
            .await;
        assert_eq!(wrong.0, 400);
    });
    match outcome.unwrap() {
        Outcome::Response { headers, body } => {
            assert_eq!(body.as_ref(), "résumé".as_bytes());
            assert!(headers
                .iter()
                .any(|(n, v)| n == "content-type" && v == "text/plain"));
            assert!(!headers
                .iter()
                .any(|(n, _)| n == "host" || n == "content-length"));
        }
        other => panic!("{other:?}"),
    }
}

async fn serve_one(
    api: &RuntimeApi,
    rt: &Runtime,
    id: &'static str,
    path_suffix: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (Outcome, u16) {
    let (outcome, status) = tokio::join!(api.invoke(invocation(id, b"{}")), async {
        let (status, _, _) = rt
            .call("GET", "/2018-06-01/runtime/invocation/next", &[], "")
            .await;
        assert_eq!(status, 200);
        rt.call(
            "POST",
            &format!("/2018-06-01/runtime/invocation/{id}/{path_suffix}"),
            headers,
            body,
        )
        .await
        .0
    });
    (outcome.unwrap(), status)
}

#[tokio::test]
async fn error_bodies_of_every_official_client_are_accepted_unchanged() {
    let api = api().await;
    let rt = Runtime::new(&api);
    let shapes: [(&str, &[(&str, &str)]); 4] = [
        // Rust lambda_runtime: lowercase header value, camelCase body, no stack trace.
        (
            r#"{"errorType":"alloc::boxed::Box<dyn core::error::Error>","errorMessage":"boom"}"#,
            &[("lambda-runtime-function-error-type", "unhandled")],
        ),
        // Node: `trace` instead of `stackTrace`, no error-type header.
        (
            r#"{"errorType":"Error","errorMessage":"boom","trace":["at x"]}"#,
            &[("content-type", "application/json")],
        ),
        // Python: requestId and stackTrace.
        (
            r#"{"errorMessage":"boom","errorType":"ValueError","requestId":"r","stackTrace":["  File x"]}"#,
            &[("Lambda-Runtime-Function-Error-Type", "ValueError")],
        ),
        // Not JSON at all.
        ("plain text failure", &[]),
    ];
    for (i, (body, headers)) in shapes.iter().enumerate() {
        let id: &'static str = Box::leak(format!("e{i}").into_boxed_str());
        let (outcome, status) =
            serve_one(&api, &rt, id, "error", headers, body.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "shape {i}");
        match outcome {
            Outcome::Error {
                body: got,
                error_type,
                ..
            } => {
                assert_eq!(got.as_ref(), body.as_bytes());
                let header = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("lambda-runtime-function-error-type"))
                    .map(|(_, v)| v.to_string());
                assert_eq!(error_type, header);
            }
            other => panic!("shape {i}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_error_or_init_error_without_a_payload_is_built_from_its_header() {
    let api = api().await;
    let rt = Runtime::new(&api);
    let named = [("lambda-runtime-function-error-type", "Runtime.ExitError")];
    for (id, headers, expected) in [
        ("n1", &named[..], "Runtime.ExitError"),
        ("n2", &[][..], "Unhandled"),
    ] {
        let (outcome, status) = serve_one(&api, &rt, id, "error", headers, Vec::new()).await;
        assert_eq!(status, 202);
        let Outcome::Error { body, .. } = outcome else {
            panic!("{id}: {outcome:?}");
        };
        let error: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        assert_eq!(error["errorType"], expected, "{id}");
    }
    // The same for an init error.
    let (outcome, _) = tokio::join!(api.invoke(invocation("n3", b"{}")), async {
        rt.call("GET", "/2018-06-01/runtime/invocation/next", &[], "")
            .await;
        let posted = rt
            .call("POST", "/2018-06-01/runtime/init/error", &named, "")
            .await;
        assert_eq!(posted.0, 202);
    });
    let (error_type, body) = outcome.unwrap().failure().unwrap();
    assert_eq!(error_type, "Runtime.ExitError");
    let error: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(error["errorType"], "Runtime.ExitError");
}

#[tokio::test]
async fn a_response_above_the_limit_gets_413_and_the_caller_a_size_error() {
    let api = api().await;
    let rt = Runtime::new(&api);
    let (outcome, status) =
        serve_one(&api, &rt, "big", "response", &[], vec![b'x'; 6_291_557]).await;
    assert_eq!(status, 413);
    let (error_type, body) = outcome.failure().expect("a failure");
    assert_eq!(error_type, "Function.ResponseSizeTooLarge");
    assert!(String::from_utf8_lossy(&body).contains("6291556"));
    // Exactly at the limit is fine.
    let (outcome, status) =
        serve_one(&api, &rt, "edge", "response", &[], vec![b'x'; 6_291_556]).await;
    assert_eq!(status, 202);
    assert!(matches!(outcome, Outcome::Response { body, .. } if body.len() == 6_291_556));
    // Well above it: the body is read to its end, so the runtime reads its 413 rather than a
    // reset connection, and the caller's error says how large the response was.
    let (outcome, status) =
        serve_one(&api, &rt, "huge", "response", &[], vec![b'x'; 8 << 20]).await;
    assert_eq!(status, 413);
    let (_, body) = outcome.failure().expect("a failure");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("(8388608 bytes)"), "{body}");
}

#[tokio::test]
async fn an_init_error_is_served_to_the_pending_invocation_and_the_next() {
    let api = api().await;
    let rt = Runtime::new(&api);
    let (outcome, _) = tokio::join!(api.invoke(invocation("i1", b"{}")), async {
        rt.call("GET", "/2018-06-01/runtime/invocation/next", &[], "")
            .await;
        let posted = rt
            .call(
                "POST",
                "/2018-06-01/runtime/init/error",
                &[(
                    "Lambda-Runtime-Function-Error-Type",
                    "Runtime.ImportModuleError",
                )],
                r#"{"errorMessage":"no module"}"#,
            )
            .await;
        assert_eq!(posted.0, 202);
    });
    let failure = outcome.unwrap().failure().unwrap();
    assert_eq!(failure.0, "Runtime.ImportModuleError");
    let again = api.invoke(invocation("i2", b"{}")).await.unwrap();
    assert_eq!(again.failure().unwrap().0, "Runtime.ImportModuleError");
}

#[tokio::test]
async fn the_extensions_api_registers_and_holds_next() {
    let api = api().await;
    let rt = Runtime::new(&api);
    let (status, headers, body) = rt
        .call(
            "POST",
            "/2020-01-01/extension/register",
            &[("Lambda-Extension-Name", "x")],
            r#"{"events":[]}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!headers["lambda-extension-identifier"].is_empty());
    assert!(String::from_utf8_lossy(&body).contains("functionName"));
    let next = tokio::time::timeout(
        Duration::from_millis(300),
        rt.call("GET", "/2020-01-01/extension/event/next", &[], ""),
    )
    .await;
    assert!(next.is_err(), "no extension events are emitted locally");
}
