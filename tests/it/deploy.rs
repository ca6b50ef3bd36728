//! `live deploy` against moto's server: the stage's resources read back with boto3 (an
//! independent client) are exactly the expected ones, the deployed code is the zip `live
//! package` writes, a second run changes nothing, an edited timeout changes only that, and
//! failures a user can fix are named with their exit codes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tests::aws::{test_credentials, Moto};
use tests::{bin, python};

/// A copy of examples/hello's live.toml in a fresh folder, with `extra` appended.
fn hello_project(extra: &str) -> PathBuf {
    tests::live::hello_project("deploy", extra)
}

fn live(moto: &Moto, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("live"));
    cmd.args(args).arg("--stub").arg(bin("bootstrap"));
    test_credentials(&mut cmd);
    moto.endpoint(&mut cmd);
    cmd.output().expect("live runs")
}

fn deploy(moto: &Moto, dir: &Path) -> String {
    let out = live(
        moto,
        &["deploy", "-c", dir.to_str().unwrap(), "--stage", "ci"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "live deploy failed:\n{stderr}");
    stderr
}

fn readback(moto: &Moto) -> Value {
    serde_json::from_str(&moto.script("deploy_readback.py", &["hello", "ci"])).expect("JSON")
}

/// The lines `live deploy` said about resources: `  KIND NAME: STATUS`.
fn outcomes(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            l.starts_with("  ")
                && (l.ends_with(": created")
                    || l.ends_with(": unchanged")
                    || l.contains(": updated: "))
        })
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn deploy_creates_exactly_the_stage_then_changes_nothing_then_only_the_timeout() {
    let moto = Moto::start();
    let dir = hello_project("");
    let first = deploy(&moto, &dir);
    let account = "123456789012";
    let bucket = format!("live-hello-ci-{account}-us-east-1");
    assert_eq!(
        outcomes(&first),
        [
            format!("bucket {bucket}: created"),
            "role hello-ci-hello-us-east-1: created".into(),
            "function hello-ci-hello: created".into(),
            "role hello-ci-http-us-east-1: created".into(),
            "function hello-ci-http: created".into(),
        ],
        "{first}"
    );
    let stage = readback(&moto);

    // The code is the package `live package` writes, byte for byte.
    let zip = dir.join("stub.zip");
    let out = live(&moto, &["package", "--out", zip.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lambda's CodeSha256 of it, computed by Python's hashlib (not our code).
    let sha = Command::new(python())
        .args([
            "-c",
            "import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], 'rb').read()).digest()).decode())",
        ])
        .arg(&zip)
        .output()
        .expect("python runs");
    let sha = String::from_utf8_lossy(&sha.stdout).trim().to_owned();

    let functions = stage["functions"].as_object().unwrap();
    assert_eq!(
        functions.keys().collect::<Vec<_>>(),
        ["hello-ci-hello", "hello-ci-http"]
    );
    for (name, short) in [("hello-ci-hello", "hello"), ("hello-ci-http", "http")] {
        let f = &functions[name];
        assert_eq!(f["Runtime"], "provided.al2023", "{f}");
        assert_eq!(f["Handler"], "bootstrap");
        assert_eq!(f["Timeout"], 30);
        assert_eq!(f["MemorySize"], 128);
        assert_eq!(
            f["CodeSha256"],
            sha.as_str(),
            "the deployed code is the local package"
        );
        assert_eq!(
            f["Role"],
            format!("arn:aws:iam::{account}:role/live/{name}-us-east-1")
        );
        let env = &f["Environment"];
        let url = env["LIVE_BRIDGE_URL"].as_str().unwrap();
        assert!(
            url.starts_with("wss://")
                && url.contains("-ats.iot.us-east-1.amazonaws.com")
                && url.ends_with("/mqtt"),
            "{url}"
        );
        assert_eq!(env["LIVE_APP"], "hello");
        assert_eq!(env["LIVE_STAGE"], "ci");
        assert_eq!(env["LIVE_FUNCTION"], short);
        assert_eq!(env["LIVE_BUCKET"], bucket.as_str());
        assert_eq!(env.as_object().unwrap().len(), 5, "{env}");
        assert_eq!(f["Tags"]["live:app"], "hello");
        assert_eq!(f["Tags"]["live:stage"], "ci");
        assert_eq!(f["Tags"]["live:function"], short);
    }
    // Only `http` asks for a Function URL: public, with both permissions a public URL needs.
    assert_eq!(functions["hello-ci-hello"]["Url"], Value::Null);
    assert_eq!(functions["hello-ci-http"]["Url"]["AuthType"], "NONE");
    assert_eq!(
        functions["hello-ci-http"]["Permissions"],
        // moto keeps no condition for FunctionUrlAuthType / InvokedViaFunctionUrl (the
        // runbook checks them on a real account).
        serde_json::json!([
            {"Action": "lambda:InvokeFunction", "Principal": "*", "Condition": null},
            {"Action": "lambda:InvokeFunctionUrl", "Principal": "*", "Condition": null},
        ])
    );

    // Roles: trusted by Lambda only; one inline policy whose every statement names a
    // resource of the stage; nothing attached.
    let roles = stage["roles"].as_object().unwrap();
    assert_eq!(roles.len(), 2, "{roles:?}");
    for (name, role) in roles {
        assert_eq!(role["Path"], "/live/");
        let trust = &role["Trust"]["Statement"];
        assert_eq!(trust.as_array().unwrap().len(), 1);
        assert_eq!(trust[0]["Principal"]["Service"], "lambda.amazonaws.com");
        assert_eq!(trust[0]["Action"], "sts:AssumeRole");
        assert_eq!(role["Attached"], serde_json::json!([]));
        let inline = role["Inline"].as_object().unwrap();
        assert_eq!(inline.keys().collect::<Vec<_>>(), ["live-stage"], "{name}");
        let function = name.trim_end_matches("-us-east-1");
        for statement in inline["live-stage"]["Statement"].as_array().unwrap() {
            let resource = statement["Resource"].as_str().expect("one resource each");
            let scoped = resource
                .starts_with(&format!("arn:aws:iot:us-east-1:{account}:client/hello:ci:"))
                || resource == format!("arn:aws:iot:us-east-1:{account}:topic/live/hello/ci/*")
                || resource
                    == format!("arn:aws:iot:us-east-1:{account}:topicfilter/live/hello/ci/*")
                || resource == format!("arn:aws:s3:::{bucket}/live/hello/ci/*")
                || resource.starts_with(&format!(
                    "arn:aws:logs:us-east-1:{account}:log-group:/aws/lambda/{function}"
                ));
            assert!(scoped, "{name}: {statement}");
        }
    }

    // The bucket: private, every payload expiring after a day.
    let b = &stage["buckets"][&bucket];
    let rule = &b["Rules"][0];
    assert_eq!(rule["Status"], "Enabled", "{b}");
    assert_eq!(rule["Expiration"]["Days"], 1);
    assert_eq!(rule["Filter"]["Prefix"], "live/");
    assert_eq!(b["PublicAccessBlock"]["BlockPublicPolicy"], true);

    // moto answers DescribeEndpoint with a new random host on every call, where IoT Core's
    // is the account's own for good: pin the first one, as `[cloud] endpoint` lets a user.
    let url = functions["hello-ci-hello"]["Environment"]["LIVE_BRIDGE_URL"]
        .as_str()
        .unwrap()
        .to_owned();
    let pinned = hello_project(&format!("\n[cloud]\nendpoint = \"{url}\"\n"));
    let second = deploy(&moto, &pinned);
    assert!(
        outcomes(&second).iter().all(|l| l.ends_with(": unchanged"))
            && outcomes(&second).len() == 5,
        "{second}"
    );
    assert_eq!(readback(&moto), stage, "a second deploy changed something");

    // An edited timeout changes only the timeout, of only that function.
    let edited = hello_project(&format!("\n[cloud]\nendpoint = \"{url}\"\n"));
    let toml = std::fs::read_to_string(edited.join("live.toml")).unwrap();
    std::fs::write(
        edited.join("live.toml"),
        toml.replace("[functions.hello]\n", "[functions.hello]\ntimeout = 45\n"),
    )
    .unwrap();
    let third = deploy(&moto, &edited);
    let said = outcomes(&third);
    assert!(
        said.contains(&"function hello-ci-hello: updated: timeout 30 s -> 45 s".to_owned())
            && said.iter().filter(|l| !l.ends_with(": unchanged")).count() == 1,
        "{third}"
    );
    let after = readback(&moto);
    let mut expected = stage.clone();
    let (a, e) = (
        &after["functions"]["hello-ci-hello"],
        &mut expected["functions"]["hello-ci-hello"],
    );
    e["Timeout"] = 45.into();
    e["RevisionId"] = a["RevisionId"].clone();
    e["LastModified"] = a["LastModified"].clone();
    assert_eq!(after, expected);
}

#[test]
fn deploy_names_missing_credentials_with_their_exit_code() {
    let moto = Moto::start();
    let dir = hello_project("");
    let mut cmd = Command::new(bin("live"));
    cmd.args(["deploy", "-c"])
        .arg(&dir)
        .arg("--stub")
        .arg(bin("bootstrap"));
    test_credentials(&mut cmd);
    moto.endpoint(&mut cmd);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
    let out = cmd.output().expect("live runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("error: no AWS credentials"), "{stderr}");
    assert!(readback(&moto)["functions"].as_object().unwrap().is_empty());
}

#[tokio::test]
async fn the_emulator_runs_the_stage_as_the_lambda_api_reports_it_and_live_dev_answers() {
    let moto = Moto::start();
    let deployed = format!(
        "{}timeout = 45\nmemory = 512\nurl = true\nenv = {{ DEPLOYED_ONLY = \"yes\" }}\n",
        tests::live::raw_function("echo")
    );
    let dir = tests::live::project("as-deployed", &deployed);
    deploy(&moto, &dir);
    // live.toml changes after the deploy: what runs must be what Lambda holds.
    let local = tests::live::project("as-deployed", &tests::live::raw_function("echo"));
    std::fs::copy(local.join("live.toml"), dir.join("live.toml")).unwrap();

    // A stub that is not the deployed code is refused.
    let mut cmd = Command::new(bin("live"));
    cmd.args(["cloud", "--iot", "--deployed", "--stage", "ci", "--ca-file"])
        .arg(tests::aws::ca_path("wrong-stub"))
        .arg("-c")
        .arg(&dir)
        .arg("--stub")
        .arg(bin("live"));
    test_credentials(&mut cmd);
    moto.endpoint(&mut cmd);
    let out = cmd.output().expect("live runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("function fixture-ci-echo's code (CodeSha256"),
        "{stderr}"
    );

    let ca = tests::aws::ca_path("as-deployed");
    let stub = bin("bootstrap");
    let cloud = tests::live::live_cloud_with(
        &dir,
        &[
            "--iot",
            "--ca-file",
            ca.to_str().unwrap(),
            "--deployed",
            "--stage",
            "ci",
            "--stub",
            stub.to_str().unwrap(),
        ],
        |cmd| {
            test_credentials(cmd);
            moto.endpoint(cmd);
        },
    );
    let port = cloud.iot_broker_port();
    let _dev = tests::live::live_dev_with(&dir, &["--aws", "--stage", "ci"], |cmd| {
        test_credentials(cmd);
        moto.endpoint(cmd)
            .env("LIVE_IOT_CONNECT_TO", format!("127.0.0.1:{port}"))
            .env("LIVE_CA_FILE", &ca);
    });

    // The Invoke API: the handler sees the deployed environment and memory, under the
    // deployed name.
    let http = tests::http::Http::default();
    let reply = http
        .invoke(
            &cloud.front_door,
            "fixture-ci-echo",
            &[],
            r#"{"mode":"env"}"#,
        )
        .await;
    reply.assert_no_function_error();
    let env = &reply.json()["env"];
    assert_eq!(env["DEPLOYED_ONLY"], "yes", "{env}");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "512");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "fixture-ci-echo");
    // The deployed timeout (45 s, not live.toml's 30 s now) sets the deadline.
    let reply = http
        .invoke(&cloud.front_door, "fixture-ci-echo", &[], r#"{"n":1}"#)
        .await;
    reply.assert_no_function_error();
    let deadline: u64 = reply.json()["headers"]["lambda-runtime-deadline-ms"]
        .as_str()
        .expect("a deadline")
        .parse()
        .unwrap();
    let left = deadline.saturating_sub(tests::epoch_us() / 1000);
    assert!((40_000..=45_500).contains(&left), "{left} ms left");
    // The Function URL, through the same chain.
    let url = format!("{}/fixture-ci-echo/?name=Ada", cloud.front_door);
    let reply = http.send("GET", &url, &[], "").await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        String::from_utf8_lossy(&reply.body).contains("lambda-runtime-deadline-ms"),
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[test]
fn an_environment_lambda_would_refuse_is_named_before_anything_is_made() {
    let moto = Moto::start();
    let dir = hello_project("");
    let toml = std::fs::read_to_string(dir.join("live.toml")).unwrap();
    std::fs::write(
        dir.join("live.toml"),
        toml.replace(
            "[functions.hello]\n",
            "[functions.hello]\nenv = { AWS_REGION = \"eu-west-1\" }\n",
        ),
    )
    .unwrap();
    let out = live(
        &moto,
        &["deploy", "-c", dir.to_str().unwrap(), "--stage", "ci"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("function hello: Lambda sets AWS_REGION itself"),
        "{stderr}"
    );
    let stage = readback(&moto);
    assert_eq!(stage["functions"], serde_json::json!({}), "{stage}");
    assert_eq!(stage["buckets"], serde_json::json!({}), "{stage}");
}
