//! Workloads: what the matrix and `fsm replay` run, and how they measure it.
//!
//! ```text
//!   text / .gz / binary trace ─┐
//!   Valgrind --trace-malloc ───┼─> Trace ──compile──> Program ──replay──> Outcome ──> Fragmentation
//!   glibc mtrace log ──────────┤   (trace)            (replay)   through     (stats,      (#3, #4,
//!   synthetic generators ──────┘   (foreign, synth)              a policy    series,       internal,
//!                                                                or a peer   time)         external)
//! ```
//!
//! * [`trace`]: the event list and the text format of DESIGN.md; [`binary`]: its compact form.
//! * [`foreign`]: readers for Valgrind `--trace-malloc=yes` and glibc `mtrace` logs.
//! * [`synth`]: ramp, peaks, plateau (Wilson et al.), uniform and Pareto churn, larson,
//!   producer/consumer, glibc-simple LIFO/FIFO.
//! * [`files`]: loading and saving a trace in any of these forms, recognised by content.
//! * [`replay`]: the one event loop, through any `&mut dyn FreeSpaceManager` or any
//!   `GlobalAlloc`, on one thread.
//! * [`threaded`]: through a concurrent `GlobalAlloc`, one OS thread per trace thread, a
//!   block's events (cross-thread frees) kept in trace order, each event through the same calls.
//! * [`metrics`]: Johnstone & Wilson's #3 and #4, the internal/external split, time per op.
//! * [`explain`]: why an allocation was refused (the largest free block, the free bytes, the
//!   size class), read through the manager's `inspect`.
//!
//! The crate knows no policy: the shells get them from the `registry` crate.
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.

pub mod binary;
pub mod explain;
pub mod files;
pub mod foreign;
pub mod mapping;
pub mod metrics;
pub mod replay;
pub mod synth;
pub mod threaded;
pub mod trace;

#[cfg(test)]
mod testing;

pub use foreign::{Imported, Oddities, PointerTracer};
pub use metrics::Fragmentation;
pub use replay::{Options, Outcome, Program, ReplayError, replay_global, replay_manager};
pub use trace::{Event, LoadError, Op, ParseError, Trace};
