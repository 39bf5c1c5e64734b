//! `fsm replay`: one trace through one policy, with its measures.
//!
//! ```text
//!   fsm replay --policy best-fit [--tunables S] [--offsets] [--stats] [--json] TRACE
//!     TRACE (text, .gz, binary, Valgrind or mtrace log) -> workloads::Program
//!       -> policies::build(NAME) -> replay (tracking stats after every event)
//!       -> --offsets: "OP ID SIZE OFFSET|MMAP" per a/c/m/r event
//!       -> --stats (the default): the counters and Johnstone & Wilson's #3 and #4
//!       -> --json: the same as one JSON object
//! ```
//! Bad input (missing file, malformed line, unknown policy) is one line on stderr and exit 1.

use std::path::PathBuf;
use std::process::ExitCode;

use workloads::policies::{self, Config};
use workloads::replay::{Options, Program, Step, replay_manager};
use workloads::{Fragmentation, Op, Trace};

/// Arguments of `fsm replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The policy (first-fit, next-fit, best-fit, worst-fit with an order suffix, segregated,
    /// buddy, ptmalloc2, tcmalloc).
    #[arg(long)]
    pub policy: String,
    /// A GLIBC_TUNABLES-style string for ptmalloc2 (`glibc.malloc.tcache_count=0:...`).
    #[arg(long)]
    pub tunables: Option<String>,
    /// Print `OP ID SIZE OFFSET` for each allocation and realloc (OFFSET from the start of the
    /// policy's main heap, or MMAP).
    #[arg(long)]
    pub offsets: bool,
    /// Print the counters and fragmentation measures (the default when nothing else is asked).
    #[arg(long)]
    pub stats: bool,
    /// Print the measures as JSON.
    #[arg(long)]
    pub json: bool,
    /// The trace file.
    pub trace: PathBuf,
}

/// `--offsets` for ptmalloc2: the model's own replayer, which calls malloc, calloc, memalign
/// and realloc with C's semantics (calloc bypasses the tcache, as in glibc) and prints offsets
/// from the main heap's start exactly as the glibc replayer of its golden tests does.
fn ptmalloc2_offsets(trace: &Trace, tunables: Option<&str>) -> Result<String, String> {
    let t = ptmalloc2::Tunables::parse(tunables.unwrap_or(""))
        .map_err(|e| format!("ptmalloc2 tunables: {e}"))?;
    let mut r = ptmalloc2::Replayer::new(&t);
    let mut text = String::new();
    for (i, ev) in trace.events.iter().enumerate() {
        let size =
            |s: u64| usize::try_from(s).map_err(|_| format!("event {}: size {s} too large", i + 1));
        let id = ev.id;
        let e = match ev.op {
            Op::Malloc { size: s } => ptmalloc2::Event::Malloc { id, size: size(s)? },
            Op::Calloc { size: s } => ptmalloc2::Event::Calloc { id, size: size(s)? },
            Op::Memalign { align, size: s } => ptmalloc2::Event::Memalign {
                id,
                align: size(align)?,
                size: size(s)?,
            },
            Op::Realloc { size: s } => ptmalloc2::Event::Realloc { id, size: size(s)? },
            Op::Free => ptmalloc2::Event::Free { id },
        };
        match r.apply(e) {
            Ok(Some(line)) => {
                text.push_str(&line);
                text.push('\n');
            }
            Ok(None) => {}
            Err(e) => return Err(format!("ptmalloc2 failed at event {}: {e}", i + 1)),
        }
    }
    Ok(text)
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fsm replay: {msg}");
    ExitCode::FAILURE
}

