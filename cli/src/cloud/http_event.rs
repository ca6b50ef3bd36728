//! A Function URL's translation: an HTTP request becomes an API Gateway v2 (payload 2.0)
//! event, and the handler's reply becomes the HTTP response.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{json, Map, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The API Gateway v2 event for a request to `path` (the part after `/{function}`).
pub fn event(
    method: &Method,
    uri: &Uri,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
    host: &str,
) -> Value {
    let mut header_map = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).to_string();
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| Value::from(c.trim())));
            continue;
        }
        let entry = header_map
            .entry(name.as_str().to_string())
            .or_insert_with(|| Value::from(""));
        *entry = match entry.as_str() {
            Some("") => Value::from(value),
            Some(prev) => Value::from(format!("{prev},{value}")),
            None => Value::from(value),
        };
    }
    let raw_query = uri.query().unwrap_or("");
    let mut query = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (query_component(k), query_component(v));
        let entry = query.entry(k).or_insert_with(|| Value::from(""));
        *entry = match entry.as_str() {
            Some("") => Value::from(v),
            Some(prev) => Value::from(format!("{prev},{v}")),
            None => Value::from(v),
        };
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (B64.encode(body), true),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": {
            "accountId": crate::cloud::emulator::ACCOUNT,
            "apiId": "live",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": now,
        },
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::from(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::from(query);
    }
    if !body.is_empty() {
        event["body"] = Value::from(body);
    }
    event
}

/// A query string's key or value, percent-decoded, with `+` as a space (as forms encode
/// one; a literal `+` arrives as `%2B`).
fn query_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The HTTP response for a handler's reply, as a Function URL builds it: an object with
/// `statusCode` is a full response; anything else is a 200 JSON body.
pub fn response(reply: &[u8]) -> Response<Bytes> {
    let parsed: Option<Value> = serde_json::from_slice(reply).ok();
    let Some(Value::Object(obj)) = parsed.filter(|v| v.get("statusCode").is_some()) else {
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Bytes::copy_from_slice(reply))
            .expect("static parts");
    };
    let status = match status_code(&obj["statusCode"]) {
        Ok(status) => status,
        Err(message) => return invalid_response(&message),
    };
    let mut builder = Response::builder().status(status);
    if let Some(Value::Object(headers)) = obj.get("headers") {
        for (name, value) in headers {
            if let Some(v) = value.as_str() {
                builder = builder.header(name.as_str(), v);
            } else {
                builder = builder.header(name.as_str(), value.to_string());
            }
        }
    }
    if let Some(Value::Object(headers)) = obj.get("multiValueHeaders") {
        for (name, values) in headers {
            for v in values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                builder = builder.header(name.as_str(), v);
            }
        }
    }
    for cookie in obj
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        builder = builder.header(http::header::SET_COOKIE, cookie);
    }
    let body = match obj.get("body") {
        Some(Value::String(s)) if obj.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            B64.decode(s).map(Bytes::from).unwrap_or_default()
        }
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(Value::Null) | None => Bytes::new(),
        Some(other) => Bytes::from(other.to_string()),
    };
    builder
        .body(body)
        .unwrap_or_else(|e| invalid_response(&format!("its headers cannot be sent: {e}")))
}

/// The HTTP status a reply's `statusCode` names (a number, or a string of digits, as API
/// Gateway takes it), or why it names none.
fn status_code(value: &Value) -> Result<StatusCode, String> {
    let number = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
    match number {
        Some(n @ 100..=599) => {
            StatusCode::from_u16(n as u16).map_err(|e| format!("statusCode {n}: {e}"))
        }
        _ => Err(format!(
            "statusCode {value} is not an HTTP status (a number from 100 to 599)"
        )),
    }
}

/// What a Function URL answers for a reply it cannot turn into an HTTP response: a 502, with
/// the cause named as the error JSON of a function error (`Live.InvalidResponse`).
fn invalid_response(cause: &str) -> Response<Bytes> {
    let (_, body) = bridge::runtime_api::failure(
        "Live.InvalidResponse",
        &format!(
            "the handler's HTTP response is invalid: {cause}; return an object with statusCode, \
             headers and body as API Gateway's payload format 2.0 describes"
        ),
    );
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .header("content-type", "application/json")
        .body(body)
        .expect("static parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_v2_events() {
        let uri: Uri = "/hello/a/b?x=1&y=a%20b&x=2".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "a=1; b=2".parse().unwrap());
        headers.insert("user-agent", "curl/8".parse().unwrap());
        let e = event(
            &Method::POST,
            &uri,
            "/a/b",
            &headers,
            b"hi",
            "r1",
            "127.0.0.1:9",
        );
        assert_eq!(e["rawPath"], "/a/b");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["queryStringParameters"]["x"], "1,2");
        assert_eq!(e["queryStringParameters"]["y"], "a b");
        assert_eq!(e["cookies"][1], "b=2");
        assert_eq!(e["body"], "hi");
        let bin = event(&Method::POST, &uri, "/", &headers, &[0xff, 0], "r1", "h");
        assert_eq!(bin["isBase64Encoded"], true);
    }

    #[test]
    fn replies_become_responses() {
        let r = response(
            br#"{"statusCode":201,"headers":{"x-a":"1"},"body":"made","cookies":["c=1"]}"#,
        );
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers()["set-cookie"], "c=1");
        assert_eq!(r.body(), "made");
        let r = response(br#"{"hello":"world"}"#);
        assert_eq!(
            (r.status(), r.body().as_ref()),
            (StatusCode::OK, &br#"{"hello":"world"}"#[..])
        );
        let r = response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#);
        assert_eq!(r.body(), "hi");
        let r = response(br#"{"statusCode":"404","body":"no"}"#);
        assert_eq!(r.status(), 404);
    }

    #[test]
    fn an_out_of_range_status_code_is_a_502_naming_it() {
        // 65736 is 200 modulo 65536: it must not pass for a success.
        for status in ["65736", "-1", "99", "600", "\"abc\"", "200.5", "null"] {
            let reply = format!(r#"{{"statusCode":{status},"body":"made"}}"#);
            let r = response(reply.as_bytes());
            assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "statusCode {status}");
            let error: Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(error["errorType"], "Live.InvalidResponse");
            let message = error["errorMessage"].as_str().unwrap();
            assert!(
                message.contains(&format!("statusCode {status}")),
                "{message}"
            );
        }
    }

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(query_component("a+b%2Bc%20d"), "a b+c d");
        assert_eq!(query_component("%zz%"), "%zz%");
        assert_eq!(query_component("%C3%BC"), "\u{fc}");
        assert_eq!(query_component("%FF"), "\u{fffd}");
    }
}
