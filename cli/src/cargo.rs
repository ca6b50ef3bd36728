//! What `cargo metadata` says about a Rust project: its packages, their binaries, and the
//! local (path) dependencies each binary's package builds from. Used for zero-config
//! projects and for precise watch sets.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct Raw {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    workspace_root: PathBuf,
    resolve: Option<Resolve>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    manifest_path: PathBuf,
    source: Option<String>,
    targets: Vec<Target>,
    dependencies: Vec<Dependency>,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Dependency {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
struct Node {
    id: String,
    dependencies: Vec<String>,
}

/// A Rust project as cargo sees it.
#[derive(Debug)]
pub struct Metadata {
    raw: Raw,
}

/// A binary of the workspace that is a Lambda function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaBin {
    pub bin: String,
    pub package: String,
}

impl Metadata {
    /// Run `cargo metadata` in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Metadata> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(dir)
            .output()
            .context("could not run `cargo metadata`; is Rust installed?")?;
        if !out.status.success() {
            bail!(
                "`cargo metadata` failed in {}:\n{}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let raw: Raw =
            serde_json::from_slice(&out.stdout).context("unreadable `cargo metadata` output")?;
        Ok(Metadata { raw })
    }

    /// The workspace's root directory.
    pub fn workspace_root(&self) -> &Path {
        &self.raw.workspace_root
    }

    /// The workspace's binaries whose package depends on `lambda_runtime` or `lambda_http`.
    pub fn lambda_bins(&self) -> Vec<LambdaBin> {
        let members: BTreeSet<&str> = self
            .raw
            .workspace_members
            .iter()
            .map(String::as_str)
            .collect();
        let mut bins = Vec::new();
        for p in self
            .raw
            .packages
            .iter()
            .filter(|p| members.contains(p.id.as_str()))
        {
            let lambda = p
                .dependencies
                .iter()
                .any(|d| d.name == "lambda_runtime" || d.name == "lambda_http");
            if !lambda {
                continue;
            }
            for t in p
                .targets
                .iter()
                .filter(|t| t.kind.iter().any(|k| k == "bin"))
            {
                bins.push(LambdaBin {
                    bin: t.name.clone(),
                    package: p.name.clone(),
                });
            }
        }
        bins.sort_by(|a, b| a.bin.cmp(&b.bin));
        bins
    }

    /// The directories a binary builds from: its package's and those of every local
    /// package it depends on, directly or not.
    pub fn source_dirs(&self, bin: &str, package: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
        let owner = self
            .raw
            .packages
            .iter()
            .filter(|p| package.is_none_or(|name| p.name == name))
            .find(|p| {
                p.targets
                    .iter()
                    .any(|t| t.name == bin && t.kind.iter().any(|k| k == "bin"))
            })
            .with_context(|| format!("no package of this workspace has a binary named {bin:?}"))?;
        let by_id: HashMap<&str, &Package> = self
            .raw
            .packages
            .iter()
            .map(|p| (p.id.as_str(), p))
            .collect();
        let deps: HashMap<&str, &Vec<String>> = self
            .raw
            .resolve
            .iter()
            .flat_map(|r| r.nodes.iter())
            .map(|n| (n.id.as_str(), &n.dependencies))
            .collect();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([owner.id.as_str()]);
        let mut dirs = Vec::new();
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            let Some(p) = by_id.get(id) else { continue };
            if p.source.is_some() {
                continue; // from a registry or git: it does not change under the developer
            }
            if let Some(dir) = p.manifest_path.parent() {
                dirs.push(dir.to_path_buf());
            }
            for dep in deps.get(id).into_iter().flat_map(|d| d.iter()) {
                queue.push_back(dep.as_str());
            }
        }
        Ok(dirs)
    }
}
