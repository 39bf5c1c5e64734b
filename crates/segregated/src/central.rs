//! A class's central state (Go's `mcentral`): its span lists and counters, and a copy of its span
//! geometry, in one 64-byte line that the fast paths read.
//!
//! ```text
//!   classes[c]:  partial -> [span]<->[span]<->...   every span with a free object
//!                full    -> [span]<->...             every span whose objects are all live
//!                spans = |partial| + |full|, empty = spans in partial with no live object
//!                size, recip, header_at, objects, slots, span_bytes: SpanGeometry of class c
//! ```

use crate::geometry::SpanGeometry;
use crate::span::SpanHeader;

/// Per-class state: the class's span lists and counters, and a copy of its span geometry, so
/// that the fast paths read one cache line per class.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct ClassState {
    /// Spans of this class with a free object (`live < objects`, `full` flag clear), doubly
    /// linked; allocation takes from the head.
    pub(crate) partial: *mut SpanHeader,
    /// Spans of this class with every object live (`live == objects`, `full` flag set).
    pub(crate) full: *mut SpanHeader,
    /// Bytes asked for by the class's live objects.
    pub(crate) requested: usize,
    /// `SpanGeometry::recip`.
    pub(crate) recip: u64,
    /// Spans in the partial list with `live == 0`.
    pub(crate) empty: u32,
    /// Spans in both lists.
    pub(crate) spans: u32,
    /// `SpanGeometry::size`.
    pub(crate) size: u32,
    /// `SpanGeometry::header_at`.
    pub(crate) header_at: u32,
    /// `SpanGeometry::objects()`.
    pub(crate) objects: u32,
    /// `SpanGeometry::slots`.
    pub(crate) slots: u32,
    /// `SpanGeometry::span_bytes()`.
    pub(crate) span_bytes: u32,
}

impl ClassState {
    pub(crate) const EMPTY: ClassState = ClassState {
        partial: core::ptr::null_mut(),
        full: core::ptr::null_mut(),
        requested: 0,
        recip: 0,
        empty: 0,
        spans: 0,
        size: 0,
        header_at: 0,
        objects: 0,
        slots: 0,
        span_bytes: 0,
    };

    /// An empty class whose spans have geometry `g`.
    pub(crate) const fn with_geometry(g: &SpanGeometry) -> ClassState {
        ClassState {
            recip: g.recip,
            size: g.size,
            header_at: g.header_at,
            objects: g.objects() as u32,
            slots: g.slots as u32,
            span_bytes: g.span_bytes() as u32,
            ..ClassState::EMPTY
        }
    }
}

// The fast paths read one line per class.
const _: () = assert!(core::mem::size_of::<ClassState>() == 64);
