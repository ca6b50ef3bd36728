//! `live`: run AWS Lambda handlers on your machine while the cloud (or its local stand-in)
//! invokes them. This library holds every command; `main.rs` only parses and calls [`run`].
//!
//! - [`broker`]: `live broker`, the embedded MQTT-over-WebSocket broker on its own;
//! - [`cloud`]: `live cloud`, the local stand-in for AWS (broker, Lambda emulator running the
//!   real stub, HTTP front door);
//! - [`dev`]: `live dev`, the developer's side: builds, workers, one line per invocation;
//! - [`function`]: building a function and launching its runtime as Lambda does, for both
//!   [`cloud`] (`--direct`) and [`dev`];
//! - [`stage`]: the stage in a real AWS account: `live deploy`, `attach`, `detach`, `remove`, `package` (through
//!   [`aws`]);
//! - [`config`]: `live.toml` (or a zero-config cargo project, through [`cargo`]); [`process`]: child processes tied to ours; [`ids`]: ids; [`signals`]: Ctrl+C and SIGTERM.

pub mod aws;
pub mod broker;
pub mod cargo;
pub mod cloud;
pub mod config;
pub mod dev;
pub mod function;
pub mod ide;
pub mod ids;
pub mod local_ca;
pub mod process;
pub mod signals;
pub mod stage;
pub mod stub_binary;
pub mod url_request;
pub mod writer;

use clap::{Parser, Subcommand};

/// Live AWS Lambda development: the real cloud invokes, your machine runs the handler.
#[derive(Debug, Parser)]
#[command(name = "live", version, about, long_about = None)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `live`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded MQTT-over-WebSocket broker on its own (the bridge's local stand-in for
    /// AWS IoT Core). Prints one ready line with its URL; Ctrl+C stops it.
    Broker(broker::BrokerArgs),
    /// Run the local stand-in for AWS: the broker, a Lambda emulator that runs the real stub,
    /// and an HTTP front door (the Invoke API and Function URLs). Prints the URLs to call.
    Cloud(cloud::CloudArgs),
    /// Run the project's handlers on this machine for every invocation that reaches them.
    /// With no --broker, starts the whole chain here (broker, emulator, front door).
    Dev(dev::DevArgs),
    /// Deploy the stage to AWS: per function an IAM role and the stub as a Lambda function
    /// (with a Function URL where live.toml asks for one), and the stage's payload bucket.
    /// Run it again after a change: only what differs is updated.
    Deploy(stage::DeployArgs),
    /// Write the stub's deployment package (the zip `live deploy` uploads) and print its
    /// CodeSha256, for inspection or another deployment tool.
    Package(stage::PackageArgs),
    /// Put the stub in front of functions another tool deployed (CDK, SAM, Terraform,
    /// Serverless), saving what it changes in an attach record first.
    Attach(stage::AttachArgs),
    /// Give attached functions back exactly as they were before `live attach`.
    Detach(stage::DetachArgs),
    /// Delete everything of the stage: its functions, roles, layer and bucket (attached
    /// functions are detached, not deleted). Untagged resources are never touched.
    Remove(stage::RemoveArgs),
    /// Write the editor's debug configurations for the project's functions (merged into
    /// what is there): `live ide vscode`.
    Ide(ide::IdeArgs),
}

/// Install the log subscriber: warnings by default, more with `-v`, `RUST_LOG` wins.
pub fn logging(cli: &Cli) {
    let default = match cli.verbose {
        0 => "warn,live=info,cli=info,bridge=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Through the stderr writer thread, so a stderr nobody reads never stalls a runtime.
        .with_writer(|| writer::LogLine)
        .init();
}

/// Run the parsed command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let result = match cli.command {
        Command::Broker(args) => broker::run(args, signals::shutdown()).await,
        Command::Cloud(args) => cloud::run(args, signals::shutdown()).await,
        Command::Dev(args) => dev::run(args, signals::shutdown()).await,
        Command::Deploy(args) => stage::deploy(args).await,
        Command::Package(args) => stage::package(args),
        Command::Attach(args) => stage::attach(args).await,
        Command::Detach(args) => stage::detach(args).await,
        Command::Remove(args) => stage::remove(args).await,
        Command::Ide(args) => ide::run(args),
    };
    // The last log lines, written out before the process ends.
    writer::stderr()
        .close(std::time::Duration::from_secs(1))
        .await;
    result
}
