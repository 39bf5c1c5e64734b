//! Segregated free lists (simple segregated storage with size classes, as in Go's allocator and
//! tcmalloc) as a [`FreeSpaceManager`].
//!
//! Requests up to the largest size class are rounded to a class ([`classes`]: Go's 67 classes by
//! default, or a table the user supplies) and served from *spans*: power-of-two runs of pages,
//! each carved into objects of one class ([`span`]). Each class keeps its spans that have a free
//! object in a *partial* list and the others in a *full* list; each span keeps its own free list.
//! Tiny requests (under 16 B, alignment at most 8) share 16-byte blocks ([`tiny`]). Anything
//! larger goes to a second manager `L`, which is also the page level spans come from and return
//! to: composition through the trait. The default `L` is best fit from `fit`
//! ([`Segregated::best_fit`]); the buddy system works as well.
//!
//! ```text
//!   allocate(layout)
//!     size < 16, align <= 8 ---------> tiny: bump inside the current 16 B block
//!     size <= 32 KiB  --> class c --> classes[c].partial -> span -> its free list (or bump)
//!     larger ------------------------> L.allocate(layout)
//!
//!   classes[c]:  partial -> [span]<->[span]      full -> [span]<->[span]
//!   span (8..128 KiB, anywhere L puts it):    |hdr|bits|obj|obj|obj|...|obj|tail|
//!                                                        ^ free objects linked through word 0
//!   the page level: L (any FreeSpaceManager, e.g. buddy or best fit) over the region
//!   |== span ==|== large object ==|.. free ..|== span ==|....
//! ```
//!
//! * **Costs.** A small allocation or free is O(1): a table lookup, a list head, a bit. Rounding to
//!   the class loses up to 12.5 % (Go's table's bound) as internal fragmentation; a span's header
//!   and tail, free objects, and the page level's own free space are external. A span whose
//!   objects are all free goes back to `L`, except that each class keeps up to
//!   [`Config::keep_empty`] empty spans (default 1) so that an alloc/free pair at a span boundary
//!   does not reach `L` every time ([`Segregated::release_empty_spans`] gives them back).
//! * **Where the class is kept.** Nowhere per object: free derives the class from the `Layout`,
//!   finds the span in the [`pagemap`] (per 4 KiB granule: the spans there and their classes)
//!   and checks the slot arithmetic and the span's bitmap, so a foreign pointer (outside every
//!   span), a pointer that is not an object, a double free and a free with another class's
//!   layout are reported as [`FreeError`]s. The map is written when a span is taken from `L`
//!   and erased before it goes back, so a span it names is always ours and initialised.
//! * **Fast paths.** `allocate` and `deallocate` are inline: a size class up to 1024 B (or a
//!   tiny object in the current block) is served with the class's state (list heads, counters
//!   and a copy of its span geometry in one 64-byte line), the span header and bitmap, and the
//!   object; each fast path either does the whole operation or changes nothing and leaves it to
//!   the general path (out of line), which also checks the span header's magic and class, a
//!   canary against stray writes. A free that changes a span's list (full to partial, or empty
//!   and beyond [`Config::keep_empty`]) ends in an out-of-line call.
//! * **Statistics.** [`Stats`] covers all paths, exactly: the fast paths add and subtract the
//!   live counts and test two gates below which no peak can change, `live_blocks` is
//!   `allocs - frees`; [`Segregated::class_stats`] shows the waste per class (live objects
//!   counted over the class's spans) and [`Segregated::tiny_stats`] what tiny combining saves.
//!
//! ```
//! use allocator_traits::{BoxedRegion, FreeSpaceManager, Layout};
//! use segregated::Segregated;
//!
//! // The default: best fit (from `fit`) as the page level and for large sizes.
//! let mut heap = Segregated::best_fit(BoxedRegion::new(1 << 20).unwrap());
//! let layout = Layout::from_size_align(40, 8).unwrap();
//! let a = heap.allocate(layout).unwrap();
//! assert_eq!(a.len(), 48); // Go's class for 40 bytes
//! // SAFETY: `a` was allocated above with `layout`.
//! unsafe { heap.deallocate(a.cast(), layout) }.unwrap();
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | allocator-traits' OS memory sources, abort messages on stderr; implies `alloc` |
//! | `alloc` | with `std` | [`offsets`]: the size classes over the offsets of a space the CPU does not own |
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod central;
mod check;
pub mod classes;
mod config;
mod fast_path;
mod free_slots;
pub mod geometry;
mod inspect;
#[cfg(feature = "alloc")]
pub mod offsets;
mod page_level;
pub mod pagemap;
mod slow_path;
pub mod span;
mod stats;
pub mod tiny;

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::FastStats;
pub use allocator_traits::{
    AllocError, Detects, FreeError, FreeSpaceManager, Inspector, MemorySource, Stats,
};
pub use classes::{ClassTable, GO, GO_SIZES, TableError};
pub use config::Config;
pub use geometry::SpanGeometry;
pub use stats::{ClassStats, TinyStats};

