//! The vocabulary of free-space management.
//!
//! Every policy in this workspace (first, next, best and worst fit, segregated lists, the binary
//! buddy system, ptmalloc2, tcmalloc) implements one trait, [`FreeSpaceManager`], and is built from
//! the same parts:
//!
//! ```text
//!   Vec::new_in(&heap), #[global_allocator]      <- Locked<M>: allocator-api2 Allocator + GlobalAlloc
//!            |
//!   FreeSpaceManager (&mut self, no locking)     <- the placement policy: which free block is used
//!            |
//!   MemorySource (FixedRegion, BrkRegion, ...)   <- where the bytes come from; counts the footprint
//! ```
//!
//! * [`FreeSpaceManager`] hands out blocks that fit a [`Layout`], takes them back (reporting a bad
//!   free as a [`FreeError`] instead of corrupting itself), resizes in place where the policy can,
//!   reports [`Stats`] and lets a caller look inside through an [`Inspector`].
//! * [`MemorySource`] is where a manager gets its bytes: [`FixedRegion`] (any `no_std` target),
//!   [`BoxedRegion`] (a region the source owns), and with `std` on Unix [`BrkRegion`] (reserve
//!   address space, commit on demand, like `brk`) and [`OsPages`] (one mapping per request).
//! * [`Locked`] makes any manager an [`allocator_api2::alloc::Allocator`] (for `Vec`, `Box`,
//!   `hashbrown::HashMap`) and a [`core::alloc::GlobalAlloc`].
//! * With the `conformance` feature, `conformance` is the test kit that every policy runs.
//!
//! A new policy implements `allocate`, `deallocate`, `stats`, `inspect` and `check_invariants`
//! (its invariant walk, which the kit runs after every operation); `resize_in_place`
//! where blocks can change size without moving (it checks the block first); `detects` for the bad
//! frees it catches; and `record_moved_resize` (one line: `self.stats.record_moved_resize()`), so
//! that the default `grow` and `shrink` ([`resize_by_moving`]) count a move as one resize. Then it
//! instantiates `conformance_suite!` in a test file.
//!
//! `no_std` by default apart from the `std` feature (on by default).
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | `BrkRegion`, `OsPages`, `MallocApi`/`CHeap`, abort messages on stderr (implies `alloc`) |
//! | `alloc` | yes (via `std`) | `BoxedRegion` |
//! | `conformance` | no | the conformance kit (module `conformance`, `conformance_suite!`) |
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(all(feature = "std", unix))]
pub mod c_api;
mod error;
mod inspect;
mod locked;
mod manager;
pub mod offset;
pub mod source;
mod stats;
pub mod ticket;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(all(feature = "std", unix))]
pub use c_api::{CHeap, MallocApi};
pub use error::{AllocError, Corruption, FreeError, SourceError};
pub use inspect::{BlockKind, Inspector, NoInspector};
pub use locked::{Locked, LockedGuard, abort_with};
pub use manager::{
    Detects, FreeSpaceManager, Placement, first_region_placement, resize_by_moving, resize_keeping,
};
pub use offset::OffsetManager;
#[cfg(feature = "alloc")]
pub use source::BoxedRegion;
#[cfg(all(feature = "std", unix))]
pub use source::{BrkRegion, OsPages};
pub use source::{FixedRegion, MemorySource};
pub use stats::{FastStats, Stats};

pub use core::alloc::Layout;

/// The `allocator-api2` crate this workspace implements `Allocator` from (the 0.2 line, the one
/// `hashbrown` 0.17 speaks). Name collections through it (`allocator_traits::allocator_api2::
/// vec::Vec`), or depend on the same version: `allocator-api2 = "0.2"`. A newer major version
/// (0.3, 0.4) is another trait, which `Locked` does not implement.
pub use allocator_api2;
