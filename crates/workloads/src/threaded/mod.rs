//! Threaded replay: a trace through a concurrent [`GlobalAlloc`](core::alloc::GlobalAlloc), one OS thread per trace thread.
//!
//! ```text
//!   Trace ──compile──> ThreadedProgram
//!                        threads[t]: t's events in trace order, each naming its block's
//!                                    lifetime L and its place k in that lifetime (0 = the allocation)
//!                        lives[L]:   the alignment (fixed for a lifetime) and the thread that
//!                                    allocated it
//!   replay: one OS thread per trace thread; they wait on a start flag, then run their events
//!      state per lifetime L:  version (events of L done) ─ ptr ─ size       (atomics)
//!      event (L, k):  wait until version[L] == k    (only when another thread did event k-1)
//!                     call the allocator, touch the block, publish ptr and size,
//!                     version[L] = k + 1  (Release; the waiter's Acquire load orders the block's
//!                                          bytes and the pointer before its own use)
//! ```
//!
//! **Causal order.** A block's events happen in trace order: an event on a block another thread
//! allocated (a cross-thread free, or a realloc) waits until the block's previous event has
//! happened. Each thread otherwise runs freely, so the replay keeps every thread's own order and
//! every block's order, but not the interleaving of unrelated events (that is what the threads'
//! real concurrency decides). The wait cannot deadlock on a trace that [`ThreadedProgram::compile`]
//! accepted: every event waits only for events before it in trace order, so the earliest event not
//! yet done can always run. A waiting thread spins briefly, yields for up to 200 µs, then sleeps
//! (`park`) until another thread makes progress: on a 2-core machine running four threads, the
//! thread it waits for may need its core.
//!
//! **Window.** Causality alone lets a thread that never waits (a producer) run arbitrarily far
//! ahead, so the live memory could grow far beyond the trace's. Each thread therefore also keeps
//! within [`ThreadedOptions::window`] events (in trace order) of the slowest unfinished thread:
//! threads publish their position (every 64 events, and exactly before any wait) and an event
//! more than `window` past the slowest published position waits. This cannot deadlock either:
//! a thread waits only after publishing its exact position, and the thread whose next event is
//! earliest in trace order never has to wait.
//!
//! Each lifetime gets its own state (IDs reused after a free become new lifetimes), so an
//! allocation never waits: the trace's ID reuse carries no order between the allocators' calls.
//!
//! **Contents.** Every new block gets a tag byte (derived from its lifetime) written to its first
//! and last byte (calloc's are first checked to read zero); a realloc checks the first byte
//! survived and writes the new last byte; a free checks both. A mismatch (an allocator that hands
//! a block out twice, or loses contents over a realloc) is a [`ReplayError`](crate::replay::ReplayError) naming the event, as
//! is a null result. On any error every thread stops at its next event and the blocks still live
//! are freed.
//!
//! **Timing.** The clock starts when the threads are released and stops when the last one has
//! done its last event (thread creation and exit are outside it; the tag bytes are inside: a
//! program uses its blocks, and on another thread that costs a cache-line transfer). Blocks the
//! trace leaves live are freed afterwards, untimed, by the calling thread.

//!
//! The module's parts: [`program`] (the trace compiled per thread), [`runtime`] (the threads,
//! their waits and window, the timing) and [`floor`] (the bump allocator whose replay time is the
//! floor under every allocator's). Each event calls the allocator through the single-threaded
//! replay's [`GlobalTarget`](crate::replay::GlobalTarget), so both replays speak to an allocator
//! alike: C's semantics, one answer to a refusal.

pub mod floor;
pub mod program;
pub mod runtime;

pub use floor::BumpFloor;
pub use program::{Action, Life, MAX_THREADS, ThreadStep, ThreadedProgram, thread_count};
pub use runtime::{TOO_LONG, ThreadedOptions, ThreadedOutcome, replay_threaded};
