//! The `live` binary: parse the command line, install logging, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::logging(&cli);
    // `live dev` serves one developer: a single thread keeps its many small hand-offs per
    // invocation (front door, emulator, broker, session, worker) free of cross-thread wake-ups
    // (measured: a quarter less CPU per invocation). The servers `broker` and `cloud` may
    // serve many clients and use every core.
    let runtime = match cli.command {
        cli::Command::Dev(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(cli::aws::exit_code(&e))
        }
    }
}
