//! The binary buddy system (Knowlton 1965; Knuth, TAOCP vol. 1, 2.5) as a [`FreeSpaceManager`].
//!
//! Memory is dealt in blocks of `min_block << k` bytes ("order `k`"), each aligned to its own
//! size. A request takes the smallest order that holds its size and alignment; a larger free
//! block is halved until it fits ([`split`]). A freed block merges with its *buddy* (the other
//! half of the block it was split from, at `addr ^ size`) while the buddy is free ([`merge`]).
//!
//! ```text
//!   region granted by the source
//!   | blocks: maximal, each aligned to its own size                            | bitmaps |
//!   [ order 5 (512 B) ............. ][ order 4 (256 B) .. ][ o3 ][o2]           |  bits   |
//!              split on allocation:  [o4 ......][o3 ..][o2][o1][##]  <- served (o0 = 16 B)
//!              merge on free:        [##] + free buddy [..] -> [o1] + free buddy -> ...
//!
//!   bitmaps, two bits per possible block of each order: "free" and "allocated as this order",
//!   and above the free bits a summary tree (one bit per word below that has a bit set)
//!   free lists, one per order: the blocks whose free bit is set (out of band: nothing is
//!   written into a free block); allocation takes the lowest-addressed one
//! ```
//!
//! * **Where the order is kept.** Nowhere per block: free derives it from the `Layout` (the
//!   smallest order holding `max(size, align)`, [`order::order_for`]), as allocation did. The
//!   allocation bitmap confirms that a live block of exactly that order starts at the pointer, so
//!   a foreign pointer, a double free, and a free with a layout of another order are reported as
//!   [`FreeError`]s and change nothing.
//! * **Costs.** Allocation and free are O(number of orders) (at most one split or merge per
//!   order), independent of how many blocks are live or free: whether a buddy is free is one bit
//!   test, taking it off its list is clearing that bit, and the lowest free block of an order is
//!   found through the summary in one word read per level (module `bitmap`). Rounding to a
//!   power of two loses up to half of each block (internal fragmentation, reported in
//!   [`Stats::internal_bytes`]); free blocks and the bitmaps are external
//!   ([`Stats::external_bytes`]). The bitmaps take about `capacity / (2 * min_block)` bytes.
//! * **Memory.** [`Buddy::new`] is `const` and touches nothing; the first allocation takes the
//!   data and then the bitmaps from the [`MemorySource`]: all of `capacity` at once, or in
//!   chunks with [`Config::grow_by`] (a `brk`-like source such as [`allocator_traits::BrkRegion`]
//!   then grows only as needed, and each chunk merges with the free end of the previous one).
//!   Growing, the bitmaps cover only the range the data has reached and double with it (module
//!   `grow`): a capacity told far above what is used costs nothing.
//! * **Over offsets.** With `alloc`, [`offsets::BuddyOffsets`] is the same system (the same
//!   blocks, bitmaps, split and merge: module `blocks`) over the offsets of a space the CPU does
//!   not own, an [`allocator_traits::OffsetManager`] whose bitmaps live in a `Vec` out of band.
//!
//! ```
//! use allocator_traits::{BoxedRegion, FreeSpaceManager, Layout};
//! use buddy::{Buddy, Config};
//!
//! let mut heap = Buddy::new(BoxedRegion::new(1 << 16).unwrap(), Config::new(1 << 16));
//! let block = heap.allocate(Layout::from_size_align(40, 8).unwrap()).unwrap();
//! assert_eq!(block.len(), 64); // rounded to a power of two
//! assert_eq!(heap.stats().internal_bytes(), 24);
//! // SAFETY: `block` was allocated above with this layout.
//! unsafe { heap.deallocate(block.cast(), Layout::from_size_align(40, 8).unwrap()) }.unwrap();
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | allocator-traits' OS memory sources, abort messages on stderr (implies `alloc`) |
//! | `alloc` | yes (via `std`) | [`offsets::BuddyOffsets`], the buddy system over offsets of a space the CPU does not own |
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod bitmap;
mod blocks;
mod check;
mod grow;
mod inspect;
pub mod merge;
#[cfg(feature = "alloc")]
pub mod offsets;
pub mod order;
pub mod split;

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::FastStats;
pub use allocator_traits::{
    AllocError, Detects, FreeError, FreeSpaceManager, Inspector, MemorySource, Stats,
};

