//! `live broker`: the embedded broker as its own process, so that each part of the chain can
//! be stopped and restarted on its own.

use anyhow::{bail, Context};
use bridge::broker::{run as serve, BrokerConfig};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Options of `live broker`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  live broker                 # ephemeral port, printed on the ready line\n  live broker --port 1884     # a fixed port, to restart on the same URL\n  live cloud --broker ws://127.0.0.1:1884/mqtt"
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
    let config = BrokerConfig {
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        credentials: args.credentials.pair(),
        ..BrokerConfig::default()
    };
    println!("live broker ready: ws://{local}/mqtt");
    serve(listener, config, shutdown)
        .await
        .context("broker failed")?;
    println!("live broker stopped");
    Ok(())
}
