//! Growth: taking data and bitmaps from the [`MemorySource`] as the heap needs them.
//!
//! ```text
//!   contiguous source (grow_by > 0), after three chunks and one bitmap regrowth:
//!   origin                                                   cover_end           limit
//!   |== chunk 1 ==|..old bitmaps, now free blocks..|== chunk 2 ==|== bitmaps ==|== chunk 3 ==|....
//!   ^ bits indexed from here            every block with bits ends before cover_end
//! ```
//!
//! * **Data.** With [`Config::grow_by`] 0 all of the capacity is taken at once (data first,
//!   bitmaps after it). Otherwise the first chunk is taken on first use and more as allocations
//!   need them: a chunk of `grow_by` bytes, or one block of the order asked if that is larger.
//!   From a contiguous source, a grant is asked in one call from where the source ends, the gap
//!   up to the aligned start included: the gap becomes free blocks, and a request the source
//!   cannot serve fails at once without side effects.
//! * **Bitmaps grow with the data, not with the capacity.** They cover `origin..cover_end`;
//!   when a grant ends past `cover_end`, the range covered at least doubles (up to `limit`),
//!   new bitmaps are taken from the source, the old bits are copied into them and their
//!   summaries rebuilt, and the old bitmaps' memory becomes free blocks when the new ones cover
//!   it (it is given back to a mapping source otherwise). So the bitmaps take about 1/32 of the
//!   range the data spans (16-byte minimum blocks), at most twice that while a doubling is not
//!   yet used, and a capacity told far above what is used costs nothing.
//! * **Refusals.** A request above the largest order is refused before the source is asked; one
//!   the source cannot serve is refused with the request's size, never a chunk's or the
//!   bitmaps'.

use core::ptr::NonNull;

use allocator_traits::SourceError;

use crate::bitmap::Bitmaps;
use crate::blocks::Blocks;
use crate::order::MAX_ORDERS;
use crate::{AllocError, Buddy, Config, MemorySource};

/// The smallest range the bitmaps of a growing heap cover.
const MIN_COVER: usize = 64 << 10;

impl<S: MemorySource> Buddy<S> {
    /// Bytes of bitmaps for blocks from `origin` up to `end`.
    fn meta_bytes(&self, origin: usize, end: usize) -> Option<usize> {
        let (orders, s) = (self.blocks.orders, self.blocks.min_shift);
        let words = Bitmaps::words_needed(orders, |k| Blocks::bits_of(origin, end, s, k))?;
        words
            .checked_mul(8)?
            .checked_next_multiple_of(self.config.min_block)
    }

    /// Asks the source for `size` bytes aligned to `align`, keeping `src_end` and the footprint.
    fn take_from_source(
        &mut self,
        size: usize,
        align: usize,
    ) -> Result<NonNull<[u8]>, SourceError> {
        let g = self.source.acquire(size, align)?;
        if self.source.is_contiguous() {
            self.src_end = g.cast::<u8>().as_ptr() as usize + g.len();
        }
        self.stats.set_footprint(self.source.footprint());
        Ok(g)
    }

    /// Gives an unused grant back to the source if it takes it (a contiguous one only takes its
    /// tail).
    ///
    /// # Safety
    /// `g` was granted by the source and nothing uses it.
    unsafe fn give_back(&mut self, g: NonNull<[u8]>) -> bool {
        let start = g.cast::<u8>();
        // SAFETY: forwarded caller contract.
        let ok = unsafe { self.source.release(start, g.len()) }.is_ok();
        if ok && self.source.is_contiguous() && self.src_end == start.as_ptr() as usize + g.len() {
            self.src_end = start.as_ptr() as usize;
        }
        self.stats.set_footprint(self.source.footprint());
        ok
    }

