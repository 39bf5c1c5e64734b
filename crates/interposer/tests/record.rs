//! The recorder on a real program: `ls -l /` (coreutils, dynamically linked) run with the library
//! preloaded must leave a log that reads back as a valid trace with many allocations. And on a
//! program that dies (SIGSEGV, SIGABRT, SIGKILL, SIGKILL in the middle of four threads' calls) or
//! that replaces itself with `exec`: every call made before the end is in the log (issue 16,
//! item 4: such a recording used to hold 0 events, or only the last image's).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use workloads::foreign::{Imported, import_interposer};
use workloads::trace::Op;

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

/// A C program that allocates 1000 blocks of `SIZE` bytes, frees every other one, then ends as
/// its first argument says: `exit`, `segv` (a real invalid write), `abort`, `kill` (SIGKILL to
/// itself), `exec` (execl of itself with `after-exec`, which allocates blocks of 2002 bytes and
/// exits), `execvp` (the same through execvp, whose call of execve is internal to glibc), or
/// `threads` (four threads allocating and freeing without end until the main thread SIGKILLs the
/// process: it dies in the middle of lines).
const PROGRAM: &str = r#"
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *volatile sink;

static void *churn(void *arg) {
    (void)arg;
    for (;;) {
        sink = malloc(48);
        free(sink);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "exit";
    size_t size = strcmp(how, "after-exec") == 0 ? 2002 : 1001;
    static void *keep[1000];
    for (int i = 0; i < 1000; i++) {
        keep[i] = malloc(size);
        memset(keep[i], 1, size);
    }
    for (int i = 0; i < 1000; i += 2) free(keep[i]);
    if (!strcmp(how, "segv")) *(volatile int *)16 = 1;
    if (!strcmp(how, "abort")) abort();
    if (!strcmp(how, "kill")) kill(getpid(), SIGKILL);
    if (!strcmp(how, "exec")) execl(argv[0], argv[0], "after-exec", (char *)0);
    if (!strcmp(how, "execvp")) {
        char *args[] = {argv[0], "after-exec", 0};
        execvp(argv[0], args);
    }
    if (!strcmp(how, "threads")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, churn, 0);
        struct timespec d = {0, 50 * 1000 * 1000};
        nanosleep(&d, 0);
        kill(getpid(), SIGKILL);
    }
    return strcmp(how, "exit") == 0 || strcmp(how, "after-exec") == 0 ? 0 : 99;
}
"#;

/// The program above, compiled once (with the system's `cc`).
fn program() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = scratch("program");
            let src = dir.join("ends.c");
            std::fs::write(&src, PROGRAM).unwrap();
            let exe = dir.join("ends");
            let status = Command::new("cc")
                .args(["-O1", "-pthread", "-o"])
                .arg(&exe)
                .arg(&src)
                .status()
                .expect("cc is needed to build the test program");
            assert!(status.success(), "compiling the test program failed");
            exe
        })
        .clone()
}

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("interposer-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the program ending as `how` under the recorder; its one log, read back.
fn record(how: &str) -> (std::process::ExitStatus, Imported) {
    let lib = library();
    let exe = program();
    let dir = scratch(how);
    let out = Command::new(&exe)
        .arg(how)
        .env("LD_PRELOAD", &lib)
        .env("FSM_RECORD_OUT", dir.join("log"))
        .env("PATH", exe.parent().unwrap())
        .output()
        .unwrap();
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{how}: one process, one log: {logs:?}");
    let imported = import_interposer(&std::fs::read(&logs[0]).unwrap())
        .unwrap_or_else(|e| panic!("{how}: the log does not read back: {e}"));
    imported.trace.check().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (out.status, imported)
}

/// How many blocks of `size` bytes were allocated, and how many of them freed.
fn blocks_of(i: &Imported, size: u64) -> (usize, usize) {
    let mut ids = std::collections::HashSet::new();
    let mut freed = 0;
    for e in &i.trace.events {
        match e.op {
            Op::Malloc { size: s } if s == size => {
                ids.insert(e.id);
            }
            Op::Free if ids.contains(&e.id) => freed += 1,
            _ => {}
        }
    }
    (ids.len(), freed)
}

#[test]
fn a_normal_exit_keeps_every_call() {
    let (status, i) = record("exit");
    assert!(status.success(), "{status}");
    assert_eq!(blocks_of(&i, 1001), (1000, 500));
    assert_eq!((i.oddities.execs, i.oddities.cut_line), (0, false));
}

#[test]
fn a_crash_keeps_every_call_before_it() {
    for (how, signal) in [
        ("segv", libc::SIGSEGV),
        ("abort", libc::SIGABRT),
        ("kill", libc::SIGKILL),
    ] {
        let (status, i) = record(how);
        assert_eq!(status.signal(), Some(signal), "{how}: {status}");
        assert_eq!(blocks_of(&i, 1001), (1000, 500), "{how}");
    }
}

#[test]
fn sigkill_in_the_middle_of_threads_calls_keeps_a_readable_log() {
    let (status, i) = record("threads");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert_eq!(blocks_of(&i, 1001), (1000, 500));
    let (churned, _) = blocks_of(&i, 48);
    assert!(
        churned > 100,
        "only {churned} of the threads' calls recorded"
    );
    let threads: std::collections::HashSet<_> = i.trace.events.iter().map(|e| e.thread).collect();
    assert!(threads.len() >= 2, "threads seen: {threads:?}");
}

#[test]
fn exec_keeps_both_programs_calls() {
    for how in ["exec", "execvp"] {
        let (status, i) = record(how);
        assert!(status.success(), "{how}: {status}");
        // The first image's 500 live blocks end at the exec (the kernel takes them back).
        assert_eq!(
            blocks_of(&i, 1001),
            (1000, 1000),
            "{how}: the first program"
        );
        assert_eq!(
            blocks_of(&i, 2002),
            (1000, 500),
            "{how}: the program it became"
        );
        assert_eq!(i.oddities.execs, 1, "{how}");
        assert_eq!(i.oddities.reused_live, 0, "{how}");
    }
}
