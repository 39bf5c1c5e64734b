//! What the preload tests share: the library (built once per test binary) and running a command
//! on a policy.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `cargo test` does not produce the cdylib, so the tests build it (with a target directory of
/// their own beside the test binary's, so no lock is shared with the running cargo).
pub fn library() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let target = exe.parent().unwrap().parent().unwrap().join("preload-test");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "preload", "--target-dir"])
                .arg(&target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success(), "building the preload library failed");
            let lib = target.join("debug").join("libfsm_malloc.so");
            assert!(lib.is_file(), "{} not built", lib.display());
            lib
        })
        .clone()
}

/// A scratch folder of the test's own.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("preload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cmd args` in `dir` with `stdin`, on `policy` (`None`: the system allocator).
pub fn run(policy: Option<&str>, dir: &Path, cmd: &str, args: &[&str], stdin: &[u8]) -> Output {
    run_env(policy, dir, cmd, args, stdin, &[])
}

/// [`run`] with more environment variables.
pub fn run_env(
    policy: Option<&str>,
    dir: &Path,
    cmd: &str,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &std::ffi::OsStr)],
) -> Output {
    let mut c = Command::new(cmd);
    c.envs(env.iter().copied());
    c.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("HOME", dir);
    if let Some(p) = policy {
        c.env("LD_PRELOAD", library()).env("FSM_POLICY", p);
    }
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin);
    }
    child.wait_with_output().unwrap()
}

/// Every policy the registry's matrix runs.
pub fn policies() -> Vec<&'static str> {
    registry::variants()
}

/// Compiles the C program `src` into `dir/name` (gcc must be installed: CI installs it).
pub fn compile_c(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let exe = dir.join(name);
    let out = Command::new("gcc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("gcc runs (install it: apt-get install gcc)");
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}
