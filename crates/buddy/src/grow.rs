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
use crate::order::MAX_ORDERS;
use crate::{AllocError, Buddy, Config, MemorySource};

/// The smallest range the bitmaps of a growing heap cover.
const MIN_COVER: usize = 64 << 10;

impl<S: MemorySource> Buddy<S> {
    /// Bits of order `k` for blocks between `origin` and `end`.
    fn bits_of(origin: usize, end: usize, min_shift: u32, k: u32) -> usize {
        let shift = k + min_shift;
        let base = origin & !((1usize << (shift + 1)) - 1);
        ((end - base) >> shift) + 2
    }

    /// Bytes of bitmaps for blocks from `origin` up to `end`.
    fn meta_bytes(&self, origin: usize, end: usize) -> Option<usize> {
        let (orders, s) = (self.orders, self.min_shift);
        let words = Bitmaps::words_needed(orders, |k| Self::bits_of(origin, end, s, k))?;
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
        self.min_shift = min_shift;
        self.min_mask = min_block - 1;
        self.orders = (top_shift - min_shift + 1).min(MAX_ORDERS as u32);
        // The data first: it starts where the region starts (usually well aligned).
        let (grant, len) = if grow_by == 0 {
            // Room for bitmaps over all of it, whatever its start: `end - base(k)` is at most
            // `capacity + 2 * size(k)`.
            let s = min_shift;
            let words = Bitmaps::words_needed(self.orders, |k| (capacity >> (k + s)) + 4);
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
        // (The top order merges into nothing; skipping it also keeps `2 << shift` below 2^64
        // for a capacity near `isize::MAX`.)
        for k in 0..self.orders {
            let shift = k + min_shift + 1;
            self.bases[k as usize] = self.origin & !((1 << shift) - 1);
        }
        for k in 0..self.orders - 1 {
            let shift = k + min_shift + 1;
            let (this, next) = (
                self.origin & !((1 << shift) - 1),
                self.origin & !((2 << shift) - 1),
            );
            self.up[k as usize] = ((this - next) >> shift) as u8;
        }
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
            self.bits
                .init(meta.cast::<u64>().as_ptr(), self.orders, |k| {
                    Self::bits_of(o, cover_end, s, k)
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
        self.granted += end.saturating_sub(start);
        let top = self.orders - 1;
        let mut at = start;
        while at < end {
            let mut k = ((at.trailing_zeros()).saturating_sub(self.min_shift)).min(top);
            while at + self.size(k) > end {
                k -= 1;
            }
            let block = grant.wrapping_add(at - grant as usize);
            // SAFETY: the block lies in the grant (caller) and is aligned to its size.
            unsafe { self.put(block, k) };
            at += self.size(k);
        }
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
        let grant = if self.source.is_contiguous() {
            // One grant from where the source ends: the gap up to the aligned start, then the
            // block. All or nothing.
            let Some(total) = self
                .src_end
                .checked_next_multiple_of(align)
                .and_then(|start| (start - self.src_end).checked_add(want))
            else {
                return false;
            };
            self.take_from_source(total, self.config.min_block)
        } else {
            self.take_from_source(want, align)
        };
        match grant {
            // SAFETY: just granted, unused.
            Ok(g) => unsafe { self.add_granted(g) },
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
    /// # Safety
    /// `g` was just granted by the source and is unused.
    unsafe fn add_granted(&mut self, g: NonNull<[u8]>) -> bool {
        let (grant, len) = (g.cast::<u8>().as_ptr(), g.len());
        let end = grant as usize + len;
        if (grant as usize) < self.origin || end > self.limit || !self.cover(end) {
            // SAFETY: just granted, unused (`cover` took nothing when it failed, so a contiguous
            // source's grant is still its tail).
            unsafe { self.give_back(g) };
            return false;
        }
        // SAFETY: just granted, inside `origin..cover_end`.
        unsafe { self.add_grant(grant, len) };
        true
    }

    /// Makes the bitmaps cover blocks up to `end` (at most `limit`): new bitmaps over at least
    /// twice the range, the old bits copied, the old grant recycled. False if the source has no
    /// room for them (nothing changed then).
    fn cover(&mut self, end: usize) -> bool {
        if end <= self.cover_end {
            return true;
        }
        let span = (end - self.origin).max(2 * (self.cover_end - self.origin));
        let Some(span) = span.checked_next_power_of_two() else {
            return false;
        };
        let cover_end = self.origin + span.min(self.limit - self.origin);
        let Some(meta_len) = self.meta_bytes(self.origin, cover_end) else {
            return false;
        };
        let Ok(meta) = self.take_from_source(meta_len, self.config.min_block.max(8)) else {
            return false;
        };
        let (o, s) = (self.origin, self.min_shift);
        // SAFETY: the new grant holds the words laid out for `cover_end` (`meta_bytes`), is
        // 8-aligned and ours alone; the old words stay valid until it is recycled below.
        unsafe {
            self.bits
                .regrow(meta.cast::<u64>().as_ptr(), self.orders, |k| {
                    Self::bits_of(o, cover_end, s, k)
                });
        }
        let (old, old_len) = (self.meta, self.meta_len);
        self.meta = meta.cast::<u8>().as_ptr() as usize;
        self.meta_len = meta.len();
        self.cover_end = cover_end;
        if old >= self.origin && old + old_len <= cover_end {
            // SAFETY: the old bitmaps' grant is ours, inside the covered range, and no longer
            // used.
            unsafe { self.add_grant(self.at(old), old_len) };
        } else if let Some(p) = NonNull::new(self.at(old)) {
            // SAFETY: as above; a source that does not take it back keeps counting it.
            unsafe { self.give_back(NonNull::slice_from_raw_parts(p, old_len)) };
        }
        true
    }
}
