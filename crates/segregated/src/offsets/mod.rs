//! Segregated free lists over offsets: an [`OffsetManager`] for a space the CPU does not own (a
//! GPU buffer, a file, a shared-memory segment), with the size classes and span geometry of the
//! pointer heap [`Segregated`](crate::Segregated).
//!
//! ```text
//!   the space (never touched)
//!   base                                                                              base + len
//!   |== span, class 5 (48 B) ==|== large range ==|.. free ..|== span, class 30 ==|.. free ..| -> grow
//!   |obj|obj|obj|obj|...|obj|tl|                            |obj |obj |obj |...  |
//!    ^ offset = span.start + slot * 48                       (tl: the tail no object fits in)
//!
//!   out of band (CPU memory):
//!     page      the page level L (an OffsetManager; best fit by default) over the whole space:
//!               spans and large ranges are its live ranges
//!     classes   per class: its geometry, partial -> [span] <-> [span], full -> [span] ...
//!     spans     per span: start, class, live count, a bitmap of live slots, slack per slot
//!     map       per 8 KiB granule: the span covering its start, the span starting in it
//! ```
//!
//! * **allocate(size, align)**: the class is the pointer heap's ([`ClassTable::class_for`]): the
//!   smallest class at least `size` bytes (size 0: the smallest class) whose objects are aligned
//!   to `align`. A span of a class is `span_bytes` taken from the page level aligned to the
//!   class's alignment ([`SpanGeometry::span_align`]), so every object's offset is aligned
//!   absolutely. The class's first partial span gives its lowest free slot. Requests above the
//!   largest class or aligned to more than 4 KiB go to the page level, and so does a class
//!   request when the page level has no room for a new span (it may still have room for the
//!   request alone).
//! * **free(offset)**: the map gives the span holding the offset; the slot arithmetic (the
//!   geometry's, shared with the pointer heap) and the slot's bit say whether a live object
//!   starts there. An offset in no span is a large range if the page level holds one there.
//!   Outside the space: [`FreeError::Foreign`]; in a span but not at a slot: `NotABlock`; at a
//!   free slot: `DoubleFree`; elsewhere where the page level has no live range: `NotABlock`.
//!   Nothing but `bad_frees` changes.
//! * **Empty spans** go back to the page level, except that each class keeps up to
//!   `keep_empty` of them (as [`Config::keep_empty`](crate::Config::keep_empty) in the pointer
//!   heap). Kept spans are a cache, never a reason to refuse: when the page level refuses a
//!   request they are all given back and the request is tried again, and they are given back
//!   when no object of any class is live, so that a manager holding nothing is a fresh one.
//! * **Geometry.** There is no header in the space: a span holds `span_bytes / size` objects
//!   and the rest is its tail ([`SpanGeometry::out_of_band`]: the pointer heap's choice of span
//!   size, with a header of 0 bytes).
//! * **Stats.** Exact: each object's slack (class size minus the bytes asked) is kept per slot;
//!   a large range's bytes asked are read from the page level's counters when it is freed.
//!   `footprint` is the page level's: the end of the highest span or large range it holds for
//!   this manager, minus `base` (a span counts whole, free slots included, as do kept empty
//!   spans): how much of the space the manager needs.
//!
//! Costs: an allocation or free of a class object is O(1) (a table lookup, a list head, a scan
//! of at most 16 bitmap words from a hint, a map entry); a new or released span costs one page
//! level operation. CPU memory: about 184 bytes per span plus 2 bytes per slot, and 8 bytes per
//! 8 KiB of the space up to the highest span.
//!
//! ```
//! use allocator_traits::OffsetManager;
//! use segregated::offsets::SegregatedOffsets;
//!
//! // A 256 MiB GPU heap from offset 0: Go's classes over best fit.
//! let mut heap = SegregatedOffsets::new(0..256 << 20).unwrap();
//! let a = heap.allocate(40, 8).unwrap(); // class 48: the lowest slot of a fresh span
//! let b = heap.allocate(40, 8).unwrap();
//! assert_eq!(b, a + 48);
//! assert_eq!(heap.held(a), Some(48));
//! let big = heap.allocate(1 << 20, 4096).unwrap(); // above every class: the page level
//! heap.free(a).unwrap();
//! assert!(heap.free(a).is_err()); // a double free is refused and named
//! # let _ = big;
//! ```

mod check;
mod inspect;
mod span_map;
mod spans;

use alloc::vec::Vec;
use core::ops::Range;

