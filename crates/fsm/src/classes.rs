//! `fsm classes --policy NAME`: a policy's size classes as lines `FROM TO ROUNDED` (every request
//! size from FROM to TO inclusive is rounded to ROUNDED bytes), covering 1 up to the largest
//! class.
//!
//! The classes come from the registry (each descriptor's `classes`); the format is DESIGN.md's.

use std::io::Write;
use std::process::ExitCode;

/// Arguments of `fsm classes`.
#[derive(Debug, clap::Args)]
pub struct ClassesArgs {
    /// The policy whose classes to print (those with size classes: ptmalloc2, segregated,
    /// tcmalloc).
    #[arg(long)]
    policy: String,
}

/// The runs `(from, to, rounded)` of `policy` from the registry: `Ok(None)` for a policy without
/// size classes; an error for a name the registry does not know.
fn runs(policy: &str) -> Result<Option<Vec<registry::ClassRun>>, String> {
    let spec = registry::lookup(policy).map_err(|e| e.to_string())?;
    Ok(spec.descriptor.classes.map(|classes| classes()))
}

/// The policies that have size classes.
fn with_classes() -> String {
    registry::all()
        .iter()
        .filter(|d| d.classes.is_some())
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `fsm classes`.
pub fn run(args: ClassesArgs) -> ExitCode {
    let runs = match runs(&args.policy) {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!(
                "fsm classes: policy '{}' has no size classes (these do: {})",
                args.policy,
                with_classes()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("fsm classes: {e}");
            return ExitCode::FAILURE;
        }
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
        let r = runs("tcmalloc").unwrap().unwrap();
        assert_eq!(r.len(), 85);
        assert_eq!(r[0], (1, 8, 8));
        assert_eq!(r.last().unwrap().1, 262_144);
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
        assert!(runs("no-such-policy").is_err());
        assert_eq!(runs("best-fit"), Ok(None));
    }

    #[test]
    fn ptmalloc2_runs_follow_request2size() {
        let r = runs("ptmalloc2").unwrap().unwrap();
        // malloc(0..24) -> 0x20 chunk (24 usable), 25..40 -> 0x30, 41..56 -> 0x40.
        assert_eq!(&r[..3], &[(1, 24, 24), (25, 40, 40), (41, 56, 56)]);
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }

    #[test]
    fn segregated_runs_are_gos_67_classes() {
        let r = runs("segregated").unwrap().unwrap();
        assert_eq!(r.len(), 67);
        assert_eq!(&r[..3], &[(1, 8, 8), (9, 16, 16), (17, 24, 24)]);
        assert_eq!(r.last().unwrap(), &(28_673, 32_768, 32_768));
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }
}
