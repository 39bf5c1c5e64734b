//! Span geometry: how the spans of one class are laid out (size, header slots or tail header,
//! the reciprocal that turns an offset into a slot), chosen once per class when a table is built.
//!
//! ```text
//!   header in the first slots (header_at = 0):   |hdr+bits| obj | obj | ... | obj |tail|
//!                                                 ^ slots 0..first
//!   header in the tail (first = 0):              | obj | obj | ... | obj |hdr+bits|tail|
//!                                                                        ^ header_at = slots * size
//!   waste = span_bytes - objects * size  (at most 1/8 of the span where any span size allows)
//!
//!   out of band (the offset manager, `crate::offsets`): no header, every slot an object
//!                                                | obj | obj | ... | obj |tail|
//! ```
//!
//! Nothing here touches memory: the choice of span size, the objects a span holds and the slot
//! arithmetic serve both the pointer heap (header and bitmap inside the span) and the offset
//! manager (header and bitmap out of band: [`SpanGeometry::out_of_band`]).

use crate::span::{HEADER_BYTES, SpanHeader, bits_of};

/// The largest alignment a class guarantees (requests aligned more go to the large manager).
pub const MAX_CLASS_ALIGN: usize = 4096;
/// Smallest span (one Go page).
pub const MIN_SPAN_SHIFT: u32 = 13;
/// Largest span.
pub const MAX_SPAN_SHIFT: u32 = 17;

/// How the spans of one class are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanGeometry {
    /// Object size in bytes.
    pub size: u32,
    /// log2 of the span's size (spans are aligned to their size).
    pub span_shift: u8,
    /// Slots at the start of the span taken by the header (and its bitmap).
    pub first: u16,
    /// Object slots in the span (`first` of them hold the header).
    pub slots: u16,
    /// Where the header is: 0 (it takes the first slots) or the tail, after the last slot,
    /// when the tail has room for it.
    pub header_at: u32,
    /// `ceil(2^40 / size)`: turns an offset into a slot without dividing.
    pub(crate) recip: u64,
}

impl SpanGeometry {
    /// Bytes in a span.
    pub const fn span_bytes(&self) -> usize {
        1 << self.span_shift
    }
    /// Objects a span holds.
    pub const fn objects(&self) -> usize {
        (self.slots - self.first) as usize
    }
    /// Bytes of a span that never hold an object: header slots and the tail.
    pub const fn waste(&self) -> usize {
        self.span_bytes() - self.objects() * self.size as usize
    }
    /// Largest alignment every object of the class has: the largest power of two dividing the
    /// size, at most [`MAX_CLASS_ALIGN`].
    pub const fn align(&self) -> usize {
        let a = 1 << (self.size.trailing_zeros() as usize);
        if a > MAX_CLASS_ALIGN {
            MAX_CLASS_ALIGN
        } else {
            a
        }
    }

    /// The alignment asked of the page level for a span: the objects' alignment, at least 16.
    pub const fn span_align(&self) -> usize {
        let a = self.align();
        if a < 16 { 16 } else { a }
    }

    /// The layout of a span of `1 << shift` bytes for objects of `size` bytes whose header
    /// takes `header.fixed` bytes plus `header.per_slot_bits` bits per slot in the span, or
    /// `None` if it holds no object.
    pub(crate) const fn at_shift(
        size: u32,
        header: HeaderCost,
        shift: u32,
    ) -> Option<SpanGeometry> {
        let span = 1usize << shift;
        let slots = span / size as usize;
        let header = header.fixed + (slots * header.per_slot_bits).div_ceil(64) * 8;
        let tail = span - slots * size as usize;
        let (first, header_at) = if tail >= header {
            (0, slots * size as usize)
        } else {
            (header.div_ceil(size as usize), 0)
        };
        if slots <= first {
            return None;
        }
        Some(SpanGeometry {
            size,
            span_shift: shift as u8,
            first: first as u16,
            slots: slots as u16,
            header_at: header_at as u32,
            recip: recip(size),
        })
    }

    /// Waste in parts per million of the span.
    pub(crate) const fn waste_ppm(&self) -> usize {
        self.waste() * 1_000_000 / self.span_bytes()
    }

