//! `live cloud`: the local stand-in for AWS. The embedded broker (or one named by
//! `--broker`), a local Lambda emulator running the real stub, and an HTTP front door with
//! the Invoke API and Function URLs. `live dev` embeds the same parts when no cloud is
//! configured.

mod deployed;
pub mod emulator;
pub mod events;
mod fair_server;
pub mod front_door;
pub mod http_event;
mod roles;

pub use roles::{Roles, StubIot};

use crate::config::Project;
use anyhow::{bail, Context};
use bridge::broker::{Broker, BrokerConfig};
pub use emulator::OnInvoke;
use emulator::{Emulator, Runner, Settings};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options shared by `live cloud` and `live dev`'s embedded cloud.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudOptions {
    /// Port of the HTTP front door (Invoke API and Function URLs); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Port of the embedded broker; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub broker_port: u16,
    /// The stub binary (`bootstrap`). Default: $LIVE_STUB, then `bootstrap` beside `live`.
    #[arg(long, env = "LIVE_STUB")]
    pub stub: Option<PathBuf>,
    /// Execution environments per function at most; invocations beyond wait for one.
    #[arg(long, default_value_t = 64)]
    pub max_envs: usize,
    /// Milliseconds a stub waits for a developer session before answering
    /// `Live.NoDeveloperConnected`.
    #[arg(long, default_value_t = 3000)]
    pub no_dev_window_ms: u64,
    /// Show the stubs' own output.
    #[arg(long)]
    pub show_stubs: bool,
    /// Do not freeze idle stubs (by default they are stopped between invocations, as Lambda
    /// freezes idle execution environments).
    #[arg(long)]
    pub no_freeze: bool,
    /// Build Rust functions in release mode.
    #[arg(long)]
    pub release: bool,
    #[command(flatten)]
    pub events: events::EventOptions,
    #[command(flatten)]
    pub credentials: crate::broker::Credentials,
}

/// IoT mode for the local cloud: its broker stands in for IoT Core, and its stubs sign with
/// their function's role credentials and trust the broker's CA file.
pub struct IotCloud {
    /// The embedded broker's IoT mode (its key ring also takes the roles' credentials);
    /// `None` against another broker (`--broker wss://...`).
    pub mode: Option<bridge::broker::IotMode>,
    /// What the stubs sign with and trust.
    pub stubs: StubIot,
}

