//! The whole chain on one machine: trigger -> stub -> bridge -> `live dev` -> local handler ->
//! back, through the real binaries.

use base64::Engine;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};
use tests::http::Http;
use tests::live::{listens_on, live_cloud, live_dev, proc_info, proc_state, project, raw_function};
use tests::{python, wait_until, Child};

/// The first command of the README's first code block, as a user copies it.
fn readme_command() -> String {
    let readme = std::fs::read_to_string(tests::workspace_root().join("README.md")).unwrap();
    let block = readme.split("```").nth(1).expect("a code block");
    let line = block.lines().nth(1).expect("a command line");
    line.split(" #").next().unwrap().trim().to_string()
}

#[tokio::test]
async fn the_readme_command_serves_a_curl_through_stub_broker_and_worker() {
    let command = readme_command();
    assert!(command.contains(" dev "), "README starts with {command:?}");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&command)
        .current_dir(tests::workspace_root());
    let dev = Child::spawn(cmd);
    // The first run builds the example's handlers (`cargo xtask test` builds them up front).
    let ready = dev.wait_for_line_within(Duration::from_secs(600), |l| {
        l.starts_with("live dev ready: ")
    });
    let base = ready
        .trim_start_matches("live dev ready: ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let url_line =
        dev.wait_for_line(|l| l.trim_start().starts_with("url") && l.ends_with("/http/"));
    let url = url_line.split_whitespace().last().unwrap().to_string();
    assert!(url.starts_with(&base));
    let broker_line = dev.wait_for_line(|l| l.trim_start().starts_with("broker"));
    let broker_port: u16 = broker_line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("broker port");

    let out = Command::new("curl")
        .args(["-si", &format!("{url}?name=Ada")])
        .output()
        .expect("curl runs");
    let response = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(response.contains("Hello, Ada!"), "{response}");
    let header = |name: &str| {
        response
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {response}"))
            .trim()
            .to_string()
    };
    let request_id = header("x-live-request-id");
    let stub: u32 = header("x-live-stub-pid").parse().unwrap();
    let line = dev.wait_for_line(|l| l.contains(&request_id) && l.contains("worker"));
    let worker: u32 = line
        .rsplit("worker ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let (stub_parent, stub_exe) = proc_info(stub);
    let (worker_parent, worker_exe) = proc_info(worker);
    assert_eq!(stub_exe, "bootstrap");
    assert_eq!(worker_exe, "http");
    // The broker is embedded in `live dev`: the stub's parent, the worker's parent, and the
    // process listening on the broker's port are one `live` process, distinct from both.
    let broker = stub_parent;
    assert_eq!(proc_info(broker).1, "live");
    assert_eq!(worker_parent, broker);
    assert!(
        listens_on(broker, broker_port),
        "pid {broker} does not hold the broker port {broker_port}"
    );
    let pids: HashSet<u32> = [stub, broker, worker].into();
    assert_eq!(
        pids.len(),
        3,
        "stub {stub}, broker {broker}, worker {worker}"
    );
}

#[tokio::test]
async fn the_invoke_api_answers_results_errors_events_and_unknown_functions() {
    let dir = project("invoke", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();

    let ok = http
        .invoke(&dev.front_door, "echo", &[], r#"{"hello":"world"}"#)
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-amz-function-error"), "");
    assert_eq!(ok.json()["function"], "echo");
    let line = dev.invocation(ok.header("x-live-request-id"));
    assert_eq!(line["outcome"], "ok");

    let failed = http
        .invoke(&dev.front_door, "echo", &[], r#"{"mode":"fail"}"#)
        .await;
    assert_eq!(failed.status, 200);
    assert_eq!(failed.header("x-amz-function-error"), "Unhandled");
    assert_eq!(failed.json()["errorType"], "Fixture.Failed");
    assert_eq!(failed.json()["errorMessage"], "failed on purpose");
    assert_eq!(
        dev.invocation(failed.header("x-live-request-id"))["error_type"],
        "Fixture.Failed"
    );

    let marker = format!("event-{}", std::process::id());
    let event = http
        .invoke(
            &dev.front_door,
            "echo",
            &[("X-Amz-Invocation-Type", "Event")],
            format!(r#"{{"marker":"{marker}"}}"#),
        )
        .await;
    assert_eq!(event.status, 202);
    assert!(event.body.is_empty());
    // It runs in the background, under the request id its 202 gave, as in Lambda.
    let event_id = event.header("x-amzn-requestid");
    assert!(!event_id.is_empty(), "the 202 names the request id");
    assert_eq!(dev.invocation(event_id)["outcome"], "ok");

    let missing = http.invoke(&dev.front_door, "nope", &[], "{}").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("x-amzn-errortype"),
        "ResourceNotFoundException"
    );
    assert!(missing.json()["message"]
        .as_str()
        .unwrap()
        .contains("function:nope"));

    // A FunctionName as the SDKs send it, percent-encoded: qualified, a full ARN, a partial
    // ARN; each names echo.
    for name in [
        "echo:%24LATEST",
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho",
        "arn:aws:lambda:us-east-1:123456789012:function:echo:prod",
        "123456789012%3Afunction%3Aecho",
    ] {
        let reply = http.invoke(&dev.front_door, name, &[], "{}").await;
        assert_eq!(
            reply.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.assert_no_function_error();
    }
}

#[tokio::test]
async fn runtime_headers_and_payload_bytes_reach_the_handler_unchanged() {
    let dir = project("headers", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let context = r#"{"client":{"installation_id":"ü-1"},"custom":{"k":"v"},"env":{}}"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(context);
    let identity =
        r#"{"cognitoIdentityId":"us-east-1:abc","cognitoIdentityPoolId":"us-east-1:pool"}"#;
    let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let reply = http
        .invoke(
            &dev.front_door,
            "echo",
            &[
                ("X-Amz-Client-Context", &encoded),
                ("X-Amzn-Trace-Id", trace),
                ("X-Live-Cognito-Identity", identity),
            ],
            "{}",
        )
        .await;
    let seen = reply.json()["headers"].clone();
    let request_id = reply.header("x-live-request-id");
    assert_eq!(seen["lambda-runtime-aws-request-id"], request_id);
    assert_eq!(seen["lambda-runtime-client-context"], context);
    assert_eq!(seen["lambda-runtime-cognito-identity"], identity);
    assert_eq!(seen["lambda-runtime-trace-id"], trace);
    assert_eq!(
        seen["lambda-runtime-invoked-function-arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:echo"
    );
    let deadline: u64 = seen["lambda-runtime-deadline-ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        deadline > now && deadline <= now + 30_000,
        "deadline {deadline}, now {now}"
    );

    // A pretty-printed client context (a header cannot carry its line breaks) arrives on
    // one line; one that is not a JSON object is refused, as Lambda refuses it.
    let pretty = "{\n  \"custom\": {\"k\": \"v\"}\n}";
    let encoded = base64::engine::general_purpose::STANDARD.encode(pretty);
    let headers = [("X-Amz-Client-Context", encoded.as_str())];
    let reply = http.invoke(&dev.front_door, "echo", &headers, "{}").await;
    reply.assert_no_function_error();
    let seen = &reply.json()["headers"]["lambda-runtime-client-context"];
    assert_eq!(seen, "{   \"custom\": {\"k\": \"v\"} }");
    let not_json = base64::engine::general_purpose::STANDARD.encode("hello");
    let headers = [("X-Amz-Client-Context", not_json.as_str())];
    let refused = http.invoke(&dev.front_door, "echo", &headers, "{}").await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json()["__type"],
        "InvalidRequestContentException",
        "{:?}",
        refused.json()
    );

    // Bytes that JSON re-encoding would change: non-ASCII, integers beyond 2^53, spacing.
    let payload = r#"{"mode":"echo", "big": 9007199254740993, "huge": 123456789012345678901234567890, "text": "héllo — 日本 🚀", "f": 1.50}"#;
    let echoed = http.invoke(&dev.front_door, "echo", &[], payload).await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.body.as_ref(), payload.as_bytes());
}

#[tokio::test]
async fn a_five_megabyte_payload_goes_there_and_back_intact() {
    let dir = project("big", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let mut payload = String::from(r#"{"mode":"echo","data":""#);
    let mut i = 0u64;
    while payload.len() < 5 * 1024 * 1024 {
        payload.push_str(&format!("{i:x}é"));
        i += 1;
    }
    payload.push_str("\"}");
    let reply = Http::default()
        .invoke(&dev.front_door, "echo", &[], payload.clone())
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body[..200.min(reply.body.len())])
    );
    assert_eq!(reply.body.len(), payload.len());
    assert!(
        reply.body == payload.as_bytes(),
        "the payload changed on the way"
    );
}

#[tokio::test]
async fn with_no_developer_connected_the_stub_answers_within_the_window() {
    let dir = project("nodev", &raw_function("echo"));
    let cloud = live_cloud(&dir, &["--no-dev-window-ms", "1000"]);
    let start = Instant::now();
    let reply = Http::default()
        .invoke(&cloud.front_door, "echo", &[], "{}")
        .await;
    let took = start.elapsed();
    assert_eq!(reply.header("x-amz-function-error"), "Unhandled");
    let error = reply.json();
    assert_eq!(error["errorType"], "Live.NoDeveloperConnected");
    let message = error["errorMessage"].as_str().unwrap();
    for part in ["\"echo\"", "\"fixture\"", "\"test\"", "live dev"] {
        assert!(message.contains(part), "{message:?} lacks {part}");
    }
    // The window is 1 s; a stub cold start and the HTTP round trip come on top of it, but
    // nothing near the function's 30 s timeout.
    assert!(
        took >= Duration::from_millis(1000),
        "answered before the window: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test]
async fn a_hundred_concurrent_invocations_each_get_their_own_result_from_their_own_environment() {
    let dir = project("concurrent", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = http.clone();
        let base = dev.front_door.clone();
        tasks.push(tokio::spawn(async move {
            http.invoke(&base, "echo", &[], format!(r#"{{"n":{i}}}"#))
                .await
        }));
    }
    let mut stub_to_worker: HashMap<u32, HashSet<u64>> = HashMap::new();
    let mut worker_to_stub: HashMap<u64, HashSet<u32>> = HashMap::new();
    let mut ids = HashSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200);
        reply.assert_no_function_error();
        let body = reply.json();
        let request_id = reply.header("x-live-request-id").to_string();
        assert_eq!(
            body["headers"]["lambda-runtime-aws-request-id"],
            request_id.as_str(),
            "a result went to the wrong caller"
        );
        assert!(ids.insert(request_id));
        let stub: u32 = reply.header("x-live-stub-pid").parse().unwrap();
        let worker = body["pid"].as_u64().unwrap();
        stub_to_worker.entry(stub).or_default().insert(worker);
        worker_to_stub.entry(worker).or_default().insert(stub);
    }
    assert_eq!(ids.len(), 100);
    assert!(
        stub_to_worker.len() >= 32,
        "only {} stub processes served 100 concurrent invocations",
        stub_to_worker.len()
    );
    assert!(
        stub_to_worker.values().all(|w| w.len() == 1),
        "a stub reached several workers: {stub_to_worker:?}"
    );
    assert!(
        worker_to_stub.values().all(|s| s.len() == 1),
        "a worker served several stubs: {worker_to_stub:?}"
    );
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_end_its_invocation_or_its_environment() {
    use tokio::io::AsyncWriteExt;
    let dir = project("caller-gone", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let first = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    first.assert_no_function_error();
    let env = first.header("x-live-env-id").to_string();

    // A caller sends a slow invocation and hangs up once the handler has started. (Its
    // marker is written outside the project, whose changes would start a new worker.)
    let started = dir.with_extension("started.pid");
    let event = format!(r#"{{"sleep_ms":1000,"file":"{}"}}"#, started.display());
    let addr = dev.front_door.trim_start_matches("http://").to_string();
    let mut caller = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nhost: {addr}\r\n\
         content-length: {}\r\n\r\n{event}",
        event.len()
    );
    caller.write_all(request.as_bytes()).await.unwrap();
    wait_until(Duration::from_secs(30), "the handler never started", || {
        started.exists()
    })
    .await;
    drop(caller);

    // It runs to its end (its line is printed once its result is sent) ...
    let finished = "the abandoned invocation never finished";
    wait_until(Duration::from_secs(30), finished, || dev.runs().len() >= 2).await;
    // ... and its environment, stub and worker alive, goes back to the pool (its stub is
    // frozen once it is there) and serves the next one.
    let stub: u32 = first.header("x-live-stub-pid").parse().unwrap();
    wait_until(Duration::from_secs(30), "the stub was not frozen", || {
        proc_state(stub) == Some('T')
    })
    .await;
    let next = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    next.assert_no_function_error();
    assert_eq!(
        next.header("x-live-env-id"),
        env,
        "the environment was lost"
    );
    assert_eq!(
        next.json()["count"],
        3,
        "the same worker, with its module state"
    );
}

#[tokio::test]
async fn an_environment_whose_stub_died_while_idle_is_not_used_again() {
    let dir = project("idle-death", &raw_function("echo"));
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let first = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    first.assert_no_function_error();
    let stub = first.header("x-live-stub-pid").to_string();
    assert!(Command::new("kill")
        .args(["-9", &stub])
        .status()
        .unwrap()
        .success());
    // Dead (a zombie until reaped) before the next invocation comes.
    let pid: u32 = stub.parse().unwrap();
    wait_until(Duration::from_secs(10), "the stub did not die", || {
        matches!(proc_state(pid), Some('Z') | None)
    })
    .await;
    let next = http.invoke(&dev.front_door, "echo", &[], "{}").await;
    next.assert_no_function_error();
    assert_ne!(next.header("x-live-stub-pid"), stub, "a fresh environment");
    assert_ne!(next.header("x-live-env-id"), first.header("x-live-env-id"));
}

#[tokio::test]
async fn the_official_python_runtime_client_serves_results_and_raised_exceptions() {
    let python = python();
    let dir = project(
        "python",
        &format!(
            "[functions.py]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"handler.handler\"]\ndir = \"{{fixtures}}\"\n",
            python.display()
        ),
    );
    let dev = live_dev(&dir, &[]);
    let http = Http::default();
    let ok = http.invoke(&dev.front_door, "py", &[], r#"{"x":1}"#).await;
    ok.assert_no_function_error();
    assert_eq!(ok.json()["event"]["x"], 1);
    assert_eq!(ok.json()["request_id"], ok.header("x-live-request-id"));
    let failed = http
        .invoke(&dev.front_door, "py", &[], r#"{"fail":"boom"}"#)
        .await;
    assert_eq!(failed.header("x-amz-function-error"), "Unhandled");
    let error = failed.json();
    assert_eq!(error["errorType"], "FixtureError");
    assert_eq!(error["errorMessage"], "failed on purpose: boom");
    assert!(error["stackTrace"].is_array(), "{error}");
}
