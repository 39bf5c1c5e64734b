//! `matrix`: every policy and every peer over every workload, with a report. `cargo xtask bench`
//! builds this in release mode and runs `matrix run`.
//!
//! ```text
//!   matrix run ──for each workload × allocator──> matrix cell (a child process: a crash, an
//!      │                                          abort or a timeout fails that cell only)
//!      │  <── one JSON CellResult on stdout ──────┘
//!      └─> tables on stdout, REPORT/{index.html, results.json, results.csv, summary.md, *.svg}
//! ```
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod cell;
mod charts;
mod harness;
mod html;
mod programs;
mod report;

#[global_allocator]
static HARNESS: harness::HarnessAlloc = harness::HarnessAlloc::new();

/// The matrix: every policy and peer over every workload.
#[derive(Debug, Parser)]
#[command(name = "matrix", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the matrix and write the report.
    Run(RunArgs),
    /// Re-draw a report (Markdown, CSV, charts) from its results.json.
    Render {
        /// The results.json of an earlier run.
        #[arg(long)]
        from: PathBuf,
        /// Where to write the report (default: beside results.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run one cell (used by `run`; prints one JSON result).
    #[command(hide = true)]
    Cell {
        /// Allocator name.
        #[arg(long)]
        alloc: String,
        /// Workload spec (synth:NAME:OPS or trace:PATH:LIMIT).
        #[arg(long)]
        workload: String,
        /// Timed runs.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Time budget for the timed runs, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        budget_ms: u64,
    },
}

