//! The project's chores, run as `cargo xtask COMMAND` (an alias in `.cargo/config.toml`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod miri;

/// cargo xtask: the project's chores.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The matrix: every policy and peer over every workload, with a report (target/report).
    Bench(bench::BenchArgs),
    /// Run the policy crates' tests under Miri (undefined-behaviour checks).
    Miri(miri::MiriArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Bench(args) => bench::run(args),
        Cmd::Miri(args) => miri::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
