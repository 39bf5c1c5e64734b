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
    /// What CI runs (`--ci`): cargo's target selection and the harness's filter, chosen to fit
    /// CI's time (each measured: docs/bad-frees.md's neighbour, dev-notes of session 3).
    ci: (&'static [&'static str], &'static [&'static str]),
}

/// Every crate whose tests run under Miri, in dependency order.
const TARGETS: &[Target] = &[
    Target {
        package: "allocator-traits",
        ci: (&[], &[]),
        features: "conformance",
        strict: true,
    },
    Target {
        package: "fit",
        ci: (&["--test", "conformance"], &["list_order_under_addr::"]),
        features: "",
        strict: true,
    },
    Target {
        package: "buddy",
        ci: (&["--test", "conformance"], &["whole_region::"]),
        features: "",
        strict: true,
    },
    Target {
        package: "segregated",
        ci: (&["--test", "conformance"], &["go_classes::"]),
        features: "",
        strict: true,
    },
    Target {
        package: "ptmalloc2",
        ci: (&["--test", "conformance"], &["defaults::"]),
        features: "",
        strict: true,
    },
    Target {
        package: "tcmalloc",
        // Its walk and inspect are per object: bad_frees 517 s, near_oom 273, zero_size 188,
        // realign 170, huge 92 under Miri (session 5, 256 KiB); CI runs the other three (~250 s).
        ci: (
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
    /// Run only what CI runs per crate: the kit's conformance suite of one configuration (every
    /// check of the kit, counts reduced under cfg(miri)), the whole suite for allocator-traits.
    #[arg(long)]
    ci: bool,
    /// Allow integer-to-pointer casts (drop -Zmiri-strict-provenance).
    #[arg(long)]
    permissive: bool,
    /// Extra arguments for the test harness, after `--` (a test name filter, say).
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// Runs the suites; returns an error naming the first package that failed.
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
    let chosen = TARGETS
        .iter()
        .filter(|t| args.packages.is_empty() || args.packages.iter().any(|p| p == t.package));
    let mut failed = Vec::new();
    for t in chosen {
        let mut cmd = Command::new("cargo");
        cmd.args(["+nightly", "miri", "test", "-p", t.package]);
        if !t.features.is_empty() {
            cmd.args(["--features", t.features]);
        }
        if args.ci {
            cmd.args(t.ci.0).arg("--").args(t.ci.1);
        } else {
            cmd.arg("--");
        }
        cmd.args(&args.test_args);
        let mut flags = std::env::var("MIRIFLAGS").unwrap_or_default();
        if t.strict && !args.permissive {
            flags.push_str(" -Zmiri-strict-provenance");
        }
        cmd.env("MIRIFLAGS", flags.trim());
        eprintln!("xtask miri: {} (MIRIFLAGS={})", t.package, flags.trim());
        let started = std::time::Instant::now();
        let status = cmd.status();
        eprintln!(
            "xtask miri: {} took {:.0} s",
            t.package,
            started.elapsed().as_secs_f64()
        );
        match status {
            Ok(s) if s.success() => {}
            Ok(_) => failed.push(t.package),
            Err(e) => return Err(format!("could not run cargo: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("Miri found problems in: {}", failed.join(", ")))
    }
}
