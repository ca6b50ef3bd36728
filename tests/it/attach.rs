//! `live attach` / `live detach` / `live remove` against moto: functions another tool
//! deployed (a Python one and a `provided.al2023` one, created with boto3) get the stub in
//! front of them and are given back exactly as they were, also after an attach killed between
//! its steps; `live remove` leaves nothing of the stage and touches nothing else. And the
//! `live` layer's exec wrapper, run as Lambda runs one.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tests::aws::{test_credentials, Moto};
use tests::{bin, python, Child};

const BUCKET: &str = "live-hello-ci-123456789012-us-east-1";

/// examples/hello's live.toml, with IoT Core's endpoint pinned: moto's DescribeEndpoint
/// answers a new random host on every call, IoT Core the account's own.
fn project() -> PathBuf {
    tests::live::hello_project(
        "attach",
        "\n[cloud]\nendpoint = \"a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com\"\n",
    )
}

fn other_tool(moto: &Moto, args: &[&str]) -> String {
    moto.script("other_tool.py", args)
}

fn config(moto: &Moto, name: &str) -> Value {
    serde_json::from_str(&other_tool(moto, &["config", name])).expect("JSON")
}

/// Run `live ARGS -c DIR --stage ci` against moto, with `env` added.
fn live(moto: &Moto, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("live"));
    cmd.args(args).arg("-c").arg(dir);
    if !args.contains(&"--stage") {
        cmd.args(["--stage", "ci"]);
    }
    if args[0] != "detach" && args[0] != "remove" {
        cmd.arg("--stub").arg(bin("bootstrap"));
    }
    test_credentials(&mut cmd);
    moto.endpoint(&mut cmd);
    cmd.envs(env.iter().copied());
    cmd.output().expect("live runs")
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// The fields Lambda changes on any update, which detach cannot give back.
fn without_update_stamps(mut config: Value) -> Value {
    let map = config.as_object_mut().unwrap();
    map.retain(|k, _| {
        !matches!(k.as_str(), "RevisionId" | "LastModified") && !k.starts_with("LastUpdateStatus")
    });
    config
}