    pub(crate) fn init(&mut self) -> Result<(), AllocError> {
        let Config {
            capacity,
            min_block,
            grow_by,
        } = self.config;
        let bad = AllocError::Unsupported {
            size: capacity,
            align: min_block,
            reason: "min_block must be a power of two >= 16 and capacity at least 4 min blocks",
        };
        if !min_block.is_power_of_two()
            || min_block < 2 * core::mem::size_of::<usize>()
            || capacity / 4 < min_block
            || capacity > isize::MAX as usize
        {
            return Err(bad);
        }
        let min_shift = min_block.trailing_zeros();
        // Largest order: the top block fits in the capacity.
        let top_shift = usize::BITS - 1 - capacity.leading_zeros();
        self.min_mask = min_block - 1;
        let orders = (top_shift - min_shift + 1).min(MAX_ORDERS as u32);
        // The data first: it starts where the region starts (usually well aligned).
        let (grant, len) = if grow_by == 0 {
            // Room for bitmaps over all of it, whatever its start: `end - base(k)` is at most
            // `capacity + 2 * size(k)`.
            let s = min_shift;
            let words = Bitmaps::words_needed(orders, |k| (capacity >> (k + s)) + 4);
            let meta = words.and_then(|w| w.checked_mul(8)).ok_or(bad)?;
            let want = capacity
                .saturating_sub(self.source.footprint())
                .saturating_sub(meta + min_block);
            self.acquire_data(want, min_block)?
        } else {
            let want = grow_by.min(capacity.saturating_sub(self.source.footprint()));
            self.acquire_data(want, Self::chunk_align(want, min_block))?
        };
        self.origin = grant as usize;
        self.base = grant;
        self.limit = self.origin + capacity;
        self.blocks.set_origin(self.origin, min_shift, orders);
        let cover = if grow_by == 0 {
            capacity
        } else {
            len.max(MIN_COVER).next_power_of_two().min(capacity)
        };
        let cover_end = self.origin + cover;
        let meta_len = self.meta_bytes(self.origin, cover_end).ok_or(bad)?;
        let meta = self
            .take_from_source(meta_len, min_block.max(8))
            .map_err(|_| AllocError::OutOfMemory {
                size: meta_len,
                align: 8,
            })?;
        self.meta = meta.cast::<u8>().as_ptr() as usize;
        self.meta_len = meta.len();
        self.cover_end = cover_end;
        let (o, s) = (self.origin, min_shift);
        // SAFETY: the meta grant holds `meta_bytes` bytes for these orders (at least the words
        // `init` lays out), is 8-aligned, and is ours alone.
        unsafe {
            self.blocks
                .bits
                .init(meta.cast::<u64>().as_ptr(), self.blocks.orders, |k| {
                    Blocks::bits_of(o, cover_end, s, k)
                });
        }
        // SAFETY: the grant was just acquired, is ours and lies in `origin..cover_end`.
        unsafe { self.add_grant(grant, len) };
        Ok(())
    }

    /// Asks the source for `want` bytes (falling back to smaller multiples of the minimum block
    /// for a fixed region whose end is not aligned).
    fn acquire_data(&mut self, want: usize, align: usize) -> Result<(*mut u8, usize), AllocError> {
        let min = self.config.min_block;
        let mut want = want & !(min - 1);
        let oom = AllocError::OutOfMemory {
            size: want,
            align: min,
        };
        for _ in 0..2 {
            if want < min {
                break;
            }
            if let Ok(g) = self.take_from_source(want, align) {
                return Ok((g.cast::<u8>().as_ptr(), g.len()));
            }
            want -= min;
        }
        Err(oom)
    }

    /// Cuts `grant..grant+len` into maximal blocks aligned to their size and frees each (merging
    /// with what is already free).
    ///
    /// # Safety
    /// The range was granted by the source, lies in `origin..cover_end` and is used by nothing
    /// else.
    pub(crate) unsafe fn add_grant(&mut self, grant: *mut u8, len: usize) {
        let min = self.config.min_block;
        let start = (grant as usize).next_multiple_of(min);
        let end = (grant as usize + len) & !(min - 1);
        self.data_end = self.data_end.max(end);
        // SAFETY: multiples of the smallest block; the grant lies in `origin..cover_end` and is
        // used by nothing else (caller), so its blocks are in the map and have no bit set.
        self.granted += unsafe { self.blocks.free_range(start, end) };
    }

    /// Takes more data from the source so that a block of order `k` can be served; false if the
    /// source has no more (or the heap does not grow).
    pub(crate) fn grow(&mut self, k: u32) -> bool {
        let need = self.size(k);
        let chunk = self.config.grow_by;
        if chunk == 0 {
            return false;
        }
        let (want, align) = if need > chunk {
            (need, need)
        } else {
            (chunk, Self::chunk_align(chunk, self.config.min_block))
        };
        let (grant, head) = if self.source.is_contiguous() {
            // One grant from where the source ends: the gap up to the aligned start, then the
            // block. All or nothing.
            let Some(total) = self
                .src_end
                .checked_next_multiple_of(align)
                .and_then(|start| (start - self.src_end).checked_add(want))
            else {
                return false;
            };
            let g = self.take_from_source(total, self.config.min_block);
            // The block is the grant's tail; what comes before it is the gap.
            let head = g.as_ref().map_or(0, |g| g.len().saturating_sub(want));
            (g, head)
        } else {
            (self.take_from_source(want, align), 0)
        };
        match grant {
            // SAFETY: just granted, unused; its first `head` bytes are not the block asked for.
            Ok(g) => unsafe { self.add_granted(g, head) },
            Err(_) => false,
        }
    }

    /// Chunks are asked aligned to their size when it is a power of two, so that every chunk is a
    /// whole block and the chunks of a contiguous source merge into larger ones.
    fn chunk_align(chunk: usize, min_block: usize) -> usize {
        if chunk.is_power_of_two() {
            chunk.max(min_block)
        } else {
            min_block
        }
    }

