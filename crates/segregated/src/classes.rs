//! Size classes: the table, the O(1) lookup, and the geometry of each class's spans.
//!
//! ```text
//!   request size s (align <= 8)
//!     s <= 1024:  class = index8[(s + 7) >> 3]             (129 entries, one per 8 bytes)
//!     s <= max:   class = index128[(s - 1024 + 127) >> 7]  (one per 128 bytes)
//!     s >  max:   no class: the large manager serves it
//!
//!   class  size   span    objects  header slots
//!       1     8   8 KiB      1002    22  (header + allocation bitmap in the first slots)
//!       5    48   8 KiB       168     2
//!      61 19072 128 KiB         6     0  (header in the tail, which has room for it)
//!      67 32768 128 KiB         3     1
//! ```
//!
//! The default table is the Go runtime's (`src/runtime/sizeclasses.go`, Go 1.16 and later:
//! `class_to_size`, 67 classes from 8 B to 32 KiB plus class 0 for "large"; checked against
//! published copies of that file). The two-level index is the one Go and tcmalloc use. A table
//! must have sizes that are strictly increasing multiples of 8 up to 1024 and of 128 above, so
//! that the index gives the smallest class that fits.
//!
//! Spans are our own choice (Go's page counts are not kept): a class's span is the smallest power
//! of two from 8 KiB to 128 KiB whose waste (header slots plus tail) is at most 1/8, or the least
//! wasteful one. A span is aligned to its objects' alignment (at most 4 KiB) and found through
//! the page map, so the page level may put it anywhere.

use crate::geometry::HeaderCost;
pub use crate::geometry::{MAX_CLASS_ALIGN, MAX_SPAN_SHIFT, MIN_SPAN_SHIFT, SpanGeometry};
use crate::span::TINY_BLOCK;

/// The largest number of classes a table may have (class 0 excluded).
pub const MAX_CLASSES: usize = 120;
/// The largest class size a table may have.
pub const MAX_SMALL: usize = 32 * 1024;

/// Entries of the first-level index: one per 8 bytes up to 1024.
pub(crate) const INDEX8: usize = 1024 / 8 + 1;
const INDEX128: usize = (MAX_SMALL - 1024).div_ceil(128) + 1;

/// Go's size classes (Go 1.16+ `class_to_size` without class 0).
pub const GO_SIZES: [u32; 67] = [
    8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352,
    384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048,
    2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728,
    10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672,
    32768,
];

/// The default table: Go's classes.
pub static GO: ClassTable = match ClassTable::new(&GO_SIZES) {
    Ok(t) => t,
    Err(_) => panic!("Go's size classes are a valid table"),
};

/// Why a list of sizes is not a usable table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// No sizes, or more than [`MAX_CLASSES`].
    Count,
    /// Sizes must increase strictly.
    NotIncreasing,
    /// A size up to 1024 that is not a multiple of 8, or above 1024 and not a multiple of 128.
    NotAligned,
    /// A size above [`MAX_SMALL`].
    TooLarge,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TableError::Count => "a table needs between 1 and 120 sizes",
            TableError::NotIncreasing => "sizes must increase strictly",
            TableError::NotAligned => "sizes must be multiples of 8 up to 1024 and of 128 above",
            TableError::TooLarge => "sizes must be at most 32 KiB",
        })
    }
}

/// A table of size classes with its O(1) index and span geometry. Class 0 means "no class".
#[derive(Debug, Clone)]
pub struct ClassTable {
    geo: [SpanGeometry; MAX_CLASSES + 1],
    count: usize,
    pub(crate) index8: [u8; INDEX8],
    index128: [u8; INDEX128],
    tiny: SpanGeometry,
}