/// A function created as another tool would, its original configuration, and a server
/// standing in for its code location (moto's is an unreachable amazonaws.com URL).
fn create(moto: &Moto, kind: &str, name: &str, dir: &Path) -> (Value, Child, String) {
    let zip = dir.join(format!("{name}.zip"));
    let original: Value = serde_json::from_str(&other_tool(
        moto,
        &["create", kind, name, zip.to_str().unwrap()],
    ))
    .expect("JSON");
    let path = other_tool(moto, &["location", name]);
    let script = tests::workspace_root().join("tests/py/code_server.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(&zip).arg(path);
    let server = Child::spawn(cmd);
    let line = server.wait_for_line(|l| l.starts_with("listening "));
    let base = format!("http://127.0.0.1:{}", line.trim_start_matches("listening "));
    (original, server, base)
}

#[test]
fn attach_then_detach_gives_back_a_python_and_a_provided_function_exactly() {
    let moto = Moto::start();
    let dir = project();
    let (py, _py_code, _) = create(&moto, "python", "orders-py", &dir);
    let (rs, _rs_code, base) = create(&moto, "provided", "orders-rs", &dir);
    let env = [("LIVE_CODE_LOCATION_BASE", base.as_str())];
    let said = ok(live(
        &moto,
        &dir,
        &["attach", "orders-py=hello", "orders-rs=http"],
        &env,
    ));
    assert!(
        said.contains("function orders-py: attached (layer and exec wrapper)"),
        "{said}"
    );
    assert!(
        said.contains("function orders-rs: attached (the stub in front of its own code)"),
        "{said}"
    );

    // Python: its own layer kept, ours after it; the wrapper; its variables kept beside ours.
    let attached = config(&moto, "orders-py");
    let layers: Vec<&str> = attached["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Arn"].as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 2, "{attached}");
    assert_eq!(layers[0], py["Layers"][0]["Arn"].as_str().unwrap());
    assert!(layers[1].contains(":layer:hello-ci-live:"), "{}", layers[1]);
    let vars = &attached["Environment"]["Variables"];
    assert_eq!(vars["AWS_LAMBDA_EXEC_WRAPPER"], "/opt/live-wrapper");
    assert_eq!(vars["GREETING"], "hello from the cloud");
    assert_eq!(vars["LIVE_FUNCTION"], "hello");
    assert_eq!(vars["LIVE_STAGE"], "ci");
    assert!(vars["LIVE_BRIDGE_URL"]
        .as_str()
        .unwrap()
        .starts_with("wss://"));
    assert_eq!(attached["Runtime"], "python3.12");
    assert_eq!(attached["Handler"], "index.handler");

    // provided.al2023: the stub's code, its own inside; variables as for Python, no wrapper.
    let attached = config(&moto, "orders-rs");
    assert_ne!(
        attached["CodeSha256"], rs["CodeSha256"],
        "the code was replaced"
    );
    let vars = &attached["Environment"]["Variables"];
    assert_eq!(vars["LIVE_FUNCTION"], "http");
    assert_eq!(vars["GREETING"], "hello from the cloud");
    assert_eq!(vars.get("AWS_LAMBDA_EXEC_WRAPPER"), None);

    // Each role got the stage's policy, separate from its own.
    for name in ["orders-py", "orders-rs"] {
        assert_eq!(
            other_tool(&moto, &["policies", name]),
            format!(r#"["live-hello-ci-{name}"]"#)
        );
    }
    // Two records; the provided function's code saved beside its record.
    assert_eq!(other_tool(&moto, &["records", BUCKET]), "2 3");

    // A second attach (one function named by its ARN) changes nothing: no second layer, the
    // first record's originals kept.
    let before = [config(&moto, "orders-py"), config(&moto, "orders-rs")];
    let arn = before[0]["FunctionArn"].as_str().unwrap().to_owned();
    ok(live(
        &moto,
        &dir,
        &["attach", &format!("{arn}=hello"), "orders-rs=http"],
        &env,
    ));
    let after = [config(&moto, "orders-py"), config(&moto, "orders-rs")];
    for (b, a) in before.into_iter().zip(after) {
        assert_eq!(without_update_stamps(a), without_update_stamps(b));
    }
    assert_eq!(other_tool(&moto, &["records", BUCKET]), "2 3");

    let said = ok(live(&moto, &dir, &["detach", "--all"], &[]));
    assert!(said.contains("function orders-py: detached"), "{said}");
    assert_eq!(
        without_update_stamps(config(&moto, "orders-py")),
        without_update_stamps(py)
    );
    assert_eq!(
        without_update_stamps(config(&moto, "orders-rs")),
        without_update_stamps(rs.clone())
    );
    assert_eq!(config(&moto, "orders-rs")["CodeSha256"], rs["CodeSha256"]);
    for name in ["orders-py", "orders-rs"] {
        assert_eq!(other_tool(&moto, &["policies", name]), "[]");
    }
    assert_eq!(other_tool(&moto, &["records", BUCKET]), "0 0");
    // Detaching again is a no-op.
    let said = ok(live(&moto, &dir, &["detach", "orders-py"], &[]));
    assert!(said.contains("not attached"), "{said}");
}

#[test]
fn a_detach_after_an_attach_killed_between_steps_restores_the_original() {
    let moto = Moto::start();
    let dir = project();
    let (py, _py_code, _) = create(&moto, "python", "killed-py", &dir);
    let (rs, _rs_code, base) = create(&moto, "provided", "killed-rs", &dir);
    for (name, step, original) in [
        ("killed-py", "record", &py),
        ("killed-py", "policy", &py),
        ("killed-rs", "code", &rs),
    ] {
        let out = live(
            &moto,
            &dir,
            &["attach", name],
            &[
                ("LIVE_CODE_LOCATION_BASE", base.as_str()),
                ("LIVE_FAULT_AFTER", step),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the attach was killed");
        assert!(
            stderr.contains(&format!("killed after step {step}")),
            "{stderr}"
        );
        // Killed where it was told: the record written, and what came before the step.
        let saved = if name == "killed-rs" { "1 2" } else { "1 1" };
        assert_eq!(other_tool(&moto, &["records", BUCKET]), saved, "{step}");
        let policies = other_tool(&moto, &["policies", name]);
        match step {
            "record" => assert_eq!(policies, "[]"),
            _ => assert_eq!(policies, format!(r#"["live-hello-ci-{name}"]"#)),
        }
        if step == "code" {
            assert_ne!(config(&moto, name)["CodeSha256"], original["CodeSha256"]);
        }
        ok(live(&moto, &dir, &["detach", name], &[]));
        assert_eq!(
            without_update_stamps(config(&moto, name)),
            without_update_stamps(original.clone()),
            "{name}, killed after {step}"
        );
        assert_eq!(other_tool(&moto, &["policies", name]), "[]");
    }
    assert_eq!(other_tool(&moto, &["records", BUCKET]), "0 0");
}

#[test]
fn attach_names_a_missing_function_and_refuses_what_it_cannot_take_over() {
    let moto = Moto::start();
    let dir = project();
    let out = live(&moto, &dir, &["attach", "no-such-function"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("function no-such-function not found"),
        "{stderr}"
    );
}

#[test]
fn remove_leaves_nothing_of_the_stage_and_touches_nothing_else() {
    let moto = Moto::start();
    let dir = project();
    ok(live(&moto, &dir, &["deploy"], &[]));
    let (py, _py_code, _) = create(&moto, "python", "kept-py", &dir);
    ok(live(&moto, &dir, &["attach", "kept-py=hello"], &[]));
    let said = ok(live(&moto, &dir, &["remove"], &[]));
    assert!(said.contains("function kept-py: detached"), "{said}");

    let stage: Value =
        serde_json::from_str(&moto.script("deploy_readback.py", &["hello", "ci"])).expect("JSON");
    assert_eq!(stage["functions"], serde_json::json!({}), "{stage}");
    assert_eq!(stage["roles"], serde_json::json!({}));
    assert_eq!(stage["buckets"], serde_json::json!({}));
    // The other tool's function is there, as it was; so is its role.
    assert_eq!(
        without_update_stamps(config(&moto, "kept-py")),
        without_update_stamps(py)
    );
    let untagged = stage["untagged"].as_array().unwrap();
    assert!(
        untagged.iter().any(|n| n == "kept-py") && untagged.iter().any(|n| n == "kept-py-role"),
        "{stage}"
    );
    // Removing again finds nothing.
    let said = ok(live(&moto, &dir, &["remove"], &[]));
    assert!(said.contains("nothing of the stage is left"), "{said}");
}

#[test]
fn the_layers_exec_wrapper_starts_the_stub_with_the_runtimes_command() {
    let dir = project();
    let zip = dir.join("layer.zip");
    let out = Command::new(bin("live"))
        .args(["package", "--layer", "--out"])
        .arg(&zip)
        .arg("--stub")
        .arg(bin("bootstrap"))
        .output()
        .expect("live runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unpacked as Lambda unpacks a layer into /opt (modes kept).
    let opt = dir.join("opt");
    let unzip = Command::new(python())
        .args([
            "-c",
            "import os, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor i in z.infolist():\n    p = z.extract(i, sys.argv[2])\n    os.chmod(p, i.external_attr >> 16)",
        ])
        .arg(&zip)
        .arg(&opt)
        .status()
        .expect("python runs");
    assert!(unzip.success());
    assert_eq!(
        std::fs::read(opt.join("live/bootstrap")).unwrap(),
        std::fs::read(bin("bootstrap")).unwrap(),
        "the layer holds the stub"
    );
    // Lambda runs the wrapper with the runtime's command as its arguments; the stub starts
    // in its place, is handed that command, and (with no Runtime API here) says what it
    // lacks.
    let out = Command::new(opt.join("live-wrapper"))
        .args(["/var/lang/bin/python3.12", "/var/runtime/bootstrap.py"])
        .env_clear()
        .env("LIVE_LOG", "info")
        .output()
        .expect("the wrapper runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "started by the exec wrapper in place of the runtime: /var/lang/bin/python3.12 /var/runtime/bootstrap.py"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("AWS_LAMBDA_RUNTIME_API is not set"),
        "{stderr}"
    );
}

#[test]
fn live_dev_attach_takes_a_function_over_while_it_runs_and_gives_it_back_on_exit() {
    let moto = Moto::start();
    // IoT Core's stand-in, trusting the test credentials.
    let (_broker, url, ca) = tests::aws::iot_broker();
    let port = tests::live::port_of(&url);
    let dir = tests::live::project("dev-attach", &tests::live::raw_function("hello"));
    let (original, _code, _) = create(&moto, "python", "taken-py", &dir);

    let stub = bin("bootstrap");
    let mut dev = tests::live::live_dev_with(
        &dir,
        &[
            "--aws",
            "--attach",
            "taken-py=hello",
            "--stub",
            stub.to_str().unwrap(),
        ],
        |cmd| {
            test_credentials(cmd);
            moto.endpoint(cmd)
                .env("LIVE_IOT_CONNECT_TO", format!("127.0.0.1:{port}"))
                .env("LIVE_CA_FILE", &ca);
        },
    );
    dev.child
        .wait_for_line(|l| l.contains("live dev: attached taken-py"));
    let attached = config(&moto, "taken-py");
    let vars = &attached["Environment"]["Variables"];
    assert_eq!(
        vars["AWS_LAMBDA_EXEC_WRAPPER"], "/opt/live-wrapper",
        "{attached}"
    );
    assert_eq!(vars["LIVE_APP"], "fixture");
    assert_eq!(vars["LIVE_STAGE"], "test");
    assert_eq!(vars["LIVE_FUNCTION"], "hello");

    // Ctrl-C: the function is given back before live dev ends.
    dev.child.signal(2);
    dev.child
        .wait_for_line(|l| l.contains("live dev: detached: the functions are as they were"));
    assert!(dev.child.wait_exit().success());
    assert_eq!(
        without_update_stamps(config(&moto, "taken-py")),
        without_update_stamps(original)
    );
    assert_eq!(
        other_tool(
            &moto,
            &["records", "live-fixture-test-123456789012-us-east-1"]
        ),
        "0 0"
    );
}
