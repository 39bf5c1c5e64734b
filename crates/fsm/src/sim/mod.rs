//! `fsm sim`: OSTEP's `malloc.py`, byte for byte, and any policy of the workspace step by step.
//!
//! ```text
//!   argv --opts::parse--> Options --validate--> engine ---------------------------+
//!                                    |          ostep::OstepEngine (-p BEST/WORST/FIRST/NEXT:
//!                                    |            fit's range manager, malloc.py's output)
//!                                    |          policy::PolicyEngine (-p best-fit, buddy, ...:
//!                                    |            a real heap, shown through its Inspector)
//!                                    |          policy::OffsetEngine (-p NAME --offsets-only:
//!                                    |            the policy's offset manager, likewise)
//!                                    v                                            |
//!                               header block                                      v
//!                       driver::explicit (-A) or driver::random  --> stdout, svg::render (--svg)
//! ```
//!
//! * [`opts`]: the flags, parsed as malloc.py's optparse parses them.
//! * [`mt`]: CPython's Mersenne Twister, for random mode.
//! * [`driver`]: the op language and its two drivers, which print.
//! * [`ostep`]: malloc.py's allocator, as a printer over `fit::ranges::RangeList`.
//! * [`policy`]: the registry of other policies' views.
//! * [`view`]: the generic text view of any manager's [`allocator_traits::Inspector`] output.
//! * [`svg`]: the picture.
//!
//! Where malloc.py crashes, this prints what malloc.py printed up to there, then one line on
//! stderr naming the op or flag, and exits with status 1; a flag optparse rejects gives
//! optparse's message and status 2.

use std::io::Write;
use std::process::ExitCode;

pub mod driver;
pub mod mt;
pub mod opts;
pub mod ostep;
pub mod policy;
pub mod svg;
pub mod view;

use driver::{Engine, Output, RandomParams, Stop};
use opts::{Options, Parse};

/// `fsm sim`'s arguments: the words after `sim`, handed to an optparse-compatible parser so that
/// every spelling malloc.py accepts (`-s5`, `--se=5`, `-s -2`, `-cC`, `010` for 8) means the same.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct SimArgs {
    /// malloc.py's flags: -s -S -b -H -a -p -l -C -n -r -P -A -c, plus --svg FILE (see -h).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "FLAGS"
    )]
    pub args: Vec<String>,
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("fsm sim: error: {msg}");
    ExitCode::from(1)
}

