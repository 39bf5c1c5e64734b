//! `fsm record -- CMD ARGS...`: a program's allocations as a trace.
//!
//! ```text
//!   fsm ──spawn──> CMD with LD_PRELOAD=libfsm_interposer.so, FSM_RECORD_OUT=TMP/log
//!                   └─ every malloc/calloc/realloc/free/memalign/... -> TMP/log.PID
//!   fsm <──exit──  read TMP/log.<CMD's pid> -> addresses become block IDs -> window -> TRACE
//! ```
//!
//! The interposer is the `interposer` package of the workspace, found or built by fsm itself
//! ([`crate::library`]); `--interposer PATH` or `FSM_INTERPOSER` name it elsewhere. Only the
//! command's own process is kept; its children (which inherit the preload) are counted and
//! reported.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use workloads::foreign::import_interposer;

/// Arguments of `fsm record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Where to write the trace (`.gz` compresses it; `.bin` or `.bin.gz` for the binary form).
    #[arg(short, long, default_value = "fsm-record.trace.gz")]
    pub output: PathBuf,
    /// Drop the first N events (frees of blocks allocated before them are dropped too).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Keep at most N events after the skipped ones.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The recorder library (default: built in the workspace, or $FSM_INTERPOSER, or next to
    /// this executable).
    #[arg(long)]
    pub interposer: Option<PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fsm record: {msg}");
    ExitCode::FAILURE
}

/// Runs `fsm record`.
pub fn run(args: RecordArgs) -> ExitCode {
    // The output's folder must exist before the program runs (not found out after it ran).
    let parent = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return fail(format_args!(
            "cannot write {}: {} is not a directory",
            args.output.display(),
            parent.display()
        ));
    }
    let so = match crate::library::INTERPOSER.find(args.interposer.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let so = so.canonicalize().unwrap_or(so);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("fsm-record-{}-{nanos}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return fail(format_args!("cannot create {}: {e}", dir.display()));
    }
    let result = record_in(&args, &so, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(msg) => {
            eprintln!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn record_in(args: &RecordArgs, so: &Path, dir: &Path) -> Result<String, String> {
    let (prog, rest) = args
        .command
        .split_first()
        .ok_or_else(|| "no command given after --".to_string())?;
    let mut preload = OsString::from(so);
    if let Some(old) = std::env::var_os("LD_PRELOAD") {
        preload.push(" ");
        preload.push(old);
    }
    let log = dir.join("log");
    let mut child = Command::new(prog)
        .args(rest)
        .env("LD_PRELOAD", &preload)
        .env("FSM_RECORD_OUT", &log)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", prog.to_string_lossy()))?;
    let pid = child.id();
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", prog.to_string_lossy()))?;
    let own = dir.join(format!("log.{pid}"));
    let others = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.path() != own).count())
        .unwrap_or(0);
    let bytes = std::fs::read(&own).map_err(|_| {
        format!(
            "{} made no allocation through the dynamic malloc (statically linked?)",
            prog.to_string_lossy()
        )
    })?;
    let imported = import_interposer(&bytes).map_err(|e| format!("recorder log {e}"))?;
    let full = imported.trace;
    let trace = full.window(args.skip, args.limit.unwrap_or(usize::MAX));
    let cmdline: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let header = format!(
        "recorded by `fsm record` from: {}\n{} of {} events (skip {}, limit {})\n{}\n{status}",
        cmdline.join(" "),
        trace.len(),
        full.len(),
        args.skip,
        args.limit.map_or_else(|| "none".into(), |l| l.to_string()),
        trace.summary(),
    );
    trace
        .save(&args.output, &header)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    let mut msg = format!(
        "fsm record: {} -> {} ({}); {} frees of unknown blocks skipped",
        cmdline.join(" "),
        args.output.display(),
        trace.summary(),
        imported.oddities.unknown_frees
    );
    if imported.oddities.execs > 0 {
        msg.push_str(&format!(
            "; it exec'd {} time(s) (the blocks live at each are freed there)",
            imported.oddities.execs
        ));
    }
    if imported.oddities.cut_line {
        msg.push_str(
            "; its log ends in a line cut short (killed in the middle of a call), dropped",
        );
    }
    if others > 0 {
        msg.push_str(&format!(
            "; {others} child process(es) also recorded, not kept"
        ));
    }
    if !status.success() {
        msg.push_str(&format!("; the command exited with {status}"));
    }
    Ok(msg)
}