use central::ClassState;
use classes::{INDEX8, MAX_CLASSES};
use pagemap::PageMap;
use span::{SpanHeader, TINY_BLOCK};
use tiny::TinyState;

/// The default page level and large-object manager: best fit (`fit`) over a memory source.
pub type BestFit<S> = fit::FitHeap<S>;

impl<S: MemorySource> Segregated<BestFit<S>> {
    /// Go's size classes with tiny combining, over best fit (`fit`, in-band boundary tags,
    /// immediate coalescing) on `source`: the default composition. `const`, so a `static` can
    /// hold it.
    pub const fn best_fit(source: S) -> Self {
        Segregated::new(fit::FitHeap::new(source, fit::Config::best_fit()))
    }
}

/// The slot of the tiny blocks in the per-class state (after every real class).
pub const TINY: usize = MAX_CLASSES + 1;
const SLOTS: usize = MAX_CLASSES + 2;

/// A segregated-fit heap: size classes over spans from the page level `L`, which also serves
/// large requests. `L` defaults to best fit from `fit` ([`Segregated::best_fit`]).
///
/// `CHECKED` (the default, `true`) makes every free of a small object checked before it changes
/// anything: the page map's class against the layout's, the exact slot, and the slot's bit in the
/// span's allocation bitmap (kept only when checked). A foreign pointer, a pointer inside an
/// object, a double free and a layout of another class are then [`FreeError`]s. An unchecked
/// heap ([`Segregated::unchecked`], the registry's `segregated:unchecked`) keeps no bitmap and
/// trusts the caller with small frees (the contract of `deallocate`, as mimalloc and Go do):
/// only pointers outside every span still go to the general path, which reports them (or `L`
/// does, for large layouts). Fewer instructions per operation (measured in
/// `docs/segregated.md`); the statistics are exact either way.
pub struct Segregated<L = BestFit<allocator_traits::FixedRegion>, const CHECKED: bool = true> {
    large: L,
    table: &'static ClassTable,
    config: Config,
    classes: [ClassState; SLOTS],
    tiny: TinyState,
    /// The class of the span starting at each page.
    pages: PageMap,
    /// Exact statistics at the cost of plain adds on the fast paths (see [`FastStats`]).
    stats: FastStats,
    /// The table's first-level index (sizes up to 1024 by 8 bytes), copied for the fast paths.
    index8: [u8; INDEX8],
    /// Sizes below this go to the tiny blocks (16 with tiny combining, else 0).
    tiny_below: usize,
    /// Bytes a tiny object of each size would hold in its own class (for [`TinyStats`]).
    tiny_unshared: [u16; TINY_BLOCK],
    /// Spans held, over all classes (the page map goes back to `L` with the last one).
    spans: usize,
}

// SAFETY: the heap owns its spans (through `L`) and its raw pointers point only into them, so
// moving it to another thread moves exclusive access along.
unsafe impl<L: Send, const CHECKED: bool> Send for Segregated<L, CHECKED> {}

impl<L, const CHECKED: bool> core::fmt::Debug for Segregated<L, CHECKED> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Segregated")
            .field("checked", &CHECKED)
            .field("config", &self.config)
            .field("classes", &self.table.len())
            .field("stats", &self.stats.get())
            .finish_non_exhaustive()
    }
}

