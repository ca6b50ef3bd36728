//! The stage in a real AWS account. `live deploy` puts the stub in front of `live.toml`'s
//! functions (`deploy.rs`), `live attach` in front of functions another tool deployed and
//! `live detach` gives them back exactly as they were (`attach.rs`, from the attach records
//! of `record.rs`), `live remove` deletes what belongs to the stage (`remove.rs`), `live
//! package` writes the stub's zip (`package.rs`). What they share is here: [`Stage`], the
//! project, account and clients a command works with.

mod attach;
mod bucket;
mod deploy;
mod function;
mod layer;
mod names;
mod policy;
mod progress;
mod record;
mod remove;
mod role;

pub mod package;

pub use attach::{
    attach, attach_functions, attached, detach, detach_functions, split, AttachArgs, DetachArgs,
};
pub use deploy::{deploy, package, DeployArgs, PackageArgs};
pub use function::of_stage as functions_of_stage;
pub use names::{stage_tags, TAG_APP, TAG_FUNCTION, TAG_STAGE};
pub use remove::{remove, RemoveArgs};

use crate::aws::AwsArgs;
use crate::config::Project;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which project and stage a command works on, and in which account.
#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// The project's live.toml, or a folder to look for it from (default: the working
    /// directory).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The stage (default: live.toml's `stage`, else your user name).
    #[arg(long)]
    pub stage: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// The stub a command puts in front of functions, and for how long they may wait.
#[derive(Debug, Clone, clap::Args)]
pub struct StubArgs {
    /// Set each function's timeout to 900 s (Lambda's most; an attached function's own is
    /// restored on detach), so that a handler paused at a breakpoint does not time out in
    /// the cloud.
    #[arg(long)]
    pub debug: bool,
    /// The stub binary. Default: $LIVE_STUB, then the `stub` profile build (`cargo build
    /// --profile stub -p stub`) in live's target directory, then `bootstrap` beside `live`.
    #[arg(long, env = "LIVE_STUB")]
    pub stub: Option<PathBuf>,
}

/// A stage in an account, with the clients its commands call.
pub struct Stage {
    pub project: Project,
    pub region: String,
    pub account: String,
    pub sdk: aws_config::SdkConfig,
    pub lambda: aws_sdk_lambda::Client,
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    /// The stage's payload bucket (also holds the attach records).
    pub bucket: String,
}

impl Stage {
    /// Load the project, the AWS configuration (live.toml's `[cloud]` profile and region
    /// unless given) and the account (checking that there are credentials AWS accepts).
    pub async fn open(args: &StageArgs) -> anyhow::Result<Stage> {
        let config = args.config.clone();
        let mut project = tokio::task::spawn_blocking(move || {
            crate::config::load_project(config.as_deref(), false)
        })
        .await??;
        if let Some(stage) = &args.stage {
            project.stage = stage.clone();
        }
        let sdk = crate::aws::load(&args.aws.or_project(&project.cloud)).await?;
        Stage::new(project, sdk).await
    }

    /// The stage of `project` in the account `sdk` is configured for (checking that there
    /// are credentials AWS accepts).
    pub async fn new(project: Project, sdk: aws_config::SdkConfig) -> anyhow::Result<Stage> {
        bridge::topics::Topics::new(&project.app, &project.stage)?;
        let region = crate::aws::region(&sdk);
        let account = crate::aws::account(&sdk).await?;
        let bucket = names::bucket(&project.app, &project.stage, &account, &region);
        Ok(Stage {
            lambda: aws_sdk_lambda::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            s3: crate::aws::s3_client(&sdk),
            project,
            region,
            account,
            sdk,
            bucket,
        })
    }

    /// Say which stage `live COMMAND` works on.
    pub fn banner(&self, command: &str) {
        eprintln!(
            "live {command}: app {}, stage {}, account {}, region {}",
            self.project.app, self.project.stage, self.account, self.region
        );
    }

    /// The tags every resource of the stage carries.
    pub fn tags(&self) -> BTreeMap<String, String> {
        names::stage_tags(&self.project.app, &self.project.stage)
    }

    /// Whether a resource whose tags `tag` looks up is the stage's.
    pub fn owns<'a>(&self, tag: impl Fn(&str) -> Option<&'a str>) -> bool {
        names::carries_stage(tag, &self.tags())
    }

    /// The stub's environment for function `name` of the stage, over IoT Core at `endpoint`.
    pub fn stub_env(&self, name: &str, endpoint: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("LIVE_BRIDGE_URL".to_owned(), endpoint.to_owned()),
            ("LIVE_APP".to_owned(), self.project.app.clone()),
            ("LIVE_STAGE".to_owned(), self.project.stage.clone()),
            ("LIVE_FUNCTION".to_owned(), name.to_owned()),
            ("LIVE_BUCKET".to_owned(), self.bucket.clone()),
        ])
    }

    /// IoT Core's URL for the stage: live.toml's `[cloud] endpoint`, else DescribeEndpoint.
    pub async fn endpoint(&self) -> anyhow::Result<String> {
        crate::aws::bridge_url(&self.sdk, self.project.cloud.endpoint_host()).await
    }

    /// Make the stage's bucket (the attach records need it too).
    pub async fn ensure_bucket(&self) -> anyhow::Result<()> {
        let step = progress::Step::new(format!("bucket {}", self.bucket));
        let (created, changes) =
            bucket::ensure(&self.s3, &self.bucket, &self.region, &self.tags(), &step).await?;
        step.done(created, &changes);
        Ok(())
    }
}