/// Arguments of `matrix run` (and so of `cargo xtask bench`).
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A short run for CI: small workloads, 3 timed runs, under two minutes.
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "target/report")]
    out: PathBuf,
    /// Directory of recorded traces to replay (every *.gz, *.trace, *.bin file in it).
    #[arg(long)]
    traces: Option<PathBuf>,
    /// Only these allocators (comma-separated policy and peer names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these workloads (comma-separated: synthetic names or trace names).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Events per synthetic workload (default 200000, or 20000 with --quick).
    #[arg(long)]
    ops: Option<usize>,
    /// Keep at most this many events of each recorded trace (0 = all; default all, or 20000
    /// with --quick).
    #[arg(long)]
    trace_limit: Option<usize>,
    /// Timed runs per cell (default 5, or 3 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
    /// A cell taking longer than this many seconds fails as timed out (default 60, or 15 with
    /// --quick).
    #[arg(long)]
    timeout: Option<u64>,
    /// Only these programs in the programs table (comma-separated; `none`: no programs table;
    /// default: all, or larson, redis and sort with --quick).
    #[arg(long, value_delimiter = ',')]
    programs: Vec<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // One line, as for every other bad input.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "cargo xtask bench: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match cli.command {
        Cmd::Cell {
            alloc,
            workload,
            repeats,
            budget_ms,
        } => {
            let r = cell::run(&alloc, &workload, repeats, Duration::from_millis(budget_ms));
            match serde_json::to_string(&r) {
                Ok(s) => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("matrix cell: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Render { from, out } => {
            let dir = out.unwrap_or_else(|| from.parent().map_or_else(PathBuf::new, PathBuf::from));
            let r = std::fs::read_to_string(&from)
                .map_err(|e| format!("{}: {e}", from.display()))
                .and_then(|t| {
                    serde_json::from_str::<report::Report>(&t)
                        .map_err(|e| format!("{}: {e}", from.display()))
                })
                .and_then(|rep| rep.write(&dir));
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("matrix render: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cargo xtask bench: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn default_traces() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../traces")
}

fn trace_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| format!("traces directory {}: {e}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            p.is_file() && (n.ends_with(".gz") || n.ends_with(".trace") || n.ends_with(".bin"))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn run(a: RunArgs) -> Result<(), String> {
    let ops = a.ops.unwrap_or(if a.quick { 20_000 } else { 200_000 });
    let limit = a.trace_limit.unwrap_or(if a.quick { 20_000 } else { 0 });
    let repeats = a.repeats.unwrap_or(if a.quick { 3 } else { 5 });
    let timeout = Duration::from_secs(a.timeout.unwrap_or(if a.quick { 15 } else { 60 }));
    let budget_ms = if a.quick { 1_500 } else { 4_000 };

    let mut allocs: Vec<String> = registry::variants().iter().map(|s| s.to_string()).collect();
    allocs.extend(peers::NAMES.iter().map(|s| s.to_string()));
    if !a.only.is_empty() {
        // Any name the registry knows (suffixes included), or a peer (of the cells, or of the
        // programs table only: gperftools).
        let peer = |n: &str| peers::NAMES.contains(&n) || programs::PEERS.contains(&n);
        for n in &a.only {
            if !peer(n)
                && let Err(e) = registry::lookup(n)
            {
                return Err(format!("{e}; peers: {}", peers::NAMES.join(", ")));
            }
        }
        allocs = a.only.clone();
    }
    let program_allocs: Vec<String> = if a.only.is_empty() {
        let mut v: Vec<String> = registry::variants().iter().map(|s| s.to_string()).collect();
        v.extend(programs::PEERS.iter().map(|s| s.to_string()));
        v
    } else {
        let known = |n: &str| programs::PEERS.contains(&n) || registry::lookup(n).is_ok();
        allocs.iter().filter(|n| known(n)).cloned().collect()
    };
    allocs.retain(|n| peers::NAMES.contains(&n.as_str()) || registry::lookup(n).is_ok());

    // Workloads: recorded traces first, then the synthetic ones.
    let mut specs: Vec<(String, String)> = Vec::new();
    let tdir = a.traces.clone().unwrap_or_else(default_traces);
    if a.traces.is_some() || tdir.is_dir() {
        for p in trace_files(&tdir)? {
            let path = p.to_string_lossy().into_owned();
            specs.push((cell::workload_name(&path), format!("trace:{path}:{limit}")));
        }
    }
    for n in workloads::synth::NAMES {
        specs.push((n.to_string(), format!("synth:{n}:{ops}")));
    }
    if !a.workloads.is_empty() {
        for w in &a.workloads {
            if !specs.iter().any(|(n, _)| n == w) {
                let names: Vec<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();
                return Err(format!(
                    "unknown workload '{w}'; valid names: {}",
                    names.join(", ")
                ));
            }
        }
        specs.retain(|(n, _)| a.workloads.contains(n));
    }
    eprintln!(
        "matrix: {} workloads x {} allocators = {} cells, each in a process of its own; report in {}",
        specs.len(),
        allocs.len(),
        specs.len() * allocs.len(),
        a.out.display()
    );
    // Check every trace loads before spending time on the matrix: a bad file is one line here,
    // and its workload's cells fail with the reason; the rest of the matrix runs.
    let mut unreadable: std::collections::HashMap<&str, String> = Default::default();
    for (name, spec) in &specs {
        if spec.starts_with("trace:")
            && let Err(e) = cell::load_workload(spec)
        {
            eprintln!("cargo xtask bench: workload {name} does not load, its cells fail: {e}");
            unreadable.insert(name, e);
        }
    }

    let exe = std::env::current_exe().map_err(|e| format!("cannot find the matrix binary: {e}"))?;
    let total = (specs.len() * allocs.len()) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} cells  {msg}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut cells = Vec::new();
    for (wname, spec) in &specs {
        for alloc in &allocs {
            bar.set_message(format!("{alloc} on {wname}"));
            let t0 = Instant::now();
            let mut r = match unreadable.get(wname.as_str()) {
                Some(e) => cell::CellResult::empty(
                    alloc,
                    wname,
                    "failed",
                    Some(format!("the trace does not load: {e}")),
                ),
                None => run_child(&exe, alloc, wname, spec, repeats, budget_ms, timeout),
            };
            r.seconds = t0.elapsed().as_secs_f64();
            if r.status != "ok" && !unreadable.contains_key(wname.as_str()) {
                let line = format!(
                    "  {alloc} on {wname}: {} ({})",
                    r.status,
                    r.reason.as_deref().unwrap_or("")
                );
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            cells.push(r);
            bar.inc(1);
            // Without a terminal (CI logs) the bar is hidden: say where we are every 10 %.
            let done = bar.position();
            if bar.is_hidden() && (done * 10 / total.max(1)) != ((done - 1) * 10 / total.max(1)) {
                eprintln!(
                    "matrix: {done}/{total} cells, {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    bar.finish_and_clear();
    let programs = if a.programs.iter().any(|p| p == "none") {
        None
    } else {
        let work = a.out.join("programs-work");
        Some(programs::run(a.quick, &program_allocs, &a.programs, &work)?)
    };

    let rep = report::Report {
        machine: report::machine(),
        date: report::now_utc(),
        settings: format!(
            "{}: synthetic workloads of {ops} events, recorded traces {}, {repeats} timed runs after a warm-up (median), single-threaded and (multi-thread workloads, concurrent allocators) threaded, cell timeout {} s; took {:.0} s",
            if a.quick { "--quick" } else { "full" },
            if limit == 0 {
                "whole".to_string()
            } else {
                format!("cut to {limit} events")
            },
            timeout.as_secs(),
            started.elapsed().as_secs_f64()
        ),
        allocs: allocs.clone(),
        workloads: specs.iter().map(|(n, _)| n.clone()).collect(),
        cells,
        programs,
    };
    rep.write(&a.out)?;
    println!("Fragmentation #4 (peak footprint / peak live - 1; lower is better)\n");
    print!("{}", rep.frag_table(false));
    println!("\nThroughput: million events per second (ratio to system; higher is better)\n");
    print!("{}", rep.speed_table(false));
    let threaded = rep.threaded_speed_table(false);
    if !threaded.is_empty() {
        println!(
            "\nThreaded throughput: million events per second, one OS thread per trace thread (ratio to system)\n"
        );
        print!("{threaded}");
        println!("\nThreaded / single-threaded throughput of the same row\n");
        print!("{}", rep.threaded_scaling_table(false));
        println!(
            "\nThreaded nanoseconds per event (the replay's floor: a bump allocator, run alongside)\n"
        );
        print!("{}", rep.threaded_floor_table(false));
    }
    if let Some(p) = &rep.programs {
        print!("{}", p.markdown());
    }
    let problems = rep.problems();
    if !problems.is_empty() {
        println!("\nFailed or skipped:");
        for p in &problems {
            println!("  {p}");
        }
    }
    println!(
        "\n{} cells in {:.0} s on {}; report in {} (open {} in a browser: every table and chart)",
        rep.cells.len(),
        started.elapsed().as_secs_f64(),
        rep.machine,
        a.out.display(),
        a.out.join("index.html").display()
    );
    Ok(())
}

fn run_child(
    exe: &std::path::Path,
    alloc: &str,
    wname: &str,
    spec: &str,
    repeats: usize,
    budget_ms: u64,
    timeout: Duration,
) -> cell::CellResult {
    let fail = |why: String| cell::CellResult::empty(alloc, wname, "failed", Some(why));
    let child = Command::new(exe)
        .args(["cell", "--alloc", alloc, "--workload", spec])
        .args([
            "--repeats",
            &repeats.to_string(),
            "--budget-ms",
            &budget_ms.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    // Drain the pipes on threads so a chatty child cannot block.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return fail(format!("wait: {e}")),
        }
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    // The cell prints a first result line once its measures are done, and a final one.
    let last = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<cell::CellResult>(l).ok());
    let (status_word, why) = match status {
        None => (
            "timeout",
            format!("timed out after {} s", timeout.as_secs()),
        ),
        Some(st) => {
            let line = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let why = format!(
                "crashed ({st}){}{}",
                if line.is_empty() { "" } else { ": " },
                line.chars().take(200).collect::<String>()
            );
            if let Some(r) = &last
                && (r.ns_per_op.is_some() || r.status != "ok")
            {
                let mut r = r.clone();
                // Stopped during the threaded replay: the single-threaded results stand.
                if let Some(t) = r.threaded.as_mut().filter(|t| t.status == "running") {
                    t.status = "failed".into();
                    t.reason = Some(why);
                }
                return r;
            }
            ("failed", why)
        }
    };
    match last {
        // Timed out during the threaded replay: the single-threaded results stand.
        Some(mut r)
            if r.ns_per_op.is_some()
                && r.threaded.as_ref().is_some_and(|t| t.status == "running") =>
        {
            if let Some(t) = r.threaded.as_mut() {
                t.status = status_word.into();
                t.reason = Some(format!("{why}, during the threaded replay"));
            }
            r
        }
        // Keep the fragmentation of a cell that stopped during its timed runs.
        Some(mut r) if r.frag.is_some() => {
            r.status = status_word.into();
            r.reason = Some(format!(
                "{why}, during the timed runs (fragmentation was measured)"
            ));
            r
        }
        _ => cell::CellResult::empty(alloc, wname, status_word, Some(why)),
    }
}