impl<L: FreeSpaceManager> Segregated<L> {
    /// Go's size classes with tiny combining over the page level (and large-object manager)
    /// `large`. `const`, so a `static` can hold it.
    pub const fn new(large: L) -> Self {
        Self::with_table(&GO, Config::DEFAULT, large)
    }

    /// A heap with the given class table and options.
    pub const fn with_table(table: &'static ClassTable, config: Config, large: L) -> Self {
        Self::build(table, config, large)
    }
}

impl<L: FreeSpaceManager> Segregated<L, false> {
    /// An unchecked heap with the given class table and options: no allocation bitmaps, small
    /// frees trusted (see [`Segregated`]). `detects()` claims no double free.
    pub const fn unchecked(table: &'static ClassTable, config: Config, large: L) -> Self {
        Self::build(table, config, large)
    }
}

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
    /// A heap of either kind, as `CHECKED` says, with the given class table and options
    /// ([`Segregated::with_table`] and [`Segregated::unchecked`] name the kind; this serves code
    /// generic over it, as the registry's).
    pub const fn build(table: &'static ClassTable, config: Config, large: L) -> Self {
        let mut classes = [ClassState::EMPTY; SLOTS];
        let mut c = 1;
        while c <= table.len() {
            if let Some(g) = table.geometry(c) {
                classes[c] = ClassState::with_geometry(&g);
            }
            c += 1;
        }
        classes[TINY] = ClassState::with_geometry(&table.tiny_geometry());
        let mut tiny_unshared = [0u16; TINY_BLOCK];
        let mut s = 0;
        while s < TINY_BLOCK {
            let own = table.size(table.class_of(s));
            let s1 = if s == 0 { 1 } else { s };
            tiny_unshared[s] = if own > s1 { own as u16 } else { s1 as u16 };
            s += 1;
        }
        Segregated {
            large,
            table,
            config,
            classes,
            tiny: TinyState::EMPTY,
            pages: PageMap::EMPTY,
            stats: FastStats::new(),
            index8: table.index8,
            tiny_below: if config.tiny { TINY_BLOCK } else { 0 },
            tiny_unshared,
            spans: 0,
        }
    }

    /// The class table.
    pub fn table(&self) -> &'static ClassTable {
        self.table
    }

    /// The options.
    pub fn config(&self) -> Config {
        self.config
    }

    /// The page level and large-object manager.
    pub fn large(&self) -> &L {
        &self.large
    }

    /// What tiny combining holds and saves right now.
    pub fn tiny_stats(&self) -> TinyStats {
        self.tiny.stats()
    }

    /// Bytes of the page map (taken from the page level: one byte per 8 KiB of the spans' range).
    pub fn pagemap_bytes(&self) -> usize {
        self.pages.bytes()
    }

    #[inline]
    pub(crate) fn geo(&self, c: usize) -> Option<SpanGeometry> {
        if c == TINY {
            Some(self.table.tiny_geometry())
        } else {
            self.table.geometry(c)
        }
    }
}

impl<L: FreeSpaceManager, const CHECKED: bool> FreeSpaceManager for Segregated<L, CHECKED> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.alloc_fast(layout) {
            Some(b) => Ok(b),
            None => self.allocate_slow(layout),
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.free(ptr, layout) }
    }

    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.resize_slow(ptr, old, new) }
    }

    fn stats(&self) -> Stats {
        self.stats.get()
    }

    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    /// The walk of module `check`: class lists, spans and their free lists, the page map, the
    /// tiny allocator, the statistics, then `L`'s own walk.
    fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
        self.walk()
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        self.show(out);
    }

    fn detects(&self) -> Detects {
        let l = self.large.detects();
        Detects {
            // Small sizes: a pointer outside every span by the page map (always), a double free
            // by the bitmap (only when checked); large ones as `L` does.
            foreign: l.foreign,
            double_free: l.double_free && CHECKED,
            double_free_above: 0,
            layout_mismatch: false,
        }
    }
}