use bitmap::Bits;
use blocks::Blocks;
use order::order_for;

/// How a [`Buddy`] is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The most bytes the heap spans: blocks lie within `capacity` bytes of where its first
    /// data starts, so this bounds the largest block. With `grow_by` 0 it is all taken at once
    /// (bitmaps included); otherwise the heap grows toward it and the bitmaps cover only the
    /// range the data has reached (see [`Config::grow_by`]).
    pub capacity: usize,
    /// Smallest block in bytes (a power of two, at least 16).
    pub min_block: usize,
    /// Bytes of data taken from the source at a time; 0 takes all of `capacity` on first use.
    pub grow_by: usize,
}

impl Config {
    /// Up to `capacity` bytes from the source, 16-byte minimum blocks, all taken on first use.
    pub const fn new(capacity: usize) -> Self {
        Config {
            capacity,
            min_block: 16,
            grow_by: 0,
        }
    }

    /// Sets the smallest block (a power of two, at least 16 bytes; checked on first use).
    pub const fn min_block(self, min_block: usize) -> Self {
        Config { min_block, ..self }
    }

    /// Takes data from the source `chunk` bytes at a time, as allocations need it.
    pub const fn grow_by(self, chunk: usize) -> Self {
        Config {
            grow_by: chunk,
            ..self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Ready,
    Failed,
}

/// A binary buddy heap over memory from `S`.
pub struct Buddy<S: MemorySource> {
    source: S,
    config: Config,
    phase: Phase,
    /// The bitmaps' grant (they cover blocks ending up to `cover_end`).
    meta: usize,
    meta_len: usize,
    /// Blocks up to this address have bits; grown (doubling) as data arrives, up to `limit`.
    cover_end: usize,
    /// End of the last grant from a contiguous source: where the next one starts.
    src_end: usize,
    /// Start of the first data grant; bitmaps are indexed from here.
    origin: usize,
    /// End of the data granted so far.
    data_end: usize,
    /// Bytes of data made into blocks so far (every grant, trimmed to whole minimum blocks):
    /// the free and the allocated blocks tile exactly this much.
    granted: usize,
    /// No block may end past this address: `origin + capacity`.
    limit: usize,
    /// The first data grant's pointer: every block pointer the heap writes through is derived
    /// from it (never from a caller's pointer, whose provenance may cover only its bytes).
    base: *mut u8,
    /// The orders and the bitmaps (module `blocks`, shared with the offset manager): the blocks
    /// with a bit set tile the `granted` data.
    blocks: Blocks,
    /// `min_block - 1`.
    min_mask: usize,
    /// `live_blocks` and `live_held` are the number and bytes of blocks with an allocation bit.
    /// Exact at the cost of plain adds on the fast paths ([`FastStats`]).
    stats: FastStats,
}

// SAFETY: the heap owns its memory (through `S`) and its raw pointers point only into it, so
// moving it to another thread moves exclusive access along.
unsafe impl<S: MemorySource + Send> Send for Buddy<S> {}

impl<S: MemorySource> core::fmt::Debug for Buddy<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Buddy")
            .field("config", &self.config)
            .field("orders", &self.blocks.orders)
            .field("stats", &self.stats.get())
            .finish_non_exhaustive()
    }
}

impl<S: MemorySource> Buddy<S> {
    /// A heap taking memory from `source` as `config` says. `const` and lazy: nothing is taken
    /// from the source before the first allocation, so a `static` can hold it.
    pub const fn new(source: S, config: Config) -> Self {
        Buddy {
            source,
            config,
            phase: Phase::Fresh,
            meta: 0,
            meta_len: 0,
            cover_end: 0,
            src_end: 0,
            origin: 0,
            data_end: 0,
            granted: 0,
            limit: 0,
            base: core::ptr::null_mut(),
            blocks: Blocks::empty(),
            min_mask: 0,
            stats: FastStats::new(),
        }
    }

