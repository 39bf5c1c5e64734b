//! The recorder on a real program: `ls -l /` (coreutils, dynamically linked) run with the library
//! preloaded must leave a log that reads back as a valid trace with many allocations.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` does not produce the cdylib, so the test builds it (with its own target
/// directory beside the test binary's, so no lock is shared with the running cargo).
fn library() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let target = exe
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("interposer-test");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "interposer", "--target-dir"])
                .arg(&target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success(), "building the interposer failed");
            target.join("debug").join("libfsm_interposer.so")
        })
        .clone()
}

#[test]
fn records_a_real_program() {
    let lib = library();
    assert!(lib.is_file(), "{} not built", lib.display());
    let dir = std::env::temp_dir().join(format!("interposer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("log");
    let child = Command::new("ls")
        .args(["-l", "/"])
        .env("LD_PRELOAD", &lib)
        .env("FSM_RECORD_OUT", &prefix)
        .output()
        .unwrap();
    assert!(child.status.success());
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "one process, one log: {logs:?}");
    let bytes = std::fs::read(&logs[0]).unwrap();
    let imported = workloads::foreign::import_interposer(&bytes).unwrap();
    imported.trace.check().unwrap();
    let allocs = imported
        .trace
        .events
        .iter()
        .filter(|e| e.op.is_alloc())
        .count();
    assert!(allocs > 20, "only {allocs} allocations recorded");
    assert_eq!(imported.oddities.unknown_frees, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_the_variable_it_only_forwards() {
    let lib = library();
    let out = Command::new("ls")
        .arg("/")
        .env("LD_PRELOAD", &lib)
        .env_remove("FSM_RECORD_OUT")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
}
