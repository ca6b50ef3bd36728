//! `live ide vscode`: launch.json and tasks.json merged, not rewritten. A user's entry and
//! comment survive, one `live: FN` CodeLLDB launch per Rust function points at debug mode's
//! env file and builds the right binary, and a second run changes nothing.

use serde_json::Value;
use std::process::Command;
use tests::bin;

fn parse(text: &str) -> Value {
    jsonc_parser::parse_to_serde_value(text, &jsonc_parser::ParseOptions::default())
        .expect("valid JSONC")
}

/// `live ide EDITOR -c DIR`, which must succeed.
fn ide(editor: &str, dir: &std::path::Path) {
    let out = Command::new(bin("live"))
        .args(["ide", editor, "-c"])
        .arg(dir)
        .output()
        .expect("live runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn live_ide_vscode_merges_launch_configurations_and_keeps_the_users() {
    let dir = tests::live::hello_project("ide", "");
    std::fs::create_dir_all(dir.join(".vscode")).unwrap();
    let users = "{\n  // my own setup\n  \"version\": \"0.2.0\",\n  \"configurations\": [\n    {\"name\": \"my server\", \"type\": \"lldb\", \"request\": \"launch\", \"program\": \"target/debug/server\"},\n  ]\n}\n";
    std::fs::write(dir.join(".vscode/launch.json"), users).unwrap();
    let run = || {
        ide("vscode", &dir);
        (
            std::fs::read_to_string(dir.join(".vscode/launch.json")).unwrap(),
            std::fs::read_to_string(dir.join(".vscode/tasks.json")).unwrap(),
        )
    };
    let (launch, tasks) = run();
    assert!(launch.contains("// my own setup"), "{launch}");
    let configurations = parse(&launch)["configurations"].as_array().unwrap().clone();
    let names: Vec<&str> = configurations
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["my server", "live: hello", "live: http"]);
    for (config, function) in configurations[1..].iter().zip(["hello", "http"]) {
        assert_eq!(config["type"], "lldb");
        assert_eq!(
            config["envFile"],
            format!("${{workspaceFolder}}/.live/debug/{function}.env")
        );
        let args = config["cargo"]["args"].as_array().unwrap();
        assert_eq!(args[0], "build");
        assert!(
            args.iter().any(|a| a == &format!("--bin={function}")),
            "{config}"
        );
        assert_eq!(config["cargo"]["filter"]["name"], function);
    }
    let task = &parse(&tasks)["tasks"][0];
    assert_eq!(task["label"], "live: dev --debug");
    assert_eq!(task["command"], "live dev --debug hello,http");
    // Idempotent.
    assert_eq!(run(), (launch, tasks));
}

#[test]
fn live_ide_jetbrains_writes_a_cargo_run_configuration_per_function_as_valid_xml() {
    let dir = tests::live::hello_project("ide-jb", "");
    ide("jetbrains", &dir);
    for function in ["hello", "http"] {
        let file = dir.join(format!(".run/live_{function}.run.xml"));
        // Python's XML parser (not ours) reads it back.
        let check = Command::new(tests::python())
            .args([
                "-c",
                "import sys, xml.etree.ElementTree as E\nc = E.parse(sys.argv[1]).getroot().find('configuration')\nenv = {e.get('name'): e.get('value') for e in c.find('envs')}\nopts = {o.get('name'): o.get('value') for o in c.findall('option')}\nprint(c.get('name'), c.get('type'), opts['command'], env['AWS_LAMBDA_RUNTIME_API'], env['AWS_LAMBDA_FUNCTION_NAME'])",
            ])
            .arg(&file)
            .output()
            .expect("python runs");
        let said = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let words: Vec<&str> = said.split_whitespace().collect();
        assert_eq!(
            words[..6],
            [
                "live:",
                function,
                "CargoCommandRunConfiguration",
                "run",
                "--bin",
                function
            ],
            "{said}"
        );
        assert!(words[6].starts_with("127.0.0.1:19"), "{said}");
        assert_eq!(words[7], function);
    }
}
