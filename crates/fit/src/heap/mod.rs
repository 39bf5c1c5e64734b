//! The real-memory heap: the fit policies over a [`MemorySource`], with one-word headers and
//! Knuth's boundary tags (a footer only while a block is free).
//!
//! ```text
//!   heap start (16-aligned)                                                end (grows, trims)
//!   |pro| live block               | free block                        | live ...   |sen|
//!   |   |size|P|U| payload ...     |size|P| node (16 B) ...     |size| |size|P|U| ..|0|P|U|
//!         \ header: one word        \ header  list links or      footer              sentinel
//!                                             index node
//! ```
//!
//! * Every block starts with one header word: its size, `USED`, `PREV_USED` (the block before is
//!   live) and, on 64-bit targets, the slack of a live block (usable minus requested bytes), so a
//!   free knows the requested size. A free block also ends with a footer (its size): a block
//!   whose `PREV_USED` bit is clear finds the free block before it in O(1). A live block needs no
//!   footer: a 24-byte request takes a 32-byte block, 100 bytes take 112, as in glibc. See
//!   the module `block` for the format.
//! * With the check word (`:checked`) a live block's last word holds the requested size mixed
//!   with a key of its offset, so a free can tell a block from a stray pointer into the heap.
//! * The free blocks are found by the list ([`crate::list`], nodes `prev`/`next` inside the free
//!   blocks) or by the index ([`crate::index`], a tree whose nodes live inside the free blocks);
//!   both make the same decisions where both are defined. Neither needs memory of its own.
//! * Blocks are multiples of 16 bytes, at least 32, payloads 16-aligned; larger alignments leave
//!   a free block (at least 32 bytes) in front.
//! * When nothing fits, the heap asks its source for more (at least 64 KiB at a time when the
//!   source has it), at its end; the new space is inserted like a freed block, so with coalescing
//!   it joins a free block at the end. When a free block at the end reaches the trim threshold
//!   (glibc's 128 KiB by default), all but 64 KiB of it goes back to the source. The source must
//!   be contiguous ([`FixedRegion`](allocator_traits::FixedRegion),
//!   [`BoxedRegion`](allocator_traits::BoxedRegion), [`BrkRegion`](allocator_traits::BrkRegion)).

pub(crate) mod block;
mod check;
mod free;
mod hot;
mod inband;
mod source;

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{
    AllocError, BlockKind, Corruption, Detects, FastStats, FreeError, FreeSpaceManager, Inspector,
    MemorySource, Placement, Stats,
};

use crate::config::{Coalesce, Config, Order, Policy};
use crate::list::Chunk;
use crate::search::find;
use block::{FIRST, GRAIN, MAX_SIZE, MIN_BLOCK, Mem, W, key, one_word_need, round_grain};
use free::Free;
pub use inband::InBand;

/// First, next, best or worst fit over a [`MemorySource`]: a [`FreeSpaceManager`] with one-word
/// headers and boundary tags (see the [module docs](self)).
///
/// `const`-constructible, so it can be the global allocator:
///
/// ```
/// # #[cfg(not(miri))] { // BrkRegion maps memory, which Miri cannot
/// use allocator_traits::{BrkRegion, Locked};
/// use fit::{Config, FitHeap};
///
/// // #[global_allocator]
/// static A: Locked<FitHeap<BrkRegion>> =
///     Locked::new(FitHeap::new(BrkRegion::new(1 << 30), Config::best_fit()));
/// let mut v = allocator_api2::vec::Vec::new_in(&A);
/// v.push(1u64);
/// assert_eq!(A.stats().live_blocks, 1);
/// # }
/// ```
///
/// A live block holds its request rounded up to a multiple of `config.align`, one header word,
/// the check word with `:checked`, and `config.header` beyond one word (OSTEP's `-H`), rounded up
/// to a multiple of 16 bytes (at least 32).
#[derive(Debug)]
pub struct FitHeap<M> {
    source: M,
    /// The free blocks and the heap's memory.
    free: Free,
    config: Config,
    /// Bytes of a live block that are not the caller's: the header word, the check word, the
    /// header beyond one word (`config.header`).
    overhead: usize,
    /// The counters; `live_*` add up the live blocks (the walk checks it), `footprint` is the
    /// source's. Exact at the cost of plain adds on the fast paths ([`FastStats`]: the peaks are
    /// raised only when an allocation uses up the headroom).
    stats: FastStats,
    /// Which operations take the common path (the module `hot`), from `config` and `overhead`.
    hot: hot::Hot,
}