/// The running local cloud.
pub struct LocalCloud {
    pub front_door: SocketAddr,
    pub bridge_url: String,
    pub functions: Vec<String>,
    broker: Option<Broker>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalCloud {
    /// The embedded broker, for a client in this process to join without a socket; `None`
    /// when the cloud uses another broker.
    pub fn local_broker(&self) -> Option<bridge::broker::LocalBroker> {
        self.broker.as_ref().map(Broker::local)
    }

    /// Start the broker (unless `broker_url` names one), the emulator and the front door;
    /// with `direct` launches the emulator runs the handlers themselves, with no stub and no
    /// broker; `on_invoke` hears of each request as it arrives.
    pub async fn start_with(
        project: &Project,
        options: &CloudOptions,
        broker_url: Option<String>,
        direct: Option<std::collections::BTreeMap<String, crate::function::Launch>>,
        on_invoke: Option<emulator::OnInvoke>,
        iot: Option<IotCloud>,
    ) -> anyhow::Result<LocalCloud> {
        let freeze = !options.no_freeze && direct.is_none();
        let (broker, bridge_url, runner) = match direct {
            Some(launches) => (None, "(none: direct)".to_string(), Runner::Direct(launches)),
            None => {
                let program = crate::stub_binary::find(options.stub.clone())?;
                let (broker_iot, mut stub_iot) = match iot {
                    Some(iot) => (iot.mode, Some(Box::new(iot.stubs))),
                    None => (None, None),
                };
                let (broker, url) = match broker_url {
                    Some(url) => (None, url),
                    None => {
                        let addr = SocketAddr::from(([127, 0, 0, 1], options.broker_port));
                        let config = BrokerConfig {
                            iot: broker_iot,
                            ..BrokerConfig::default()
                        };
                        let broker = Broker::start(addr, config)
                            .await
                            .with_context(|| format!("could not start the embedded broker on {addr}; pick another --broker-port"))?;
                        let url = broker.url();
                        if let Some(stubs) = stub_iot.as_mut().filter(|s| s.redirect.is_some()) {
                            stubs.redirect = Some(broker.local_addr().to_string());
                        }
                        (Some(broker), url)
                    }
                };
                let runner = Runner::Stub {
                    program,
                    bridge_url: url.clone(),
                    credentials: options.credentials.pair(),
                    iot: stub_iot,
                };
                (broker, url, runner)
            }
        };
        let settings = Settings {
            runner,
            max_envs: options.max_envs.max(1),
            no_dev_window: Duration::from_millis(options.no_dev_window_ms),
            echo_stubs: options.show_stubs,
            freeze,
            on_invoke,
        };
        let emulator = Arc::new(Emulator::new(project, settings));
        let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("could not listen on {addr}; pick another --port, or 0 for a free one")
        })?;
        let front_door = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let events = events::Events::start(&emulator, &options.events, options.max_envs.max(1));
        let task = tokio::spawn(front_door::serve(listener, emulator, events, async {
            let _ = stopped.await;
        }));
        Ok(LocalCloud {
            front_door,
            bridge_url,
            functions: project.functions.keys().cloned().collect(),
            broker,
            stop: Some(stop),
            task,
        })
    }

    /// The lines that tell the user where to send requests.
    pub fn describe(&self) -> String {
        let base = format!("http://{}", self.front_door);
        let mut out = format!(
            "  broker  {}{}\n  invoke  {base}/2015-03-31/functions/NAME/invocations\n",
            self.bridge_url,
            if self.broker.is_some() {
                " (embedded)"
            } else {
                ""
            }
        );
        for f in &self.functions {
            out.push_str(&format!("  url     {base}/{f}/\n"));
        }
        out
    }

    /// What IoT Core's quotas did on the embedded broker so far (IoT mode only).
    pub fn quota_totals(&self) -> Option<bridge::broker::QuotaTotals> {
        self.broker.as_ref()?.quota_totals()
    }

    /// Stop the front door and the broker.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        if let Some(broker) = self.broker.take() {
            let _ = broker.shutdown().await;
        }
    }
}

/// Options of `live cloud`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live cloud                                 # embedded broker\n  live broker --port 1884 &\n  live cloud --broker ws://127.0.0.1:1884/mqtt   # parts stopped and restarted on their own\n  live cloud --iot --ca-file /tmp/live-ca.pem      # the broker stands in for IoT Core\n  curl http://127.0.0.1:PORT/hello/"
)]
pub struct CloudArgs {
    /// The project's live.toml (default: found in this directory or its parents).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Use this broker (for example `live broker`'s URL) instead of embedding one.
    #[arg(long)]
    pub broker: Option<String>,
    /// Build the handlers and run them directly under the emulator, with no stub and no
    /// bridge: the baseline the benchmarks compare the whole chain with.
    #[arg(long, conflicts_with = "broker")]
    pub direct: bool,
    #[command(flatten)]
    pub iot: crate::broker::IotArgs,
    /// IoT mode: replace each function's role credentials every this many seconds, served
    /// to its stubs from a loopback credentials endpoint (for tests of rotation).
    #[arg(long, hide = true, requires = "iot", value_name = "SECS")]
    pub rotate_credentials_secs: Option<u64>,
    /// IoT mode: the stage's S3 bucket, through which the stubs pass events and responses
    /// too large for IoT Core's 512 KiB/s (their LIVE_BUCKET; AWS_ENDPOINT_URL_S3 or
    /// AWS_ENDPOINT_URL, if set here, point them at a stand-in such as moto).
    #[arg(long, requires = "iot", value_name = "NAME")]
    pub bucket: Option<String>,
    /// IoT mode: run the stage's functions as the Lambda API reports them (those `live
    /// deploy` made): their environment, timeout and memory, under their Lambda names, and
    /// only if the stub here is the deployed code (its CodeSha256). The stubs reach this
    /// broker under the endpoint name their environment holds.
    #[arg(long, requires = "iot", conflicts_with = "bucket")]
    pub deployed: bool,
    /// The stage (default: live.toml's `stage`, else your user name).
    #[arg(long)]
    pub stage: Option<String>,
    #[command(flatten)]
    pub cloud: CloudOptions,
}

