//! The oracle of the comparisons: the real glibc 2.36 (the system's C library) driven by the C
//! programs in `tests/glibc/`, built with the system's C compiler (`cc`, or `PTMALLOC2_CC`).
//!
//! Without it a comparison cannot run. It then prints why and passes, except under CI
//! (`CI=true`), where a missing oracle fails the test: a comparison that silently did not run
//! proves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The C compiler to build the oracle's programs with.
pub fn cc() -> String {
    std::env::var("PTMALLOC2_CC").unwrap_or_else(|_| "cc".to_string())
}

/// Reports that the oracle is missing (`why`): fails under CI, else says the test is skipped.
pub fn missing(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the oracle is missing under CI=true: {why}");
    }
    eprintln!("skipped: {why}");
}

/// Whether the C library is glibc 2.36 (the one the model follows).
pub fn glibc_is_2_36() -> bool {
    Command::new("ldd")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .contains(" 2.36")
        })
        .unwrap_or(false)
}

/// Compiles `tests/glibc/{source}` into `out` with `cc()` and `flags`.
pub fn build(source: &str, out: &Path, flags: &[&str]) -> bool {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/glibc")
        .join(source);
    Command::new(cc())
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success())
}

/// The C replayer (`tests/glibc/replay.c`) built in a scratch folder `name`, if glibc 2.36 and
/// a compiler are there (else [`missing`] has reported why): `(folder, program)`.
pub fn replayer(name: &str) -> Option<(PathBuf, PathBuf)> {
    if !glibc_is_2_36() {
        missing("the C library is not glibc 2.36");
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let bin = dir.join("glibc-replay");
    if !build("replay.c", &bin, &["-O2"]) {
        missing(&format!(
            "cannot compile tests/glibc/replay.c with `{}`",
            cc()
        ));
        return None;
    }
    Some((dir, bin))
}
