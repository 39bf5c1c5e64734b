//! Golden files for `fsm sim`: `tests/golden/NAME.args` holds the arguments (first line,
//! whitespace-separated) and optionally `exit N` and `stderr TEXT` lines; `NAME.out` is the
//! exact stdout expected.
//!
//! How they were made: every `NAME.out` except `extension_*` is the stdout of OSTEP's own
//! `malloc.py` (remzi-arpacidusseau/ostep-homework, `vm-freespace/malloc.py`, fetched to a
//! scratch folder outside the repository; its code is not here, only its outputs) for the same
//! arguments, written by `tests/golden/regenerate.sh`, which also writes `tests/golden/SOURCES`:
//! per golden its maker, malloc.py's exit status and a hash of the `.out`.
//! [`every_golden_is_malloc_py_output`] checks that manifest against the files, so a golden
//! rewritten from `fsm sim`'s own output fails until `regenerate.sh` is run with malloc.py. The
//! `extension_*` goldens are `fsm sim`'s (its NEXT policy, which malloc.py does not have), read
//! against the rules of `reference/ostep-malloc-sim.md`. (Until session 3 all but four goldens
//! were `fsm sim`'s own output; regenerated with malloc.py on 2026-12-05 they were byte for byte
//! the same. The `sweep_*` cases are random configurations from a 1,980-run comparison of
//! `fsm sim` with malloc.py in which all runs matched.)
//!
//! A run that malloc.py crashes on must exit 1 with exactly one line on stderr (no panic, no
//! backtrace) after printing the same stdout prefix; an optparse error exits 2.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

struct Case {
    name: String,
    args: Vec<String>,
    exit: i32,
    stderr: Option<String>,
    out: String,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "args"))
        .collect();
    names.sort();
    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let spec = fs::read_to_string(&path).unwrap();
        let mut lines = spec.lines();
        let args = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        let (mut exit, mut stderr) = (0, None);
        for line in lines {
            if let Some(code) = line.strip_prefix("exit ") {
                exit = code.trim().parse().expect("exit N");
            } else if let Some(text) = line.strip_prefix("stderr ") {
                stderr = Some(text.to_string());
            }
        }
        let out = fs::read_to_string(path.with_extension("out"))
            .unwrap_or_else(|_| panic!("{name}.out is missing"));
        cases.push(Case {
            name,
            args,
            exit,
            stderr,
            out,
        });
    }
    cases
}

fn fsm_sim(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fsm"))
        .arg("sim")
        .args(args)
        .output()
        .expect("fsm runs")
}

