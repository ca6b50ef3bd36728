//! `live dev`: build the project's functions, connect a developer session to the bridge (or,
//! with no cloud configured, start the local cloud in-process), and run every invocation that
//! reaches this session on a local worker, one line per invocation. This file starts the
//! parts and owns their tasks; [`session`] handles what arrives.

mod attached;
mod debounce;
mod debug;
mod lanes;
mod noise;
mod objects;
mod output;
mod reload;
mod seen;
mod session;
mod watch;
mod watch_tree;
pub mod watchset;
mod worker;

use crate::cloud::{CloudOptions, LocalCloud, OnInvoke};
use anyhow::Context;
use bridge::transport::{session_presence_with_lanes, ConnectOptions, Connection};
use bridge::Topics;
use output::Output;
use reload::Builds;
use session::{Parts, Session};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use watch::FileWatcher;
use worker::Workers;

/// How long `live dev` waits on exit for the invocations still running to finish before it
/// answers them `Live.SessionStopped` (a second Ctrl-C does so at once).
const DRAIN: Duration = Duration::from_secs(10);

/// How long, once abandoned, their answers have to go out.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

/// How long the background tasks (builder, watcher, sweeps) have to stop.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// How long on exit the lines still queued have to be written.
const OUTPUT_WAIT: Duration = Duration::from_secs(2);

/// Options of `live dev`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live dev -c examples/hello                  # everything on this machine\n  curl http://127.0.0.1:PORT/http/            # the URL printed on the ready line\n  live dev --broker ws://127.0.0.1:1884/mqtt  # join a running `live cloud` or broker\n  live dev --aws --profile dev                # join the stage through AWS IoT Core\n\nWithout live.toml, in a cargo project, every binary that depends on lambda_runtime or\nlambda_http is served under its name."
)]
pub struct DevArgs {
    /// The project's live.toml, or its directory (default: found in this directory or its
    /// parents).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// The stage to serve (default: live.toml's `stage`, else your user name).
    #[arg(long)]
    pub stage: Option<String>,
    /// Join this broker instead of starting the local cloud in-process.
    #[arg(long)]
    pub broker: Option<String>,
    /// Join the stage through AWS IoT Core: the endpoint from `DescribeEndpoint`
    /// (iot:Data-ATS), every connection presigned with SigV4 by your AWS credentials
    /// (environment, --profile, SSO), paced inside IoT Core's quotas. Also `[cloud] aws = true`
    /// in live.toml. LIVE_CA_FILE adds certificates to trust; LIVE_IOT_CONNECT_TO=HOST:PORT
    /// connects there under the endpoint's name (a local `live cloud --iot`).
    #[arg(long, conflicts_with = "broker")]
    pub aws: bool,
    #[command(flatten)]
    pub aws_account: crate::aws::AwsArgs,
    /// With --aws: take over this function another tool deployed (`FN`, or `FN=LOCAL` to
    /// serve it as live.toml's LOCAL) once ready, as `live attach` does, and give it back on
    /// exit. Repeatable, or comma-separated.
    #[arg(long, value_name = "FN[=LOCAL]", value_delimiter = ',')]
    pub attach: Vec<String>,
    /// Debug mode for function FN (repeatable, or `debug = true` in its table): no worker is
    /// started for it; its Runtime API listens on a fixed port and its whole environment is
    /// written to .live/debug/FN.env, so that what your IDE launches with it (under the
    /// debugger) is its worker. Invocations wait for it, one at a time.
    #[arg(long, value_name = "FN", value_delimiter = ',')]
    pub debug: Vec<String>,
    /// One JSON object per line (ready, change, build_started, build_restarted,
    /// build_finished, invocation, output_dropped) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print only errors (and the ready line).
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not watch files: build once at start.
    #[arg(long)]
    pub no_watch: bool,
    /// Seconds an idle worker is kept before it stops (as Lambda recycles idle
    /// environments).
    #[arg(long, default_value_t = 600)]
    pub idle_timeout: u64,
    #[command(flatten)]
    pub cloud: CloudOptions,
}

