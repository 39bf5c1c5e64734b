//! The page map: for every 4 KiB granule of the range the spans occupy, the span that covers
//! the granule's first byte and the span that starts inside the granule, each with its class.
//! A free finds its pointer's span here (two loads), so spans need no alignment beyond their
//! objects' and can sit anywhere the page level puts them (packed by best fit, or as buddy
//! blocks), and nothing of a span is read before the map says it is a span of the right class.
//!
//! ```text
//!   granule     g0            g1            g2            g3
//!   memory   |....[span A (class 5) ..............][span B (class 31) ........
//!   cover        -             A,5           A,5           B,31
//!   next         A,5           A,5           B,31          B,31
//!   lookup(p): e = map[p >> 12]; span = e.next if p >= it, else e.cover (an index, no branch)
//! ```
//!
//! `next` is the span starting inside the granule or, if none does, the same as `cover`, so the
//! lookup is one comparison (a null `next` has address 0 and is then also the cover).
//!
//! Entries hold the spans' pointers (as the page level handed them out: a free never reads or
//! writes a span through the caller's pointer, whose provenance may cover only the object) and
//! classes, 24 bytes per 4 KiB (0.6 % of the range: 6 MiB for 1 GiB), taken from the page level
//! and grown (doubling) as spans appear outside it: Go's `spans` array and tcmalloc's page map in
//! miniature. A span's entries are written when it is taken from the page level and erased
//! before it goes back, so the map never names memory that is not a live span. Spans are at least
//! 8 KiB, so at most one starts inside a granule. It assumes the page level hands out spans from
//! one region (as every manager over a `MemorySource` region does); ranges above 2^28 granules
//! (1 TiB) are refused.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::FreeSpaceManager;

/// log2 of the granule the map records.
pub const GRANULE_SHIFT: u32 = 12;

const MAX_ENTRIES: usize = 1 << 28;

#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    /// `[cover, next]`: the span covering the granule's first byte (null if none), and the
    /// span starting inside the granule, not at its first byte (if there is none, `cover`).
    spans: [*mut u8; 2],
    /// The classes of `spans`.
    classes: [u8; 2],
}

/// The index of `cover` in [`Entry`]'s arrays.
const COVER: usize = 0;
/// The index of `next` in [`Entry`]'s arrays.
const NEXT: usize = 1;

/// The spans by granule, over granules `first..first + len`.
pub(crate) struct PageMap {
    entries: *mut Entry,
    first: usize,
    len: usize,
}

impl PageMap {
    pub(crate) const EMPTY: PageMap = PageMap {
        entries: core::ptr::null_mut(),
        first: 0,
        len: 0,
    };

    /// Where the map's entries lie (address, bytes), taken from the page level, if it has any:
    /// `inspect` shows them as the front's own metadata.
    pub(crate) fn storage(&self) -> Option<(usize, usize)> {
        (self.len > 0).then(|| (self.entries as usize, self.len * size_of::<Entry>()))
    }

    /// The span containing `addr` if the map knows one: its start (a pointer with the page
    /// level's provenance, as the span was handed out) and class.
    #[inline]
    pub(crate) fn lookup(&self, addr: usize) -> Option<(*mut u8, u8)> {
        let (p, c) = self.lookup_raw(addr);
        (c != 0).then_some((p, c))
    }

    /// [`PageMap::lookup`] for the fast paths: class 0 (with a null or dangling pointer) when
    /// the map knows no span there.
    #[inline(always)]
    pub(crate) fn lookup_raw(&self, addr: usize) -> (*mut u8, u8) {
        let i = (addr >> GRANULE_SHIFT).wrapping_sub(self.first);
        if i >= self.len {
            return (core::ptr::null_mut(), 0);
        }
        // SAFETY: `i < len` entries were allocated and initialised.
        let e = unsafe { &*self.entries.add(i) };
        // `next` starts at or before the granule when it is `cover` (or null), so that case
        // takes it too. Class 0 is "no span" (and the only class of a null pointer).
        // An index, not a branch: which of the two it is depends on the pointer freed, which a
        // branch predictor cannot guess.
        let j = (addr >= e.spans[NEXT] as usize) as usize;
        (e.spans[j], e.classes[j])
    }

    /// Whether granule `g` is inside the map.
    fn covers_granule(&self, g: usize) -> bool {
        g.wrapping_sub(self.first) < self.len
    }

