//! `live deploy`: per function of `live.toml` an IAM role (trusted by Lambda, least
//! privilege on the stage's resources) and the stub as a `provided.al2023` function, with a
//! Function URL where asked; the stage's payload bucket with its expiry rule. Idempotent: a
//! second run changes only what differs, and says what. And `live package`, the same zip
//! written to a file.

use super::package::Package;
use super::progress::Step;
use super::{function, names, policy, role, Stage, StageArgs, StubArgs, TAG_FUNCTION};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `live deploy`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live deploy                      # the stage named in live.toml (default: your user name)\n  live deploy --stage ci --profile dev --region eu-west-1\n  live deploy --debug              # 900 s timeouts, for breakpoints while the cloud waits\n\nThen run `live dev --aws` with the same stage: the deployed stubs forward every invocation\nto it. Run again after editing live.toml: only what changed is updated.\n\nExit codes: 0 done, 1 other errors, 2 bad command line, 3 no AWS credentials or region,\n4 access denied, 5 not found, 6 AWS unreachable."
)]
pub struct DeployArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    #[command(flatten)]
    pub stub: StubArgs,
}

/// Options of `live package`.
#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Where to write the zip.
    #[arg(short, long, default_value = "live-stub.zip")]
    pub out: PathBuf,
    /// The stub binary (default as for `live deploy`).
    #[arg(long, env = "LIVE_STUB")]
    pub stub: Option<PathBuf>,
    /// Write the `live` layer instead (the stub at /opt/live/bootstrap and the exec wrapper
    /// /opt/live-wrapper that `live attach` gives managed runtimes).
    #[arg(long)]
    pub layer: bool,
}

/// `live package`: write the deployment package and print its `CodeSha256`.
pub fn package(args: PackageArgs) -> anyhow::Result<()> {
    let (stub, _) = crate::stub_binary::find_for_deploy(args.stub)?;
    let binary = std::fs::read(&stub)
        .with_context(|| format!("could not read the stub binary {}", stub.display()))?;
    let package = if args.layer {
        super::layer::zip(&binary)?
    } else {
        Package::of_bootstrap(&binary)?
    };
    std::fs::write(&args.out, &package.bytes)
        .with_context(|| format!("could not write {}", args.out.display()))?;
    println!(
        "{} ({} bytes, CodeSha256 {}) from {}",
        args.out.display(),
        package.bytes.len(),
        package.code_sha256(),
        stub.display()
    );
    Ok(())
}

/// One row of the summary.
struct Row {
    function: String,
    arn: String,
    url: Option<String>,
}

/// The stub binary to put in front of functions, read once, and its architecture.
pub(super) struct Stub {
    pub binary: Vec<u8>,
    /// As Lambda names it (`x86_64`, `arm64`).
    pub architecture: &'static str,
}

impl Stub {
    /// The stub `given` names, else the one `live deploy` looks for; says when it is not
    /// the small build.
    pub(super) fn find(given: Option<PathBuf>) -> anyhow::Result<Stub> {
        let (stub, small) = crate::stub_binary::find_for_deploy(given)?;
        if !small {
            eprintln!(
                "  note: deploying {} (not the `stub` profile build: larger, slower to start); \
                 `cargo build --profile stub -p stub` makes the small one",
                stub.display()
            );
        }
        let binary = std::fs::read(&stub)
            .with_context(|| format!("could not read the stub binary {}", stub.display()))?;
        let architecture = super::package::architecture_name(&binary)?;
        Ok(Stub {
            binary,
            architecture,
        })
    }
}

/// `live deploy`.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let stage = Stage::open(&args.stage).await?;
    stage.banner("deploy");
    let stub = Stub::find(args.stub.stub.clone())?;
    let package = Package::of_bootstrap(&stub.binary)?;
    let sha256 = package.code_sha256();
    let endpoint = stage.endpoint().await?;
    let project = &stage.project;
    // Every function's environment, judged as Lambda will before anything is made.
    let mut envs = BTreeMap::new();
    for (name, f) in &project.functions {
        let mut env = f.env.clone();
        env.extend(stage.stub_env(name, &endpoint));
        function::check_environment(&format!("function {name}"), &env)?;
        envs.insert(name, env);
    }
    stage.ensure_bucket().await?;

    let mut rows = Vec::new();
    for (name, f) in &project.functions {
        let names = names::function(&project.app, &project.stage, name, &stage.region);
        let mut tags = stage.tags();
        tags.insert(TAG_FUNCTION.to_owned(), name.clone());

        let step = Step::new(format!("role {}", names.role));
        let scope = policy::Scope {
            app: &project.app,
            stage: &project.stage,
            region: &stage.region,
            account: &stage.account,
            function: &names.function,
            bucket: &stage.bucket,
        };
        let deployed_role = role::ensure(
            &stage.iam,
            &names.role,
            &policy::trust(),
            &policy::stage(&scope),
            &tags,
            &step,
        )
        .await?;
        step.done(deployed_role.created, &deployed_role.changes);

        let env = envs.remove(name).unwrap_or_default();
        let timeout = if args.stub.debug { 900 } else { f.timeout };
        let desired = function::Desired {
            name: names.function.clone(),
            description: format!(
                "live: {}/{}/{name} (the stub; `live dev --aws` runs the handler)",
                project.app, project.stage
            ),
            role_arn: deployed_role.arn.clone(),
            role_is_new: deployed_role.created,
            env,
            timeout: i32::try_from(timeout).context("timeout too large")?,
            memory: i32::try_from(f.memory).context("memory too large")?,
            tags,
            url: f.url,
            architecture: stub.architecture,
        };
        let step = Step::new(format!("function {}", names.function));
        let deployed = function::ensure(&stage.lambda, &desired, &package.bytes, &sha256, &step)
            .await
            .with_context(|| format!("deploying function {name}"))?;
        step.done(deployed.created, &deployed.changes);
        rows.push(Row {
            function: name.clone(),
            arn: deployed.arn,
            url: deployed.url,
        });
    }
    print_summary(&rows);
    eprintln!(
        "live deploy: done. Run `live dev --aws{}` to serve the stage from this machine.",
        args.stage
            .stage
            .as_ref()
            .map(|s| format!(" --stage {s}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn print_summary(rows: &[Row]) {
    let width = |f: &dyn Fn(&Row) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let w_fn = width(&|r| r.function.len(), "function");
    let w_arn = width(&|r| r.arn.len(), "arn");
    println!("{:w_fn$}  {:w_arn$}  url", "function", "arn");
    for row in rows {
        println!(
            "{:w_fn$}  {:w_arn$}  {}",
            row.function,
            row.arn,
            row.url.as_deref().unwrap_or("-")
        );
    }
}