// SAFETY: the heap's raw pointer points into memory granted by `source`, which the heap owns
// exclusively; moving the heap to another thread moves that ownership with it.
unsafe impl<M: Send> Send for FitHeap<M> {}

impl<M: MemorySource> FitHeap<M> {
    /// A heap over `source` with `config` (nothing is asked of the source until the first
    /// allocation).
    pub const fn new(source: M, config: Config) -> Self {
        let overhead = W + if config.checked { W } else { 0 } + config.header.saturating_sub(W);
        FitHeap {
            source,
            free: Free::new(config),
            config,
            overhead,
            stats: FastStats::new(),
            hot: hot::Hot::new(&config, overhead),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Bytes of metadata in front of every payload: one word.
    pub const fn header_size(&self) -> usize {
        W
    }

    /// The memory source.
    pub fn source(&self) -> &M {
        &self.source
    }

    /// The free blocks as (address, size): in list order on the list, in address order on the
    /// index.
    pub fn free_list(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let base = self.base_addr();
        self.free.iter().map(move |c| (base + c.addr, c.size))
    }

    fn mem(&self) -> &Mem {
        self.free.mem()
    }

    fn base_addr(&self) -> usize {
        self.mem().base.addr()
    }

    /// Bytes a live block of `size` bytes gives its caller.
    #[inline]
    const fn usable(&self, size: usize) -> usize {
        size - self.overhead
    }

    /// The block size for a request of `size` bytes, or `None` if it is too large.
    #[inline]
    fn block_need(&self, size: usize) -> Option<usize> {
        if self.config.align <= 1 && self.overhead == W {
            return one_word_need(size);
        }
        let a = self.config.align.max(1);
        let rounded = size.checked_add((a - size % a) % a)?;
        let raw = rounded.checked_add(self.overhead)?;
        let need = round_grain(raw)?.max(MIN_BLOCK);
        (need <= MAX_SIZE).then_some(need)
    }

    /// Bytes to leave free in front of a block at `off` so its payload is aligned to `align`:
    /// 0 or at least the minimum block.
    fn front_pad(&self, off: usize, align: usize) -> Option<usize> {
        if align <= GRAIN {
            return Some(0);
        }
        let payload = self.base_addr().checked_add(off)?.checked_add(W)?;
        let aligned = payload.checked_add(align - 1)? & !(align - 1);
        let mut pad = aligned - payload;
        if pad != 0 {
            while pad < MIN_BLOCK {
                pad = pad.checked_add(align)?;
            }
        }
        Some(pad)
    }

    /// Writes the tags of a live block of `size` bytes at `off` holding `requested` bytes (and
    /// its check word). The next block's header must be written already.
    fn write_live(&mut self, off: usize, size: usize, requested: usize, prev_used: Option<bool>) {
        let slack = self.usable(size) - requested;
        let checked = self.config.checked;
        let mem = self.free.mem_mut();
        mem.set_live(off, size, slack, prev_used);
        if checked {
            mem.set_word(off + size - W, requested ^ key(off));
        }
    }

    /// The live block whose payload starts at `ptr`: (offset, size, requested size if known).
    #[inline(always)]
    fn block_of(&self, ptr: NonNull<u8>) -> Result<(usize, usize, Option<usize>), FreeError> {
        let p = ptr.as_ptr().addr();
        let mem = self.mem();
        // The distance from the first block's payload (wrapping below it): a payload lies
        // before the sentinel, and an empty heap (`end == 0`) has room for none.
        let rel = p.wrapping_sub(mem.base.addr() + FIRST + W);
        if rel >= mem.end.saturating_sub(FIRST + 2 * W) {
            return Err(FreeError::Foreign { ptr: p });
        }
        // The first payload is grain-aligned, so every payload is.
        const { assert!(FIRST + W == GRAIN) };
        if !rel.is_multiple_of(GRAIN) {
            return Err(FreeError::NotABlock { ptr: p });
        }
        let off = rel + FIRST;
        let h = mem.header(off);
        if !h.used() {
            return Err(FreeError::DoubleFree { ptr: p });
        }
        let size = h.size();
        let not_a_block = FreeError::NotABlock { ptr: p };
        if size < MIN_BLOCK || size > mem.sentinel() - off || !mem.header(off + size).prev_used() {
            return Err(not_a_block);
        }
        let usable = self.usable(size);
        // A slack above the usable bytes (no live block has one) wraps to a size no layout
        // has, so the layout check refuses it.
        let from_slack = h.slack().map(|s| usable.wrapping_sub(s));
        if !self.config.checked {
            return Ok((off, size, from_slack));
        }
        let requested = mem.word(off + size - W) ^ key(off);
        if requested > usable || from_slack.is_some_and(|r| r != requested) {
            return Err(not_a_block);
        }
        Ok((off, size, Some(requested)))
    }

    /// `block_of`, plus the layout check: the requested size where the block knows it, else a
    /// block size that request could have been given. Inlined: every free runs it (out of line
    /// it cost a call and five saved registers per free).
    #[inline(always)]
    fn checked_block(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(usize, usize), FreeError> {
        let (off, size, requested) = self.block_of(ptr)?;
        let p = ptr.as_ptr().addr();
        let size_ok = match requested {
            Some(r) => r == layout.size(),
            None => self
                .block_need(layout.size())
                .is_some_and(|n| n <= size && size < n + MIN_BLOCK),
        };
        if !size_ok || !aligned(p, layout.align()) {
            return Err(FreeError::LayoutMismatch {
                ptr: p,
                size: layout.size(),
                align: layout.align(),
            });
        }
        Ok((off, size))
    }

    fn payload(&self, off: usize, size: usize) -> NonNull<[u8]> {
        // SAFETY: `off + W` lies inside the heap's granted memory, so the offset stays within
        // the source's allocation and is not null.
        let p = unsafe { self.mem().base.add(off + W) };
        let slice = core::ptr::slice_from_raw_parts_mut(p, self.usable(size));
        // SAFETY: derived from the non-null heap base by an in-bounds offset.
        unsafe { NonNull::new_unchecked(slice) }
    }

    /// The free block for `need` bytes aligned to `align`, and the front piece to leave free
    /// ([`search::find`](crate::search::find): best fit keeps the wilderness, the free block that
    /// ends the heap, for last).
    fn find(&self, need: usize, align: usize) -> Option<(usize, usize)> {
        let mem = self.mem();
        if mem.end == 0 {
            return None;
        }
        let last = match self.config.policy {
            Policy::BestFit => mem.free_before(mem.sentinel()),
            _ => None,
        };
        find(&self.free, need, last, align > GRAIN, |off| {
            self.front_pad(off, align)
        })
    }

    /// Whether a block inserted at the end of the heap merges with a free block ending there.
    const fn merges_top(&self) -> bool {
        match self.config.coalesce {
            Coalesce::Physical => true,
            Coalesce::ListOrder => matches!(self.config.order, Order::AddrSort),
            Coalesce::Off => false,
        }
    }

    /// Finds (growing the heap if needed) and carves a block for `layout`, writes its tags;
    /// the caller records the stats.
    fn place(&mut self, layout: Layout) -> Result<Chunk, AllocError> {
        let align = layout.align();
        let Some(need) = self.block_need(layout.size()) else {
            return Err(AllocError::unsupported(layout, "size overflows"));
        };
        let found = match self.find(need, align) {
            Some(f) => Some(f),
            None => self.grow_and_find(need, align),
        };
        let Some((id, front)) = found else {
            return Err(AllocError::out_of_memory(layout));
        };
        let carved = self.free.take(id, front, need, MIN_BLOCK);
        let prev = if front > 0 { Some(false) } else { None };
        self.write_live(carved.addr, carved.size, layout.size(), prev);
        Ok(carved)
    }

    /// When nothing fits: grows the heap at its end (by only the difference where coalescing
    /// joins the new space with a free block ending the heap) and searches again. Out of line:
    /// the allocation path stays short.
    #[cold]
    #[inline(never)]
    fn grow_and_find(&mut self, need: usize, align: usize) -> Option<(usize, usize)> {
        let slack = if align > GRAIN {
            align.checked_add(MIN_BLOCK)
        } else {
            Some(0)
        };
        let top = match (self.merges_top(), self.mem().end) {
            (true, end) if end > 0 => {
                let mem = self.mem();
                mem.free_before(mem.sentinel()).map_or(0, |t| mem.size(t))
            }
            _ => 0,
        };
        let n = slack?.checked_add(need)?.saturating_sub(top).max(MIN_BLOCK);
        let space = self.extend(n).ok()?;
        self.free.insert(space);
        self.find(need, align)
    }

    /// [`release`](Self::release) off the common path: the block at `off` goes back to the
    /// free blocks, its header marked free first, so that a second free of it is seen as a
    /// double free even after it merges into a neighbour; then the heap's end may go back to
    /// the source.
    fn release_general(&mut self, off: usize, size: usize) {
        self.free.mem_mut().mark_free_header(off);
        let merged = self.free.insert(Chunk { addr: off, size });
        self.trim(merged);
    }
}

impl<M: MemorySource> FreeSpaceManager for FitHeap<M> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() <= GRAIN
            && let Some(p) = self.allocate_hot(layout.size())
        {
            return Ok(p);
        }
        match self.place(layout) {
            Ok(c) => {
                self.stats.alloc(layout.size(), c.size);
                Ok(self.payload(c.addr, c.size))
            }
            Err(e) => {
                self.stats.record_failure();
                Err(e)
            }
        }
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let (off, size) = match self.checked_block(ptr, layout) {
            Ok(b) => b,
            Err(e) => {
                self.stats.record_bad_free();
                return Err(e);
            }
        };
        self.stats.free(layout.size(), size);
        self.release(off, size);
        Ok(())
    }

    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (off, size) = self
            .checked_block(ptr, old)
            .map_err(AllocError::InvalidBlock)?;
        if !aligned(ptr.as_ptr().addr(), new.align()) {
            return Err(AllocError::NotInPlace);
        }
        let need = self.block_need(new.size()).ok_or(AllocError::NotInPlace)?;
        let new_size = if need <= size {
            if size - need >= MIN_BLOCK {
                // The rest's header first: the block's tags read it.
                self.free
                    .mem_mut()
                    .set_fresh_header(off + need, size - need);
                self.write_live(off, need, new.size(), None);
                let merged = self.free.insert(Chunk {
                    addr: off + need,
                    size: size - need,
                });
                self.trim(merged);
                need
            } else {
                self.write_live(off, size, new.size(), None);
                size
            }
        } else {
            let extra = need - size;
            let next = off + size;
            let sentinel = self.mem().sentinel();
            let neighbour = self.mem().free_at(next);
            let grown = match neighbour {
                Some(n) if self.mem().size(n) >= extra => {
                    size + self.free.take(n, 0, extra, MIN_BLOCK).size
                }
                Some(n) if next + self.mem().size(n) == sentinel => {
                    let have = self.mem().size(n);
                    let space = self
                        .extend(extra - have)
                        .map_err(|_| AllocError::NotInPlace)?;
                    self.free.resize_chunk(n, have + space.size);
                    size + self.free.take(n, 0, extra, MIN_BLOCK).size
                }
                None if next == sentinel => {
                    let space = self.extend(extra).map_err(|_| AllocError::NotInPlace)?;
                    if space.size - extra >= MIN_BLOCK {
                        let rest = Chunk {
                            addr: space.addr + extra,
                            size: space.size - extra,
                        };
                        self.free.mem_mut().set_fresh_header(rest.addr, rest.size);
                        self.write_live(off, need, new.size(), None);
                        self.free.insert(rest);
                        need
                    } else {
                        size + space.size
                    }
                }
                _ => return Err(AllocError::NotInPlace),
            };
            self.write_live(off, grown, new.size(), None);
            grown
        };
        self.stats
            .record_resize(old.size(), size, new.size(), new_size, true);
        Ok(self.payload(off, new_size))
    }

