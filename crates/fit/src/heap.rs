//! The real-memory heap: the fit policies over a [`MemorySource`], with in-band headers and
//! Knuth's boundary tags.
//!
//! ```text
//!   heap start (16-aligned)                                                     end (grows)
//!   | live block                          | free chunk                          | live ...
//!   |size|U|check|  payload ...  |size|U| |size|F|prev|next| ...      |size|F| |
//!    \-- header (H bytes) --/     footer   \-- free-list node --/      footer
//! ```
//!
//! * Every block, live or free, starts with a header word (`size | USED`) and ends with a footer
//!   word holding the same value: the boundary tags. A freed block finds its physical neighbours
//!   in O(1): the footer just before it and the header just after it.
//! * A live block's header also holds a check word (the requested size mixed with a key derived
//!   from the block's offset), so a free can tell a real block from a stray pointer and knows
//!   the size it was allocated with.
//! * A free chunk holds its free-list node (`prev`, `next`) in its own first bytes: the list needs
//!   no memory of its own ([`InBand`] implements [`Store`]). Search, split, insertion by the list
//!   order and coalescing are the same code as the range manager's ([`FreeList`]).
//! * Blocks are multiples of 16 bytes and payloads are 16-aligned; larger alignments are served
//!   by leaving a free chunk (at least the minimum block) in front of the block.
//! * Coalescing: [`Coalesce::Physical`] merges a freed block with free physical neighbours (found
//!   by the boundary tags) before inserting it by the list order. [`Coalesce::ListOrder`] is
//!   OSTEP's list-neighbour pass; [`Coalesce::Off`] never merges.
//! * When nothing fits, the heap asks its source for more (at least 64 KiB at a time when the
//!   source has it), at its end; the new space is inserted like a freed chunk, so with coalescing
//!   it joins a free chunk at the end of the heap. The source must be contiguous
//!   ([`FixedRegion`](allocator_traits::FixedRegion), [`BoxedRegion`](allocator_traits::BoxedRegion),
//!   [`BrkRegion`](allocator_traits::BrkRegion)).

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{
    AllocError, BlockKind, Corruption, Detects, FreeError, FreeSpaceManager, Inspector,
    MemorySource, Stats,
};

use crate::config::{Coalesce, Config, Order};
use crate::list::{AddrStep, Chunk, FreeList, Store};

const NIL: usize = usize::MAX;
const GRAIN: usize = 16;
const WORD: usize = core::mem::size_of::<usize>();
const FOOTER: usize = WORD;
const USED: usize = 1;
const FLAGS: usize = GRAIN - 1;
/// Smallest amount asked of the source when the heap grows.
const GROW_STEP: usize = 64 << 10;
const MAGIC: usize = 0x9E37_79B9_7F4A_7C15_u64 as usize;

const fn round_grain(n: usize) -> Option<usize> {
    match n.checked_add(GRAIN - 1) {
        Some(v) => Some(v & !(GRAIN - 1)),
        None => None,
    }
}

/// The free list stored inside the free chunks of a heap: ids are the chunks' offsets from the
/// heap's start.
///
/// ```text
///   offset id: |size|0| prev | next | ...unused... |size|0|
/// ```
#[derive(Debug)]
pub struct InBand {
    base: *mut u8,
    end: usize,
    head: usize,
    tail: usize,
    len: usize,
}

