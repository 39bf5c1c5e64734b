//! `cargo xtask miri`: the policy crates' test suites under Miri.
//!
//! Miri interprets the tests and reports undefined behaviour: out-of-bounds and use-after-free
//! accesses, misaligned reads, aliasing violations, and (with `-Zmiri-strict-provenance`, the
//! default here) integers turned back into pointers, which would lose the provenance Rust's memory
//! model needs. Install it once with
//! `rustup +nightly component add miri rust-src`.

use std::process::Command;

/// A crate whose tests run under Miri, with the features and flags it needs.
struct Target {
    package: &'static str,
    features: &'static str,
    /// Strict provenance holds for this crate (no integer-to-pointer casts).
    strict: bool,
    /// Seconds its suite took in the last measured run (session 8, 89fc360 two at a time on two
    /// cores; segregated alone on 2bc93ab, plus its offsets tests (62 s); buddy alone in session
    /// 9): only the order in which the jobs start, longest first.
    seconds: u32,
}

/// Every crate whose tests run under Miri, in dependency order. Each runs every test target
/// (its unit tests, every file in `tests/`, the doctests), with the counts reduced under
/// `cfg(miri)` (smaller regions and fewer random cases; the conformance kit's further
/// configurations walk the heap after every 8th operation, `Profile::further`).
const TARGETS: &[Target] = &[
    Target {
        package: "allocator-traits",
        seconds: 41,
        features: "conformance",
        strict: true,
    },
    Target {
        package: "fit",
        seconds: 721,
        features: "",
        strict: true,
    },
    Target {
        package: "buddy",
        seconds: 206,
        features: "",
        strict: true,
    },
    Target {
        package: "segregated",
        seconds: 547,
        features: "",
        strict: true,
    },
    Target {
        package: "ptmalloc2",
        seconds: 322,
        features: "",
        strict: true,
    },
    Target {
        package: "tcmalloc",
        seconds: 742,
        features: "",
        strict: true,
    },
];

/// Options of `cargo xtask miri`.
#[derive(clap::Args, Debug)]
pub struct MiriArgs {
    /// Run only these packages (repeatable); default: all of allocator-traits, fit, buddy,
    /// segregated, ptmalloc2, tcmalloc.
    #[arg(short = 'p', long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// Allow integer-to-pointer casts (drop -Zmiri-strict-provenance).
    #[arg(long)]
    permissive: bool,
    /// How many crates' suites run at once (each is one interpreter thread); default: the
    /// number of cores. With more than one, each suite's output is printed when it ends.
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Extra arguments for the test harness, after `--` (a test name filter, say).
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// Runs the suites; returns an error naming every package whose suite failed.
pub fn run(args: MiriArgs) -> Result<(), String> {
    let probe = Command::new("cargo")
        .args(["+nightly", "miri", "--version"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        return Err(
            "Miri is not installed: run `rustup +nightly component add miri rust-src`".into(),
        );
    }
    for name in &args.packages {
        if !TARGETS.iter().any(|t| t.package == name) {
            let known: Vec<_> = TARGETS.iter().map(|t| t.package).collect();
            return Err(format!(
                "unknown package `{name}` for miri; known: {}",
                known.join(", ")
            ));
        }
    }
    let chosen: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| args.packages.is_empty() || args.packages.iter().any(|p| p == t.package))
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, chosen.len().max(1));
    // The longest suites first, so that the last to finish is a short one (each crate's suite is
    // one interpreter thread: two crates at once use two cores).
    let mut queue: Vec<&Target> = chosen;
    queue.sort_by_key(|t| std::cmp::Reverse(t.seconds));
    let commands: Vec<(&'static str, Command)> = queue
        .iter()
        .map(|t| (t.package, command(t, &args)))
        .collect();
    // Miri's standard library is built once, before the jobs, so that two of them never build it
    // at the same time on a fresh machine.
    let setup = Command::new("cargo")
        .args(["+nightly", "miri", "setup"])
        .status();
    if !matches!(setup, Ok(s) if s.success()) {
        return Err("`cargo +nightly miri setup` failed (is rust-src installed?)".into());
    }
    let failed = run_jobs(commands, jobs)?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("Miri found problems in: {}", failed.join(", ")))
    }
}

/// The `cargo miri test` command of one crate.
fn command(t: &Target, args: &MiriArgs) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "miri", "test", "-p", t.package]);
    if !t.features.is_empty() {
        cmd.args(["--features", t.features]);
    }
    cmd.arg("--");
    cmd.args(&args.test_args);
    let mut flags = std::env::var("MIRIFLAGS").unwrap_or_default();
    if t.strict && !args.permissive {
        flags.push_str(" -Zmiri-strict-provenance");
    }
    cmd.env("MIRIFLAGS", flags.trim());
    cmd
}

/// Runs the commands, `jobs` at a time, and returns the packages whose suite failed.
///
/// With one job a suite's output streams as it runs. With more, each suite's output is kept and
/// printed whole when it ends, so that two suites' lines never interleave. Cargo builds under a
/// lock but runs test binaries without it: the suites of two crates run side by side on one
/// target directory.
fn run_jobs(
    commands: Vec<(&'static str, Command)>,
    jobs: usize,
) -> Result<Vec<&'static str>, String> {
    let queue = std::sync::Mutex::new(commands.into_iter());
    let failed = std::sync::Mutex::new(Vec::new());
    let error = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.next()).ok().flatten();
                    let Some((package, mut cmd)) = next else {
                        break;
                    };
                    eprintln!("xtask miri: {package} started: {cmd:?}");
                    let started = std::time::Instant::now();
                    let status = if jobs == 1 {
                        cmd.status()
                    } else {
                        cmd.output().map(|o| {
                            use std::io::Write;
                            let mut err = std::io::stderr().lock();
                            let _ = writeln!(err, "xtask miri: ---- output of {package} ----");
                            let _ = err.write_all(&o.stdout);
                            let _ = err.write_all(&o.stderr);
                            o.status
                        })
                    };
                    eprintln!(
                        "xtask miri: {package} took {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                    match status {
                        Ok(s) if s.success() => {}
                        Ok(_) => failed
                            .lock()
                            .expect("no job panics holding it")
                            .push(package),
                        Err(e) => {
                            *error.lock().expect("no job panics holding it") =
                                Some(format!("could not run cargo: {e}"));
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().expect("the jobs have ended") {
        return Err(e);
    }
    Ok(failed.into_inner().expect("the jobs have ended"))
}