pub use allocator_traits::OffsetManager;
use allocator_traits::{AllocError, Corruption, Detects, FreeError, Inspector, Stats};
use fit::offsets::FitOffsets;

use crate::classes::{ClassTable, GO};
use crate::geometry::SpanGeometry;
use span_map::SpanMap;
use spans::{MAX_OBJECTS, NIL, Spans};

/// Why a [`SegregatedOffsets`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetsError {
    /// The default page level refused the range (it ends before it starts, or is too long).
    PageLevel(fit::offsets::UnsupportedConfig),
    /// The page level given already holds live ranges.
    PageLevelInUse,
    /// A class of the table would have more objects per span than a span's bitmap holds.
    TooManyObjects {
        /// The class size.
        size: usize,
    },
}

impl core::fmt::Display for OffsetsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OffsetsError::PageLevel(e) => write!(f, "segregated offsets: the page level: {e}"),
            OffsetsError::PageLevelInUse => {
                f.write_str("segregated offsets: the page level must hold no live range")
            }
            OffsetsError::TooManyObjects { size } => write!(
                f,
                "segregated offsets: class {size} has more than {MAX_OBJECTS} objects per span"
            ),
        }
    }
}

impl core::error::Error for OffsetsError {}

/// The granule of the default page level: large requests are rounded up to 16 bytes.
pub const PAGE_GRANULE: usize = 16;

/// One class's lists and counters.
#[derive(Debug, Clone)]
struct Class {
    /// The class's out-of-band span geometry (`first == 0`: every slot is an object).
    geo: SpanGeometry,
    /// Spans with a free slot (`live < objects`, `full` clear), by id; allocation takes the head.
    partial: u32,
    /// Spans whose slots are all live (`live == objects`, `full` set).
    full: u32,
    /// Spans in both lists.
    spans: u32,
    /// Spans in the partial list with no live slot (`<= keep_empty` between operations, unless
    /// nothing at all is live, when there are none).
    empty: u32,
}

/// Segregated free lists over the offsets `base..base+len` of a space it never touches, with
/// spans and large ranges from the page level `L` (see the [module docs](self)).
#[derive(Debug)]
pub struct SegregatedOffsets<L = FitOffsets> {
    /// The page level: spans and large ranges are its live ranges. Its range is ours.
    page: L,
    table: &'static ClassTable,
    /// Empty spans each class keeps.
    keep_empty: u32,
    /// `classes[c]` for the table's classes `1..=table.len()` (`classes[0]` unused).
    classes: Vec<Class>,
    /// Every span of every class (`spans.slab[id].class == c` iff `id` is in one of class `c`'s
    /// lists).
    spans: Spans,
    /// The span holding each offset: every span's granules, and nothing else.
    map: SpanMap,
    /// Live objects over all classes (the sum of the spans' `live`).
    small_live: usize,
    /// The counters: small objects and large ranges; `footprint` is the page level's.
    stats: Stats,
}

impl SegregatedOffsets {
    /// Go's classes, each class keeping one empty span, over best fit ([`FitOffsets`] with
    /// 16-byte granules) of `range`.
    pub fn new(range: Range<usize>) -> Result<Self, OffsetsError> {
        Self::with_table(range, &GO, 1)
    }

    /// `table`'s classes, each keeping up to `keep_empty` empty spans, over best fit of `range`.
    pub fn with_table(
        range: Range<usize>,
        table: &'static ClassTable,
        keep_empty: u32,
    ) -> Result<Self, OffsetsError> {
        let page = FitOffsets::new(range, fit::Config::best_fit(), PAGE_GRANULE)
            .map_err(OffsetsError::PageLevel)?;
        Self::with_page_level(page, table, keep_empty)
    }
}

impl<L: OffsetManager> SegregatedOffsets<L> {
    /// `table`'s classes, each keeping up to `keep_empty` empty spans, over the page level
    /// `page` (any offset manager holding no live range; its range is the manager's).
    pub fn with_page_level(
        page: L,
        table: &'static ClassTable,
        keep_empty: u32,
    ) -> Result<Self, OffsetsError> {
        if page.stats().live_blocks != 0 {
            return Err(OffsetsError::PageLevelInUse);
        }
        let mut classes = Vec::with_capacity(table.len() + 1);
        for c in 0..=table.len() {
            let geo = SpanGeometry::out_of_band(table.size(c).max(8) as u32);
            if c > 0 && geo.objects() > MAX_OBJECTS {
                return Err(OffsetsError::TooManyObjects {
                    size: table.size(c),
                });
            }
            classes.push(Class {
                geo,
                partial: NIL,
                full: NIL,
                spans: 0,
                empty: 0,
            });
        }
        Ok(SegregatedOffsets {
            page,
            table,
            keep_empty,
            classes,
            spans: Spans::default(),
            map: SpanMap::default(),
            small_live: 0,
            stats: Stats::new(),
        })
    }

