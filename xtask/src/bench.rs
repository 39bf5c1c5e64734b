//! `cargo xtask bench`: builds the matrix (`crates/matrix`) in release mode and runs
//! it. Every argument is passed on to `matrix run`; see `cargo xtask bench --help`.
//!
//! ```text
//!   cargo xtask bench [--quick] [--out DIR] [--only a,b] [--workloads x,y] ...
//!     └─ cargo run --release -p matrix -- run ...   (the report goes to target/report unless --out)
//! ```
//!
//! Nothing here is quiet: the first build compiles every policy and the peers (jemalloc and
//! mimalloc from C) and takes minutes, so a line says so and cargo's own progress follows.

use std::path::PathBuf;
use std::process::Command;

/// Arguments of `cargo xtask bench`: passed through to the matrix.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// Arguments for the matrix (`--quick`, `--out DIR`, `--only NAMES`, `--workloads NAMES`,
    /// `--traces DIR`, `--ops N`, `--trace-limit N`, `--repeats N`, `--timeout S`,
    /// `--programs NAMES` or `--programs none`, `--help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Runs the matrix; exits with its status if it fails (it has printed its own one-line error).
pub fn run(a: BenchArgs) -> Result<(), String> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    let help = a.args.iter().any(|x| x == "--help" || x == "-h");
    if !help {
        eprintln!(
            "cargo xtask bench: building the matrix (release). The first build compiles every \
             policy and the peers, jemalloc and mimalloc from C: 3-5 minutes on 2 cores; later \
             runs start in seconds."
        );
    }
    cmd.args(["run", "--release", "-p", "matrix", "--", "run"]);
    cmd.args(&a.args);
    if !a
        .args
        .iter()
        .any(|x| x == "--out" || x.starts_with("--out="))
    {
        cmd.arg("--out").arg(root.join("target").join("report"));
    }
    cmd.current_dir(&root);
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
