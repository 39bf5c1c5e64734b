//! One cell of the matrix: one allocator over one workload, in a process of its own.
//!
//! ```text
//!   load workload -> Program
//!   policy: tracked replay (stats after every event: exact #3, #4, split) ─┐
//!           warm-up replay, then timed replays, each on a fresh instance   ├─> CellResult (JSON)
//!   peer:   tracked replay touching every page, RSS sampled (footprint)    │
//!           warm-up replay, then timed replays                            ─┘
//! ```
//! Timed runs stop at `repeats` or when the time budget is spent (at least one runs); the
//! reported time per operation is their median.
//!
//! A workload with more than one thread, on an allocator that can be shared between threads
//! (the concurrent peers; `tcmalloc` and `ptmalloc2` as their concurrent versions; every other
//! policy behind `Locked`'s spin lock), is then also replayed threaded
//! ([`workloads::threaded`]): a warm-up and timed runs on a fresh instance, median wall time per
//! event ([`Threaded`]).

use std::time::{Duration, Instant};

use registry::Config;
use serde::{Deserialize, Serialize};
use workloads::metrics::{median, ns_per_op};
use workloads::replay::{Options, Program, replay_global, replay_manager};
use workloads::threaded::{BumpFloor, TOO_LONG, ThreadedOptions, ThreadedProgram, replay_threaded};
use workloads::{Fragmentation, Trace};

use crate::harness;

/// What a cell produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// Allocator name.
    pub alloc: String,
    /// `policy` or `peer`.
    pub kind: String,
    /// Workload name.
    pub workload: String,
    /// `ok`, `failed` or `skipped`.
    pub status: String,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    /// Events in the workload.
    pub events: usize,
    /// Fragmentation and footprint.
    pub frag: Option<Fragmentation>,
    /// Median nanoseconds per event over the timed runs.
    pub ns_per_op: Option<f64>,
    /// Every timed run's nanoseconds per event.
    pub runs: Vec<f64>,
    /// How the footprint was measured.
    pub footprint_method: String,
    /// Wall time of the whole cell in seconds (its process included).
    #[serde(default)]
    pub seconds: f64,
    /// The threaded measurement, for a workload with more than one thread on a concurrent
    /// allocator (absent otherwise, and in reports written before it existed).
    #[serde(default)]
    pub threaded: Option<Threaded>,
}

/// A threaded replay's measurement: one OS thread per trace thread (see `workloads::threaded`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Threaded {
    /// OS threads (one per trace thread).
    pub threads: usize,
    /// What ran (`system`, `tcmalloc::Tcmalloc (thread caches)`, `Locked<best-fit> (...)`).
    pub runs_as: String,
    /// `ok`, `failed` or `timeout` (`running` while it runs: a cell that stops then is
    /// reported by the runner as failed or timed out).
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Median wall-clock nanoseconds per event over the timed runs.
    pub ns_per_op: Option<f64>,
    /// Every timed run's nanoseconds per event.
    pub runs: Vec<f64>,
    /// Events that waited for their block's previous event on another thread (last run).
    pub waits: u64,
    /// Waits of a thread a window ahead of the slowest (last run).
    pub window_waits: u64,
    /// Median nanoseconds per event of the same replay through `workloads::threaded::BumpFloor`
    /// (no allocator work), run alternately with the allocator's runs: the replay's own cost on
    /// this machine at that moment.
    #[serde(default)]
    pub floor_ns_per_op: Option<f64>,
    /// Every floor run's nanoseconds per event.
    #[serde(default)]
    pub floor_runs: Vec<f64>,
}

impl Threaded {
    /// Million events per second (from the median).
    pub fn mops(&self) -> Option<f64> {
        self.ns_per_op.filter(|&n| n > 0.0).map(|n| 1000.0 / n)
    }
}

impl CellResult {
    /// A result with no measurements.
    pub fn empty(alloc: &str, workload: &str, status: &str, reason: Option<String>) -> Self {
        CellResult {
            alloc: alloc.into(),
            kind: if registry::lookup(alloc).is_ok() {
                "policy"
            } else {
                "peer"
            }
            .into(),
            workload: workload.into(),
            status: status.into(),
            reason,
            events: 0,
            frag: None,
            ns_per_op: None,
            runs: Vec::new(),
            footprint_method: String::new(),
            seconds: 0.0,
            threaded: None,
        }
    }

    /// Million events per second (from the median).
    pub fn mops(&self) -> Option<f64> {
        self.ns_per_op.filter(|&n| n > 0.0).map(|n| 1000.0 / n)
    }
}