    /// A heap that takes its bitmaps and first data from `source` now (not lazily).
    pub fn try_new(source: S, config: Config) -> Result<Self, AllocError> {
        let mut heap = Self::new(source, config);
        heap.ensure_ready()?;
        Ok(heap)
    }

    /// Takes the bitmaps and the first data from the source if that has not happened yet (the
    /// first allocation does it otherwise). Until then, [`FreeSpaceManager::inspect`] shows no
    /// region.
    #[inline]
    pub fn ensure_ready(&mut self) -> Result<(), AllocError> {
        if self.phase == Phase::Ready {
            return Ok(());
        }
        self.prepare()
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Number of orders (0 before the first allocation).
    pub fn orders(&self) -> u32 {
        self.blocks.orders
    }

    /// Bytes in a block of `order`.
    pub fn block_size(&self, order: u32) -> usize {
        self.blocks.size(order)
    }

    /// The order a block for `layout` has, or `None` if no order of this heap holds it.
    pub fn order_of(&self, layout: Layout) -> Option<u32> {
        let min_shift = self.config.min_block.trailing_zeros();
        order_for(layout.size(), layout.align(), min_shift)
            .filter(|&k| self.phase != Phase::Ready || k < self.blocks.orders)
    }

    /// Number of free blocks of `order`.
    pub fn free_blocks(&self, order: u32) -> usize {
        if order < self.blocks.orders {
            self.blocks.bits.count_free(order)
        } else {
            0
        }
    }

    /// Bytes of the bitmaps taken from the source.
    pub fn metadata_bytes(&self) -> usize {
        self.meta_len
    }

    /// The memory source.
    pub fn source(&self) -> &S {
        &self.source
    }

    #[inline(always)]
    pub(crate) fn size(&self, k: u32) -> usize {
        self.blocks.size(k)
    }

    /// A pointer to `addr` (inside the heap's data) with the heap's own provenance.
    #[inline]
    pub(crate) fn at(&self, addr: usize) -> *mut u8 {
        self.base.with_addr(addr)
    }

    /// Address of the block of order `k` with index `i` in that order's bitmaps.
    #[inline(always)]
    pub(crate) fn addr_of(&self, k: u32, i: usize) -> usize {
        self.blocks.addr_of(k, i)
    }

    /// Index of the block of order `k` at `addr` in that order's bitmaps.
    #[inline(always)]
    pub(crate) fn index(&self, k: u32, addr: usize) -> usize {
        self.blocks.index(k, addr)
    }

    /// The order for `layout` as [`order_for`] gives it, for the fast paths: no `Option` (a
    /// size whose power of two would overflow gives an order above every heap's) and no branch.
    /// Before the heap is set up `orders` is 0, so every order is out of range.
    #[inline(always)]
    fn order_fast(&self, layout: Layout) -> u32 {
        let need = layout.size().max(layout.align());
        let n = need.saturating_sub(1) | self.min_mask;
        usize::BITS - n.leading_zeros() - self.blocks.min_shift
    }

    #[cold]
    fn prepare(&mut self) -> Result<(), AllocError> {
        match self.phase {
            Phase::Ready => Ok(()),
            Phase::Failed => Err(AllocError::Unsupported {
                size: self.config.capacity,
                align: self.config.min_block,
                reason: "the buddy heap could not be set up (configuration or source)",
            }),
            Phase::Fresh => {
                let r = self.init();
                self.phase = if r.is_ok() {
                    Phase::Ready
                } else {
                    Phase::Failed
                };
                r
            }
        }
    }

    /// Checks that `ptr` is a live block allocated as `layout`; returns its order.
    fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<u32, FreeError> {
        let addr = ptr.as_ptr() as usize;
        if self.phase != Phase::Ready || addr < self.origin || addr >= self.data_end {
            return Err(FreeError::Foreign { ptr: addr });
        }
        let mismatch = FreeError::LayoutMismatch {
            ptr: addr,
            size: layout.size(),
            align: layout.align(),
        };
        let k = order_for(layout.size(), layout.align(), self.blocks.min_shift)
            .filter(|&k| k < self.blocks.orders)
            .ok_or(mismatch)?;
        if addr & (self.size(k) - 1) == 0
            && self.blocks.bits.test(Bits::Alloc, k, self.index(k, addr))
        {
            return Ok(k);
        }
        // Not a live block of that order: say what it is.
        for j in 0..self.blocks.orders {
            let size = self.size(j);
            if addr & (size - 1) == 0 && self.blocks.bits.test(Bits::Alloc, j, self.index(j, addr))
            {
                return Err(mismatch);
            }
        }
        for j in 0..self.blocks.orders {
            let blk = addr & !(self.size(j) - 1);
            if blk >= self.origin && self.blocks.bits.test(Bits::Free, j, self.index(j, blk)) {
                return Err(if addr & (self.size(k) - 1) == 0 {
                    FreeError::DoubleFree { ptr: addr }
                } else {
                    FreeError::NotABlock { ptr: addr }
                });
            }
        }
        Err(FreeError::NotABlock { ptr: addr })
    }

    fn block_ptr(&self, ptr: NonNull<u8>, len: usize) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(ptr, len)
    }

