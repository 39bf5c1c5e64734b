//! First, next, best and worst fit over an explicit free list.
//!
//! One mechanism ([`list::FreeList`]: search, split, insert, coalesce) serves two managers:
//!
//! ```text
//!                      list::FreeList<S: Store>   policy x list order x coalescing
//!                     /                        \
//!   ranges::RangeList (VecStore)            FitHeap<M: MemorySource> (InBand)
//!   abstract addresses, nodes out of band   real memory, nodes inside the free blocks,
//!   OSTEP malloc.py semantics (fsm sim)     boundary tags, FreeSpaceManager, no_std
//! ```
//!
//! * [`ranges::RangeList`] is a pure manager of address ranges with the exact semantics of
//!   OSTEP's `malloc.py` (needs `alloc`).
//! * [`FitHeap`] is the same logic over a [`MemorySource`](allocator_traits::MemorySource), with
//!   in-band headers, implementing [`FreeSpaceManager`](allocator_traits::FreeSpaceManager).
//!
//! Configurations are named `POLICY[:ORDER][:COALESCE]` ([`Config`] implements `FromStr`):
//! `best-fit:lifo`, `first-fit:addr`, `worst-fit:fifo:no-coalesce`.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | `BrkRegion` from allocator-traits (implies `alloc`) |
//! | `alloc` | yes (via `std`) | [`ranges`], the range manager behind `fsm sim` |
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod config;
pub mod heap;
pub mod index;
pub mod list;
#[cfg(feature = "alloc")]
pub mod offsets;
#[cfg(feature = "alloc")]
pub mod ranges;
mod search;

pub use config::{
    Coalesce, Config, DEFAULT_TRIM_THRESHOLD, Mechanism, Name, Order, ParseConfigError, Policy,
    Suffix,
};
pub use heap::{FitHeap, InBand};
