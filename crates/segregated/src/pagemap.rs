//! The page map: for every 8 KiB page in the range the spans occupy, the class of the span that
//! starts there (0: none). A free looks its pointer's span up here before it reads anything of
//! the span, so a pointer that is not in one of our spans, or is freed with another class's
//! layout, is told apart without touching memory that is not a span header.
//!
//! ```text
//!   page index  base   base+1  base+2  base+3  base+4 ...
//!   class        31      0       0      121      5
//!               [span c31 16 KiB ] [..] [tiny 8K] [c5 ...
//! ```
//!
//! One byte per 8 KiB of the range (128 KiB for a 1 GiB range), taken from the page level itself
//! and grown (doubling) as spans appear outside it; this is Go's `spans` array and tcmalloc's
//! page map in miniature. It assumes the page level hands out spans from one region (as every
//! manager over a `MemorySource` region does); a range above 2^31 pages is refused.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::FreeSpaceManager;

/// log2 of the page size the map records.
pub const PAGE_SHIFT: u32 = crate::classes::MIN_SPAN_SHIFT;

const MAX_ENTRIES: usize = 1 << 31;

/// Class per page, over `first..first + len` (page numbers).
pub(crate) struct PageMap {
    entries: *mut u8,
    first: usize,
    len: usize,
}

impl PageMap {
    pub(crate) const EMPTY: PageMap = PageMap {
        entries: core::ptr::null_mut(),
        first: 0,
        len: 0,
    };

    /// The class recorded for the page of `addr` (0 outside the map).
    #[inline]
    pub(crate) fn class_at(&self, addr: usize) -> u8 {
        let i = (addr >> PAGE_SHIFT).wrapping_sub(self.first);
        if i < self.len {
            // SAFETY: `i < len` entries were allocated and initialised.
            unsafe { *self.entries.add(i) }
        } else {
            0
        }
    }

    /// Whether the page of `addr` is inside the map.
    pub(crate) fn covers(&self, addr: usize) -> bool {
        (addr >> PAGE_SHIFT).wrapping_sub(self.first) < self.len
    }

    /// Records `class` for the page of `addr`, which the map covers.
    #[inline]
    pub(crate) fn set(&mut self, addr: usize, class: u8) {
        let i = (addr >> PAGE_SHIFT).wrapping_sub(self.first);
        if i < self.len {
            // SAFETY: `i < len`.
            unsafe { *self.entries.add(i) = class };
        }
    }

    /// Makes the map cover the page of `addr`, taking a larger map from `large` if needed.
    /// Returns false if it cannot.
    pub(crate) fn cover<L: FreeSpaceManager>(&mut self, addr: usize, large: &mut L) -> bool {
        let page = addr >> PAGE_SHIFT;
        if self.covers(addr) {
            return true;
        }
        let (lo, hi) = if self.len == 0 {
            (page, page + 1)
        } else {
            (self.first.min(page), (self.first + self.len).max(page + 1))
        };
        let len = (hi - lo).max(2 * self.len).max(64);
        if len > MAX_ENTRIES {
            return false;
        }
        // Grow towards the new page: keep the old range inside, extend on the side of `page`.
        let first = if page < self.first {
            hi.saturating_sub(len)
        } else {
            lo
        };
        let Ok(layout) = Layout::from_size_align(len, 8) else {
            return false;
        };
        let Ok(block) = large.allocate(layout) else {
            return false;
        };
        let entries = block.cast::<u8>().as_ptr();
        // SAFETY: `entries` is a fresh block of `len` bytes; the old map's `self.len` entries
        // are initialised and land inside the new one (`first <= self.first` and
        // `self.first + self.len <= first + len` by construction).
        unsafe {
            entries.write_bytes(0, len);
            if self.len > 0 {
                core::ptr::copy_nonoverlapping(
                    self.entries,
                    entries.add(self.first - first),
                    self.len,
                );
                if let Ok(old) = Layout::from_size_align(self.len, 8) {
                    let _ = large.deallocate(NonNull::new_unchecked(self.entries), old);
                }
            }
        }
        self.entries = entries;
        self.first = first;
        self.len = len;
        true
    }

    /// Bytes the map takes.
    pub(crate) fn bytes(&self) -> usize {
        self.len
    }
}
