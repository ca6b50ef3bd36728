//! Building functions before they run: Rust binaries with one `cargo build` (the executables
//! read from cargo's JSON messages, so any target directory works), others with their
//! `build` command.

use super::launch::{check_launch, Launch};
use crate::config::{Function, Project};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A failed build: the first compiler error (with its context lines).
#[derive(Debug, Clone)]
pub struct BuildFailure {
    pub first_error: String,
}

/// Build the functions `names` of `project` (one `cargo build` for the Rust ones); returns
/// how to launch each.
pub async fn build_some(
    project: &Project,
    names: &[String],
) -> Result<BTreeMap<String, Launch>, BuildFailure> {
    let mut launches = BTreeMap::new();
    let selected: Vec<(&String, &Function)> = project
        .functions
        .iter()
        .filter(|(name, _)| names.contains(name))
        .collect();
    let rust: Vec<(&String, &Function)> = selected
        .iter()
        .copied()
        .filter(|(_, f)| f.command.is_none())
        .collect();
    if !rust.is_empty() {
        launches.extend(cargo_build(project, &rust).await?);
    }
    for (name, f) in selected.into_iter().filter(|(_, f)| f.command.is_some()) {
        let dir = project.root.join(f.dir.clone().unwrap_or_default());
        if let Some(build) = &f.build {
            run_build(build, &dir).await?;
        }
        let command = f.command.clone().expect("filtered above");
        let launch = Launch {
            program: PathBuf::from(&command[0]),
            args: command[1..].to_vec(),
            dir,
        };
        check_launch(name, &launch).map_err(|e| failure(format!("{e:#}")))?;
        launches.insert(name.clone(), launch);
    }
    Ok(launches)
}

async fn run_build(command: &[String], dir: &PathBuf) -> Result<(), BuildFailure> {
    let Some((program, args)) = command.split_first() else {
        return Ok(());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).current_dir(dir);
    // In a group of its own, killed whole if the build is dropped (restarted, or `live` exits).
    let out = crate::process::Group::output(cmd)
        .await
        .map_err(|e| failure(format!("could not run {program}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(failure(
        output
            .lines()
            .find(|l| l.to_lowercase().contains("error"))
            .unwrap_or("the build command failed")
            .to_string(),
    ))
}

fn failure(first_error: String) -> BuildFailure {
    BuildFailure { first_error }
}

async fn cargo_build(
    project: &Project,
    functions: &[(&String, &Function)],
) -> Result<BTreeMap<String, Launch>, BuildFailure> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.args(["build", "--message-format=json-render-diagnostics"])
        .args(project.release.then_some("--release"))
        .current_dir(&project.root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut wanted = BTreeMap::new();
    for (name, f) in functions {
        let bin = f.bin_name(name);
        cmd.args(["--bin", &bin]);
        if let Some(package) = &f.package {
            cmd.args(["--package", package]);
        }
        wanted.insert(bin, (*name).clone());
    }
    // In a group of its own, with rustc and build scripts: killed whole if dropped.
    let mut child = crate::process::Group::spawn(cmd)
        .map_err(|e| failure(format!("could not run cargo: {e}; is Rust installed?")))?;
    let stdout = child.child.stdout.take().expect("piped");
    let stderr = child.child.stderr.take().expect("piped");
    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut launches = BTreeMap::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_bin = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bin"));
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        if let (true, Some(function)) = (is_bin, wanted.get(name)) {
            launches.insert(
                function.clone(),
                Launch {
                    program: PathBuf::from(exe),
                    args: Vec::new(),
                    dir: project.root.clone(),
                },
            );
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| failure(format!("cargo did not finish: {e}")))?;
    let stderr = stderr_task.await.unwrap_or_default();
    if !status.success() {
        let first_error = stderr
            .iter()
            .position(|l| l.starts_with("error"))
            .map(|i| {
                stderr[i..]
                    .iter()
                    .take_while(|l| !l.is_empty())
                    .take(12)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|| "cargo build failed".into());
        return Err(failure(first_error));
    }
    for (bin, function) in &wanted {
        if !launches.contains_key(function) {
            return Err(failure(format!(
                "cargo built no binary named {bin:?} for function {function:?}: add `bin = \"NAME\"` (and `package`) to [functions.{function}] in live.toml"
            )));
        }
    }
    Ok(launches)
}