impl ClassTable {
    /// A table of the given class sizes (see the module docs for the rules).
    pub const fn new(sizes: &[u32]) -> Result<ClassTable, TableError> {
        if sizes.is_empty() || sizes.len() > MAX_CLASSES {
            return Err(TableError::Count);
        }
        let empty = SpanGeometry {
            size: 0,
            span_shift: 0,
            first: 0,
            slots: 0,
            header_at: 0,
            recip: 0,
        };
        let mut t = ClassTable {
            geo: [empty; MAX_CLASSES + 1],
            count: sizes.len(),
            index8: [0; INDEX8],
            index128: [0; INDEX128],
            // 16 mask bits per block cost 1/8 of a tiny span by themselves: allow 1/7.
            tiny: SpanGeometry::choose(TINY_BLOCK as u32, HeaderCost::in_span(16), 7),
        };
        let mut i = 0;
        let mut prev = 0;
        while i < sizes.len() {
            let s = sizes[i];
            if s <= prev {
                return Err(TableError::NotIncreasing);
            }
            if s as usize > MAX_SMALL {
                return Err(TableError::TooLarge);
            }
            if (s <= 1024 && !s.is_multiple_of(8)) || (s > 1024 && !s.is_multiple_of(128)) {
                return Err(TableError::NotAligned);
            }
            t.geo[i + 1] = SpanGeometry::choose(s, HeaderCost::in_span(1), 8);
            prev = s;
            i += 1;
        }
        // Fill the index: every size maps to the first class at least as large.
        let mut c = 1;
        let mut j = 0;
        while j < INDEX8 {
            let s = j * 8;
            while c <= t.count && (t.geo[c].size as usize) < s {
                c += 1;
            }
            t.index8[j] = if c <= t.count { c as u8 } else { 0 };
            j += 1;
        }
        let mut j = 0;
        while j < INDEX128 {
            let s = 1024 + j * 128;
            while c <= t.count && (t.geo[c].size as usize) < s {
                c += 1;
            }
            t.index128[j] = if c <= t.count { c as u8 } else { 0 };
            j += 1;
        }
        Ok(t)
    }

    /// Number of classes (class 0 excluded).
    pub const fn len(&self) -> usize {
        self.count
    }

    /// True if the table has no classes (never, for a table built by [`ClassTable::new`]).
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The largest class size.
    pub const fn max_size(&self) -> usize {
        self.geo[self.count].size as usize
    }

    /// Object size of class `c` (1-based), 0 for class 0 or out of range.
    pub const fn size(&self, c: usize) -> usize {
        if c <= self.count {
            self.geo[c].size as usize
        } else {
            0
        }
    }

    /// The span geometry of class `c` (1-based).
    pub const fn geometry(&self, c: usize) -> Option<SpanGeometry> {
        if c >= 1 && c <= self.count {
            Some(self.geo[c])
        } else {
            None
        }
    }

    /// The span geometry of the tiny blocks (16-byte blocks shared by tiny objects).
    pub const fn tiny_geometry(&self) -> SpanGeometry {
        self.tiny
    }

    /// The class for `size` bytes at alignment <= 8 in O(1), or 0 if larger than every class.
    #[inline]
    pub const fn class_of(&self, size: usize) -> usize {
        if size <= 1024 {
            self.index8[(size + 7) >> 3] as usize
        } else if size <= MAX_SMALL {
            self.index128[(size - 1024).div_ceil(128)] as usize
        } else {
            0
        }
    }

    /// The class for a request of `size` bytes aligned to `align`: the [`class_of`] its size,
    /// moved up to the first class whose objects are aligned enough (only for `align > 8`).
    /// 0 when no class serves it.
    ///
    /// [`class_of`]: Self::class_of
    #[inline]
    pub const fn class_for(&self, size: usize, align: usize) -> usize {
        let mut c = self.class_of(size);
        if align > 8 && c != 0 {
            while c <= self.count && self.geo[c].align() < align {
                c += 1;
            }
            if c > self.count {
                c = 0;
            }
        }
        c
    }