/// The environment variable that sends the connection to another address than the
/// endpoint's name resolves to, keeping the name for TLS, `Host` and the signature (a local
/// stand-in for IoT Core, as the tests use; an SSH tunnel).
const CONNECT_TO_ENV: &str = "LIVE_IOT_CONNECT_TO";

/// How `live dev` reaches IoT Core.
struct IotCore {
    /// The account's configuration, for the stage's attach records too.
    sdk: aws_config::SdkConfig,
    url: String,
    region: String,
    credentials: bridge::transport::CredentialSource,
    connect_to: Option<String>,
}

/// Debug mode for the functions `--debug` names or whose table says `debug = true`: their
/// Runtime API on its fixed port, their environment file written, both said.
async fn start_debug(
    args: &DevArgs,
    project: &crate::config::Project,
    builds: &Arc<Builds>,
    workers: &Workers,
    output: &Output,
) -> anyhow::Result<()> {
    for name in &args.debug {
        if !project.functions.contains_key(name) {
            anyhow::bail!(
                "--debug {name}: live.toml has no function {name} (it has: {})",
                project
                    .functions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let mut debugged = debug::DebugWorkers::new();
    for (name, config) in &project.functions {
        if !(config.debug || args.debug.contains(name)) {
            continue;
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        let launch = match builds.launch_for(name, until).await {
            Ok((launch, _)) => launch,
            Err(_) => anyhow::bail!(
                "debug mode for {name} needs a build of it first: fix the build error above, then start live dev again"
            ),
        };
        let worker = debug::DebugWorker::start(&project.root, name, config, &launch).await?;
        output.noteln(format_args!(
            "live dev: debug mode for {name}: Runtime API on {}; launch its worker with the environment in {} (e.g. `env $(cat {}) {}`)",
            worker.addr(),
            worker.env_file.display(),
            worker.env_file.display(),
            launch.program.display()
        ));
        if config.timeout < 60 {
            output.noteln(format_args!(
                "live dev: note: {name}'s timeout is {} s, short for a handler paused at a breakpoint: raise `timeout` in its table (up to 900), and `live deploy --debug` (or `live attach --debug`) in the cloud",
                config.timeout
            ));
        }
        debugged.insert(name.clone(), Arc::new(worker));
    }
    workers.set_debug(debugged);
    Ok(())
}

/// Find IoT Core's endpoint for the account and region, and the credentials to sign with.
async fn iot_core(
    args: &DevArgs,
    project: &crate::config::Project,
    output: &Output,
) -> anyhow::Result<IotCore> {
    let config = crate::aws::load(&args.aws_account.or_project(&project.cloud)).await?;
    let region = crate::aws::region(&config);
    let credentials = crate::aws::credential_source(&config)?;
    credentials().await.map_err(anyhow::Error::msg).context(
        "no AWS credentials to join IoT Core with: run `aws sso login`, pass --profile, or set \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    )?;
    output.noteln(format!(
        "live dev: finding AWS IoT Core's endpoint in {region}"
    ));
    let url = crate::aws::bridge_url(&config, project.cloud.endpoint_host()).await?;
    let connect_to = std::env::var(CONNECT_TO_ENV).ok().filter(|v| !v.is_empty());
    Ok(IotCore {
        sdk: config,
        url,
        region,
        credentials,
        connect_to,
    })
}

/// Run `live dev` until `shutdown`, then drain: invocations still running finish (or are
/// answered `Live.SessionStopped` after [`DRAIN`]), their stubs get their answers, and the
/// lines still queued are written.
pub async fn run(args: DevArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let output = Arc::new(Output::new(args.json, args.quiet));
    let background = TaskTracker::new();
    let cancel = CancellationToken::new();
    let served = serve(&args, &output, &background, &cancel, shutdown).await;
    cancel.cancel();
    background.close();
    if tokio::time::timeout(STOP_WAIT, background.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within {STOP_WAIT:?}");
    }
    if served.is_ok() && !args.json {
        output.noteln("live dev: stopped");
    }
    output.close(OUTPUT_WAIT).await;
    served
}

/// Everything between start and stop; background tasks go to `background`, stopped by
/// `cancel` after this returns.
async fn serve(
    args: &DevArgs,
    output: &Arc<Output>,
    background: &TaskTracker,
    cancel: &CancellationToken,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Loading may run `cargo metadata` (a zero-config project): off the runtime's thread.
    let (config, release) = (args.config.clone(), args.cloud.release);
    let mut project = tokio::task::spawn_blocking(move || {
        crate::config::load_project(config.as_deref(), release)
    })
    .await
    .context("loading the project failed")??;
    if let Some(stage) = &args.stage {
        project.stage = stage.clone();
    }
    let names: Vec<String> = project.functions.keys().cloned().collect();
    let builds = Builds::new(project.clone(), output.clone());
    let workers = Arc::new(Workers::new(project.clone(), !args.json));

    // IoT Core first: a missing credential or endpoint is said before a long first build.
    let aws = match args.aws || project.cloud.aws {
        true => Some(iot_core(args, &project, output).await?),
        false => None,
    };
    if !args.attach.is_empty() && aws.is_none() {
        anyhow::bail!(
            "--attach takes over functions in AWS: add --aws (or `[cloud] aws = true` in live.toml)"
        );
    }
    // The stage's attach records (a real account's bucket): opened before the first build, so
    // that a credentials problem is said first.
    let sdk = aws.as_ref().map(|iot| iot.sdk.clone());
    let attach_stage = match (&sdk, args.attach.is_empty()) {
        (Some(sdk), false) => Some(attached::open(&project, sdk).await?),
        _ => None,
    };
    // The watcher starts before the first build, so no save is missed in between.
    let watcher = if args.no_watch {
        None
    } else {
        watch_files(&project, &builds, output, background, cancel).await?
    };
    let (built_tx, mut built_rx) = tokio::sync::mpsc::unbounded_channel();
    background.spawn(
        cancel
            .clone()
            .run_until_cancelled_owned(builds.clone().run_builder(built_tx)),
    );
    // Old workers stop as soon as they are idle after a build; idle ones after a while.
    {
        let workers = workers.clone();
        let idle = Duration::from_secs(args.idle_timeout);
        background.spawn(cancel.clone().run_until_cancelled_owned(async move {
            let mut sweep = tokio::time::interval(
                Duration::from_secs(1).min(idle.max(Duration::from_millis(100))),
            );
            loop {
                tokio::select! {
                    built = built_rx.recv() => match built {
                        Some((function, generation)) => workers.retire(&function, generation),
                        None => return,
                    },
                    _ = sweep.tick() => workers.stop_idle_for(idle),
                }
            }
        }));
    }
    // The first build, before saying ready (its failure is reported and served as errors).
    for name in &names {
        let _ = builds
            .launch_for(
                name,
                tokio::time::Instant::now() + Duration::from_secs(3600),
            )
            .await;
    }

    start_debug(args, &project, &builds, &workers, output).await?;

    let cloud = match (&args.broker, &aws) {
        (Some(_), _) | (_, Some(_)) => None,
        (None, None) => {
            // The embedded cloud starts each request's watcher barrier once its event is on
            // its way to the stub.
            let hint = watcher
                .clone()
                .map(|w| OnInvoke(Arc::new(move |id: &str| w.hint(id))));
            Some(LocalCloud::start_with(&project, &args.cloud, None, None, hint, None).await?)
        }
    };
    let bridge_url = match (&args.broker, &aws, &cloud) {
        (Some(url), _, _) => url.clone(),
        (None, Some(iot), _) => iot.url.clone(),
        (None, None, Some(cloud)) => cloud.bridge_url.clone(),
        (None, None, None) => unreachable!("a cloud is started without --broker or --aws"),
    };
    let topics = Topics::new(&project.app, &project.stage)?;
    // The stage names the session for people reading logs; cut so that the name (and the
    // topics built from it) stays within the 64 characters a name may have.
    let stage: String = project
        .stage
        .chars()
        .take(bridge::topics::MAX_NAME_BYTES - 9)
        .collect();
    let session_name = format!("{stage}-{}", &crate::ids::env_id()[..8]);
    let inv_topic = topics.invocations(&session_name)?;
    let mut options = ConnectOptions::new(
        &bridge_url,
        bridge::client_ids::dev(&project.app, &project.stage, &session_name),
    );
    options.subscriptions = vec![inv_topic];
    let lane_count = Arc::new(std::sync::atomic::AtomicU16::new(1));
    options.presence = Some(session_presence_with_lanes(
        &topics,
        &session_name,
        names.clone(),
        lane_count.clone(),
    )?);
    options.keep_alive = Duration::from_secs(10);
    options.credentials = args.cloud.credentials.pair();
    let iot_core = aws.is_some();
    if let Some(iot) = aws {
        // IoT Core clamps keep-alive to 30 s at least.
        options.keep_alive = Duration::from_secs(30);
        options.signer = Some(bridge::transport::sigv4_signer(iot.region, iot.credentials));
        options.connect_to = iot.connect_to;
        options.quota = Some(bridge::transport::PublishQuota::IOT_CORE);
    }
    // The session joins its own embedded broker in-process (the stubs still cross it over
    // WebSocket); another broker, over WebSocket.
    let template = options.clone();
    let mut connection = match cloud.as_ref().and_then(LocalCloud::local_broker) {
        Some(broker) => Connection::open_local(options, &broker),
        None => Connection::open(options)?,
    };
    connection
        .ready(Duration::from_secs(10))
        .await
        .with_context(|| format!("could not join the bridge at {bridge_url}"))?;

    output.line(ready_line(
        args,
        &project,
        &session_name,
        &bridge_url,
        cloud.as_ref(),
    ));
    let mut attaching = None;
    match (&attach_stage, sdk) {
        (Some(stage), _) => {
            attaching = Some(attached::start(
                stage.clone(),
                args.attach.clone(),
                args,
                output.clone(),
            ));
            attached::note_left_attached(stage.clone(), args.attach.clone(), output.clone());
        }
        (None, Some(sdk)) => {
            // Without --attach, the records are looked at in the background, and only said
            // when there are some.
            let (output, project) = (output.clone(), project.clone());
            tokio::spawn(async move {
                if let Ok(stage) = attached::open(&project, &sdk).await {
                    attached::note_left_attached(stage, Vec::new(), output);
                }
            });
        }
        (None, None) => {}
    }
    let lanes = Arc::new(lanes::Lanes::new(connection.sender(), lane_count));
    let session = Session::new(Parts {
        topics: topics.clone(),
        lanes: lanes.clone(),
        workers,
        builds,
        watcher,
        functions: names,
        out: output.clone(),
    });
    // Against IoT Core, more connections as the load needs, each inside its quota.
    if let (true, Some(announcer)) = (iot_core, connection.announcer()) {
        let grow = lanes::Grow {
            lanes,
            template,
            topics,
            session_name: session_name.clone(),
            session: session.clone(),
            announcer,
            tasks: background.clone(),
            cancel: cancel.clone(),
        };
        background.spawn(cancel.clone().run_until_cancelled_owned(grow.run()));
    }
    // Kept results past their deadline are forgotten by one sweep, not by a timer each.
    {
        let session = session.clone();
        background.spawn(cancel.clone().run_until_cancelled_owned(async move {
            let mut tick = tokio::time::interval(session::RESULT_SWEEP);
            loop {
                tick.tick().await;
                session.sweep();
            }
        }));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            received = connection.recv() => match received {
                Some(received) => session.receive(received),
                None => break,
            },
        }
    }
    // Attached functions are given back while invocations are still served.
    if let Some(stage) = &attach_stage {
        // An attach still running finishes first: a detach racing it could find no record
        // yet, or be undone by the attach's last step.
        let give_back = async {
            if let Some(attaching) = attaching.take() {
                let _ = attaching.await;
            }
            attached::give_back(stage, &args.attach, output).await
        };
        tokio::pin!(give_back);
        let again = crate::signals::next();
        tokio::pin!(again);
        loop {
            tokio::select! {
                _ = &mut give_back => break,
                _ = &mut again => {
                    output.noteln("live dev: left attached: `live detach --all` gives them back");
                    break;
                }
                received = connection.recv() => match received {
                    Some(received) => session.receive(received),
                    None => break,
                },
            }
        }
    }
    drain(&session, &mut connection, output).await;
    connection.close().await;
    if let Some(cloud) = cloud {
        // The front door answers the requests in flight before it stops.
        cloud.shutdown().await;
    }
    Ok(())
}

/// Let the invocations still running finish, receiving meanwhile (probes and retransmissions
/// are answered; new invocations get `Live.SessionStopped`), for up to [`DRAIN`] or until a
/// second Ctrl-C; then answer those left `Live.SessionStopped`.
async fn drain(session: &Arc<Session>, connection: &mut Connection, output: &Output) {
    let again = crate::signals::next();
    tokio::pin!(again);
    let running = session.running();
    if running > 0 {
        output.noteln(format_args!(
            "live dev: stopping: waiting up to {}s for {running} invocation(s) to finish (Ctrl-C again to stop them now)",
            DRAIN.as_secs()
        ));
    }
    let drained = session.drain();
    tokio::pin!(drained);
    let give_up = tokio::time::sleep(DRAIN);
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            _ = &mut drained => return,
            _ = &mut give_up => break,
            _ = &mut again => break,
            received = connection.recv() => match received {
                Some(received) => session.receive(received),
                None => break,
            },
        }
    }
    output.noteln(format_args!(
        "live dev: stopping {} invocation(s) still running",
        session.running()
    ));
    session.abandon();
    if tokio::time::timeout(ABANDON_WAIT, drained).await.is_err() {
        tracing::warn!(
            "the answers of stopped invocations were not all sent within {ABANDON_WAIT:?}"
        );
    }
}

/// Start the file watcher and the loop that applies its changes; `None` (with a message)
/// when watching is not possible here.
async fn watch_files(
    project: &crate::config::Project,
    builds: &Arc<Builds>,
    output: &Output,
    background: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Arc<FileWatcher>>> {
    // `cargo metadata` (for the Rust functions' folders) and the watches' setup walk the
    // file system: off the runtime's thread.
    let project = project.clone();
    let watchset = tokio::task::spawn_blocking(move || watchset::WatchSet::compute(&project))
        .await
        .context("computing the watch set failed")??;
    let roots = watchset.roots();
    let (tx, rx) = tokio::sync::mpsc::channel(watch::QUEUE);
    let started = {
        let roots = roots.clone();
        tokio::task::spawn_blocking(move || FileWatcher::start(&roots, tx))
            .await
            .context("starting the file watcher failed")?
    };
    match started {
        Ok((watcher, passed)) => {
            let watcher = Arc::new(watcher);
            background.spawn(
                cancel
                    .clone()
                    .run_until_cancelled_owned(reload::run_watcher(
                        rx,
                        watcher.clone(),
                        passed,
                        watchset,
                        builds.clone(),
                    )),
            );
            Ok(Some(watcher))
        }
        Err(e) => {
            output.noteln(format_args!("live dev: {e:#}"));
            Ok(None)
        }
    }
}

/// The ready line (text, or JSON with `--json`).
fn ready_line(
    args: &DevArgs,
    project: &crate::config::Project,
    session: &str,
    bridge_url: &str,
    cloud: Option<&LocalCloud>,
) -> String {
    if args.json {
        let urls: serde_json::Map<String, serde_json::Value> = cloud
            .map(|c| {
                c.functions
                    .iter()
                    .map(|f| (f.clone(), format!("http://{}/{f}/", c.front_door).into()))
                    .collect()
            })
            .unwrap_or_default();
        let ready = serde_json::json!({
            "event": "ready",
            "app": project.app,
            "stage": project.stage,
            "session": session,
            "broker": bridge_url,
            "pid": std::process::id(),
            "front_door": cloud.map(|c| format!("http://{}", c.front_door)),
            "urls": urls,
        });
        return ready.to_string();
    }
    match cloud {
        Some(cloud) => format!(
            "live dev ready: http://{} (app {}, stage {}, session {session})\n{}",
            cloud.front_door,
            project.app,
            project.stage,
            cloud.describe()
        ),
        None => format!(
            "live dev ready: serving {} for app {} stage {} through {bridge_url} (session {session})",
            project.functions.keys().cloned().collect::<Vec<_>>().join(", "),
            project.app,
            project.stage
        ),
    }
}