    fn try_allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // A heap that cannot be set up refuses this request: the error names it (not the
        // bitmaps or the first chunk it could not get).
        self.ensure_ready().map_err(|e| match e {
            AllocError::Unsupported { reason, .. } => AllocError::unsupported(layout, reason),
            _ => AllocError::out_of_memory(layout),
        })?;
        let Some(k) = order_for(layout.size(), layout.align(), self.blocks.min_shift) else {
            return Err(AllocError::unsupported(
                layout,
                "no power of two holds the request",
            ));
        };
        if k >= self.blocks.orders {
            return Err(if layout.align() > self.size(self.blocks.orders - 1) {
                AllocError::unsupported(layout, "alignment above the largest block")
            } else {
                AllocError::out_of_memory(layout)
            });
        }
        loop {
            if let Some(i) = self.blocks.take(k) {
                return Ok(self.handed_out(layout, k, i));
            }
            if !self.grow(k) {
                return Err(AllocError::out_of_memory(layout));
            }
        }
    }

    /// Counts block `i` of order `k`, just taken for `layout`, and makes the caller's slice.
    #[inline(always)]
    fn handed_out(&mut self, layout: Layout, k: u32, i: usize) -> NonNull<[u8]> {
        let size = self.size(k);
        self.stats.alloc(layout.size(), size);
        // SAFETY: blocks lie in our data, never at address 0.
        let p = unsafe { NonNull::new_unchecked(self.at(self.addr_of(k, i))) };
        self.block_ptr(p, size)
    }

    /// `allocate` beyond the fast path: setting up, growing, refusing.
    #[cold]
    #[inline(never)]
    fn allocate_slow(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let r = self.try_allocate(layout);
        if r.is_err() {
            self.stats.record_failure();
        }
        r
    }

    /// `deallocate` beyond the fast path: a bad free, reported (or, never in practice, a good
    /// one the fast path declined).
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::deallocate`].
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_slow(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), FreeError> {
        let k = match self.validate(ptr, layout) {
            Ok(k) => k,
            Err(e) => {
                self.stats.record_bad_free();
                return Err(e);
            }
        };
        let i = self.index(k, ptr.as_ptr() as usize);
        // SAFETY: validated: a live block of order k of ours, which the caller gives up.
        unsafe { self.release_block(layout, k, i) };
        Ok(())
    }

    /// Frees live block `i` of order `k` (allocated for `layout`): clears its allocation bit,
    /// counts it and merges it back.
    ///
    /// # Safety
    /// Block `i` of order `k` is live (its allocation bit is set) and the caller gives it up.
    #[inline(always)]
    unsafe fn release_block(&mut self, layout: Layout, k: u32, i: usize) {
        self.stats.free(layout.size(), self.size(k));
        // SAFETY: a live block of order `k < orders` (its allocation bit is set), which the
        // caller gives up.
        unsafe { self.blocks.release(k, i) };
    }
}

impl<S: MemorySource> FreeSpaceManager for Buddy<S> {
    /// The fast path: a heap that is set up and has a free block of the order or above; the
    /// rest (set-up, growth, refusals) is out of line.
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let k = self.order_fast(layout);
        if k < self.blocks.orders
            && let Some(i) = self.blocks.take(k)
        {
            return Ok(self.handed_out(layout, k, i));
        }
        self.allocate_slow(layout)
    }

    /// The fast path: a live block of the layout's order at the pointer (the range, alignment
    /// and allocation-bit checks that `validate` makes first); anything else is a bad free,
    /// told apart out of line.
    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let addr = ptr.as_ptr() as usize;
        let k = self.order_fast(layout);
        if k < self.blocks.orders
            && addr >= self.origin
            && addr < self.data_end
            && addr & (self.size(k) - 1) == 0
        {
            let i = self.index(k, addr);
            // SAFETY: `k < orders`, and a block starting in the data (`origin..data_end`) is in
            // the map (the bitmaps cover the data: `data_end <= cover_end`).
            if unsafe { self.blocks.bits.test_valid(Bits::Alloc, k, i) } {
                // SAFETY: a live block of order k of ours (its allocation bit), which the caller
                // gives up.
                unsafe { self.release_block(layout, k, i) };
                return Ok(());
            }
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.deallocate_slow(ptr, layout) }
    }

    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let ko = self.validate(ptr, old).map_err(AllocError::InvalidBlock)?;
        let Some(kn) = order_for(new.size(), new.align(), self.blocks.min_shift) else {
            return Err(AllocError::NotInPlace);
        };
        if kn >= self.blocks.orders {
            return Err(AllocError::NotInPlace);
        }
        let addr = ptr.as_ptr() as usize;
        let block = self.at(addr);
        if kn > ko {
            // Every level up must have us on the left and a free buddy on the right.
            for j in ko..kn {
                let size = self.size(j);
                let right = addr + size;
                if addr & (2 * size - 1) != 0
                    || !self.blocks.bits.test(Bits::Free, j, self.index(j, right))
                {
                    return Err(AllocError::NotInPlace);
                }
            }
            for j in ko..kn {
                let right = addr + self.size(j);
                // The free bit says `right` is in list j: it leaves it, to be ours.
                // SAFETY: `j < kn < orders`.
                let taken = unsafe { self.blocks.bits.take_free(j, self.index(j, right)) };
                debug_assert!(taken);
            }
        } else {
            // Give back the upper halves, largest first.
            for j in (kn..ko).rev() {
                // The upper half of our live block, which the caller no longer needs past
                // `new.size()`, joins list j; its buddy (our lower half) is live, so no merge.
                let upper = addr + self.size(j);
                // SAFETY: `j < ko < orders`; the upper half of a live block is in the map.
                unsafe { self.blocks.bits.set_free(j, self.index(j, upper)) };
            }
        }
        // SAFETY: `ko, kn < orders`; a live block of order `ko` (validated) and the block of
        // order `kn` at its address (its halves or its lower half) are in the map.
        unsafe {
            self.blocks.bits.put_alloc(ko, self.index(ko, addr), false);
            self.blocks.bits.put_alloc(kn, self.index(kn, addr), true);
        }
        let (so, sn) = (self.size(ko), self.size(kn));
        self.stats
            .record_resize(old.size(), so, new.size(), sn, true);
        // SAFETY: `block` is the (non-null) start of our live block.
        Ok(self.block_ptr(unsafe { NonNull::new_unchecked(block) }, sn))
    }

    fn stats(&self) -> Stats {
        self.stats.get()
    }

    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    /// The walk of module `check`: lists against bitmaps, summaries, no unmerged buddies, the
    /// blocks tiling the data, the statistics.
    fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
        self.walk()
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        self.show(out);
    }

    fn detects(&self) -> Detects {
        Detects {
            foreign: true,
            double_free: true,
            double_free_above: 0,
            // A layout of another order is caught; one of the same order (say 40 B freed as
            // 50 B) is indistinguishable, so the claim is not made.
            layout_mismatch: false,
        }
    }
}

/// A xorshift generator for the random workloads of the walks' tests.
#[cfg(test)]
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