    /// Adds a fresh grant to the heap if it lies inside `origin..limit` and the bitmaps can be
    /// made to cover it; gives it back otherwise. Returns whether it was added.
    ///
    /// When the bitmaps must grow and the grant's first `head` bytes (the gap before a block
    /// aligned to its size) hold them, they move there: a block that ends where the source ends
    /// leaves no room after it, and the gap is free space anyway.
    ///
    /// # Safety
    /// `g` was just granted by the source and is unused.
    unsafe fn add_granted(&mut self, g: NonNull<[u8]>, head: usize) -> bool {
        let (grant, len) = (g.cast::<u8>().as_ptr(), g.len());
        let end = grant as usize + len;
        if (grant as usize) < self.origin || end > self.limit {
            // SAFETY: just granted, unused.
            unsafe { self.give_back(g) };
            return false;
        }
        if end > self.cover_end {
            if let Some((cover_end, meta_len)) = self.cover_plan(end) {
                let at = (grant as usize).next_multiple_of(self.meta_align());
                if at + meta_len <= grant as usize + head.min(len) {
                    // SAFETY: `at..at + meta_len` lies in the fresh grant, is aligned for the
                    // words and holds `meta_bytes(cover_end)`; nothing else uses it.
                    unsafe { self.move_bitmaps(self.at(at), meta_len, cover_end) };
                    // SAFETY: the rest of the grant is ours, unused and now covered.
                    unsafe {
                        self.add_grant(grant, at - grant as usize);
                        self.add_grant(self.at(at + meta_len), end - (at + meta_len));
                    }
                    return true;
                }
            }
            if !self.cover(end) {
                // SAFETY: just granted, unused (`cover` took nothing when it failed, so a
                // contiguous source's grant is still its tail).
                unsafe { self.give_back(g) };
                return false;
            }
        }
        // SAFETY: just granted, inside `origin..cover_end`.
        unsafe { self.add_grant(grant, len) };
        true
    }

    /// Alignment of the bitmaps' grant.
    fn meta_align(&self) -> usize {
        self.config.min_block.max(8)
    }

    /// Where the bitmaps must end to cover blocks up to `end` (at least twice the range covered
    /// now, a power of two, at most `limit`) and the bytes they take there; `None` on overflow.
    fn cover_plan(&self, end: usize) -> Option<(usize, usize)> {
        let span = (end - self.origin).max(2 * (self.cover_end - self.origin));
        let span = span.checked_next_power_of_two()?;
        let cover_end = self.origin + span.min(self.limit - self.origin);
        Some((cover_end, self.meta_bytes(self.origin, cover_end)?))
    }

    /// Makes the bitmaps cover blocks up to `end` (at most `limit`), in a new grant from the
    /// source. False if the source has no room for them (nothing changed then).
    fn cover(&mut self, end: usize) -> bool {
        if end <= self.cover_end {
            return true;
        }
        let Some((cover_end, meta_len)) = self.cover_plan(end) else {
            return false;
        };
        let Ok(meta) = self.take_from_source(meta_len, self.meta_align()) else {
            return false;
        };
        // SAFETY: the new grant holds `meta_bytes(cover_end)`, is aligned and ours alone.
        unsafe { self.move_bitmaps(meta.cast::<u8>().as_ptr(), meta.len(), cover_end) };
        true
    }

    /// Moves the bitmaps to `meta..meta + meta_len`, covering blocks up to `cover_end`: the old
    /// bits copied, the summaries rebuilt, the old grant recycled (as free blocks when the new
    /// range covers it, given back to the source otherwise).
    ///
    /// # Safety
    /// `meta..meta + meta_len` is ours alone, 8-aligned, and holds at least
    /// `meta_bytes(origin, cover_end)` bytes.
    unsafe fn move_bitmaps(&mut self, meta: *mut u8, meta_len: usize, cover_end: usize) {
        let (o, s) = (self.origin, self.blocks.min_shift);
        // SAFETY: the new range holds the words laid out for `cover_end` (caller), is 8-aligned
        // and ours alone; the old words stay valid until they are recycled below.
        unsafe {
            self.blocks
                .bits
                .regrow(meta.cast::<u64>(), self.blocks.orders, |k| {
                    Blocks::bits_of(o, cover_end, s, k)
                });
        }
        let (old, old_len) = (self.meta, self.meta_len);
        self.meta = meta as usize;
        self.meta_len = meta_len;
        self.cover_end = cover_end;
        if old >= self.origin && old + old_len <= cover_end {
            // SAFETY: the old bitmaps' grant is ours, inside the covered range, and no longer
            // used.
            unsafe { self.add_grant(self.at(old), old_len) };
        } else if let Some(p) = NonNull::new(self.at(old)) {
            // SAFETY: as above; a source that does not take it back keeps counting it.
            unsafe { self.give_back(NonNull::slice_from_raw_parts(p, old_len)) };
        }
    }
}
