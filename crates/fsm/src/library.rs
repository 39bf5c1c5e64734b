//! The workspace's preload libraries (`libfsm_malloc.so` for `fsm run`, `libfsm_interposer.so`
//! for `fsm record`): found, or built, by `fsm` itself, so the user runs nothing first.
//!
//! ```text
//!   --library PATH / $ENV ──> that file (it must exist)
//!   else, in a checkout (the workspace fsm was built from is still there):
//!        cargo build --release -p PACKAGE --target-dir WORKSPACE/target/preload
//!        (a no-op when up to date; its own target dir, so no lock is shared with a running
//!        `cargo run`) ──> WORKSPACE/target/preload/release/FILE
//!   else, beside the fsm executable ──> that file
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// One of the workspace's libraries.
#[derive(Debug, Clone, Copy)]
pub struct Library {
    /// Its package.
    pub package: &'static str,
    /// Its file name.
    pub file: &'static str,
    /// The environment variable that names it elsewhere.
    pub env: &'static str,
}

/// The preload library behind `fsm run`.
pub const MALLOC: Library = Library {
    package: "preload",
    file: "libfsm_malloc.so",
    env: "FSM_MALLOC",
};

/// The recorder behind `fsm record`.
pub const INTERPOSER: Library = Library {
    package: "interposer",
    file: "libfsm_interposer.so",
    env: "FSM_INTERPOSER",
};

/// The workspace `fsm` was built from, if it is still there.
fn workspace() -> Option<PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ws.join("Cargo.toml").is_file().then_some(ws)
}

impl Library {
    /// The library: `explicit`, the environment variable, a fresh build in the workspace, or
    /// the file beside the `fsm` executable; an error says how to get it.
    pub fn find(&self, explicit: Option<&Path>) -> Result<PathBuf, String> {
        let named = explicit
            .map(|p| (p.to_path_buf(), "the path given".to_string()))
            .or_else(|| {
                std::env::var_os(self.env).map(|p| (PathBuf::from(p), format!("${}", self.env)))
            });
        if let Some((p, what)) = named {
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("{} ({what}) not found", p.display()))
            };
        }
        if let Some(ws) = workspace() {
            let target = ws.join("target").join("preload");
            let built = target.join("release").join(self.file);
            if !built.is_file() {
                eprintln!(
                    "fsm: building {} (release; the first time takes a minute)...",
                    self.file
                );
            }
            let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args([
                    "build",
                    "--quiet",
                    "--release",
                    "-p",
                    self.package,
                    "--target-dir",
                ])
                .arg(&target)
                .current_dir(&ws)
                .status();
            match status {
                Ok(s) if s.success() && built.is_file() => return Ok(built),
                Ok(s) => {
                    return Err(format!(
                        "building {} failed ({s}): cargo build --release -p {} in {}",
                        self.file,
                        self.package,
                        ws.display()
                    ));
                }
                Err(_) => {} // no cargo: look beside the executable
            }
        }
        let exe = std::env::current_exe().map_err(|e| format!("cannot locate fsm itself: {e}"))?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        for cand in [dir.join(self.file), dir.join("..").join(self.file)] {
            if cand.is_file() {
                return Ok(cand);
            }
        }
        Err(format!(
            "cannot find {} next to {} and cannot build it here; build it with `cargo build \
             --release -p {}` and name it with ${}",
            self.file,
            exe.display(),
            self.package,
            self.env
        ))
    }
}