    /// The class table.
    pub fn table(&self) -> &'static ClassTable {
        self.table
    }

    /// Empty spans each class keeps.
    pub fn keep_empty(&self) -> u32 {
        self.keep_empty
    }

    /// The page level.
    pub fn page_level(&self) -> &L {
        &self.page
    }

    /// The span geometry of class `c` (1-based) over offsets, or `None` outside the table.
    pub fn geometry(&self, c: usize) -> Option<SpanGeometry> {
        (1..=self.table.len())
            .contains(&c)
            .then(|| self.classes[c].geo)
    }

    /// Spans held now, over all classes.
    pub fn span_count(&self) -> usize {
        self.spans.slab.len() - self.spans.vacant.len()
    }

    /// Bytes of CPU memory of the span records, their slack and the map.
    pub fn metadata_bytes(&self) -> usize {
        let slab = self.spans.slab.capacity() * core::mem::size_of::<spans::Span>();
        let slack: usize = self.spans.slab.iter().map(|s| s.slack.capacity() * 2).sum();
        slab + slack + self.spans.vacant.capacity() * 4 + self.map.bytes()
    }

    /// Gives back every kept empty span; the number given back.
    pub fn release_empty_spans(&mut self) -> usize {
        let mut n = 0;
        for c in 1..self.classes.len() {
            let mut id = self.classes[c].partial;
            while id != NIL && self.classes[c].empty > 0 {
                let s = &self.spans.slab[id as usize];
                let next = s.next;
                if s.live == 0 {
                    self.release_span(c, id);
                    n += 1;
                }
                id = next;
            }
        }
        if n > 0 {
            self.stats.set_footprint(self.page.stats().footprint);
        }
        n
    }

    /// Allocates from the page level, giving back the kept empty spans and trying again when it
    /// refuses.
    fn page_allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        match self.page.allocate(size, align) {
            Err(AllocError::OutOfMemory { .. }) if self.release_empty_spans() > 0 => {
                self.page.allocate(size, align)
            }
            r => r,
        }
    }

    /// A fresh span of class `c` at the head of its partial list (counted as empty), or `None`
    /// if the page level has no room for it.
    fn new_span(&mut self, c: usize) -> Option<u32> {
        let g = self.classes[c].geo;
        let start = self.page_allocate(g.span_bytes(), g.span_align()).ok()?;
        let end = start + g.span_bytes();
        let id = self.spans.add(c as u16, start, end, g.objects());
        let base = self.page.range().start;
        self.map.insert(id, start - base, end - base);
        let class = &mut self.classes[c];
        self.spans.push(&mut class.partial, id);
        class.spans += 1;
        class.empty += 1;
        Some(id)
    }

    /// Gives the empty span `id` of class `c` (in its partial list, counted as empty) back to
    /// the page level.
    fn release_span(&mut self, c: usize, id: u32) {
        let (start, end) = {
            let s = &self.spans.slab[id as usize];
            (s.start, s.end)
        };
        let class = &mut self.classes[c];
        self.spans.unlink(&mut class.partial, id);
        class.spans -= 1;
        class.empty -= 1;
        let base = self.page.range().start;
        self.map.remove(start - base, end - base);
        self.spans.remove(id);
        let freed = self.page.free(start);
        debug_assert!(freed.is_ok(), "a span is a live range of the page level");
    }

    /// An object of class `c` for `size` bytes, or `None` if there is no span with room and the
    /// page level has no room for a new one.
    fn allocate_small(&mut self, c: usize, size: usize) -> Option<usize> {
        let mut id = self.classes[c].partial;
        if id == NIL {
            id = self.new_span(c)?;
            self.stats.set_footprint(self.page.stats().footprint);
        }
        let class = &mut self.classes[c];
        let held = class.geo.size as usize;
        let objects = class.geo.objects();
        let s = &mut self.spans.slab[id as usize];
        if s.live == 0 {
            class.empty -= 1;
        }
        let slot = s.take_lowest();
        s.slack[slot] = (held - size) as u16;
        let offset = s.start + slot * held;
        if s.live as usize == objects {
            s.full = true;
            self.spans.unlink(&mut class.partial, id);
            self.spans.push(&mut class.full, id);
        }
        self.small_live += 1;
        self.stats.record_alloc(size, held);
        Some(offset)
    }

    /// A large range (or a class request the spans could not place) from the page level.
    fn allocate_large(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        let offset = self.page_allocate(size, align)?;
        let held = self.page.held(offset).unwrap_or(size);
        self.stats.record_alloc(size, held);
        self.stats.set_footprint(self.page.stats().footprint);
        Ok(offset)
    }

    /// Frees the object at `offset` in span `id`, or names why it is not a live object.
    fn free_small(&mut self, id: u32, offset: usize) -> Result<(), FreeError> {
        let s = &self.spans.slab[id as usize];
        let c = s.class as usize;
        let g = self.classes[c].geo;
        let slot = g
            .slot_at(offset - s.start)
            .ok_or(FreeError::NotABlock { ptr: offset })?;
        if !s.is_live(slot) {
            return Err(FreeError::DoubleFree { ptr: offset });
        }
        let held = g.size as usize;
        let s = &mut self.spans.slab[id as usize];
        s.release(slot);
        let (live, full) = (s.live, s.full);
        self.stats.record_free(held - s.slack[slot] as usize, held);
        self.small_live -= 1;
        let class = &mut self.classes[c];
        if full {
            self.spans.unlink(&mut class.full, id);
            self.spans.push(&mut class.partial, id);
            self.spans.slab[id as usize].full = false;
        }
        if live == 0 {
            class.empty += 1;
            if class.empty > self.keep_empty {
                self.release_span(c, id);
                self.stats.set_footprint(self.page.stats().footprint);
            }
            if self.small_live == 0 {
                self.release_empty_spans();
            }
        }
        Ok(())
    }

    /// Frees the large range at `offset` (in no span), or names why it is not one.
    fn free_large(&mut self, offset: usize) -> Result<(), FreeError> {
        let held = self
            .page
            .held(offset)
            .ok_or(FreeError::NotABlock { ptr: offset })?;
        let before = self.page.stats().live_requested;
        self.page.free(offset)?;
        let after = self.page.stats();
        self.stats.record_free(before - after.live_requested, held);
        self.stats.set_footprint(after.footprint);
        Ok(())
    }

    /// The span holding `offset`, if any.
    #[inline]
    fn span_at(&self, offset: usize) -> Option<u32> {
        let base = self.page.range().start;
        self.map
            .lookup(offset.wrapping_sub(base), base, &self.spans.slab)
    }
}