/// Runs `fsm replay`.
pub fn run(args: ReplayArgs) -> ExitCode {
    let trace = match Trace::load(&args.trace) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let prog = match Program::compile(&trace) {
        Ok(p) => p,
        Err(e) => return fail(format_args!("{}: {e}", args.trace.display())),
    };
    let cfg = Config {
        tunables: args.tunables.clone(),
        ..Config::for_peak(prog.live_profile().1)
    };
    let mut inst = match policies::build(&args.policy, &cfg) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let mut blocks: Vec<(Step, usize)> = Vec::new();
    let mut note = |s: &Step, addr: usize| blocks.push((*s, addr));
    let opts = Options {
        track: true,
        series_points: 200,
        ..Options::default()
    };
    let observer: Option<&mut workloads::replay::BlockObserver<'_>> =
        if args.offsets { Some(&mut note) } else { None };
    let out = match replay_manager(&mut *inst.manager, &prog, opts, observer) {
        Ok(o) => o,
        Err(e) => {
            return fail(format_args!(
                "{} failed on {} at {e}",
                args.policy,
                args.trace.display()
            ));
        }
    };
    let mut text = String::new();
    if args.offsets && args.policy == "ptmalloc2" {
        match ptmalloc2_offsets(&trace, args.tunables.as_deref()) {
            Ok(t) => text = t,
            Err(e) => return fail(e),
        }
    } else if args.offsets {
        for (step, addr) in &blocks {
            let size = step.op.size().unwrap_or(0);
            let off = inst
                .manager
                .offset(*addr)
                .map_or_else(|| "MMAP".to_string(), |o| o.to_string());
            let letter = match step.op {
                Op::Malloc { .. } => 'a',
                op => op.letter(),
            };
            text.push_str(&format!("{letter} {} {size} {off}\n", step.id));
        }
    }
    let frag = Fragmentation::of_manager(&out);
    if args.json {
        let v = serde_json::json!({
            "policy": args.policy,
            "trace": args.trace.display().to_string(),
            "events": out.steps,
            "stats": {
                "allocs": out.stats.allocs, "frees": out.stats.frees, "resizes": out.stats.resizes,
                "in_place_resizes": out.stats.in_place_resizes, "failed_allocs": out.stats.failed_allocs,
                "live_requested": out.stats.live_requested, "live_held": out.stats.live_held,
                "live_blocks": out.stats.live_blocks, "footprint": out.stats.footprint,
                "peak_live_requested": out.stats.peak_live_requested,
                "peak_live_held": out.stats.peak_live_held, "peak_footprint": out.stats.peak_footprint,
            },
            "frag3": frag.frag3, "frag4": frag.frag4,
            "internal": frag.internal, "external": frag.external,
            "ns_per_op": workloads::metrics::ns_per_op(&out),
        });
        text.push_str(&v.to_string());
        text.push('\n');
    } else if args.stats || !args.offsets {
        let s = &out.stats;
        let pct =
            |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{:.2}%", x * 100.0));
        text.push_str(&format!(
            "policy {}  trace {}  events {}\n\
             allocs {}  frees {}  resizes {} ({} in place)  failed {}\n\
             live now {} B requested, {} B held, {} blocks; footprint {} B\n\
             peaks: live {} B requested, {} B held; footprint {} B\n\
             fragmentation #3 {}  #4 {}  (at the footprint peak: internal {}, external {})\n",
            args.policy,
            args.trace.display(),
            out.steps,
            s.allocs,
            s.frees,
            s.resizes,
            s.in_place_resizes,
            s.failed_allocs,
            s.live_requested,
            s.live_held,
            s.live_blocks,
            s.footprint,
            s.peak_live_requested,
            s.peak_live_held,
            s.peak_footprint,
            pct(frag.frag3),
            pct(frag.frag4),
            pct(frag.internal),
            pct(frag.external),
        ));
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptmalloc2_offsets_are_the_models() {
        // The model's documented first placements: the tcache struct (0x290 bytes) comes first,
        // so the first 24-byte block starts at 672; a mapped chunk prints MMAP.
        let t = Trace::read_text("a 1 24\nf 1\na 2 200000\n".as_bytes()).unwrap();
        let out = ptmalloc2_offsets(&t, None).unwrap();
        assert_eq!(out, "a 1 24 672\na 2 200000 MMAP\n");
    }

    #[test]
    fn bad_tunables_are_an_error() {
        let t = Trace::read_text("a 1 24\n".as_bytes()).unwrap();
        assert!(ptmalloc2_offsets(&t, Some("glibc.malloc.nonsense")).is_err());
    }
}