    fn stats(&self) -> Stats {
        self.stats.get()
    }

    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    fn check_invariants(&self) -> Result<(), Corruption> {
        self.walk()
    }

    fn placement(&self, ptr: NonNull<u8>) -> Placement {
        let (base, end) = (self.base_addr(), self.mem().end);
        let addr = ptr.as_ptr().addr();
        if addr >= base && addr < base + end {
            Placement::Heap(addr - base)
        } else {
            Placement::Mapped
        }
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        let mem = self.mem();
        let base = self.base_addr();
        out.region(base, mem.end);
        if mem.end > 0 {
            out.block(base, FIRST, BlockKind::Padding);
            let mut off = FIRST;
            while off < mem.sentinel() {
                let h = mem.header(off);
                let size = h.size();
                if size == 0 {
                    break;
                }
                if !h.used() {
                    out.block(base + off, size, BlockKind::Free);
                } else {
                    let usable = self.usable(size);
                    let req = match self.config.checked {
                        true => mem.word(off + size - W) ^ key(off),
                        false => h.slack().map_or(usable, |s| usable.saturating_sub(s)),
                    }
                    .min(usable);
                    out.block(base + off, W, BlockKind::Header);
                    out.block(base + off + W, req, BlockKind::Live { requested: req });
                    let pad = size - W - req - if self.config.checked { W } else { 0 };
                    if pad > 0 {
                        out.block(base + off + W + req, pad, BlockKind::Padding);
                    }
                    if self.config.checked {
                        out.block(base + off + size - W, W, BlockKind::Header);
                    }
                }
                off += size;
            }
            out.block(base + mem.sentinel(), W, BlockKind::Header);
        }
        out.begin_list(format_args!("free list"));
        for c in self.free.iter() {
            out.list_entry(base + c.addr, c.size);
        }
        out.end_list();
        if let Some(r) = self.free.rover() {
            out.value(format_args!("rover"), base + r);
        }
    }