    /// Picks the span for objects of `size` bytes with a header costing `header` in the span:
    /// the smallest from [`MIN_SPAN_SHIFT`] to [`MAX_SPAN_SHIFT`] whose waste is at most
    /// `1 / waste_den`, else the least wasteful.
    pub(crate) const fn choose(size: u32, header: HeaderCost, waste_den: usize) -> SpanGeometry {
        let mut best = SpanGeometry {
            size,
            span_shift: MAX_SPAN_SHIFT as u8,
            first: 0,
            slots: 0,
            header_at: 0,
            recip: recip(size),
        };
        let mut best_waste_ppm = usize::MAX;
        let mut shift = MIN_SPAN_SHIFT;
        while shift <= MAX_SPAN_SHIFT {
            if let Some(g) = Self::at_shift(size, header, shift) {
                let ppm = g.waste_ppm();
                if ppm * waste_den <= 1_000_000 {
                    return g;
                }
                if ppm < best_waste_ppm {
                    best_waste_ppm = ppm;
                    best = g;
                }
            }
            shift += 1;
        }
        best
    }

    /// The geometry of a class of `size` bytes (a multiple of 8, at most 32 KiB) whose spans
    /// keep their header out of band (the offset manager's): the pointer heap's choice of span
    /// size with a header of 0 bytes, so every slot is an object (`first == 0`) and the waste
    /// is the tail alone.
    pub const fn out_of_band(size: u32) -> SpanGeometry {
        Self::choose(size, HeaderCost::NONE, 8)
    }

    /// The object slot that starts `off` bytes from the span's start, if one does: `off` an
    /// exact multiple of the size, the slot in `first..slots`.
    #[inline]
    pub const fn slot_at(&self, off: usize) -> Option<usize> {
        let slot = slot_of(off, self.recip);
        if starts_slot(off, slot, self.size, self.slots as u32) && slot >= self.first as usize {
            Some(slot)
        } else {
            None
        }
    }
}

/// What a span's header costs inside the span: `fixed` bytes plus `per_slot_bits` bits per
/// slot (rounded up to 8-byte words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderCost {
    pub(crate) fixed: usize,
    pub(crate) per_slot_bits: usize,
}

impl HeaderCost {
    /// No header in the span (kept out of band).
    pub(crate) const NONE: HeaderCost = HeaderCost {
        fixed: 0,
        per_slot_bits: 0,
    };

    /// The pointer heap's span header inside the span, with `per_slot_bits` bits per slot
    /// after it (1 for the allocation bitmap, 16 for the tiny masks).
    pub(crate) const fn in_span(per_slot_bits: usize) -> HeaderCost {
        HeaderCost {
            fixed: HEADER_BYTES,
            per_slot_bits,
        }
    }
}

/// The reciprocal used by [`slot_of`].
pub(crate) const fn recip(size: u32) -> u64 {
    (1u64 << 40).div_ceil(size as u64)
}

/// `off / size` for offsets inside a span, by multiplication: `recip = ceil(2^40 / size)`.
#[inline]
pub(crate) const fn slot_of(off: usize, recip: u64) -> usize {
    ((off as u64 * recip) >> 40) as usize
}

/// Whether `slot` (`slot_of(off, recip)`) is below `slots` and starts exactly `off` bytes into
/// a span of `size`-byte slots: the slot arithmetic of the pointer heap's general path and the
/// offset manager (through [`SpanGeometry::slot_at`]). The checked fast path (`claim`) writes
/// the same two comparisons out: through this call (as an `Option`, a sentinel or this `bool`)
/// it took two more instructions per step under callgrind.
#[inline(always)]
pub(crate) const fn starts_slot(off: usize, slot: usize, size: u32, slots: u32) -> bool {
    slot * size as usize == off && slot < slots as usize
}

/// The start of the span whose header is `s`.
#[inline]
pub(crate) fn base_of(s: *mut SpanHeader, g: &SpanGeometry) -> *mut u8 {
    s.cast::<u8>().wrapping_sub(g.header_at as usize)
}

/// Writes a fresh header (and zeroed bitmap) into `span`; returns the header.
///
/// # Safety
/// `span` is `g.span_bytes()` bytes, aligned to them, ours and unused.
pub(crate) unsafe fn init_span(
    span: *mut u8,
    class: u16,
    g: &SpanGeometry,
    per_slot_bits: usize,
) -> *mut SpanHeader {
    let h = span.wrapping_add(g.header_at as usize).cast::<SpanHeader>();
    // SAFETY: the span is ours; the header and bitmap fit in its first `g.first` slots.
    unsafe {
        h.write(SpanHeader {
            magic: SpanHeader::magic_for(h as usize),
            prev: core::ptr::null_mut(),
            next: core::ptr::null_mut(),
            free: core::ptr::null_mut(),
            class,
            full: false,
            live: 0,
            bump: g.first as u32,
        });
        let words = (g.slots as usize * per_slot_bits).div_ceil(64);
        bits_of(h).cast::<u64>().write_bytes(0, words);
    }
    h
}