impl<L: OffsetManager> OffsetManager for SegregatedOffsets<L> {
    fn allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        if !align.is_power_of_two() {
            self.stats.record_failure();
            return Err(AllocError::Unsupported {
                size,
                align,
                reason: "the alignment is not a power of two",
            });
        }
        let c = self.table.class_for(size, align);
        if c != 0
            && let Some(offset) = self.allocate_small(c, size)
        {
            return Ok(offset);
        }
        self.allocate_large(size, align).inspect_err(|_| {
            self.stats.record_failure();
        })
    }

    fn free(&mut self, offset: usize) -> Result<(), FreeError> {
        let r = if !self.page.range().contains(&offset) {
            Err(FreeError::Foreign { ptr: offset })
        } else if let Some(id) = self.span_at(offset) {
            self.free_small(id, offset)
        } else {
            self.free_large(offset)
        };
        if r.is_err() {
            self.stats.record_bad_free();
        }
        r
    }

    fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
        self.page.grow(additional)
    }

    fn range(&self) -> Range<usize> {
        self.page.range()
    }

    fn held(&self, offset: usize) -> Option<usize> {
        match self.span_at(offset) {
            Some(id) => {
                let s = &self.spans.slab[id as usize];
                let g = &self.classes[s.class as usize].geo;
                let slot = g.slot_at(offset - s.start)?;
                s.is_live(slot).then_some(g.size as usize)
            }
            None => self.page.held(offset),
        }
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        self.show(out);
    }

    fn check_invariants(&self) -> Result<(), Corruption> {
        self.walk()
    }

    /// Every bad offset: outside the space (`Foreign`), at a free slot of a span
    /// (`DoubleFree`: freed already or never handed out), anywhere else where no live object or
    /// large range starts (`NotABlock`), provided the page level tells its live ranges apart
    /// (as [`FitOffsets`] does).
    fn detects(&self) -> Detects {
        let page = self.page.detects();
        Detects {
            foreign: true,
            double_free: page.double_free,
            double_free_above: 0,
            layout_mismatch: false,
        }
    }
}