/// A workload: `synth:NAME:OPS` or `trace:PATH:LIMIT` (LIMIT 0 keeps every event).
pub fn load_workload(spec: &str) -> Result<(String, Trace), String> {
    if let Some(rest) = spec.strip_prefix("synth:") {
        let (name, ops) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("bad workload '{spec}': expected synth:NAME:OPS"))?;
        let ops: usize = ops
            .parse()
            .map_err(|_| format!("bad workload '{spec}': OPS is not a number"))?;
        let t = workloads::synth::by_name(name, ops).ok_or_else(|| {
            format!(
                "unknown synthetic workload '{name}'; valid: {}",
                workloads::synth::NAMES.join(", ")
            )
        })?;
        return Ok((name.to_string(), t));
    }
    if let Some(rest) = spec.strip_prefix("trace:") {
        let (path, limit) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("bad workload '{spec}': expected trace:PATH:LIMIT"))?;
        let limit: usize = limit
            .parse()
            .map_err(|_| format!("bad workload '{spec}': LIMIT is not a number"))?;
        let t = Trace::load(path).map_err(|e| e.to_string())?;
        let t = if limit > 0 && t.len() > limit {
            t.window(0, limit)
        } else {
            t
        };
        return Ok((workload_name(path), t));
    }
    Err(format!(
        "bad workload '{spec}': expected synth:NAME:OPS or trace:PATH:LIMIT"
    ))
}

/// A trace file's workload name: its file name without the trace and compression suffixes.
pub fn workload_name(path: &str) -> String {
    let file = std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |f| f.to_string_lossy().into_owned());
    let mut name = file.as_str();
    for suffix in [".gz", ".bin", ".trace", ".txt", ".log"] {
        name = name.strip_suffix(suffix).unwrap_or(name);
    }
    name.to_string()
}

/// Runs one cell. Errors inside the run become a `failed` result.
pub fn run(alloc: &str, spec: &str, repeats: usize, budget: Duration) -> CellResult {
    let (workload, trace) = match load_workload(spec) {
        Ok(x) => x,
        Err(e) => {
            let name = spec
                .strip_prefix("trace:")
                .and_then(|r| r.rsplit_once(':'))
                .map_or_else(|| spec.to_string(), |(path, _)| workload_name(path));
            return CellResult::empty(alloc, &name, "failed", Some(e));
        }
    };
    let prog = match Program::compile(&trace) {
        Ok(p) => p,
        Err(e) => return CellResult::empty(alloc, &workload, "failed", Some(e.to_string())),
    };
    let threaded = (workloads::threaded::thread_count(&trace) > 1)
        .then(|| ThreadedProgram::compile(&trace).map_err(|e| e.to_string()));
    drop(trace);
    let mut r = CellResult::empty(alloc, &workload, "ok", None);
    r.events = prog.steps.len();
    let is_policy = registry::lookup(alloc).is_ok();
    let outcome = if is_policy {
        run_policy(alloc, &prog, repeats, budget, &mut r)
    } else {
        run_peer(alloc, &prog, repeats, budget, &mut r)
    };
    match outcome {
        Err((status, reason)) => {
            r.status = status.into();
            r.reason = Some(reason);
        }
        Ok(()) => {
            if let Some(tp) = threaded {
                let cfg = Config::for_peak(prog.live_profile().1);
                drop(prog);
                run_threaded(alloc, is_policy, &cfg, tp, repeats, budget, &mut r);
            }
        }
    }
    r
}

