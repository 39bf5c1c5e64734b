//! tcmalloc: a thread-caching allocator after gperftools 2.10.
//!
//! ```text
//!   Tcmalloc (GlobalAlloc + Allocator)          Core<S> (FreeSpaceManager, &mut self)
//!        |                                            |
//!   thread_cache   one per thread, no locks      one thread cache
//!        |  batches (num_objects_to_move)
//!   transfer + central   one lock per class      central lists
//!        |  spans of class_pages pages
//!   page_heap + pagemap  one lock (+ lock-free pagemap reads)
//!        |  >= 1 MiB at a time
//!   MemorySource (BrkRegion, OsPages, BoxedRegion, FixedRegion)
//! ```
//!
//! * [`size_map`]: the 85 size classes, computed as gperftools computes them, O(1) lookup.
//! * [`page_heap`], [`pagemap`], [`span`]: the back end of whole pages.
//! * [`central`], [`transfer`]: per-class lists of spans, with whole batches parked in front.
//! * [`key`]: the per-process key that marks cached objects, for double-free detection.
//! * [`thread_cache`]: the per-thread front end with slow-start lists and a budget.
//! * `check`: the invariant walk over all of these ([`allocator_traits::FreeSpaceManager::check_invariants`]).
//! * [`Core`]: all of it single-threaded, as a [`allocator_traits::FreeSpaceManager`].
//! * [`Tcmalloc`]: the concurrent allocator with a cache per thread.
//!
//! The allocator's own metadata (spans, pagemap nodes, thread caches) is carved from the same
//! memory source ([`metadata`]), never from the global allocator, so a `Tcmalloc` can be the
//! `#[global_allocator]`.
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.
#![warn(missing_docs)]

// Under `--cfg loom` only the lock-free part (the pagemap) and what it needs are built, for the
// loom model in tests/loom_pagemap.rs.
#[cfg(not(loom))]
mod allocator;
#[cfg(not(loom))]
pub mod central;
#[cfg(not(loom))]
mod check;
#[cfg(not(loom))]
mod core_heap;
#[cfg(not(loom))]
pub mod key;
pub mod metadata;
#[cfg(not(loom))]
pub mod page_heap;
pub mod pagemap;
pub mod size_map;
pub mod span;
#[cfg(not(loom))]
pub mod thread_cache;
#[cfg(not(loom))]
pub mod transfer;

#[cfg(not(loom))]
pub use allocator::{MAX_LIVE_ALLOCATORS, THREAD_SLOTS, Tcmalloc};
#[cfg(not(loom))]
pub use core_heap::Core;
pub use size_map::{ClassRun, classes, rounded_size};