    /// The runs `(from, to, rounded)` of request sizes (alignment <= 8) that round to the same
    /// class, from 1 up to the largest class: what `fsm classes --policy segregated` prints.
    pub fn runs(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (1..=self.count).map(move |c| {
            let from = if c == 1 { 1 } else { self.size(c - 1) + 1 };
            (from, self.size(c), self.size(c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::HEADER_BYTES;

    #[test]
    fn go_table_lookup_gives_the_smallest_fitting_class() {
        assert_eq!(GO.len(), 67);
        assert_eq!(GO.max_size(), 32768);
        for s in 0..=MAX_SMALL {
            let c = GO.class_of(s);
            assert!(c >= 1, "size {s}");
            assert!(GO.size(c) >= s, "size {s} -> class {c}");
            assert!(
                c == 1 || GO.size(c - 1) < s.max(1),
                "size {s} -> class {c} not smallest"
            );
        }
        assert_eq!(GO.class_of(MAX_SMALL + 1), 0);
        assert_eq!(GO.size(GO.class_of(40)), 48);
        assert_eq!(GO.size(GO.class_of(1025)), 1152);
    }

    #[test]
    fn aligned_requests_move_to_aligned_classes() {
        assert_eq!(GO.size(GO.class_for(24, 16)), 32);
        assert_eq!(GO.size(GO.class_for(100, 64)), 128);
        assert_eq!(GO.size(GO.class_for(1, 4096)), 4096);
        assert_eq!(GO.class_for(1, 1 << 13), 0, "above MAX_CLASS_ALIGN");
    }

    /// The docs' promise: a class's span is the smallest power of two from 8 to 128 KiB that
    /// wastes at most 1/8, or, where none does, the least wasteful; three classes are above 1/8
    /// (19072: 12.7 % in 64 KiB spans of 3, 27264: 16.8 % in 32 KiB spans of 1, 32768: 25 % in
    /// 128 KiB spans of 3).
    #[test]
    fn spans_waste_at_most_an_eighth_where_possible() {
        use crate::geometry::{MAX_SPAN_SHIFT, MIN_SPAN_SHIFT};
        let mut above = Vec::new();
        for c in 1..=GO.len() {
            let g = GO.geometry(c).unwrap();
            assert!(g.objects() >= 1);
            let header_room = if g.first > 0 {
                g.first as usize * g.size as usize
            } else {
                g.span_bytes() - g.header_at as usize
            };
            assert!(header_room >= HEADER_BYTES + (g.slots as usize).div_ceil(64) * 8);
            let others = (MIN_SPAN_SHIFT..=MAX_SPAN_SHIFT)
                .filter_map(|s| SpanGeometry::at_shift(g.size, HeaderCost::in_span(1), s))
                .collect::<Vec<_>>();
            if g.waste_ppm() * 8 <= 1_000_000 {
                // No smaller span would do.
                for o in others.iter().filter(|o| o.span_shift < g.span_shift) {
                    assert!(o.waste_ppm() * 8 > 1_000_000, "class {c}: {o:?} would do");
                }
            } else {
                above.push(g.size);
                for o in &others {
                    assert!(
                        o.waste_ppm() * 8 > 1_000_000,
                        "class {c}: {o:?} wastes <= 1/8"
                    );
                    assert!(
                        o.waste_ppm() >= g.waste_ppm(),
                        "class {c}: {o:?} wastes less"
                    );
                }
            }
        }
        // Three classes cannot get under 1/8 with spans up to 128 KiB: their least wasteful
        // spans (the smallest of equal waste) hold 3, 1 and 3 objects.
        assert_eq!(above, [19072, 27264, 32768]);
        let waste = |size| {
            let g = GO.geometry(GO.class_of(size)).unwrap();
            (g.span_bytes(), g.objects(), g.waste_ppm())
        };
        assert_eq!(waste(19072), (64 << 10, 3, 126_953));
        assert_eq!(waste(27264), (32 << 10, 1, 167_968));
        assert_eq!(waste(32768), (128 << 10, 3, 250_000));
        let t = GO.tiny_geometry();
        assert_eq!(t.size, 16);
        assert!(t.objects() > 400);
        // Tiny spans carry 16 mask bits per block (1/8 of the span by themselves): 1/7.
        assert!(t.waste_ppm() * 7 <= 1_000_000, "{t:?}");
    }

    #[test]
    fn runs_cover_every_size_once() {
        let mut next = 1;
        for (from, to, rounded) in GO.runs() {
            assert_eq!(from, next);
            assert_eq!(to, rounded);
            next = to + 1;
        }
        assert_eq!(next, 32769);
    }

    #[test]
    fn bad_tables_are_refused() {
        assert_eq!(ClassTable::new(&[]).err(), Some(TableError::Count));
        assert_eq!(
            ClassTable::new(&[16, 8]).err(),
            Some(TableError::NotIncreasing)
        );
        assert_eq!(ClassTable::new(&[12]).err(), Some(TableError::NotAligned));
        assert_eq!(
            ClassTable::new(&[8, 1100]).err(),
            Some(TableError::NotAligned)
        );
        assert_eq!(
            ClassTable::new(&[8, 65536]).err(),
            Some(TableError::TooLarge)
        );
        let t = ClassTable::new(&[16, 64, 256]).unwrap();
        assert_eq!(t.size(t.class_of(17)), 64);
        assert_eq!(t.class_of(257), 0);
    }
}
