//! `fsm classes --policy NAME`: a policy's size classes as lines `FROM TO ROUNDED` (every request
//! size from FROM to TO inclusive is rounded to ROUNDED bytes), covering 1 up to the largest
//! class.
//!
//! Each policy with size classes contributes one arm to [`runs`]; the format is DESIGN.md's.

use std::io::Write;
use std::process::ExitCode;

/// Arguments of `fsm classes`.
#[derive(Debug, clap::Args)]
pub struct ClassesArgs {
    /// The policy whose classes to print (`ptmalloc2`, `segregated`, `tcmalloc`).
    #[arg(long)]
    policy: String,
}

/// The runs `(from, to, rounded)` of `policy`, or `None` for a policy without size classes.
fn runs(policy: &str) -> Option<Vec<(usize, usize, usize)>> {
    match policy {
        "tcmalloc" => Some(
            tcmalloc::classes()
                .map(|r| (r.from, r.to, r.rounded))
                .collect(),
        ),
        "segregated" => Some(segregated::GO.runs().collect()),
        // glibc has no size classes as such, but request2size rounds every request to a chunk;
        // ROUNDED is the usable size (chunk size - 8), up to the default mmap threshold.
        "ptmalloc2" => Some(ptmalloc2::classes().collect()),
        _ => None,
    }
}

/// Runs `fsm classes`.
pub fn run(args: ClassesArgs) -> ExitCode {
    let Some(runs) = runs(&args.policy) else {
        eprintln!(
            "fsm classes: no size classes known for policy '{}' (known: ptmalloc2, segregated, tcmalloc)",
            args.policy
        );
        return ExitCode::from(2);
    };
    let mut out = std::io::stdout().lock();
    for (from, to, rounded) in runs {
        if writeln!(out, "{from} {to} {rounded}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcmalloc_runs_cover_1_to_256k() {
        let r = runs("tcmalloc").unwrap();
        assert_eq!(r.len(), 85);
        assert_eq!(r[0], (1, 8, 8));
        assert_eq!(r.last().unwrap().1, 262_144);
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
        assert!(runs("no-such-policy").is_none());
    }

    #[test]
    fn ptmalloc2_runs_follow_request2size() {
        let r = runs("ptmalloc2").unwrap();
        // malloc(0..24) -> 0x20 chunk (24 usable), 25..40 -> 0x30, 41..56 -> 0x40.
        assert_eq!(&r[..3], &[(1, 24, 24), (25, 40, 40), (41, 56, 56)]);
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }

    #[test]
    fn segregated_runs_are_gos_67_classes() {
        let r = runs("segregated").unwrap();
        assert_eq!(r.len(), 67);
        assert_eq!(&r[..3], &[(1, 8, 8), (9, 16, 16), (17, 24, 24)]);
        assert_eq!(r.last().unwrap(), &(28_673, 32_768, 32_768));
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }
}
