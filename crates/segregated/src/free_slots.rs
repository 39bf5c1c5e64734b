//! A span's free list read as a set of slots, for the invariant walk and `inspect()`: which of
//! the slots handed out (`first..bump`) are free. A slot handed out and not in the set is live;
//! the allocation bitmap, which a checked heap keeps, must say the same.
//!
//! ```text
//!   span:   |hdr| s2 | s3 | s4 | s5 | s6 |  never handed out (bump = 7) ...
//!   free:   s5 -> s3 -> null                 set {3, 5}, count 2: live = 7 - 2 - 2 = 3
//! ```
//!
//! Reading the list stops at the first link that is not a free slot of the span (outside it,
//! off an object boundary, never handed out, or already seen: a cycle), so a corrupt list can
//! neither run away nor be read past the span.

use crate::geometry::slot_of;
use crate::geometry::{MAX_SPAN_SHIFT, SpanGeometry, base_of};
use crate::span::SpanHeader;

/// The most slots a span has: the largest span of the smallest objects (8 bytes).
const MAX_SLOTS: usize = (1 << MAX_SPAN_SHIFT) / 8;

/// The free slots of one span.
pub(crate) struct FreeSlots {
    bits: [u64; MAX_SLOTS / 64],
    /// Slots in the set.
    pub(crate) count: usize,
}

/// Why a span's free list is not a set of free slots: the link at fault and what is wrong.
pub(crate) type BadLink = (usize, &'static str);

impl FreeSlots {
    /// Whether `slot` is on the free list.
    pub(crate) fn has(&self, slot: usize) -> bool {
        slot < MAX_SLOTS && self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Reads the free list of span `s` (geometry `g`).
    ///
    /// # Safety
    /// `s` is a span header of geometry `g` with `first <= bump <= slots` (a live span whose
    /// header the caller has checked).
    pub(crate) unsafe fn read(s: *mut SpanHeader, g: &SpanGeometry) -> Result<FreeSlots, BadLink> {
        let mut set = FreeSlots {
            bits: [0; MAX_SLOTS / 64],
            count: 0,
        };
        let base = base_of(s, g);
        // SAFETY: a checked span header (caller).
        let (mut o, bump) = unsafe { ((*s).free, (*s).bump as usize) };
        while !o.is_null() {
            let off = (o as usize).wrapping_sub(base as usize);
            let slot = slot_of(off, g.recip);
            if off >= g.span_bytes() || slot * g.size as usize != off {
                return Err((
                    o as usize,
                    "a free object is not at an object boundary inside its span",
                ));
            }
            if !(g.first as usize..bump).contains(&slot) {
                return Err((o as usize, "a free object was never handed out"));
            }
            if set.has(slot) {
                return Err((
                    o as usize,
                    "an object is on the free list twice (or the list has a cycle)",
                ));
            }
            set.bits[slot / 64] |= 1 << (slot % 64);
            set.count += 1;
            // SAFETY: `o` is a free slot of this span (checked above): its first word is the
            // link, written by the heap. Read through the span's pointer.
            o = unsafe { base.wrapping_add(off).cast::<*mut u8>().read() };
        }
        Ok(set)
    }
}
