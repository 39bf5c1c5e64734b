//! `fsm record` end to end (issue 16, item 4): a program killed by a signal still gives its
//! trace, and an output folder that does not exist fails before the program runs.

use std::process::Command;

fn fsm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fsm"))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fsm-record-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_program_killed_by_sigkill_gives_its_trace() {
    let dir = scratch("killed");
    let out = dir.join("t.trace");
    let script = "import os, signal\nkeep = [bytearray(100 + i % 900) for i in range(3000)]\n\
                  os.kill(os.getpid(), signal.SIGKILL)\n";
    let run = fsm()
        .args(["record", "-o"])
        .arg(&out)
        .args(["--", "python3", "-c", script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("signal: 9"), "{stderr}");
    let trace = workloads::trace::Trace::load(&out).unwrap();
    let allocs = trace.events.iter().filter(|e| e.op.is_alloc()).count();
    assert!(
        allocs >= 3000,
        "only {allocs} allocations recorded: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_output_folder_fails_before_running() {
    let dir = scratch("missing");
    let ran = dir.join("ran");
    let run = fsm()
        .args(["record", "-o", "/nonexistent/x.trace", "--", "touch"])
        .arg(&ran)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("/nonexistent is not a directory"),
        "{stderr}"
    );
    assert!(!ran.exists(), "the program ran");
    std::fs::remove_dir_all(&dir).unwrap();
}
