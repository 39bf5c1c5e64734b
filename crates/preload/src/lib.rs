//! `libfsm_malloc.so`: C's allocation API over any policy of the workspace, for `LD_PRELOAD`.
//!
//! ```text
//!   a C program ──malloc/free/realloc/...──> exports (glibc 2.36's semantics, errno)
//!                                               │
//!                                            front: the policy FSM_POLICY names (default
//!                                               │   tcmalloc), built once through the registry
//!                                               ├── its own front (where it frees without a size)
//!                                               └── CHeap<manager>: a fair lock + the table of
//!                                                   live blocks C's free needs
//!   the library's own Rust allocations ──> bootstrap arena (never malloc: no recursion)
//!   calls the policy makes itself (glibc's TLS set-up) ──> bootstrap arena
//! ```
//!
//! `fsm run --policy NAME -- CMD` sets it up and reads the report it writes at exit
//! (`FSM_STATS_OUT`). By hand: `FSM_POLICY=best-fit LD_PRELOAD=target/release/libfsm_malloc.so
//! CMD`. An unknown policy name stops the program at start with one line naming the valid ones.
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.

mod bootstrap;
mod exports;
mod front;
mod report;

use bootstrap::Bootstrap;

/// The library's own allocator, and the one for calls made before or from inside the front.
#[global_allocator]
static BOOTSTRAP: Bootstrap = Bootstrap::new();

extern "C" fn at_load() {
    front::at_load();
}

extern "C" fn at_unload() {
    report::at_exit();
}

/// Runs when the library is loaded, before the program's `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = at_load;

/// Runs when the process exits normally (after `main` returns or `exit` is called).
#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = at_unload;
