//! The heap's dealings with its memory source: growing at the end, and giving the end back.
//!
//! ```text
//!   grow:  ...| last block |sen|                    ...| last block | new space ........ |sen|
//!                           ^ the old sentinel becomes the new space's header ^
//!   trim:  ...| live | free block >= threshold ........... |sen|  ->  ...| live | 64 KiB |sen|
//!                                      released to the source:          ^^^^^^^^^^^^^^^^^^^^^
//! ```

use allocator_traits::MemorySource;

use super::FitHeap;
use super::block::{FIRST, GRAIN, MIN_BLOCK, W, round_grain};
use crate::list::Chunk;

/// Smallest amount asked of the source when the heap grows.
const GROW_STEP: usize = 64 << 10;
/// What a trim keeps of the free block at the end (so a free followed by an allocation does not
/// give memory back and ask for it again).
const TRIM_KEEP: usize = GROW_STEP;
/// The largest heap the index can address: 32-bit granule numbers.
const INDEX_LIMIT: usize = (u32::MAX as usize - 1) * GRAIN;

impl<M: MemorySource> FitHeap<M> {
    /// Asks the source for at least `min` more bytes at the end of the heap and returns the new
    /// space as a chunk whose header is written (the old sentinel, or the first block's), not
    /// yet inserted; the new sentinel is written.
    pub(super) fn extend(&mut self, min: usize) -> Result<Chunk, ()> {
        let first = self.mem().end == 0;
        // The first grant also holds the prologue and the sentinel.
        let min =
            round_grain(min.checked_add(if first { GRAIN } else { 0 }).ok_or(())?).ok_or(())?;
        let want = min.max(GROW_STEP);
        let grant = match self.source.acquire(want, GRAIN) {
            Ok(g) => g,
            Err(_) if want > min => self.source.acquire(min, GRAIN).map_err(|_| ())?,
            Err(_) => return Err(()),
        };
        let ptr = grant.cast::<u8>();
        let len = grant.len() & !(GRAIN - 1);
        let uses_index = self.config.uses_index();
        let mem = self.free.mem_mut();
        let contiguous = first || mem.base.addr().checked_add(mem.end) == Some(ptr.as_ptr().addr());
        let new_end = if first {
            len
        } else {
            mem.end.saturating_add(len)
        };
        let room = if first { MIN_BLOCK + GRAIN } else { MIN_BLOCK };
        if !contiguous || len < room || (uses_index && new_end > INDEX_LIMIT) {
            // A grant that cannot extend this heap (a source that is not contiguous, or past what
            // the index addresses): give it back if the source takes it; otherwise it stays
            // counted in the footprint, unused.
            // SAFETY: the grant came from this source just now and is not used.
            let _ = unsafe { self.source.release(ptr, grant.len()) };
            self.stats.set_footprint(self.source.footprint());
            return Err(());
        }
        let space = if first {
            mem.base = ptr.as_ptr();
            mem.end = len;
            mem.set_fresh_header(FIRST, len - GRAIN);
            Chunk {
                addr: FIRST,
                size: len - GRAIN,
            }
        } else {
            let at = mem.sentinel();
            mem.end = new_end;
            Chunk {
                addr: at,
                size: len,
            }
        };
        mem.set_sentinel(false);
        self.stats.set_footprint(self.source.footprint());
        Ok(space)
    }

    /// If the free block `top` (just inserted) ends the heap: gives it back to the source, down
    /// to 64 KiB, when it has reached the trim threshold (and the source takes it: a contiguous
    /// source takes its tail).
    #[inline]
    pub(super) fn trim(&mut self, top: usize) {
        self.trim_sized(top, self.mem().size(top));
    }

    /// [`trim`](Self::trim) for `top` of `size` bytes (the size tested first: most freed
    /// blocks are below the threshold).
    #[inline]
    pub(super) fn trim_sized(&mut self, top: usize, size: usize) {
        if size >= self.config.trim_threshold && top + size == self.mem().sentinel() {
            self.trim_top(top, size);
        }
    }

    /// `trim` for a free block `top` of `size` bytes that ends the heap and has reached the
    /// threshold (out of line: most frees end elsewhere).
    #[cold]
    #[inline(never)]
    fn trim_top(&mut self, top: usize, size: usize) {
        let mem = self.mem();
        if size < MIN_BLOCK + TRIM_KEEP {
            return;
        }
        let gran = self.source.granularity().max(GRAIN);
        if !gran.is_power_of_two() {
            return;
        }
        let give = (size - MIN_BLOCK - TRIM_KEEP) & !(gran - 1);
        if give == 0 {
            return;
        }
        let new_end = mem.end - give;
        // SAFETY: `new_end < end`, inside the heap's memory.
        let at = unsafe { mem.base.add(new_end) };
        let Some(at) = core::ptr::NonNull::new(at) else {
            return;
        };
        // SAFETY: `new_end..end` is the tail of what the source granted (grants are contiguous
        // and the heap's end is their end); it holds only the end of the free block and the
        // sentinel, which are rewritten below `new_end` before anything reads them again.
        if unsafe { self.source.release(at, give) }.is_err() {
            return;
        }
        let mem = self.free.mem_mut();
        mem.end = new_end;
        mem.set_sentinel(false);
        self.free.resize_chunk(top, size - give);
        self.stats.set_footprint(self.source.footprint());
    }
}

const _: () = assert!(W <= GRAIN / 2);
