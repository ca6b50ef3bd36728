//! `live.toml`: the app, the stage and one table per function. Errors name the file, the line
//! and the fix.
//!
//! ```toml
//! app = "hello"
//! # stage = "alice"          # default: your user name (a personal stage)
//!
//! [functions.hello]          # a Rust binary of this workspace: nothing else needed
//!
//! [functions.py]
//! command = ["python3", "-m", "awslambdaric", "handler.handler"]
//! dir = "py"                 # working directory, relative to live.toml
//! timeout = 10               # seconds (default 30)
//! memory = 256               # MB (default 128)
//! env = { GREETING = "hi" }
//! url = true                 # `live deploy` gives it a public Function URL
//! debug = true               # debug mode, as `live dev --debug py`; debug_port = 9229 pins its port
//!
//! [cloud]                    # where `live dev` meets the stubs (default: all on this machine)
//! aws = true                 # AWS IoT Core, as `live dev --aws`
//! profile = "dev"            # the AWS profile (default: AWS_PROFILE, else `default`)
//! region = "eu-west-1"       # the AWS region (default: AWS_REGION, else the profile's)
//! # endpoint = "iot.example.com"   # IoT Core's endpoint or custom domain (default: DescribeEndpoint)
//! ```

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name `live` looks for.
pub const FILE_NAME: &str = "live.toml";

/// A parsed `live.toml`.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory holding `live.toml`.
    pub root: PathBuf,
    pub app: String,
    pub stage: String,
    pub functions: BTreeMap<String, Function>,
    /// Build Rust functions with `--release` (a command-line choice, not a live.toml key).
    pub release: bool,
    /// What `cargo metadata` said while loading, when loading asked it (a zero-config
    /// project), so that the watch set does not ask again.
    pub cargo: Option<std::sync::Arc<crate::cargo::Metadata>>,
    /// The `[cloud]` table.
    pub cloud: Cloud,
}

/// `[cloud]`: where `live dev` meets the project's stubs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    /// Through AWS IoT Core (`live dev --aws`).
    #[serde(default)]
    pub aws: bool,
    /// The AWS profile.
    pub profile: Option<String>,
    /// The AWS region.
    pub region: Option<String>,
    /// IoT Core's endpoint host (a custom domain, or the account's `...-ats.iot.REGION.
    /// amazonaws.com`) instead of asking `DescribeEndpoint`.
    pub endpoint: Option<String>,
}

impl Cloud {
    /// The pinned endpoint as a host name: a `wss://HOST/mqtt` URL is taken too.
    pub fn endpoint_host(&self) -> Option<&str> {
        self.endpoint.as_deref().map(|e| {
            e.trim_start_matches("wss://")
                .trim_end_matches('/')
                .trim_end_matches("/mqtt")
        })
    }
}

/// One function's table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// How to start a Lambda runtime client for it. Absent: a Rust binary built with cargo.
    pub command: Option<Vec<String>>,
    /// A build step for a function with a `command` (Rust functions, without one, are
    /// built with one `cargo build` for all of them).
    pub build: Option<Vec<String>>,
    /// The cargo package holding the binary (Rust; default: found by cargo).
    pub package: Option<String>,
    /// The cargo binary name (Rust; default: the function's name).
    pub bin: Option<String>,
    /// Working directory, relative to `live.toml`.
    pub dir: Option<PathBuf>,
    /// Globs of files that trigger a rebuild (besides a Rust package's own sources).
    #[serde(default)]
    pub watch: Vec<String>,
    /// Extra environment variables for the handler.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds before Lambda's deadline (default 30).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Memory in MB (default 128), reported to the handler.
    #[serde(default = "default_memory")]
    pub memory: u32,
    /// `_HANDLER` (default: the function's name).
    pub handler: Option<String>,
    /// `live deploy` gives the function a public Function URL (auth type NONE).
    #[serde(default)]
    pub url: bool,
    /// Debug mode, as `live dev --debug NAME`: no worker is started; the IDE launches one.
    #[serde(default)]
    pub debug: bool,
    /// The loopback port of its Runtime API in debug mode (default: derived from the name).
    pub debug_port: Option<u16>,
}

impl Function {
    /// The cargo binary of the Rust function `name`: its `bin`, else its name.
    pub fn bin_name(&self, name: &str) -> String {
        self.bin.clone().unwrap_or_else(|| name.to_owned())
    }
}

impl Default for Function {
    fn default() -> Self {
        Function {
            command: None,
            build: None,
            package: None,
            bin: None,
            dir: None,
            watch: Vec::new(),
            env: BTreeMap::new(),
            timeout: default_timeout(),
            memory: default_memory(),
            handler: None,
            url: false,
            debug: false,
            debug_port: None,
        }
    }
}

fn default_timeout() -> u64 {
    30
}

fn default_memory() -> u32 {
    128
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    app: String,
    stage: Option<String>,
    #[serde(default)]
    functions: BTreeMap<String, Function>,
    #[serde(default)]
    cloud: Cloud,
}

/// Load the project from `config` (a `live.toml`, or a directory to search from) or else the
/// working directory, its Rust functions to be built in release mode if `release`. Runs
/// `cargo metadata` for a zero-config project: blocking.
pub fn load_project(config: Option<&Path>, release: bool) -> anyhow::Result<Project> {
    let mut project = match config {
        Some(path) if path.is_dir() => Project::find(path),
        Some(path) => Project::load(path),
        None => Project::find(&std::env::current_dir().context("no working directory")?),
    }?;
    project.release = release;
    Ok(project)
}

