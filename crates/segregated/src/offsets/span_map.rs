//! The span map: which span, if any, holds an offset, in O(1), out of band.
//!
//! ```text
//!   offsets from base, in granules of 8 KiB (the smallest span):
//!   granule      0             1             2             3
//!            |-------------|-------------|-------------|-------------|
//!   spans        [== span 4 (16 KiB) ==]      [== span 7 (8 KiB) ==]
//!   entry     covers: NIL   covers: 4     covers: 4     covers: 7
//!             starts: 4     starts: NIL   starts: 7     starts: NIL
//! ```
//!
//! A span is at least one granule long, so at most one span starts inside a granule and at most
//! one covers its first byte: an offset `o` in granule `g` is in `starts[g]` if that span starts
//! at or below `o`, else in `covers[g]` if that span ends above `o`, else in no span (a large
//! range of the page level, or free space). The map is as long as the highest span's last
//! granule needs.

use alloc::vec::Vec;

use super::spans::{NIL, Span};
use crate::geometry::MIN_SPAN_SHIFT;

/// Bytes per entry of the map: the smallest span.
pub(super) const GRANULE: usize = 1 << MIN_SPAN_SHIFT;

/// One granule's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// The span covering the granule's first byte and starting below it, or `NIL`.
    pub(super) covers: u32,
    /// The span starting inside the granule (at its first byte or later), or `NIL`.
    pub(super) starts: u32,
}

const EMPTY: Entry = Entry {
    covers: NIL,
    starts: NIL,
};

/// The map, indexed by `(offset - base) / GRANULE`.
#[derive(Debug, Default)]
pub(super) struct SpanMap {
    pub(super) entries: Vec<Entry>,
}

impl SpanMap {
    /// The granules `start..end` (offsets from the base) touches: the first and the last.
    fn granules(start: usize, end: usize) -> (usize, usize) {
        (start / GRANULE, (end - 1) / GRANULE)
    }

    /// Records span `id` over `start..end` (offsets from the base, `end - start >= GRANULE`).
    pub(super) fn insert(&mut self, id: u32, start: usize, end: usize) {
        let (first, last) = Self::granules(start, end);
        if self.entries.len() <= last {
            self.entries.resize(last + 1, EMPTY);
        }
        self.entries[first].starts = id;
        for e in &mut self.entries[first + 1..=last] {
            e.covers = id;
        }
    }

    /// Erases span `id` over `start..end` (as inserted).
    pub(super) fn remove(&mut self, start: usize, end: usize) {
        let (first, last) = Self::granules(start, end);
        self.entries[first].starts = NIL;
        for e in &mut self.entries[first + 1..=last] {
            e.covers = NIL;
        }
        while self.entries.last() == Some(&EMPTY) {
            self.entries.pop();
        }
    }

    /// The span holding the offset `rel` from the base, if any.
    #[inline]
    pub(super) fn lookup(&self, rel: usize, base: usize, slab: &[Span]) -> Option<u32> {
        let e = *self.entries.get(rel / GRANULE)?;
        let o = base + rel;
        if e.starts != NIL && slab[e.starts as usize].start <= o {
            return Some(e.starts);
        }
        (e.covers != NIL && o < slab[e.covers as usize].end).then_some(e.covers)
    }

    /// Bytes of CPU memory the map holds.
    pub(super) fn bytes(&self) -> usize {
        self.entries.capacity() * core::mem::size_of::<Entry>()
    }
}
