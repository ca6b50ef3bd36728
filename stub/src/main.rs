//! The Lambda custom runtime `bootstrap` that stands in for a function: it takes each
//! invocation from the Runtime API, forwards it over the bridge to a developer session, and
//! posts the result back. Configured only by environment variables (see `config.rs`).

mod config;
mod context;
mod credentials;
mod forward;
mod http1;
mod log;
mod objects;
mod receive;
mod reply;
mod runtime;
mod sessions;

use bytes::Bytes;
use forward::Bridge;
use reply::Reply;
use runtime::RuntimeClient;
use std::process::ExitCode;

fn main() -> ExitCode {
    log::install(std::env::var("LIVE_LOG").ok().as_deref());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The loop runs as a task, not as `block_on`'s own future: waking that one writes to
    // the runtime's eventfd (a system call and one more trip through `epoll_wait`) every time
    // a reply arrives, where waking a task is a push onto the local queue.
    runtime.block_on(async { tokio::spawn(run()).await.unwrap_or(ExitCode::FAILURE) })
}

async fn run() -> ExitCode {
    // Started by live's exec wrapper (an attached function of a managed runtime), the stub
    // is handed the runtime's own command line: kept for running the deployed code later.
    let runtime_command: Vec<String> = std::env::args().skip(1).collect();
    if !runtime_command.is_empty() {
        tracing::info!(
            "started by the exec wrapper in place of the runtime: {}",
            runtime_command.join(" ")
        );
    }
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(e) => return init_failed(&e).await,
    };
    let mut bridge = match Bridge::connect(&config) {
        Ok(bridge) => bridge,
        Err(e) => return init_failed(&format!("bad bridge configuration: {e}")).await,
    };
    let mut api = RuntimeClient::new(&config.runtime_api);
    loop {
        let next = match api.next().await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        match bridge.forward(&next).await {
            Reply::Response { headers, body } => {
                api.respond(&next.request_id, &headers, body).await
            }
            Reply::Error {
                error_type,
                headers,
                body,
            } => {
                api.fail(&next.request_id, &error_type, &headers, body)
                    .await
            }
        }
    }
}

/// Report a configuration error to Lambda (served to the first invocation) and exit.
async fn init_failed(message: &str) -> ExitCode {
    tracing::error!("{message}");
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        let body = bridge::runtime_api::error_body("Live.StubMisconfigured", message);
        let mut client = RuntimeClient::new(&api);
        client
            .post_init_error("Live.StubMisconfigured", Bytes::from(body))
            .await;
    }
    ExitCode::FAILURE
}
