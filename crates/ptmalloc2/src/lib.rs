//! A faithful model of glibc 2.36's allocator (ptmalloc2), that also runs as a real allocator.
//!
//! Every chunk is placed where glibc 2.36 places it: in-band boundary tags ([`chunk`]), the
//! per-thread cache ([`tcache`]), fastbins, the unsorted bin with the last-remainder rule, 62
//! small and 63 large bins with the nextsize skip list and the binmap ([`bins`]), the top chunk,
//! `malloc_consolidate` ([`arena`]), growth by `sbrk`, mapped chunks with the dynamic threshold
//! and trimming ([`heap`]), glibc's tunables ([`tunables`]) and integrity checks ([`checks`]).
//!
//! ```text
//!   Arena<S, M>   one arena over a brk-like source S and a map source M: malloc, free, calloc,
//!                 realloc, memalign (C semantics, offsets comparable with glibc), and
//!                 FreeSpaceManager for the rest of the workspace (placement() measures from
//!                 glibc's heap start; allocate_zeroed is calloc; grow/shrink are realloc)
//!   Ptmalloc      the concurrent front: arenas per thread, each thread's tcache
//! ```
//!
//! The proof of fidelity is `tests/glibc.rs`: it replays generated traces through the real
//! glibc (a small C program) and, through the trait alone, through the model with the
//! workspace's one replay engine (`workloads::replay`, as `fsm replay --offsets` does), and
//! requires identical output.
//!
//! # Use
//!
//! The whole allocator (arenas per thread, each thread's tcache) is [`Ptmalloc`]: `const`, so
//! it can be the `#[global_allocator]` (glibc's defaults; [`Ptmalloc::with_tunables`] takes
//! others). One arena is [`Arena::new`]`(main heap, source of mapped chunks, &tunables)`, a
//! [`FreeSpaceManager`](allocator_traits::FreeSpaceManager) to put behind
//! [`Locked`](allocator_traits::Locked):
//!
//! ```
//! use allocator_traits::{BrkRegion, Locked};
//! use ptmalloc2::{Arena, Ptmalloc, SystemPages, Tunables};
//!
//! // With #[global_allocator] on it, every allocation of the program goes here.
//! static MALLOC: Ptmalloc = Ptmalloc::new();
//!
//! # // Miri cannot reserve address space (an mmap with PROT_NONE): the heap part runs natively.
//! # #[cfg(not(miri))] {
//! let tunables = Tunables::parse("glibc.malloc.tcache_count=0").expect("tunables");
//! let arena = Arena::new(BrkRegion::new(1 << 30), SystemPages::new(), &tunables);
//! let heap = Locked::new(arena);
//! let mut v = allocator_traits::allocator_api2::vec::Vec::new_in(&heap);
//! v.extend(0..100u32);
//! assert_eq!(heap.stats().live_blocks, 1);
//! # }
//! ```
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.
#![warn(missing_docs)]

pub mod arena;
pub mod bins;
pub mod checks;
pub mod chunk;
mod classes;
pub mod heap;
mod invariants;
mod malloc;
mod mapped;
pub mod tcache;
#[cfg(unix)]
mod threads;
pub mod tunables;

pub use allocator_traits::Placement;
pub use classes::classes;
pub use heap::{NoMmap, SystemPages};
pub use malloc::{Arena, MallocError};
#[cfg(unix)]
pub use threads::{MAX_ARENAS, Ptmalloc};
pub use tunables::{Params, TunableError, Tunables};