/// Runs `fsm sim` with `args` and returns the exit status.
pub fn run(args: SimArgs) -> ExitCode {
    let o = match opts::parse(&args.args) {
        Ok(o) => o,
        Err(Parse::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(Parse::Usage(msg)) => {
            eprintln!("{}\n\nfsm sim: error: {msg}", opts::USAGE);
            return ExitCode::from(2);
        }
    };
    if o.policy == "list" {
        print!("{}", policy::list_text());
        return ExitCode::SUCCESS;
    }
    let mut engine = match build_engine(&o) {
        Ok(e) => e,
        Err(msg) => return fail(&msg),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut output = Output {
        out: &mut out,
        compute: o.compute,
        rows: o.svg.as_ref().map(|_| Vec::new()),
    };
    let result = simulate(&o, engine.as_mut(), &mut output);
    let rows = output.rows.take();
    let flushed = out.flush();
    // The picture shows the ops that ran, also when the run stopped early.
    let drawn = match (&o.svg, rows) {
        (Some(path), Some(rows)) => svg::render(path, &format!("fsm sim {}", describe(&o)), &rows),
        _ => Ok(()),
    };
    match result {
        Err(Stop::Crash(msg)) => return fail(&msg),
        // A closed pipe (`fsm sim ... | head`) ends the run quietly.
        Err(Stop::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return ExitCode::from(1);
        }
        Err(Stop::Io(e)) => return fail(&format!("cannot write the output: {e}")),
        Ok(()) => {}
    }
    if let Err(e) = flushed {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::from(1);
        }
        return fail(&format!("cannot write the output: {e}"));
    }
    if let Err(msg) = drawn {
        return fail(&msg);
    }
    ExitCode::SUCCESS
}

/// Checks the flags malloc.py's constructor asserts on (before any output) and builds the engine.
fn build_engine(o: &Options) -> Result<Box<dyn Engine>, String> {
    if o.granule.is_some() && !o.offsets_only {
        return Err("--granule: only with --offsets-only".into());
    }
    if o.offsets_only && ostep::ostep_policy(&o.policy).is_some() {
        return Err(format!(
            "--offsets-only: -p {} is malloc.py's list over abstract addresses already; name a \
             policy with an offset manager ({})",
            opts::py_repr(&o.policy),
            registry::offset_names().join(", ")
        ));
    }
    if let Some(policy) = ostep::ostep_policy(&o.policy) {
        let order = ostep::ostep_order(&o.order).ok_or_else(|| {
            format!(
                "-l {}: the list order must be ADDRSORT, SIZESORT+, SIZESORT-, INSERT-FRONT or \
                 INSERT-BACK (malloc.py stops with AssertionError)",
                opts::py_repr(&o.order)
            )
        })?;
        if !(o.align == -1 || o.align > 0) {
            return Err(format!(
                "-a {}: the alignment must be -1 (none) or more than 0 (malloc.py stops with \
                 AssertionError)",
                o.align
            ));
        }
        let e =
            ostep::OstepEngine::new(o.size, o.base, o.header, o.align, policy, order, o.coalesce)?;
        return Ok(Box::new(e));
    }
    let Some(spec) = policy::lookup(&o.policy)? else {
        return Err(format!(
            "-p {}: the policy must be BEST, WORST or FIRST (malloc.py stops with \
             AssertionError), or NEXT or a policy name (`-p list` shows them)",
            opts::py_repr(&o.policy)
        ));
    };
    let heap = usize::try_from(o.size)
        .map_err(|_| format!("-S {}: a heap size must be 0 or more", o.size))?;
    let align = match o.align {
        -1 => 1,
        a if a > 0 && (a as u128).is_power_of_two() && a <= 1 << 30 => a as usize,
        a => {
            return Err(format!(
                "-a {a}: with -p {}, -a is the blocks' alignment: a power of two, or -1",
                o.policy
            ));
        }
    };
    if o.offsets_only {
        let granule = match o.granule.unwrap_or(16) {
            g if g > 0 && (g as u128).is_power_of_two() && g <= 1 << 30 => g as usize,
            g => return Err(format!("--granule {g}: a power of two, at most 2^30")),
        };
        let e = policy::OffsetEngine::new(&spec, heap, granule, o.base, align)?;
        return Ok(Box::new(e));
    }
    let built = policy::build(&spec, heap)?;
    if let Some(note) = &built.note {
        eprintln!("fsm sim: {note}");
    }
    Ok(Box::new(policy::PolicyEngine::new(built, o.base, align)))
}

/// The run's settings as flags, for the picture's title.
fn describe(o: &Options) -> String {
    let mut s = format!("-p {} -S {} -b {}", o.policy, o.size, o.base);
    if o.offsets_only {
        s.push_str(&format!(
            " --offsets-only --granule {}",
            o.granule.unwrap_or(16)
        ));
    }
    if ostep::ostep_policy(&o.policy).is_some() {
        s.push_str(&format!(" -l {} -H {} -a {}", o.order, o.header, o.align));
        if o.coalesce {
            s.push_str(" -C");
        }
    }
    if o.alloc_list.is_empty() {
        s.push_str(&format!(
            " -s {} -n {} -r {} -P {}",
            o.seed, o.num_ops, o.range, o.percent
        ));
    } else {
        s.push_str(&format!(" -A {}", o.alloc_list));
    }
    s
}

/// Prints the header block, checks `-P`, and runs the ops.
fn simulate(o: &Options, engine: &mut dyn Engine, output: &mut Output<'_>) -> Result<(), Stop> {
    let py_bool = |b: bool| if b { "True" } else { "False" };
    let header = format!(
        "seed {}\nsize {}\nbaseAddr {}\nheaderSize {}\nalignment {}\npolicy {}\nlistOrder {}\n\
         coalesce {}\nnumOps {}\nrange {}\npercentAlloc {}\nallocList {}\ncompute {}\n\n",
        o.seed,
        o.size,
        o.base,
        o.header,
        o.align,
        o.policy,
        o.order,
        py_bool(o.coalesce),
        o.num_ops,
        o.range,
        o.percent,
        o.alloc_list,
        py_bool(o.compute),
    );
    output.out.write_all(header.as_bytes())?;
    if o.percent <= 0 {
        return Err(Stop::Crash(format!(
            "-P {}: the percentage of allocations must be more than 0 (malloc.py stops with \
             AssertionError)",
            o.percent
        )));
    }
    if o.alloc_list.is_empty() {
        let prm = RandomParams {
            seed: o.seed,
            num_ops: o.num_ops,
            range: o.range,
            percent: o.percent,
        };
        driver::random(engine, prm, output)
    } else {
        driver::explicit(engine, &o.alloc_list, output)
    }
}