impl Project {
    /// Find `live.toml` in `dir` or its parents and load it; without one, a cargo project's
    /// Lambda binaries (those depending on `lambda_runtime` or `lambda_http`) are the
    /// functions, each under its binary name.
    pub fn find(dir: &Path) -> anyhow::Result<Project> {
        let mut here = Some(dir);
        while let Some(d) = here {
            let candidate = d.join(FILE_NAME);
            if candidate.is_file() {
                return Project::load(&candidate);
            }
            here = d.parent();
        }
        if dir.ancestors().any(|d| d.join("Cargo.toml").is_file()) {
            return Project::from_cargo(dir);
        }
        bail!(
            "no {FILE_NAME} in {} or its parents, and no cargo project: create one with \
             `app = \"NAME\"` and a [functions.NAME] table per function (see \
             examples/hello/live.toml)",
            dir.display()
        )
    }

    /// A zero-config Rust project: every binary of the cargo workspace at `dir` that
    /// depends on `lambda_runtime` or `lambda_http`.
    pub fn from_cargo(dir: &Path) -> anyhow::Result<Project> {
        let metadata = crate::cargo::Metadata::load(dir)?;
        let bins = metadata.lambda_bins();
        if bins.is_empty() {
            bail!(
                "no {FILE_NAME} here, and no binary of the cargo workspace at {} depends on \
                 lambda_runtime or lambda_http: add a {FILE_NAME} naming the functions",
                metadata.workspace_root().display()
            );
        }
        let root = metadata.workspace_root().to_path_buf();
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let app: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        let functions = bins
            .into_iter()
            .map(|b| {
                let function = Function {
                    package: Some(b.package),
                    bin: Some(b.bin.clone()),
                    ..Function::default()
                };
                (b.bin, function)
            })
            .collect();
        Ok(Project {
            root,
            app: if app.is_empty() { "app".into() } else { app },
            stage: default_stage(),
            functions,
            release: false,
            cargo: Some(std::sync::Arc::new(metadata)),
            cloud: Cloud::default(),
        })
    }

    /// Load `path`.
    pub fn load(path: &Path) -> anyhow::Result<Project> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let file: File = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}fix the line above; the keys are documented in the README's live.toml section",
                path.display(),
                e
            )
        })?;
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let stage = file.stage.unwrap_or_else(default_stage);
        let locate = |key: &str| line_of(&text, key).map_or(String::new(), |l| format!(":{l}"));
        bridge::Topics::new(&file.app, &stage).map_err(|e| {
            anyhow::anyhow!(
                "{}{}: {e}; rename it",
                path.display(),
                locate(if e.to_string().starts_with("app") {
                    "app"
                } else {
                    "stage"
                })
            )
        })?;
        if file.functions.is_empty() {
            bail!(
                "{}: no functions: add a [functions.NAME] table for each function",
                path.display()
            );
        }
        for (name, f) in &file.functions {
            let at = format!(
                "{}{}",
                path.display(),
                locate(&format!("[functions.{name}]"))
            );
            if let Err(e) = bridge::topics::check_name("function", name) {
                bail!("{at}: {e}");
            }
            if f.command.as_ref().is_some_and(Vec::is_empty) {
                bail!("{at}: `command` is empty: give the program and its arguments, e.g. [\"python3\", \"-m\", \"awslambdaric\", \"app.handler\"]");
            }
            if !(1..=900).contains(&f.timeout) {
                bail!(
                    "{at}: timeout = {} is outside Lambda's 1-900 seconds",
                    f.timeout
                );
            }
            if !(128..=10240).contains(&f.memory) {
                bail!(
                    "{at}: memory = {} is outside Lambda's 128-10240 MB",
                    f.memory
                );
            }
        }
        Ok(Project {
            root,
            app: file.app,
            stage,
            functions: file.functions,
            release: false,
            cargo: None,
            cloud: file.cloud,
        })
    }
}

/// The 1-based line where `needle` first appears.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// The user's name, cleaned to a valid stage name; `dev` when unknown.
pub fn default_stage() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default();
    let clean: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if clean.is_empty() {
        "dev".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<Project> {
        let dir =
            std::env::temp_dir().join(format!("live-config-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        std::fs::write(&path, text).unwrap();
        Project::load(&path)
    }

    #[test]
    fn a_minimal_rust_project_needs_only_function_names() {
        let p = load("app = \"hello\"\nstage = \"ci\"\n[functions.hello]\n").unwrap();
        let f = &p.functions["hello"];
        assert!(f.command.is_none());
        assert_eq!((f.timeout, f.memory), (30, 128));
        assert_eq!(p.stage, "ci");
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_fix() {
        let err = load("app = \"hello\"\n[functions.hello]\ntimeout = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("live.toml") && err.contains("line 3"), "{err}");
        let err = load("app = \"hello\"\n[functions.hello]\ntimout = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field `timout`") && err.contains("line 3"),
            "{err}"
        );
        let err = load("app = \"hello\"\n\n[functions.slow]\ntimeout = 901\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("live.toml:3") && err.contains("1-900"),
            "{err}"
        );
        let err = load("app = \"my app\"\n[functions.a]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("live.toml:1") && err.contains("rename"),
            "{err}"
        );
    }
}
