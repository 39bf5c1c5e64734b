//! Statistics: the heap's [`Stats`] (exact on every path: the fast paths add and subtract the
//! live counts and test two gates below which no peak can change), the waste per class
//! ([`ClassStats`]) and what tiny combining saves ([`TinyStats`]).
//!
//! ```text
//!   stats.live_requested  > gate_requested  or  live_held > gate_held  -> raise_peaks()
//!   gates: the live counts up to which no peak can change (set_gates, after every peak
//!          or footprint change)
//!   live_blocks = allocs - frees (filled in by stats())
//! ```

use allocator_traits::{FreeSpaceManager, Stats};

use crate::span::{SpanList, TINY_BLOCK};
use crate::{Segregated, SpanHeader};

/// The waste of one size class, from [`Segregated::class_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassStats {
    /// Class number (1-based; [`TINY`](crate::TINY) for the tiny blocks).
    pub class: usize,
    /// Object size.
    pub size: usize,
    /// Bytes per span.
    pub span_bytes: usize,
    /// Spans held.
    pub spans: usize,
    /// Live objects (live tiny blocks for [`TINY`](crate::TINY)).
    pub live_objects: usize,
    /// Bytes callers asked for, over live objects (over the tiny objects in live blocks, for
    /// [`TINY`](crate::TINY)).
    pub live_requested: usize,
    /// Objects free in the class's spans.
    pub free_objects: usize,
    /// Bytes of each span that never hold an object (header, bitmap, tail).
    pub span_overhead: usize,
}

impl ClassStats {
    /// Internal fragmentation: rounding of live objects up to the class size.
    pub fn rounding_waste(&self) -> usize {
        (self.live_objects * self.size).saturating_sub(self.live_requested)
    }
    /// Free objects in the class's spans, in bytes.
    pub fn free_bytes(&self) -> usize {
        self.free_objects * self.size
    }
    /// Headers, bitmaps and tails of the class's spans, in bytes.
    pub fn overhead_bytes(&self) -> usize {
        self.spans * self.span_overhead
    }
}

/// What tiny combining does, from [`Segregated::tiny_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TinyStats {
    /// Live tiny objects.
    pub live_objects: usize,
    /// 16-byte blocks holding them (the current block included).
    pub live_blocks: usize,
    /// Bytes the live tiny objects would hold in their own classes without combining.
    pub unshared_bytes: usize,
}

impl TinyStats {
    /// Bytes saved by combining: unshared bytes minus the blocks' bytes (negative when the
    /// blocks hold fewer objects than they could).
    pub fn bytes_saved(&self) -> isize {
        self.unshared_bytes as isize - (self.live_blocks * TINY_BLOCK) as isize
    }
}

impl<L> Segregated<L> {
    /// The statistics: `stats` with `live_blocks` filled in (the fast paths count allocations
    /// and frees only; every path counts both).
    pub(crate) fn stats_now(&self) -> Stats {
        let mut s = self.stats;
        s.live_blocks = s.allocs.saturating_sub(s.frees) as usize;
        s
    }
}

impl<L: FreeSpaceManager> Segregated<L> {
    /// The waste of class `c` (1-based, or [`TINY`](crate::TINY)).
    pub fn class_stats(&self, c: usize) -> Option<ClassStats> {
        let g = self.geo(c)?;
        let st = &self.classes[c];
        // Live objects are counted per span only (the fast paths keep no class total).
        let mut live = 0;
        let mut count = |s: *mut SpanHeader| {
            // SAFETY: every span in a class's lists is a valid span header.
            live += unsafe { (*s).live } as usize
        };
        SpanList::for_each(st.partial, &mut count);
        SpanList::for_each(st.full, &mut count);
        Some(ClassStats {
            class: c,
            size: g.size as usize,
            span_bytes: g.span_bytes(),
            spans: st.spans as usize,
            live_objects: live,
            live_requested: st.requested,
            free_objects: st.spans as usize * g.objects() - live,
            span_overhead: g.waste(),
        })
    }

    pub(crate) fn sync_footprint(&mut self) {
        self.stats.set_footprint(self.large.stats().footprint);
        self.set_gates();
    }

    /// Counts an allocation of `requested` bytes holding `held` in `stats`: plain adds, and a
    /// call to [`Segregated::raise_peaks`] only when a gate is passed.
    #[inline(always)]
    pub(crate) fn count_alloc(&mut self, requested: usize, held: usize) {
        let st = &mut self.stats;
        // `live_blocks` is `allocs - frees`, filled in by `stats()`.
        st.allocs += 1;
        st.live_requested += requested;
        st.live_held += held;
        if st.live_requested > self.gate_requested || st.live_held > self.gate_held {
            self.raise_peaks();
        }
    }

    /// Counts a free (as `Stats::record_free` does, but for `live_blocks`, which `stats()`
    /// fills in).
    #[inline(always)]
    pub(crate) fn count_free(&mut self, requested: usize, held: usize) {
        let st = &mut self.stats;
        st.frees += 1;
        st.live_requested = st.live_requested.saturating_sub(requested);
        st.live_held = st.live_held.saturating_sub(held);
    }

    /// What `Stats::record_alloc` does to the peaks after adding live bytes, for the fast paths
    /// (which have added them already); then moves the gates.
    #[inline(always)]
    pub(crate) fn raise_peaks(&mut self) {
        let st = &mut self.stats;
        st.peak_live_requested = st.peak_live_requested.max(st.live_requested);
        st.peak_live_held = st.peak_live_held.max(st.live_held);
        if st.footprint == st.peak_footprint {
            st.live_requested_at_peak_footprint =
                st.live_requested_at_peak_footprint.max(st.live_requested);
        }
        self.set_gates();
    }

    /// The live byte counts up to which an allocation changes no peak: `peak_live_held`, and
    /// `peak_live_requested` or, while the footprint is at its peak,
    /// `live_requested_at_peak_footprint` if lower. Peaks only rise, so gates computed earlier
    /// are at most these (they can only call `raise_peaks` needlessly), except when the
    /// footprint changes: [`Segregated::sync_footprint`] calls this.
    pub(crate) fn set_gates(&mut self) {
        let st = &self.stats;
        self.gate_held = st.peak_live_held;
        self.gate_requested = if st.footprint == st.peak_footprint {
            st.peak_live_requested
                .min(st.live_requested_at_peak_footprint)
        } else {
            st.peak_live_requested
        };
    }
}
