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
    /// What CI runs (`--ci`), see [`Ci`].
    ci: Ci,
    /// Seconds its `--ci` selection took in session 6's local CI run (fit and tcmalloc: their
    /// earlier CI figures): only the order in which the jobs start, longest first.
    ci_seconds: u32,
}

/// What `--ci` runs of a crate.
enum Ci {
    /// Every target of the crate (its unit tests, every file in `tests/`, the doctests) with the
    /// counts reduced under `cfg(miri)`, less the tests whose names contain one of these
    /// (given to the harness as `--skip`): the conformance kit's suites of the crate's further
    /// configurations (the same checks over another set-up). Each name is a module path ending
    /// in `::` or a whole test path, so that no other test matches it (checked against
    /// `cargo miri test -p CRATE -- --list`).
    AllBut(&'static [&'static str]),
    /// Only this cargo target selection and harness filter: for the crates whose whole suite
    /// does not fit CI's time yet (fit, tcmalloc; measured in session 6's notes).
    Only(&'static [&'static str], &'static [&'static str]),
}

/// Every crate whose tests run under Miri, in dependency order.
const TARGETS: &[Target] = &[
    Target {
        package: "allocator-traits",
        ci_seconds: 78,
        ci: Ci::AllBut(&[]),
        features: "conformance",
        strict: true,
    },
    Target {
        package: "fit",
        ci_seconds: 60,
        // The kit's suite of one configuration (best fit, address order, OSTEP's list-order
        // coalescing). The whole suite less the further configurations took 1440 s beside other
        // Miri runs (heap.rs 386 and offsets.rs 356 virtual s): not yet within CI's time.
        ci: Ci::Only(&["--test", "conformance"], &["list_order_under_addr::"]),
        features: "",
        strict: true,
    },
    Target {
        package: "buddy",
        ci_seconds: 214,
        // CI's conformance configuration: whole_region.
        ci: Ci::AllBut(&["grown_in_chunks::", "min_block_64::", "misaligned_start::"]),
        features: "",
        strict: true,
    },
    Target {
        package: "segregated",
        ci_seconds: 352,
        // CI's conformance configuration: go_classes.
        ci: Ci::AllBut(&[
            "go_classes_keep_none::",
            "over_best_fit::",
            "unchecked_keep_none::",
            "unchecked_over_best_fit::",
            "unchecked_over_buddy::",
            "user_table_no_tiny::",
        ]),
        features: "",
        strict: true,
    },
    Target {
        package: "ptmalloc2",
        ci_seconds: 354,
        // CI's conformance configuration: defaults.
        ci: Ci::AllBut(&["coalescing::"]),
        features: "",
        strict: true,
    },
    Target {
        package: "tcmalloc",
        ci_seconds: 253,
        // Three of the kit's checks of its one configuration. Its walk and inspect are per
        // object: bad_frees 517, near_oom 373, zero_size ~190, realign 170 virtual s under Miri,
        // and tests/core.rs 347 (one double-free test 242): the whole suite less those four
        // checks ran over 40 minutes in CI's Miri step (session 6), not within CI's time.
        ci: Ci::Only(
            &["--test", "conformance"],
            &[
                "--skip",
                "bad_frees",
                "--skip",
                "near_oom",
                "--skip",
                "zero_size",
                "--skip",
                "realign",
                "--skip",
                "huge",
            ],
        ),
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
    /// Run only what CI runs per crate: every test target with the counts reduced under
    /// cfg(miri), the conformance kit's suite of one configuration (tcmalloc: without its four
    /// slowest checks); allocator-traits whole.
    #[arg(long)]
    ci: bool,
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
    queue.sort_by_key(|t| std::cmp::Reverse(t.ci_seconds));
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
    match (&t.ci, args.ci) {
        (Ci::AllBut(skip), true) => {
            cmd.arg("--");
            for name in *skip {
                cmd.args(["--skip", name]);
            }
        }
        (Ci::Only(targets, filter), true) => {
            cmd.args(*targets).arg("--").args(*filter);
        }
        (_, false) => {
            cmd.arg("--");
        }
    }
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