    /// Records (or, with `class == 0`, erases) the span of `len` bytes at `span` of `class`. The
    /// map must cover it.
    pub(crate) fn set(&mut self, span: *mut u8, len: usize, class: u8) {
        let base = span as usize;
        let (g0, g1) = (base >> GRANULE_SHIFT, (base + len - 1) >> GRANULE_SHIFT);
        let v = if class == 0 {
            core::ptr::null_mut()
        } else {
            span
        };
        for g in g0..=g1 {
            if !self.covers_granule(g) {
                continue;
            }
            // SAFETY: the granule is inside the map.
            let e = unsafe { &mut *self.entries.add(g - self.first) };
            let start = g << GRANULE_SHIFT;
            if g == g0 && base != start {
                // A span starting inside the granule (or none any more: then the cover).
                if class == 0 {
                    e.spans[NEXT] = e.spans[COVER];
                    e.classes[NEXT] = e.classes[COVER];
                } else {
                    e.spans[NEXT] = v;
                    e.classes[NEXT] = class;
                }
            } else {
                // `next` follows the cover unless a span starts inside the granule.
                if e.spans[NEXT] as usize <= start {
                    e.spans[NEXT] = v;
                    e.classes[NEXT] = class;
                }
                e.spans[COVER] = v;
                e.classes[COVER] = class;
            }
        }
    }

    /// Makes the map cover `base..base + len`, taking a larger map from `large` if needed.
    /// Returns false if it cannot.
    pub(crate) fn cover<L: FreeSpaceManager>(
        &mut self,
        base: usize,
        len: usize,
        large: &mut L,
    ) -> bool {
        let (g0, g1) = (base >> GRANULE_SHIFT, (base + len - 1) >> GRANULE_SHIFT);
        if self.covers_granule(g0) && self.covers_granule(g1) {
            return true;
        }
        let (lo, hi) = if self.len == 0 {
            (g0, g1 + 1)
        } else {
            (self.first.min(g0), (self.first + self.len).max(g1 + 1))
        };
        let n = (hi - lo).max(2 * self.len).max(256);
        if n > MAX_ENTRIES {
            return false;
        }
        // Keep the old range inside; extend on the side of the new span.
        let first = if g0 < self.first && self.len > 0 {
            hi.saturating_sub(n)
        } else {
            lo
        };
        let Ok(layout) = Layout::array::<Entry>(n) else {
            return false;
        };
        let Ok(block) = large.allocate(layout) else {
            return false;
        };
        let entries = block.cast::<Entry>().as_ptr();
        // SAFETY: `entries` is a fresh block of `n` entries; the old map's `self.len` entries are
        // initialised and land inside the new one (`first <= self.first` and
        // `self.first + self.len <= first + n` by construction).
        unsafe {
            entries.write_bytes(0, n);
            if self.len > 0 {
                core::ptr::copy_nonoverlapping(
                    self.entries,
                    entries.add(self.first - first),
                    self.len,
                );
                if let Ok(old) = Layout::array::<Entry>(self.len) {
                    let _ = large.deallocate(NonNull::new_unchecked(self.entries.cast()), old);
                }
            }
        }
        self.entries = entries;
        self.first = first;
        self.len = n;
        true
    }

    /// Gives the map's memory back to `large` (when no span is left, so no entry names one);
    /// the map is empty afterwards and grows again with the next span.
    pub(crate) fn release<L: FreeSpaceManager>(&mut self, large: &mut L) {
        if self.len > 0
            && let Ok(layout) = Layout::array::<Entry>(self.len)
        {
            // SAFETY: `entries` is the block of `len` entries taken from `large` by `cover`,
            // with this layout; nothing refers to it once the map is reset below.
            let _ =
                unsafe { large.deallocate(NonNull::new_unchecked(self.entries.cast()), layout) };
        }
        *self = PageMap::EMPTY;
    }

    /// Calls `f(granule start, cover, cover class, next, next class)` for every granule of the
    /// map (for the invariant walk).
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, *mut u8, u8, *mut u8, u8)) {
        for i in 0..self.len {
            // SAFETY: `i < len` entries were allocated and initialised.
            let e = unsafe { &*self.entries.add(i) };
            f(
                (self.first + i) << GRANULE_SHIFT,
                e.spans[COVER],
                e.classes[COVER],
                e.spans[NEXT],
                e.classes[NEXT],
            );
        }
    }

    /// Whether the map has memory of its own (taken from the page level).
    pub(crate) fn is_allocated(&self) -> bool {
        self.len > 0
    }

    /// Bytes the map takes.
    pub(crate) fn bytes(&self) -> usize {
        self.len * core::mem::size_of::<Entry>()
    }
}
