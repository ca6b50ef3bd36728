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
    /// User name every client must present (with --password).
    #[arg(long, env = "LIVE_BROKER_USERNAME", requires = "password")]
    pub username: Option<String>,
    /// Password every client must present (with --username). Never logged.
    #[arg(
        long,
        env = "LIVE_BROKER_PASSWORD",
        requires = "username",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Seconds a new connection may take to upgrade to WebSocket and send CONNECT.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout: u64,
}

/// Bind, print the ready line, serve until `shutdown`.
pub async fn run(args: BrokerArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if !args.host.is_loopback() && args.username.is_none() {
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
        credentials: args.username.zip(args.password),
        ..BrokerConfig::default()
    };
    println!("live broker ready: ws://{local}/mqtt");
    serve(listener, config, shutdown)
        .await
        .context("broker failed")?;
    println!("live broker stopped");
    Ok(())
}
