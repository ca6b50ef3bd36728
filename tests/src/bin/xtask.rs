//! Repository chores, run as `cargo xtask <task>`:
//!
//! - `cargo xtask test`: everything CI checks, in order: formatting, clippy, building every
//!   binary (the end-to-end tests drive them), then every test with `cargo nextest` (or
//!   `cargo test` where nextest is missing). The Python packages the tests use are installed
//!   by the test harness on first use.
//! - `cargo xtask bench`: builds in release and runs the benchmarks, rewriting BENCHMARKS.md.

use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <test [--no-lint] | bench>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(tests::workspace_root());
    cmd
}

fn run(step: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: {step}");
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: could not start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn test(args: &[String]) -> Result<(), String> {
    let lint = !args.iter().any(|a| a == "--no-lint");
    if lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--check"]);
        run("cargo fmt --all --check", fmt)?;
        let mut clippy = cargo();
        clippy.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        run("cargo clippy", clippy)?;
    }
    let mut build = cargo();
    build.args(["build", "--workspace", "--bins"]);
    run("build every binary", build)?;
    // The example's handlers, which the README test serves: built here, once, rather than
    // inside a test under its deadline.
    let mut example = cargo();
    example.args([
        "build",
        "--manifest-path",
        "examples/hello/Cargo.toml",
        "--bins",
    ]);
    run("build examples/hello", example)?;
    // The reload tests' Rust fixture, into the target directory they build copies in, so
    // that the tests rebuild only the fixture's own crates.
    let mut fixture = cargo();
    fixture
        .args([
            "build",
            "--manifest-path",
            "tests/fixtures/reload/Cargo.toml",
        ])
        .env("CARGO_TARGET_DIR", tests::live::fixture_target_dir());
    run("build tests/fixtures/reload", fixture)?;
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut tests = cargo();
    if nextest {
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        tests.args(["test", "--workspace", "--no-fail-fast"]);
    }
    run("run every test", tests)
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut build = cargo();
    build.args(["build", "--release", "--workspace", "--bins"]);
    run("build in release", build)?;
    // The stub as it is deployed: built alone, with its own size-minded profile.
    let mut stub = cargo();
    stub.args(["build", "--profile", "stub", "-p", "stub"]);
    run("build the deployable stub", stub)?;
    let mut bench = Command::new(tests::target_dir().join("release").join("bench"));
    bench.args(args).current_dir(tests::workspace_root());
    run("run the benchmarks", bench)
}