#[test]
fn golden_outputs_match_byte_for_byte() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} golden cases found", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let r = fsm_sim(&c.args);
        let stdout = String::from_utf8_lossy(&r.stdout);
        let stderr = String::from_utf8_lossy(&r.stderr);
        if stdout != c.out {
            let line = stdout
                .lines()
                .zip(c.out.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(stdout.lines().count().min(c.out.lines().count()));
            failures.push(format!(
                "{}: stdout differs from line {}:\n  got:  {:?}\n  want: {:?}",
                c.name,
                line + 1,
                stdout.lines().nth(line),
                c.out.lines().nth(line)
            ));
        }
        if r.status.code() != Some(c.exit) {
            failures.push(format!(
                "{}: exit {:?}, want {} (stderr: {stderr})",
                c.name,
                r.status.code(),
                c.exit
            ));
        }
        if let Some(want) = &c.stderr
            && !stderr.contains(want.as_str())
        {
            failures.push(format!("{}: stderr {stderr:?} lacks {want:?}", c.name));
        }
        if c.exit == 0 && !stderr.is_empty() {
            failures.push(format!("{}: unexpected stderr {stderr:?}", c.name));
        }
        if c.exit == 1 {
            let one_line = stderr.lines().count() == 1 && stderr.starts_with("fsm sim: error: ");
            if !one_line || stderr.contains("panicked") {
                failures.push(format!(
                    "{}: stderr is not one error line: {stderr:?}",
                    c.name
                ));
            }
        }
        if c.exit == 2 && !stderr.starts_with("Usage: fsm sim [options]\n\nfsm sim: error: ") {
            failures.push(format!(
                "{}: not an optparse-style error: {stderr:?}",
                c.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `-A` mode prints the block address, random mode the block address plus the header: the same
/// first allocation shows 1000 in one and 1004 in the other (README example, `-H 4`).
#[test]
fn returned_address_differs_between_modes() {
    let explicit = fsm_sim(&[
        "-H".into(),
        "4".into(),
        "-c".into(),
        "-A".into(),
        "+3".into(),
    ]);
    let text = String::from_utf8_lossy(&explicit.stdout);
    assert!(
        text.contains("ptr[0] = Alloc(3) returned 1000 (searched 1 elements)"),
        "{text}"
    );
    // Seed 0: the draws 0.844 and 0.758 are not below 0.5 and nothing is live, so nothing is
    // done; then 0.42 < 0.5 is an alloc of int(0.2589 * 10) + 1 = 3.
    let random = fsm_sim(&[
        "-H".into(),
        "4".into(),
        "-c".into(),
        "-n".into(),
        "1".into(),
    ]);
    let text = String::from_utf8_lossy(&random.stdout);
    assert!(
        text.contains("ptr[0] = Alloc(3) returned 1004 (searched 1 elements)"),
        "{text}"
    );
}

/// `List?` has no trailing space in `-A` mode and one in random mode.
#[test]
fn quiz_list_line_spacing() {
    let explicit = fsm_sim(&["-A".into(), "+1".into()]);
    assert!(String::from_utf8_lossy(&explicit.stdout).ends_with("returned ?\nList?\n\n"));
    let random = fsm_sim(&["-n".into(), "1".into()]);
    assert!(String::from_utf8_lossy(&random.stdout).ends_with("returned ?\nList? \n\n"));
}

/// The `-h` text lists every malloc.py flag and exits 0.
#[test]
fn help_lists_every_flag() {
    let r = fsm_sim(&["-h".into()]);
    assert_eq!(r.status.code(), Some(0));
    let text = String::from_utf8_lossy(&r.stdout);
    for flag in [
        "--seed",
        "--size",
        "--baseAddr",
        "--headerSize",
        "--alignment",
        "--policy",
        "--listOrder",
        "--coalesce",
        "--numOps",
        "--range",
        "--percentAlloc",
        "--allocList",
        "--compute",
        "--svg",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

/// FNV-1a, 64 bits: the hash `regenerate.sh` writes into SOURCES.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Every golden is listed in SOURCES with malloc.py as its maker (but fsm's extensions), its
/// `.out` is the one malloc.py printed (the hash matches) and its expected exit status is
/// malloc.py's.
#[test]
fn every_golden_is_malloc_py_output() {
    let manifest = fs::read_to_string(golden_dir().join("SOURCES")).expect("tests/golden/SOURCES");
    let mut listed = std::collections::HashMap::new();
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "SOURCES: bad line {line:?}");
        listed.insert(
            f[0].to_string(),
            (f[1].to_string(), f[2].to_string(), f[3].to_string()),
        );
    }
    let mut failures = Vec::new();
    for c in cases() {
        let Some((maker, exit, hash)) = listed.get(&c.name) else {
            failures.push(format!("{}: not in SOURCES (run regenerate.sh)", c.name));
            continue;
        };
        let want_maker = if c.name.starts_with("extension_") {
            "fsm"
        } else {
            "malloc.py"
        };
        if maker != want_maker {
            failures.push(format!("{}: made by {maker}, want {want_maker}", c.name));
        }
        if *exit != c.exit.to_string() {
            failures.push(format!(
                "{}: malloc.py exited {exit}, the .args expects {}",
                c.name, c.exit
            ));
        }
        let got = format!("{:016x}", fnv1a(c.out.as_bytes()));
        if *hash != got {
            failures.push(format!(
                "{}: the .out is not what {maker} printed (hash {got}, SOURCES {hash})",
                c.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