impl InBand {
    const fn new() -> Self {
        InBand {
            base: core::ptr::null_mut(),
            end: 0,
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// Reads the word at `off`.
    ///
    /// Every caller passes an offset of a word inside the heap (`off + WORD <= end`) that the
    /// heap has written (a header, footer, node or check word).
    #[inline]
    fn word(&self, off: usize) -> usize {
        debug_assert!(off + WORD <= self.end && off.is_multiple_of(WORD));
        // SAFETY: `off` lies inside the heap (`base..base+end` is memory granted by the source,
        // valid for reads and writes), `base` is 16-aligned and `off` a multiple of the word size,
        // so the read is in bounds and aligned; the word was initialised by the heap.
        unsafe { self.base.add(off).cast::<usize>().read() }
    }

    /// Writes the word at `off` (inside the heap, word-aligned).
    #[inline]
    fn set_word(&mut self, off: usize, v: usize) {
        debug_assert!(off + WORD <= self.end && off.is_multiple_of(WORD));
        // SAFETY: as in `word`; the heap owns these bytes (they belong to no live block's
        // payload: callers only write tags, check words and free-list nodes).
        unsafe { self.base.add(off).cast::<usize>().write(v) }
    }

    fn tags(&mut self, off: usize, size: usize, used: bool) {
        let v = size | if used { USED } else { 0 };
        self.set_word(off, v);
        self.set_word(off + size - FOOTER, v);
    }

    fn prev_of(&self, id: usize) -> usize {
        self.word(id + WORD)
    }
    fn next_of(&self, id: usize) -> usize {
        self.word(id + 2 * WORD)
    }

    fn link(&mut self, id: usize, after: Option<usize>) {
        let next = match after {
            Some(a) => self.next_of(a),
            None => self.head,
        };
        self.set_word(id + WORD, after.unwrap_or(NIL));
        self.set_word(id + 2 * WORD, next);
        match after {
            Some(a) => self.set_word(a + 2 * WORD, id),
            None => self.head = id,
        }
        if next == NIL {
            self.tail = id;
        } else {
            self.set_word(next + WORD, id);
        }
    }

    /// Whether the free block at `id` is linked into the list: the chunk its `prev` names (or
    /// the head) links to it. O(1); meaningful once the list itself has been checked.
    fn is_listed(&self, id: usize) -> bool {
        match self.prev_of(id) {
            NIL => self.head == id,
            p => self.is_node(p) && self.next_of(p) == id,
        }
    }

    fn detach(&mut self, id: usize) {
        let (prev, next) = (self.prev_of(id), self.next_of(id));
        if prev == NIL {
            self.head = next;
        } else {
            self.set_word(prev + 2 * WORD, next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.set_word(next + WORD, prev);
        }
    }
}

fn opt(i: usize) -> Option<usize> {
    (i != NIL).then_some(i)
}

impl Store for InBand {
    fn len(&self) -> usize {
        self.len
    }
    fn first(&self) -> Option<usize> {
        opt(self.head)
    }
    fn last(&self) -> Option<usize> {
        opt(self.tail)
    }
    fn next(&self, id: usize) -> Option<usize> {
        opt(self.next_of(id))
    }
    fn prev(&self, id: usize) -> Option<usize> {
        opt(self.prev_of(id))
    }
    fn chunk(&self, id: usize) -> Chunk {
        Chunk {
            addr: id,
            size: self.word(id) & !FLAGS,
        }
    }
    fn is_node(&self, id: usize) -> bool {
        id.is_multiple_of(GRAIN) && id.checked_add(3 * WORD).is_some_and(|e| e <= self.end)
    }
    fn insert_after(&mut self, after: Option<usize>, chunk: Chunk) -> usize {
        self.tags(chunk.addr, chunk.size, false);
        self.link(chunk.addr, after);
        self.len += 1;
        chunk.addr
    }
    fn unlink(&mut self, id: usize) {
        self.detach(id);
        self.len -= 1;
    }
    fn resize(&mut self, id: usize, size: usize) {
        self.tags(id, size, false);
    }
    fn replace(&mut self, id: usize, chunk: Chunk) -> usize {
        // Read the links first: the new node may overlap the old one.
        let (prev, next) = (self.prev_of(id), self.next_of(id));
        let new = chunk.addr;
        self.tags(new, chunk.size, false);
        self.set_word(new + WORD, prev);
        self.set_word(new + 2 * WORD, next);
        if prev == NIL {
            self.head = new;
        } else {
            self.set_word(prev + 2 * WORD, new);
        }
        if next == NIL {
            self.tail = new;
        } else {
            self.set_word(next + WORD, new);
        }
        new
    }
    fn move_after(&mut self, id: usize, after: Option<usize>) {
        self.detach(id);
        self.link(id, after);
    }
    fn free_ending_at(&self, addr: usize) -> Option<usize> {
        if addr < GRAIN || addr > self.end {
            return None;
        }
        let w = self.word(addr - FOOTER);
        (w & USED == 0).then(|| addr - (w & !FLAGS))
    }
    fn free_starting_at(&self, addr: usize) -> Option<usize> {
        if addr >= self.end {
            return None;
        }
        (self.word(addr) & USED == 0).then_some(addr)
    }
    fn addr_step(&self, at: usize) -> AddrStep {
        if at >= self.end {
            return AddrStep::Found(None);
        }
        let w = self.word(at);
        if w & USED == 0 {
            AddrStep::Found(Some(at))
        } else {
            AddrStep::Next(at + (w & !FLAGS))
        }
    }
}

/// First, next, best or worst fit over a [`MemorySource`]: a [`FreeSpaceManager`] with in-band
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
/// The header is `max(config.header, 16)` rounded up to 16 bytes (size word, check word, and the
/// rest unused); every block also ends with an 8-byte footer. Request sizes are rounded up to a
/// multiple of `config.align`, then the block to a multiple of 16 bytes (at least 32).
#[derive(Debug)]
pub struct FitHeap<M> {
    source: M,
    list: FreeList<InBand>,
    stats: Stats,
}

// SAFETY: the heap's raw pointer points into memory granted by `source`, which the heap owns
// exclusively; moving the heap to another thread moves that ownership with it.
unsafe impl<M: Send> Send for FitHeap<M> {}

impl<M: MemorySource> FitHeap<M> {
    /// A heap over `source` with `config` (nothing is asked of the source until the first
    /// allocation).
    pub const fn new(source: M, config: Config) -> Self {
        FitHeap {
            source,
            list: FreeList::new(InBand::new(), config),
            stats: Stats::new(),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        self.list.config()
    }

    /// Bytes of header in front of every payload: `max(config.header, 16)` rounded up to 16.
    pub const fn header_size(&self) -> usize {
        let h = if self.config().header > GRAIN {
            self.config().header
        } else {
            GRAIN
        };
        match round_grain(h) {
            Some(h) => h,
            None => usize::MAX & !FLAGS,
        }
    }

    /// The smallest block: room for a free-list node and a footer, and for a header and footer.
    const fn min_block(&self) -> usize {
        let h = self.header_size().saturating_add(GRAIN);
        if h > 4 * WORD { h } else { 4 * WORD }
    }

    /// The memory source.
    pub fn source(&self) -> &M {
        &self.source
    }

    /// The free chunks in list order, as (address, size).
    pub fn free_list(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let base = self.base_addr();
        self.list.iter().map(move |c| (base + c.addr, c.size))
    }

    fn store(&self) -> &InBand {
        self.list.store()
    }

    fn base_addr(&self) -> usize {
        self.store().base.addr()
    }

    /// The block size for a request of `size` bytes, or `None` on overflow.
    fn block_need(&self, size: usize) -> Option<usize> {
        let a = self.config().align.max(1);
        let rounded = size.checked_add((a - size % a) % a)?;
        let raw = rounded
            .checked_add(self.header_size())?
            .checked_add(FOOTER)?;
        let need = round_grain(raw)?.max(self.min_block());
        (need <= isize::MAX as usize).then_some(need)
    }

    /// Bytes to leave free in front of a chunk at `off` so the payload is aligned to `align`:
    /// 0 or at least the minimum block.
    fn front_pad(&self, off: usize, align: usize) -> Option<usize> {
        if align <= GRAIN {
            return Some(0);
        }
        let payload = self
            .base_addr()
            .checked_add(off)?
            .checked_add(self.header_size())?;
        let aligned = payload.checked_add(align - 1)? & !(align - 1);
        let mut pad = aligned - payload;
        if pad != 0 {
            while pad < self.min_block() {
                pad = pad.checked_add(align)?;
            }
        }
        Some(pad)
    }

    /// Asks the source for at least `min` more bytes at the end of the heap; returns the offset
    /// and length of the new space (not yet in any block).
    fn extend(&mut self, min: usize) -> Result<(usize, usize), ()> {
        let min = round_grain(min).ok_or(())?;
        let want = min.max(GROW_STEP);
        let grant = match self.source.acquire(want, GRAIN) {
            Ok(g) => g,
            Err(_) if want > min => self.source.acquire(min, GRAIN).map_err(|_| ())?,
            Err(_) => return Err(()),
        };
        let ptr = grant.cast::<u8>();
        let len = grant.len() & !FLAGS;
        let store = &mut self.list.store_mut();
        let off = if store.base.is_null() {
            store.base = ptr.as_ptr();
            0
        } else if store.base.addr().checked_add(store.end) == Some(ptr.as_ptr().addr()) {
            store.end
        } else {
            // A source that is not contiguous: the grant cannot extend this heap. Give it back
            // if the source takes it; otherwise it stays counted in the footprint, unused.
            // SAFETY: the grant came from this source just now and is not used.
            let _ = unsafe { self.source.release(ptr, grant.len()) };
            self.stats.set_footprint(self.source.footprint());
            return Err(());
        };
        store.end = off + len;
        self.stats.set_footprint(self.source.footprint());
        Ok((off, len))
    }

    fn write_live(&mut self, off: usize, size: usize, requested: usize) {
        let store = self.list.store_mut();
        store.tags(off, size, true);
        store.set_word(off + WORD, requested ^ key(off));
    }

    /// Returns the block at `off` to the free list: its header is marked free first, so that a
    /// second free of it is seen as a double free even after it merges into a neighbour.
    fn release(&mut self, off: usize, size: usize) {
        self.list.store_mut().tags(off, size, false);
        self.list.insert(Chunk { addr: off, size });
    }

    /// The block whose payload starts at `ptr`: (offset, size, requested size).
    fn block_of(&self, ptr: NonNull<u8>) -> Result<(usize, usize, usize), FreeError> {
        let p = ptr.as_ptr().addr();
        let store = self.store();
        let h = self.header_size();
        if store.base.is_null() {
            return Err(FreeError::Foreign { ptr: p });
        }
        let base = store.base.addr();
        if p < base.saturating_add(h) || p >= base.saturating_add(store.end) {
            return Err(FreeError::Foreign { ptr: p });
        }
        let off = p - base - h;
        if !off.is_multiple_of(GRAIN) {
            return Err(FreeError::NotABlock { ptr: p });
        }
        let w = store.word(off);
        if w & USED == 0 {
            return Err(FreeError::DoubleFree { ptr: p });
        }
        let size = w & !FLAGS;
        if size < self.min_block() || size > store.end - off || store.word(off + size - FOOTER) != w
        {
            return Err(FreeError::NotABlock { ptr: p });
        }
        let requested = store.word(off + WORD) ^ key(off);
        if requested > size - h - FOOTER {
            return Err(FreeError::NotABlock { ptr: p });
        }
        Ok((off, size, requested))
    }

    /// `block_of`, plus the layout check.
    fn checked_block(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(usize, usize, usize), FreeError> {
        let (off, size, requested) = self.block_of(ptr)?;
        let p = ptr.as_ptr().addr();
        if requested != layout.size() || !p.is_multiple_of(layout.align()) {
            return Err(FreeError::LayoutMismatch {
                ptr: p,
                size: layout.size(),
                align: layout.align(),
            });
        }
        Ok((off, size, requested))
    }

    fn payload(&self, off: usize, size: usize) -> NonNull<[u8]> {
        let h = self.header_size();
        // SAFETY: `off + h` lies inside the heap's granted memory, so the offset stays within
        // the source's allocation and is not null.
        let p = unsafe { self.store().base.add(off + h) };
        let slice = core::ptr::slice_from_raw_parts_mut(p, size - h - FOOTER);
        // SAFETY: derived from the non-null heap base by an in-bounds offset.
        unsafe { NonNull::new_unchecked(slice) }
    }

    fn find(&self, need: usize, align: usize) -> Option<(usize, usize)> {
        if self.store().base.is_null() {
            return None;
        }
        let found = self.list.search(|c| {
            self.front_pad(c.addr, align)
                .and_then(|f| f.checked_add(need))
                .is_some_and(|n| n <= c.size)
        });
        let id = found.id?;
        Some((id, self.front_pad(id, align)?))
    }

    /// Finds (growing the heap if needed) and carves a block for `layout`, writes its tags;
    /// the caller records the stats.
    fn place(&mut self, layout: Layout) -> Result<Chunk, AllocError> {
        let align = layout.align();
        let Some(need) = self.block_need(layout.size()) else {
            return Err(AllocError::unsupported(layout, "size overflows"));
        };
        let mut found = self.find(need, align);
        if found.is_none() {
            let slack = if align > GRAIN {
                align.checked_add(self.min_block())
            } else {
                Some(0)
            };
            // Where coalescing joins a free chunk at the end of the heap with the new space, only
            // the difference is needed.
            let merges_top = match self.config().coalesce {
                Coalesce::Physical => true,
                Coalesce::ListOrder => self.config().order == Order::AddrSort,
                Coalesce::Off => false,
            };
            let top = match merges_top {
                true => self
                    .store()
                    .free_ending_at(self.store().end)
                    .map_or(0, |id| self.store().chunk(id).size),
                false => 0,
            };
            let grown = slack
                .and_then(|s| s.checked_add(need))
                .map(|n| n.saturating_sub(top).max(self.min_block()))
                .ok_or(())
                .and_then(|n| self.extend(n));
            if let Ok((off, len)) = grown {
                if len >= self.min_block() {
                    self.list.insert(Chunk {
                        addr: off,
                        size: len,
                    });
                }
                found = self.find(need, align);
            }
        }
        let Some((id, front)) = found else {
            return Err(AllocError::out_of_memory(layout));
        };
        let min = self.min_block();
        let carved = self.list.take(id, front, need, min);
        self.write_live(carved.addr, carved.size, layout.size());
        Ok(carved)
    }
}

/// The check word's key for the block at `off`.
const fn key(off: usize) -> usize {
    off.rotate_left(17) ^ MAGIC
}

impl<M: MemorySource> FreeSpaceManager for FitHeap<M> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.place(layout) {
            Ok(c) => {
                self.stats.record_alloc(layout.size(), c.size);
                Ok(self.payload(c.addr, c.size))
            }
            Err(e) => {
                self.stats.record_failure();
                Err(e)
            }
        }
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let (off, size, requested) = match self.checked_block(ptr, layout) {
            Ok(b) => b,
            Err(e) => {
                self.stats.record_bad_free();
                return Err(e);
            }
        };
        self.stats.record_free(requested, size);
        self.release(off, size);
        Ok(())
    }

    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (off, size, _) = self
            .checked_block(ptr, old)
            .map_err(AllocError::InvalidBlock)?;
        if !ptr.as_ptr().addr().is_multiple_of(new.align()) {
            return Err(AllocError::NotInPlace);
        }
        let need = self.block_need(new.size()).ok_or(AllocError::NotInPlace)?;
        let min = self.min_block();
        let new_size = if need <= size {
            if size - need >= min {
                self.write_live(off, need, new.size());
                self.list.insert(Chunk {
                    addr: off + need,
                    size: size - need,
                });
                need
            } else {
                size
            }
        } else {
            let extra = need - size;
            let next = off + size;
            let end = self.store().end;
            let neighbour = self.store().free_starting_at(next);
            match neighbour {
                Some(n) if self.store().chunk(n).size >= extra => {
                    size + self.list.take(n, 0, extra, min).size
                }
                Some(n) if next + self.store().chunk(n).size == end => {
                    let have = self.store().chunk(n).size;
                    let (_, len) = self
                        .extend(extra - have)
                        .map_err(|_| AllocError::NotInPlace)?;
                    self.list.grow_chunk(n, have + len);
                    size + self.list.take(n, 0, extra, min).size
                }
                None if next == end => {
                    let (at, len) = self.extend(extra).map_err(|_| AllocError::NotInPlace)?;
                    if len - extra >= min {
                        // The block's tags first: the remainder's insertion reads its footer.
                        self.write_live(off, need, new.size());
                        self.list.insert(Chunk {
                            addr: at + extra,
                            size: len - extra,
                        });
                        need
                    } else {
                        size + len
                    }
                }
                _ => return Err(AllocError::NotInPlace),
            }
        };
        self.write_live(off, new_size, new.size());
        self.stats
            .record_resize(old.size(), size, new.size(), new_size, true);
        Ok(self.payload(off, new_size))
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    /// Walks the free list (see [`FreeList::check_invariants`]), then the blocks in address
    /// order: they tile the heap, every block's header equals its footer, a live block's check
    /// word decodes to a size that fits it, no two free blocks are neighbours where coalescing is
    /// full (physical, or OSTEP's list order under address order), and every free block is linked into the list, which holds nothing else; the live
    /// blocks add up to the stats. O(blocks).
    fn check_invariants(&self) -> Result<(), Corruption> {
        let store = self.store();
        let base = self.base_addr();
        let min = self.min_block();
        self.list.check_invariants(base, |id, c| {
            let at = base + c.addr;
            Corruption::ensure(
                c.size >= min && c.size <= store.end - id,
                "free list",
                at,
                "chunk size out of range",
            )?;
            Corruption::ensure(
                store.word(id) & USED == 0,
                "free list",
                at,
                "a listed chunk is marked in use",
            )
        })?;
        let physical = match self.config().coalesce {
            Coalesce::Physical => true,
            Coalesce::ListOrder => self.config().order == Order::AddrSort,
            Coalesce::Off => false,
        };
        let h = self.header_size();
        let (mut off, mut free, mut prev_free) = (0, 0usize, false);
        let (mut blocks, mut held, mut requested) = (0usize, 0usize, 0usize);
        while off < store.end {
            let at = base + off;
            let w = store.word(off);
            let size = w & !FLAGS;
            let fits = size >= self.min_block() && size <= store.end - off;
            Corruption::ensure(fits, "boundary tags", at, "block size out of range")?;
            let footer = store.word(off + size - FOOTER);
            Corruption::ensure(footer == w, "boundary tags", at, "header and footer differ")?;
            let is_free = w & USED == 0;
            if is_free {
                let merged = !(physical && prev_free);
                Corruption::ensure(
                    merged,
                    "boundary tags",
                    at,
                    "two free neighbours not merged",
                )?;
                let listed = store.is_listed(off);
                Corruption::ensure(listed, "free list", at, "a free block is not in the list")?;
                free += 1;
            } else {
                let req = store.word(off + WORD) ^ key(off);
                let ok = req <= size - h - FOOTER;
                Corruption::ensure(ok, "check word", at, "requested size larger than the block")?;
                blocks += 1;
                held += size;
                requested += req;
            }
            prev_free = is_free;
            off += size;
        }
        let listed = store.len() == free;
        Corruption::ensure(
            listed,
            "free list",
            base,
            "the list holds more chunks than free blocks",
        )?;
        let s = &self.stats;
        let agree = (blocks, held, requested) == (s.live_blocks, s.live_held, s.live_requested);
        Corruption::ensure(agree, "stats", base, "live blocks differ from the stats")?;
        let footprint = s.footprint == self.source.footprint() && store.end <= s.footprint;
        Corruption::ensure(
            footprint,
            "stats",
            base,
            "footprint differs from the source's",
        )
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        let store = self.store();
        let base = self.base_addr();
        let h = self.header_size();
        out.region(base, store.end);
        let mut off = 0;
        while off < store.end {
            let w = store.word(off);
            let size = w & !FLAGS;
            if size == 0 {
                break;
            }
            if w & USED == 0 {
                out.block(base + off, size, BlockKind::Free);
            } else {
                let req = (store.word(off + WORD) ^ key(off)).min(size - h - FOOTER);
                out.block(base + off, h, BlockKind::Header);
                out.block(base + off + h, req, BlockKind::Live { requested: req });
                let pad = size - h - FOOTER - req;
                if pad > 0 {
                    out.block(base + off + h + req, pad, BlockKind::Padding);
                }
                out.block(base + off + size - FOOTER, FOOTER, BlockKind::Header);
            }
            off += size;
        }
        out.begin_list(format_args!("free list"));
        for c in self.list.iter() {
            out.list_entry(base + c.addr, c.size);
        }
        out.end_list();
        if let Some(r) = self.list.rover() {
            out.value(format_args!("rover"), base + r);
        }
    }

    fn detects(&self) -> Detects {
        Detects {
            foreign: true,
            double_free: true,
            layout_mismatch: true,
        }
    }
}

/// Planted corruptions: each breaks one invariant of the walk and must be reported.
#[cfg(test)]
mod tests {
    use super::*;
    use allocator_traits::BoxedRegion;

    fn heap(cfg: Config) -> FitHeap<BoxedRegion> {
        FitHeap::new(BoxedRegion::new(1 << 16).unwrap(), cfg)
    }

    /// `n` live blocks of 40 bytes; returns their offsets.
    fn blocks(h: &mut FitHeap<BoxedRegion>, n: usize) -> std::vec::Vec<usize> {
        let l = Layout::from_size_align(40, 8).unwrap();
        (0..n)
            .map(|_| {
                let p = h.allocate(l).unwrap().cast::<u8>().as_ptr().addr();
                p - h.base_addr() - h.header_size()
            })
            .collect()
    }

    fn free(h: &mut FitHeap<BoxedRegion>, off: usize) {
        let p = h.base_addr() + off + h.header_size();
        let ptr = NonNull::new(p as *mut u8).unwrap();
        // SAFETY: `off` is a live block of `h` allocated with this layout.
        unsafe { h.deallocate(ptr, Layout::from_size_align(40, 8).unwrap()) }.unwrap();
    }

    fn problem(h: &FitHeap<BoxedRegion>) -> &'static str {
        h.check_invariants()
            .expect_err("the walk must report it")
            .problem
    }

    #[test]
    fn header_and_footer_that_differ() {
        let mut h = heap(Config::best_fit());
        let b = blocks(&mut h, 3);
        h.check_invariants().unwrap();
        let size = h.store().word(b[1]) & !FLAGS;
        h.list
            .store_mut()
            .set_word(b[1] + size - FOOTER, (size + GRAIN) | USED);
        assert_eq!(problem(&h), "header and footer differ");
    }

    #[test]
    fn a_free_block_missing_from_the_list() {
        let mut h = heap(Config::best_fit());
        let b = blocks(&mut h, 3);
        free(&mut h, b[1]);
        h.check_invariants().unwrap();
        h.list.store_mut().unlink(b[1]);
        assert_eq!(problem(&h), "a free block is not in the list");
    }

    #[test]
    fn a_list_out_of_order() {
        let mut h = heap(Config::best_fit());
        let b = blocks(&mut h, 5);
        free(&mut h, b[1]);
        free(&mut h, b[3]);
        h.check_invariants().unwrap();
        // Move the chunk at b[3] to the front: the address order breaks.
        h.list.store_mut().move_after(b[3], None);
        assert_eq!(problem(&h), "out of the list order");
    }

    #[test]
    fn a_size_sorted_list_out_of_order() {
        let mut h = heap(Config::best_fit().with_order(Order::SizeAsc));
        let b = blocks(&mut h, 5);
        free(&mut h, b[1]);
        h.check_invariants().unwrap();
        // The top chunk (larger) now goes before the 48-byte chunk.
        let top = h.list.store().last().unwrap();
        h.list.store_mut().move_after(top, None);
        assert_eq!(problem(&h), "out of the list order");
    }

    #[test]
    fn two_free_neighbours_unmerged() {
        let mut h = heap(Config::best_fit());
        let b = blocks(&mut h, 4);
        free(&mut h, b[1]);
        h.check_invariants().unwrap();
        // Mark b[2] free and link it after b[1], as a free that skipped coalescing would.
        let size = h.store().word(b[2]) & !FLAGS;
        let chunk = Chunk { addr: b[2], size };
        h.list.store_mut().insert_after(Some(b[1]), chunk);
        assert_eq!(problem(&h), "two free neighbours not merged");
    }

    #[test]
    fn a_cycle_in_the_list() {
        let mut h = heap(Config::first_fit().with_order(Order::InsertFront));
        let b = blocks(&mut h, 5);
        free(&mut h, b[1]);
        free(&mut h, b[3]);
        h.check_invariants().unwrap();
        // The last chunk's next points back to the first.
        let (first, last) = (
            h.list.store().first().unwrap(),
            h.list.store().last().unwrap(),
        );
        h.list.store_mut().set_word(last + 2 * WORD, first);
        assert_eq!(
            problem(&h),
            "more chunks linked than the length says (a cycle?)"
        );
    }

    #[test]
    fn a_link_outside_the_heap() {
        let mut h = heap(Config::first_fit());
        let b = blocks(&mut h, 3);
        free(&mut h, b[1]);
        let end = h.store().end;
        h.list.store_mut().set_word(b[1] + 2 * WORD, end + 64);
        assert_eq!(problem(&h), "a link points outside the heap");
    }

    #[test]
    fn a_listed_chunk_marked_in_use() {
        let mut h = heap(Config::first_fit());
        let b = blocks(&mut h, 3);
        free(&mut h, b[1]);
        let w = h.store().word(b[1]);
        let size = w & !FLAGS;
        h.list.store_mut().tags(b[1], size, true);
        assert_eq!(problem(&h), "a listed chunk is marked in use");
    }

    #[test]
    fn a_check_word_that_does_not_fit() {
        let mut h = heap(Config::first_fit());
        let b = blocks(&mut h, 2);
        h.list.store_mut().set_word(b[0] + WORD, 4096 ^ key(b[0]));
        assert_eq!(problem(&h), "requested size larger than the block");
        h.list.store_mut().set_word(b[0] + WORD, 39 ^ key(b[0]));
        assert_eq!(problem(&h), "live blocks differ from the stats");
    }
}
