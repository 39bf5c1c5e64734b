//! `fsm run --policy NAME -- CMD ARGS...`: an unmodified program on a policy.
//!
//! ```text
//!   fsm ──spawn──> CMD with LD_PRELOAD=libfsm_malloc.so, FSM_POLICY=NAME, FSM_STATS_OUT=TMP
//!        (a peer: LD_PRELOAD=the system's libtcmalloc_minimal / libjemalloc / libmimalloc;
//!         system: nothing preloaded)
//!   CMD's stdin, stdout, stderr pass through; fsm waits (wait4: the child's CPU times and peak
//!   resident memory), reads the policy's counters the library wrote at exit, and prints
//!   the figures to stderr (or as JSON to --json FILE); fsm exits with CMD's status.
//! ```

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Arguments of `fsm run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The policy (any name the registry knows, suffixes included), or a peer: system,
    /// gperftools, jemalloc, mimalloc.
    #[arg(long, default_value = "tcmalloc")]
    pub policy: String,
    /// A GLIBC_TUNABLES-style string for ptmalloc2.
    #[arg(long)]
    pub tunables: Option<String>,
    /// Write the figures as JSON to this file instead of printing them.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The preload library (default: built in the workspace, or $FSM_MALLOC, or next to this
    /// executable).
    #[arg(long)]
    pub library: Option<PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

/// A peer allocator from the system: its library and the Debian package that has it.
struct Peer {
    name: &'static str,
    file: &'static str,
    package: &'static str,
}

/// The peers `fsm run` preloads from the system (Debian's packages).
const PEERS: &[Peer] = &[
    Peer {
        name: "gperftools",
        file: "libtcmalloc_minimal.so.4",
        package: "libtcmalloc-minimal4",
    },
    Peer {
        name: "jemalloc",
        file: "libjemalloc.so.2",
        package: "libjemalloc2",
    },
    Peer {
        name: "mimalloc",
        file: "libmimalloc.so.2",
        package: "libmimalloc2.0",
    },
];

/// The system library `file`, where the dynamic loader would find it.
fn system_library(file: &str) -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ]
    .iter()
    .map(|d| PathBuf::from(d).join(file))
    .find(|p| p.is_file())
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fsm run: {msg}");
    ExitCode::FAILURE
}

/// What to preload and tell the child, for `args.policy`.
fn preload(args: &RunArgs) -> Result<Option<PathBuf>, String> {
    if args.policy == "system" {
        return Ok(None);
    }
    if let Some(peer) = PEERS.iter().find(|p| p.name == args.policy) {
        return system_library(peer.file).map(Some).ok_or_else(|| {
            format!(
                "{} is not installed ({} not found): apt-get install {}",
                peer.name, peer.file, peer.package
            )
        });
    }
    // A policy: checked here, so a bad name is fsm's error, before anything runs.
    registry::lookup(&args.policy).map_err(|e| {
        let peers: Vec<&str> = PEERS.iter().map(|p| p.name).collect();
        format!("{e}; peers: system, {}", peers.join(", "))
    })?;
    crate::library::MALLOC
        .find(args.library.as_deref())
        .map(Some)
}

/// Runs `fsm run`.
pub fn run(args: RunArgs) -> ExitCode {
    let lib = match preload(&args) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let (prog, rest) = match args.command.split_first() {
        Some(x) => x,
        None => return fail("no command given after --"),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let stats_file =
        std::env::temp_dir().join(format!("fsm-run-{}-{nanos}.json", std::process::id()));
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    if let Some(lib) = &lib {
        let lib = lib.canonicalize().unwrap_or_else(|_| lib.clone());
        let mut pre = OsString::from(lib);
        if let Some(old) = std::env::var_os("LD_PRELOAD") {
            pre.push(" ");
            pre.push(old);
        }
        cmd.env("LD_PRELOAD", pre);
        cmd.env("FSM_POLICY", &args.policy);
        cmd.env("FSM_STATS_OUT", &stats_file);
        if let Some(t) = &args.tunables {
            cmd.env("FSM_TUNABLES", t);
        }
    }
    let start = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format_args!("cannot run {}: {e}", prog.to_string_lossy())),
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // The `Child` is not waited for again (it is only dropped, which does not wait).
    let r = loop {
        // SAFETY: waits for our own child; `status` and `usage` are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    drop(child);
    if r == -1 {
        return fail(format_args!(
            "waiting for the program failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    let report = std::fs::read_to_string(&stats_file)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let _ = std::fs::remove_file(&stats_file);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    let figures = serde_json::json!({
        "policy": args.policy,
        "command": args.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
        "exit_code": code,
        "signal": signal,
        "wall_s": wall.as_secs_f64(),
        "user_s": tv(usage.ru_utime),
        "sys_s": tv(usage.ru_stime),
        "max_rss_kib": usage.ru_maxrss,
        "policy_report": report,
    });
    match &args.json {
        Some(path) => {
            if let Err(e) = std::fs::write(path, format!("{figures}\n")) {
                eprintln!("fsm run: cannot write {}: {e}", path.display());
            }
        }
        None => eprintln!("{}", human(&figures)),
    }
    match (code, signal) {
        (Some(c), _) => ExitCode::from(c as u8),
        // A signal: the shell's convention.
        (None, Some(s)) => ExitCode::from((128 + s) as u8),
        _ => ExitCode::FAILURE,
    }
}

/// The figures as a few lines for stderr.
fn human(f: &serde_json::Value) -> String {
    let mut s = format!(
        "fsm run: {} | wall {:.3} s, user {:.3} s, sys {:.3} s, peak RSS {} KiB",
        f["policy"].as_str().unwrap_or("?"),
        f["wall_s"].as_f64().unwrap_or(0.0),
        f["user_s"].as_f64().unwrap_or(0.0),
        f["sys_s"].as_f64().unwrap_or(0.0),
        f["max_rss_kib"]
    );
    let r = &f["policy_report"];
    if !r.is_null() {
        s.push_str(&format!(
            "\nfsm run: runs as {}",
            r["runs_as"].as_str().unwrap_or("?")
        ));
        let st = &r["stats"];
        if st.is_null() {
            s.push_str(" (its front keeps no counters)");
        } else {
            let pct = |v: &serde_json::Value| {
                v.as_f64()
                    .map_or_else(|| "n/a".to_string(), |x| format!("{:.1}%", x * 100.0))
            };
            s.push_str(&format!(
                "\nfsm run: at exit: peak footprint {} B, peak live {} B requested; \
                 fragmentation #4 {}; {} allocations, {} failed",
                st["peak_footprint"],
                st["peak_live_requested"],
                pct(&st["frag4"]),
                st["allocs"],
                st["failed_allocs"]
            ));
        }
        if let Some(g) = r["gauges"].as_object().filter(|g| !g.is_empty()) {
            let list: Vec<String> = g.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s.push_str(&format!(
                "\nfsm run: its front at exit: {}",
                list.join(", ")
            ));
        }
        s.push_str(&format!(
            "\nfsm run: the library's own table and set-up: {} B",
            r["bootstrap_bytes"]
        ));
    }
    s
}
