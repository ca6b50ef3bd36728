//! `live deploy`: the stage in a real AWS account, from `live.toml`. Per function an IAM role
//! (trusted by Lambda, least privilege on the stage's resources) and the stub as a
//! `provided.al2023` function, with a Function URL where asked; the stage's payload bucket
//! with its expiry rule. Idempotent: a second run changes only what differs, and says what.
//! `live package` writes the same zip without deploying it.

mod bucket;
mod function;
mod names;
mod policy;
mod progress;
mod role;

pub mod package;

pub use names::{TAG_APP, TAG_FUNCTION, TAG_STAGE};

use crate::aws::AwsArgs;
use anyhow::Context;
use package::Package;
use progress::Step;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `live deploy`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live deploy                      # the stage named in live.toml (default: your user name)\n  live deploy --stage ci --profile dev --region eu-west-1\n  live deploy --debug              # 900 s timeouts, for breakpoints while the cloud waits\n\nThen run `live dev --aws` with the same stage: the deployed stubs forward every invocation\nto it. Run again after editing live.toml: only what changed is updated.\n\nExit codes: 0 done, 1 other errors, 2 bad command line, 3 no AWS credentials or region,\n4 access denied, 5 not found, 6 AWS unreachable."
)]
pub struct DeployArgs {
    /// The project's live.toml, or a folder to look for it from (default: the working
    /// directory).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The stage to deploy (default: live.toml's `stage`, else your user name).
    #[arg(long)]
    pub stage: Option<String>,
    /// Set every function's timeout to 900 s (Lambda's most), so that a handler paused at a
    /// breakpoint does not time out in the cloud.
    #[arg(long)]
    pub debug: bool,
    /// The stub binary to deploy. Default: $LIVE_STUB, then the `stub` profile build
    /// (`cargo build --profile stub -p stub`) in live's target directory, then `bootstrap`
    /// beside `live`.
    #[arg(long, env = "LIVE_STUB")]
    pub stub: Option<PathBuf>,
    #[command(flatten)]
    pub aws: AwsArgs,
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
}

/// `live package`: write the deployment package and print its `CodeSha256`.
pub fn package(args: PackageArgs) -> anyhow::Result<()> {
    let (stub, _) = crate::stub_binary::find_for_deploy(args.stub)?;
    let package = Package::of_stub(&stub)?;
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

/// `live deploy`.
pub async fn run(args: DeployArgs) -> anyhow::Result<()> {
    let config = args.config.clone();
    let mut project =
        tokio::task::spawn_blocking(move || crate::config::load_project(config.as_deref(), false))
            .await??;
    if let Some(stage) = &args.stage {
        project.stage = stage.clone();
    }
    bridge::topics::Topics::new(&project.app, &project.stage)?;
    let (stub, small) = crate::stub_binary::find_for_deploy(args.stub.clone())?;
    let package = Package::of_stub(&stub)?;
    let sha256 = package.code_sha256();

    let account_args = AwsArgs {
        profile: args.aws.profile.clone().or(project.cloud.profile.clone()),
        region: args.aws.region.clone().or(project.cloud.region.clone()),
    };
    let sdk = crate::aws::load(&account_args).await?;
    let region = crate::aws::region(&sdk);
    let account = crate::aws::account(&sdk).await?;
    eprintln!(
        "live deploy: app {}, stage {}, account {account}, region {region}",
        project.app, project.stage
    );
    if !small {
        eprintln!(
            "  note: deploying {} (not the `stub` profile build: larger, slower to start); \
             `cargo build --profile stub -p stub` makes the small one",
            stub.display()
        );
    }
    let endpoint = crate::aws::bridge_url(&sdk, project.cloud.endpoint_host()).await?;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let s3 = crate::aws::s3_client(&sdk);

    let mut stage_tags = BTreeMap::new();
    stage_tags.insert(TAG_APP.to_owned(), project.app.clone());
    stage_tags.insert(TAG_STAGE.to_owned(), project.stage.clone());

    let bucket = names::bucket(&project.app, &project.stage, &account, &region);
    let step = Step::new(format!("bucket {bucket}"));
    let (created, changes) = bucket::ensure(&s3, &bucket, &region, &stage_tags, &step).await?;
    step.done(created, &changes);

    let mut rows = Vec::new();
    for (name, f) in &project.functions {
        let names = names::function(&project.app, &project.stage, name, &region);
        let mut tags = stage_tags.clone();
        tags.insert(TAG_FUNCTION.to_owned(), name.clone());

        let step = Step::new(format!("role {}", names.role));
        let scope = policy::Scope {
            app: &project.app,
            stage: &project.stage,
            region: &region,
            account: &account,
            function: &names.function,
            bucket: &bucket,
        };
        let deployed_role = role::ensure(
            &iam,
            &names.role,
            &policy::trust(),
            &policy::stage(&scope),
            &tags,
            &step,
        )
        .await?;
        step.done(deployed_role.created, &deployed_role.changes);

        let mut env = f.env.clone();
        env.insert("LIVE_BRIDGE_URL".to_owned(), endpoint.clone());
        env.insert("LIVE_APP".to_owned(), project.app.clone());
        env.insert("LIVE_STAGE".to_owned(), project.stage.clone());
        env.insert("LIVE_FUNCTION".to_owned(), name.clone());
        env.insert("LIVE_BUCKET".to_owned(), bucket.clone());
        let timeout = if args.debug { 900 } else { f.timeout };
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
        };
        let step = Step::new(format!("function {}", names.function));
        let deployed = function::ensure(&lambda, &desired, &package.bytes, &sha256, &step)
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
