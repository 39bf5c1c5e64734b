//! `fsm`: the command-line tool of the free-space-management workspace.
//!
//! ```text
//!   fsm <COMMAND> ...
//!    |
//!    +-- sim      OSTEP's malloc.py, byte for byte, and every policy's structures step by step
//!    |            (module `sim`)
//!    +-- ...      replay, compare, record, run, classes: each lives in its own module, declared below
//!                 and given a variant of `Command`
//! ```
//!
//! Adding a subcommand is three small edits here: `mod NAME;`, a variant of [`Command`] holding
//! the module's clap `Args` struct, and one arm in [`main`] calling the module's `run`, which
//! returns the process's [`ExitCode`]. Nothing here knows about any policy.
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod classes;
mod compare;
mod library;
mod record;
mod replay;
mod run;
mod sim;

/// Free-space management: simulate, replay and compare allocation policies.
#[derive(Debug, Parser)]
#[command(name = "fsm", version)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. Each variant holds its module's arguments.
#[derive(Debug, Subcommand)]
enum Command {
    /// OSTEP's malloc.py free-list simulator (same flags, same output), and any policy step by
    /// step (`--policy next-fit`), optionally drawn as SVG (`--svg FILE`).
    ///
    /// The flags are parsed exactly as malloc.py's optparse parses them; run `fsm sim -h` for
    /// the list.
    Sim(sim::SimArgs),
    /// Replay a trace through one policy and print its measures (or block offsets).
    Replay(replay::ReplayArgs),
    /// Which policy for my program: a trace through every policy and the in-process peers,
    /// ranked by fragmentation, with time per event and a chart (`--svg`).
    Compare(compare::CompareArgs),
    /// Record a program's allocations as a trace: `fsm record -o T.trace.gz -- CMD ARGS...`.
    Record(record::RecordArgs),
    /// Print a policy's size classes as lines `FROM TO ROUNDED`.
    Classes(classes::ClassesArgs),
    /// Run an unmodified program on a policy (or a peer) and report its time, memory and the
    /// policy's counters: `fsm run --policy best-fit -- CMD ARGS...`.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    // `fsm sim` hands every word after `sim` to malloc.py's option rules untouched (clap would
    // take a leading `--` for itself, where optparse takes it as the end of the options).
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|a| a == "sim") {
        let args = argv.map(|a| a.to_string_lossy().into_owned()).collect();
        return sim::run(sim::SimArgs { args });
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Record(args) => record::run(args),
        Command::Classes(args) => classes::run(args),
        Command::Run(args) => run::run(args),
    }
}