    /// Foreign pointers (outside the heap) and double frees always. Layout mismatches wherever
    /// the block knows its requested size: always on 64-bit targets (the header's slack bits),
    /// and with the check word on 32-bit ones. A pointer into the heap that is not a block's
    /// start is refused for certain only with the check word (see `FitHeap::detects_interior`).
    fn detects(&self) -> Detects {
        Detects {
            foreign: true,
            double_free: true,
            double_free_above: 0,
            layout_mismatch: self.config.checked || cfg!(target_pointer_width = "64"),
        }
    }
}

/// Whether `addr` is a multiple of `align`, a `Layout`'s alignment (a power of two: a mask, where
/// `is_multiple_of` divides).
#[inline]
const fn aligned(addr: usize, align: usize) -> bool {
    addr & (align - 1) == 0
}

impl<M: MemorySource> FitHeap<M> {
    /// Whether a free (or resize) of a pointer inside the heap that is not the start of a live
    /// block is refused for certain (`FreeError::NotABlock`), which [`Detects`] has no field
    /// for: with the check word (`:checked`), unless the bytes there forge both a header and
    /// the check word of that offset. Without it such a pointer is refused only when the bytes
    /// in front of it do not look like a header.
    pub const fn detects_interior(&self) -> bool {
        self.config.checked
    }
}