/// IoT mode against another broker (`live broker --iot`), which knows only the
/// environment's credentials: the stubs sign with those and trust `LIVE_CA_FILE`.
async fn external_iot(args: &CloudArgs) -> anyhow::Result<IotCloud> {
    let aws = crate::aws::load(&args.iot.aws).await?;
    let own = crate::aws::credential_source(&aws)?;
    let own = own().await.map_err(anyhow::Error::msg).context(
        "the stubs sign their wss:// connections with this environment's AWS credentials, and there are none: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile",
    )?;
    let ca_file = bridge::tls::ca_file_from_env().context(
        "a wss:// broker of this machine needs its CA: set LIVE_CA_FILE to the file `live broker --iot --ca-file` wrote",
    )?;
    Ok(IotCloud {
        mode: None,
        stubs: StubIot {
            region: crate::aws::region(&aws),
            ca_file,
            roles: Roles::fixed(own),
            bucket: None,
            redirect: None,
        },
    })
}

/// Run `live cloud` until `shutdown`.
pub async fn run(args: CloudArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut project = crate::config::load_project(args.config.as_deref(), args.cloud.release)?;
    if let Some(stage) = &args.stage {
        project.stage = stage.clone();
    }
    if args.deployed {
        let sdk = crate::aws::load(&args.iot.aws).await?;
        let stub = crate::stub_binary::find(args.cloud.stub.clone())?;
        project.functions = deployed::functions(&sdk, &project, &stub).await?;
    }
    let direct = if args.direct {
        let names: Vec<String> = project.functions.keys().cloned().collect();
        let launches = crate::function::build_some(&project, &names)
            .await
            .map_err(|f| anyhow::anyhow!("build failed:\n{}", f.first_error))?;
        Some(launches)
    } else {
        None
    };
    if args.iot.iot && (args.broker.is_some() || args.direct) {
        bail!(
            "--iot is the embedded broker's mode: it cannot be combined with --broker or --direct"
        );
    }
    let iot = match (args.iot.mode().await?, &args.broker) {
        (Some(mode), _) => Some(IotCloud {
            stubs: StubIot {
                region: mode.region.clone(),
                ca_file: args.iot.ca_file.clone().unwrap_or_default(),
                roles: match args.rotate_credentials_secs {
                    None => Roles::new(mode.keys.clone()),
                    Some(secs) => {
                        Roles::rotating(mode.keys.clone(), Duration::from_secs(secs.max(1))).await?
                    }
                },
                bucket: args.bucket.clone(),
                redirect: args.deployed.then(String::new),
            },
            mode: Some(mode),
        }),
        (None, Some(url)) if url.starts_with("wss://") => Some(external_iot(&args).await?),
        (None, _) => None,
    };
    let cloud =
        LocalCloud::start_with(&project, &args.cloud, args.broker, direct, None, iot).await?;
    println!(
        "live cloud ready: http://{} (app {}, stage {})\n{}",
        cloud.front_door,
        project.app,
        project.stage,
        cloud.describe()
    );
    shutdown.await;
    if let Some(totals) = cloud.quota_totals() {
        println!("live cloud: IoT Core quotas: {totals}");
    }
    cloud.shutdown().await;
    println!("live cloud stopped");
    Ok(())
}
