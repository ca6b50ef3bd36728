//! `live ide vscode|jetbrains`: the editor's launch configurations for debug mode. VS Code:
//! merged into `.vscode/launch.json` and `.vscode/tasks.json` (JSONC: comments and the
//! user's own entries kept, only entries named `live: ...` replaced), per Rust function a
//! CodeLLDB launch (`cargo` builds the binary with debug info, `envFile` is debug mode's
//! environment file) and a task that starts `live dev --debug` for all of them. JetBrains
//! (RustRover, CLion): per Rust function a Cargo run configuration `.run/live_FN.run.xml`
//! with debug mode's environment inline (they read no env file).

use anyhow::Context;
use jsonc_parser::cst::{CstInputValue, CstRootNode};
use jsonc_parser::ParseOptions;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Options of `live ide`.
#[derive(Debug, clap::Args)]
pub struct IdeArgs {
    /// The editor: `vscode` (VS Code with CodeLLDB) or `jetbrains` (RustRover, CLion).
    #[arg(value_parser = ["vscode", "jetbrains"])]
    pub editor: String,
    /// The project's live.toml, or a folder to look for it from.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

/// The prefix of every entry `live` owns.
const PREFIX: &str = "live: ";
/// The task that starts `live dev --debug`.
const TASK: &str = "live: dev --debug";

/// `live ide vscode`.
pub fn run(args: IdeArgs) -> anyhow::Result<()> {
    let project = crate::config::load_project(args.config.as_deref(), false)?;
    let mut rust = Vec::new();
    for (name, f) in &project.functions {
        if f.command.is_some() {
            eprintln!(
                "live ide: {name} is not a Rust function: its debugger configuration comes with \
                 Node and Python support"
            );
        } else {
            rust.push(name.clone());
        }
    }
    if rust.is_empty() {
        anyhow::bail!(
            "no Rust function in {}: nothing to configure",
            project.root.display()
        );
    }
    match args.editor.as_str() {
        "jetbrains" => jetbrains(&project, &rust),
        _ => vscode(&project, &rust),
    }
}

/// VS Code: a CodeLLDB launch per Rust function, and the task that starts `live dev
/// --debug` for them, merged into `.vscode/`.
fn vscode(project: &crate::config::Project, functions: &[String]) -> anyhow::Result<()> {
    let mut launches = Vec::new();
    for name in functions {
        let f = &project.functions[name];
        let bin = f.bin_name(name);
        let mut cargo_args = vec![
            "build".to_owned(),
            format!("--bin={bin}"),
            "--manifest-path=${workspaceFolder}/Cargo.toml".to_owned(),
        ];
        if let Some(package) = &f.package {
            cargo_args.push(format!("--package={package}"));
        }
        let env_file = crate::function::debug_env::env_file(name);
        launches.push(json!({
            "name": format!("{PREFIX}{name}"),
            "type": "lldb",
            "request": "launch",
            "cargo": {"args": cargo_args, "filter": {"name": bin, "kind": "bin"}},
            "envFile": format!("${{workspaceFolder}}/{}", env_file.display()),
            "cwd": "${workspaceFolder}",
        }));
    }
    let task = json!({
        "label": TASK,
        "type": "shell",
        "command": format!("live dev --debug {}", functions.join(",")),
        "isBackground": true,
        "problemMatcher": [],
    });
    let dir = project.root.join(".vscode");
    std::fs::create_dir_all(&dir)?;
    let launch = dir.join("launch.json");
    merge(
        &launch,
        "configurations",
        "name",
        &launches,
        &[("version", "0.2.0")],
    )?;
    let tasks = dir.join("tasks.json");
    merge(&tasks, "tasks", "label", &[task], &[("version", "2.0.0")])?;
    println!(
        "{}: {} launch configuration(s) `live: FN`; {}: task `{TASK}`. Start the task, then \
         launch `live: FN` (CodeLLDB) to debug FN.",
        launch.display(),
        launches.len(),
        tasks.display()
    );
    Ok(())
}

/// `.run/live_FN.run.xml` per Rust function: a Cargo command running its binary with debug
/// mode's environment (start `live dev --debug` first; debug the configuration).
fn jetbrains(project: &crate::config::Project, functions: &[String]) -> anyhow::Result<()> {
    let dir = project.root.join(".run");
    std::fs::create_dir_all(&dir)?;
    for name in functions {
        let f = &project.functions[name];
        let mut command = format!("run --bin {}", f.bin_name(name));
        if let Some(package) = &f.package {
            command.push_str(&format!(" --package {package}"));
        }
        let envs: String = crate::function::debug_env::environment(name, f, &project.root)
            .iter()
            .map(|(k, v)| format!("      <env name=\"{}\" value=\"{}\" />\n", xml(k), xml(v)))
            .collect();
        let text = format!(
            "<component name=\"ProjectRunConfigurationManager\">\n  <configuration default=\"false\" name=\"{}\" type=\"CargoCommandRunConfiguration\" factoryName=\"Cargo Command\">\n    <option name=\"command\" value=\"{}\" />\n    <option name=\"workingDirectory\" value=\"file://$PROJECT_DIR$\" />\n    <envs>\n{envs}    </envs>\n    <method v=\"2\">\n      <option name=\"CARGO.BUILD_TASK_PROVIDER\" enabled=\"true\" />\n    </method>\n  </configuration>\n</component>\n",
            xml(&format!("{PREFIX}{name}")),
            xml(&command)
        );
        let file = dir.join(format!("live_{name}.run.xml"));
        std::fs::write(&file, text)
            .with_context(|| format!("could not write {}", file.display()))?;
        println!("{}: run configuration `{PREFIX}{name}`", file.display());
    }
    println!(
        "Start `live dev --debug {}`, then debug `live: FN` from the run configurations.",
        functions.join(",")
    );
    Ok(())
}

/// Text for an XML attribute.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Replace the entries of `file`'s `array` whose `key` starts with `live: ` by `entries`,
/// keeping everything else as written; `defaults` are set when missing.
fn merge(
    file: &Path,
    array: &str,
    key: &str,
    entries: &[Value],
    defaults: &[(&str, &str)],
) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{\n}\n".to_owned(),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", file.display())),
    };
    let root = CstRootNode::parse(&text, &ParseOptions::default()).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid JSONC ({e}): fix it, or move it away and run again",
            file.display()
        )
    })?;
    let object = root.object_value_or_set();
    for (name, value) in defaults {
        if object.get(name).is_none() {
            object.append(name, CstInputValue::from(*value));
        }
    }
    let list = object.array_value_or_set(array);
    for element in list.elements() {
        let ours = element
            .to_serde_value()
            .and_then(|v| v.get(key).and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|name| name.starts_with(PREFIX));
        if ours {
            element.remove();
        }
    }
    for entry in entries {
        list.append(input(entry));
    }
    let out = root.to_string();
    if out != text {
        std::fs::write(file, out).with_context(|| format!("could not write {}", file.display()))?;
    }
    Ok(())
}

/// A JSON value as the CST takes it.
fn input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(input).collect()),
        Value::Object(map) => {
            CstInputValue::Object(map.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}
