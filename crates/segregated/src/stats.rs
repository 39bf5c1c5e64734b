//! Statistics: the heap's [`Stats`](crate::Stats) (exact on every path: the fast paths count through
//! [`allocator_traits::FastStats`], plain adds and one sign test per allocation), the waste per
//! class ([`ClassStats`]) and what tiny combining saves ([`TinyStats`]).

use allocator_traits::FreeSpaceManager;

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

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
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
    }
}
