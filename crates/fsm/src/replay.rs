//! `fsm replay`: one trace through one policy, with its measures.
//!
//! ```text
//!   fsm replay --policy best-fit [--tunables S] [--offsets] [--stats] [--json]
//!              [--offsets-only [--granule N]] TRACE
//!     TRACE (text, .gz, binary, Valgrind or mtrace log) -> workloads::Program
//!       -> registry::lookup(NAME).build() -> replay (tracking stats after every event)
//!       -> --offsets: "OP ID SIZE OFFSET|MMAP|NULL" per a/c/m/r event, in the same pass, from
//!          the manager's own `placement` (ptmalloc2 measures from glibc's heap start)
//!       -> --stats (the default): the counters and Johnstone & Wilson's #3 and #4, and why
//!          the first refused request was refused (workloads::explain: largest free block,
//!          free bytes, size class)
//!       -> --json: the same as one JSON object (after the text when --stats is given too)
//!   --offsets-only: the policy's offset manager instead (registry: Spec::build_offsets) over
//!     offsets 0..capacity (8x the trace's peak live bytes, at least 64 MiB), nothing stored in
//!     the space; realloc places the new size then frees the old range; footprint = the end of
//!     the highest live range
//! ```
//! Bad input (missing file, malformed line, unknown policy) is one line on stderr and exit 1.

use std::path::PathBuf;
use std::process::ExitCode;

use registry::{Config, OffsetSpace};
use workloads::replay::{
    Options, Program, Step, offset_line, replay_manager, replay_offset_manager, replay_offsets,
};
use workloads::{Fragmentation, Outcome, Trace};

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
    /// A refused allocation is an error (by default it leaves NULL and the replay goes on, as a
    /// C program would see it, counted as a failed allocation).
    #[arg(long)]
    pub strict: bool,
    /// Run the policy's invariant walk after every event (slow; a failure names the event).
    #[arg(long)]
    pub check: bool,
    /// Replay through the policy's offset manager (the same placement over a range of offsets
    /// it never touches: `first-fit`, `next-fit`, `best-fit`, `worst-fit`, `buddy`,
    /// `segregated`, where built) instead of over memory.
    #[arg(long)]
    pub offsets_only: bool,
    /// With --offsets-only: the smallest unit handed out, in bytes (a power of two).
    #[arg(long, default_value_t = 16, requires = "offsets_only")]
    pub granule: usize,
    /// The trace file.
    pub trace: PathBuf,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fsm replay: {msg}");
    ExitCode::FAILURE
}

/// The counters and measures as text, and the first refusal explained.
fn stats_text(text: &mut String, args: &ReplayArgs, out: &Outcome, frag: &Fragmentation) {
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
    if let Some(why) = &out.first_refusal {
        text.push_str(&format!(
            "refused {} request(s) (NULL, the replay went on); the first at {why}\n",
            out.refused
        ));
    }
}

/// Runs `fsm replay`.
pub fn run(args: ReplayArgs) -> ExitCode {
    let prog = match load(&args.trace) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let cfg = Config {
        tunables: args.tunables.clone(),
        ..Config::for_peak(prog.live_profile().1)
    };
    let opts = Options {
        track: true,
        series_points: 200,
        strict: args.strict,
        check: args.check,
        ..Options::default()
    };
    let spec = match registry::lookup(&args.policy) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let run = if args.offsets_only {
        let space = OffsetSpace {
            range: 0..cfg.capacity,
            granule: args.granule,
        };
        let mut inst = match spec.build_offsets(&space) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        let mut text = String::new();
        let mut note = |s: &Step, at| {
            text.push_str(&offset_line(s, at));
            text.push('\n');
        };
        let observer = args.offsets.then_some(&mut note as &mut _);
        replay_offset_manager(&mut *inst.manager, &prog, opts, observer).map(|o| (text, o))
    } else {
        let mut inst = match spec.build(&cfg) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        if args.offsets {
            replay_offsets(&mut *inst.manager, &prog, opts)
        } else {
            replay_manager(&mut *inst.manager, &prog, opts, None).map(|o| (String::new(), o))
        }
    };
    let (mut text, out) = match run {
        Ok(o) => o,
        Err(e) => {
            return fail(format_args!(
                "{} failed on {}, {e}",
                args.policy,
                args.trace.display()
            ));
        }
    };
    let frag = Fragmentation::of_manager(&out);
    if args.stats || !(args.offsets || args.json) {
        stats_text(&mut text, &args, &out, &frag);
    }
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
            "refused": out.refused, "first_refusal": out.first_refusal,
            "frag3": frag.frag3, "frag4": frag.frag4,
            "internal": frag.internal, "external": frag.external,
            "ns_per_op": workloads::metrics::ns_per_op(&out),
        });
        text.push_str(&v.to_string());
        text.push('\n');
    }
    if print(&text) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes `text` to stdout; false if it could not (a closed pipe).
pub(crate) fn print(text: &str) -> bool {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}

/// The trace at `path` (any format `Trace::load` reads), compiled for replay; the error is one
/// line naming the file.
pub(crate) fn load(path: &std::path::Path) -> Result<Program, String> {
    let trace = Trace::load(path).map_err(|e| e.to_string())?;
    Program::compile(&trace).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(policy: &str, trace: &str) -> String {
        let t = Trace::read_text(trace.as_bytes()).unwrap();
        let prog = Program::compile(&t).unwrap();
        let mut inst = registry::lookup(policy)
            .and_then(|s| s.build(&Config::default()))
            .unwrap();
        replay_offsets(&mut *inst.manager, &prog, Options::default())
            .unwrap()
            .0
    }

    #[test]
    fn ptmalloc2_offsets_are_the_models() {
        // The model's documented first placements: the tcache struct (0x290 bytes) comes first,
        // so the first 24-byte block starts at 672; a mapped chunk prints MMAP.
        assert_eq!(
            offsets("ptmalloc2", "a 1 24\nf 1\na 2 200000\n"),
            "a 1 24 672\na 2 200000 MMAP\n"
        );
    }

    #[test]
    fn every_policy_prints_offsets_in_one_pass() {
        for name in registry::variants() {
            let text = offsets(name, "a 1 100\nc 2 50\nm 3 64 10\nr 1 300\nr 2 0\nf 1\n");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 5, "{name}: {text}");
            assert!(lines[0].starts_with("a 1 100 "), "{name}: {text}");
            assert_eq!(lines[4], "r 2 0 NULL", "{name}: realloc(p, 0) frees");
        }
    }
}