/// Prints `r` as one JSON line now, so the runner keeps what is measured so far if the cell
/// stops later (it keeps the last line it got).
fn emit(r: &CellResult) {
    if let Ok(line) = serde_json::to_string(r) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The threaded measurement: a fresh concurrent instance, one warm-up replay, then up to
/// `repeats` timed replays (at least one; more while the budget lasts), median time per event.
/// Allocators that cannot be shared between threads get none.
fn run_threaded(
    alloc: &str,
    is_policy: bool,
    cfg: &Config,
    prog: Result<ThreadedProgram, String>,
    repeats: usize,
    budget: Duration,
    r: &mut CellResult,
) {
    let built = if is_policy {
        Some(
            registry::lookup(alloc)
                .and_then(|spec| spec.concurrent(cfg))
                .map(|c| (c.runs_as, c.alloc))
                .map_err(|e| e.to_string()),
        )
    } else {
        peers::concurrent(alloc)
    };
    let Some(built) = built else { return };
    let mut t = Threaded {
        threads: prog.as_ref().map_or(0, ThreadedProgram::thread_count),
        runs_as: alloc.to_string(),
        status: "running".into(),
        reason: None,
        ns_per_op: None,
        runs: Vec::new(),
        waits: 0,
        window_waits: 0,
        floor_ns_per_op: None,
        floor_runs: Vec::new(),
    };
    let result = prog.and_then(|prog| {
        let (runs_as, g) = built?;
        t.runs_as = runs_as;
        r.threaded = Some(t.clone());
        emit(r);
        // A run taking more than twice the budget stops (reported as a timeout) rather than
        // holding up the matrix until the cell's own timeout kills it.
        let opts = ThreadedOptions {
            deadline: Some(budget * 2),
            ..ThreadedOptions::default()
        };
        // The floor (no allocator work) runs alternately with the allocator, so both see the
        // same load; a floor that cannot be mapped is left out.
        let mut floor = BumpFloor::new(prog.bump_bytes()).ok();
        let floor_run = |floor: &mut Option<BumpFloor>| -> Option<f64> {
            let f = floor.as_mut()?;
            f.reset();
            replay_threaded(&*f, &prog, opts)
                .ok()
                .map(|o| o.ns_per_op())
        };
        let start = Instant::now();
        replay_threaded(&*g, &prog, opts).map_err(|e| e.to_string())?; // warm-up
        floor_run(&mut floor);
        while t.runs.len() < repeats.max(1) && (t.runs.is_empty() || start.elapsed() < budget) {
            if let Some(ns) = floor_run(&mut floor) {
                t.floor_runs.push(ns);
            }
            let out = replay_threaded(&*g, &prog, opts).map_err(|e| e.to_string())?;
            t.runs.push(out.ns_per_op());
            t.waits = out.waits;
            t.window_waits = out.window_waits;
        }
        t.floor_ns_per_op = median(&mut t.floor_runs.clone());
        Ok(())
    });
    match result {
        Ok(()) => {
            t.status = "ok".into();
            t.ns_per_op = median(&mut t.runs.clone());
        }
        Err(e) => {
            t.status = if e.contains(TOO_LONG) {
                "timeout"
            } else {
                "failed"
            }
            .into();
            t.reason = Some(e);
        }
    }
    r.threaded = Some(t);
}

type Fail = (&'static str, String);

fn failed(e: impl ToString) -> Fail {
    ("failed", e.to_string())
}

fn run_policy(
    name: &str,
    prog: &Program,
    repeats: usize,
    budget: Duration,
    r: &mut CellResult,
) -> Result<(), Fail> {
    let cfg = Config::for_peak(prog.live_profile().1);
    let track = Options {
        track: true,
        series_points: 300,
        ..Options::default()
    };
    let mut inst = registry::lookup(name)
        .and_then(|spec| spec.build(&cfg))
        .map_err(failed)?;
    let out = replay_manager(&mut *inst.manager, prog, track, None).map_err(failed)?;
    drop(inst);
    r.frag = Some(Fragmentation::of_manager(&out));
    r.footprint_method = "policy stats: bytes taken from its memory source".into();
    // One instance for the warm-up and the timed runs: each replay frees what the trace left
    // live, so every run starts from an empty heap whose memory is already mapped (warm), as the
    // process-wide peers are.
    let mut inst = registry::lookup(name)
        .and_then(|spec| spec.build(&cfg))
        .map_err(failed)?;
    timed(r, repeats, budget, || {
        let out = replay_manager(&mut *inst.manager, prog, Options::default(), None)
            .map_err(|e| e.to_string())?;
        Ok(ns_per_op(&out))
    })
}

fn timed(
    r: &mut CellResult,
    repeats: usize,
    budget: Duration,
    mut once: impl FnMut() -> Result<f64, String>,
) -> Result<(), Fail> {
    // The measures are done: say so now, so a cell that times out during the timed runs still
    // reports its fragmentation (the runner keeps the last result line it got).
    emit(r);
    let start = Instant::now();
    once().map_err(failed)?; // warm-up
    let mut runs = Vec::new();
    while runs.len() < repeats.max(1) && (runs.is_empty() || start.elapsed() < budget) {
        runs.push(once().map_err(failed)?);
    }
    r.ns_per_op = median(&mut runs.clone());
    r.runs = runs;
    Ok(())
}

fn run_peer(
    name: &str,
    prog: &Program,
    repeats: usize,
    budget: Duration,
    r: &mut CellResult,
) -> Result<(), Fail> {
    let g = peers::build(name).map_err(|e| {
        if name == "gperftools" {
            ("skipped", e)
        } else {
            failed(e)
        }
    })?;
    let track = Options {
        track: true,
        series_points: 300,
        touch: true,
        ..Default::default()
    };
    let peak_ok = harness::reset_peak();
    let mut base = 0;
    let mut probe = || {
        let now = harness::rss();
        if base == 0 {
            // First reading: the baseline. Reset the high-water mark to it.
            harness::reset_peak();
            base = now;
        }
        now
    };
    let out = replay_global(&*g, prog, track, Some(&mut probe)).map_err(failed)?;
    let peak = if peak_ok {
        harness::peak_rss().saturating_sub(base)
    } else {
        0
    };
    r.frag = Some(Fragmentation::of_peer(&out, peak));
    r.footprint_method = if peak_ok {
        "resident memory growth (RSS - baseline, sampled; peak from VmHWM), every page of every block touched".into()
    } else {
        "resident memory growth (RSS - baseline, sampled), every page of every block touched".into()
    };
    drop(g);
    // One (fresh) instance for the warm-up and the timed runs, as for the policies.
    let g = peers::build(name).map_err(failed)?;
    timed(r, repeats, budget, || {
        let out = replay_global(&*g, prog, Options::default(), None).map_err(|e| e.to_string())?;
        Ok(ns_per_op(&out))
    })
}
