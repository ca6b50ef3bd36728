//! `live broker`: the embedded broker as its own process, so that each part of the chain can
//! be stopped and restarted on its own.

use crate::aws::AwsArgs;
use anyhow::{bail, Context};
use bridge::broker::{run as serve, BrokerConfig, IotMode, KeyRing, Quotas};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `live broker`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live broker                 # ephemeral port, printed on the ready line\n  live broker --port 1884     # a fixed port, to restart on the same URL\n  live cloud --broker ws://127.0.0.1:1884/mqtt\n  live broker --iot --ca-file /tmp/live-ca.pem\n                              # IoT Core's stand-in: wss://, SigV4 signatures by the\n                              # environment's AWS credentials; clients set LIVE_CA_FILE"
)]
pub struct BrokerArgs {
    /// TCP port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on. Anything but loopback requires --username and --password.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    #[command(flatten)]
    pub credentials: Credentials,
    /// Seconds a new connection may take to upgrade to WebSocket and send CONNECT.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout: u64,
    #[command(flatten)]
    pub iot: IotArgs,
}

/// IoT mode: the broker stands in for AWS IoT Core.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IotArgs {
    /// Stand in for AWS IoT Core: TLS (wss://) under a CA of its own, written to --ca-file,
    /// and only WebSocket upgrades presigned with SigV4 by known credentials (the AWS
    /// environment's: AWS_ACCESS_KEY_ID, a profile...); others get HTTP 403.
    #[arg(long, requires = "ca_file")]
    pub iot: bool,
    /// Where IoT mode writes its CA certificate (PEM): clients trust it through LIVE_CA_FILE.
    #[arg(long, value_name = "PATH", requires = "iot")]
    pub ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl IotArgs {
    /// The broker's IoT mode, when asked for: its TLS identity (the CA written to
    /// `--ca-file`), the region, and a key ring holding the environment's credentials.
    pub async fn mode(&self) -> anyhow::Result<Option<IotMode>> {
        let Some(ca_file) = self.ca_file.as_deref().filter(|_| self.iot) else {
            return Ok(None);
        };
        let aws = crate::aws::load(&self.aws).await?;
        let keys = KeyRing::default();
        let own = crate::aws::credential_source(&aws)?;
        let own = own().await.map_err(anyhow::Error::msg).context(
            "IoT mode accepts signatures by the environment's AWS credentials, and there are none: \
             set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values, for a local test), or pass --profile",
        )?;
        keys.insert(own);
        Ok(Some(iot_mode(ca_file, crate::aws::region(&aws), keys)?))
    }
}

/// IoT mode with a fresh CA written to `ca_file`.
pub fn iot_mode(ca_file: &Path, region: String, keys: KeyRing) -> anyhow::Result<IotMode> {
    Ok(IotMode {
        tls: crate::local_ca::create(ca_file, &region)?,
        region,
        keys,
        counts: Default::default(),
    })
}

/// Broker credentials: `live broker` requires them of every client; `live cloud` and
/// `live dev` present them (and `live cloud` gives them to its stubs).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Credentials {
    /// Broker user name (with --password).
    #[arg(long, env = "LIVE_BROKER_USERNAME", requires = "password")]
    pub username: Option<String>,
    /// Broker password (with --username). Never logged.
    #[arg(
        long,
        env = "LIVE_BROKER_PASSWORD",
        requires = "username",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

impl Credentials {
    /// The user name and password, when both are given.
    pub fn pair(&self) -> Option<(String, String)> {
        self.username.clone().zip(self.password.clone())
    }
}

/// Bind, print the ready line, serve until `shutdown`.
pub async fn run(args: BrokerArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if !args.host.is_loopback() && args.credentials.username.is_none() {
        bail!(
            "refusing to listen on {} without credentials: anyone on the network could read \
             invocations; pass --username and --password (or LIVE_BROKER_USERNAME and \
             LIVE_BROKER_PASSWORD), or listen on 127.0.0.1",
            args.host
        );
    }
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("could not listen on {addr}; pick another --port, or 0 for a free one")
    })?;
    let local = listener
        .local_addr()
        .context("could not read the bound address")?;
    let iot = args.iot.mode().await?;
    let scheme =
        match &iot {
            Some(mode) => {
                println!(
                "live broker: IoT mode, region {}, CA certificate in {} (set LIVE_CA_FILE to it)",
                mode.region,
                args.iot.ca_file.as_deref().unwrap_or(Path::new("")).display()
            );
                "wss"
            }
            None => "ws",
        };
    // IoT mode enforces IoT Core's per-connection quotas; their counts are kept here to be
    // reported on shutdown.
    let quotas = iot.as_ref().map(|_| Quotas::iot_core());
    let config = BrokerConfig {
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        credentials: args.credentials.pair(),
        iot,
        quotas: quotas.clone(),
        ..BrokerConfig::default()
    };
    println!("live broker ready: {scheme}://{local}/mqtt");
    serve(listener, config, shutdown)
        .await
        .context("broker failed")?;
    if let Some(quotas) = quotas {
        println!("live broker: IoT Core quotas: {}", quotas.counts.totals());
    }
    println!("live broker stopped");
    Ok(())
}
