//! Size classes: which rounded size serves a request, how many pages a class's span has, and how
//! many objects move between the caches at once.
//!
//! The table is computed (at compile time, by a `const fn`) the way gperftools 2.10 computes it at
//! start-up in `SizeMap::Init`:
//!
//! ```text
//!   size = 8; while size <= 256 KiB:
//!     alignment(size) = 8 below 16, 16 below 128, else 2^floor(log2 size) / 8   (<= 12.5% waste)
//!     batch(size)     = clamp(64 KiB / size, 2, 32)                     (NumMoveSize)
//!     pages: start at one 8 KiB page; add pages while the tail left over is > 1/8 of the span;
//!            repeat until the span holds at least batch/4 objects
//!     if pages == previous class's pages and the span holds as many objects as the previous
//!        class's span: widen the previous class to `size`     (merging of equal classes)
//!     else: a new class
//!     size += alignment(size)
//! ```
//!
//! That yields 85 classes (plus class 0, "no class": a large allocation of whole pages).
//!
//! Lookup is O(1) through one byte array indexed two ways:
//!
//! ```text
//!   size <= 1024:  index = (size + 7) >> 3                  one slot per 8 bytes
//!   size  > 1024:  index = (size + 127 + 120*128) >> 7       one slot per 128 bytes
//!   class_array[index] -> class
//! ```

use core::alloc::Layout;

/// log2 of the page size.
pub const PAGE_SHIFT: usize = 13;
/// The page size: 8 KiB.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// The largest size served from a size class; larger requests get whole pages.
pub const MAX_SIZE: usize = 256 * 1024;
/// The smallest alignment step of class sizes.
pub const ALIGNMENT: usize = 8;
/// Objects of 16 bytes or more are at least 16-byte aligned (gperftools' `kMinAlign`).
pub const MIN_ALIGN: usize = 16;
/// Sizes up to this use the 8-byte-granular part of the class array.
pub const MAX_SMALL_SIZE: usize = 1024;
/// Number of classes including class 0 (large objects).
pub const NUM_CLASSES: usize = 86;
/// Upper bound on the batch size (gperftools' `TCMALLOC_TRANSFER_NUM_OBJ` default).
pub const TRANSFER_NUM_OBJECTS: usize = 32;
/// Spans longer than this many pages live in the page heap's large set.
pub const MAX_PAGES: usize = 1 << (20 - PAGE_SHIFT);

const CLASS_ARRAY_SIZE: usize = ((MAX_SIZE + 127 + (120 << 7)) >> 7) + 1;

/// The index into the class array for a request of `size` bytes (`size <= MAX_SIZE`).
#[inline]
pub const fn class_index(size: usize) -> usize {
    if size <= MAX_SMALL_SIZE {
        (size + 7) >> 3
    } else {
        (size + 127 + (120 << 7)) >> 7
    }
}

const fn lg_floor(n: usize) -> usize {
    (usize::BITS - 1 - n.leading_zeros()) as usize
}

/// gperftools' `AlignmentForSize`: the step between class sizes near `size`.
pub const fn alignment_for_size(size: usize) -> usize {
    let mut alignment = ALIGNMENT;
    if size > MAX_SIZE {
        alignment = PAGE_SIZE;
    } else if size >= 128 {
        alignment = (1 << lg_floor(size)) / 8;
    } else if size >= MIN_ALIGN {
        alignment = MIN_ALIGN;
    }
    if alignment > PAGE_SIZE {
        alignment = PAGE_SIZE;
    }
    alignment
}

/// gperftools' `NumMoveSize`: objects moved at once between a thread cache and the central list.
pub const fn num_move_size(size: usize) -> usize {
    if size == 0 {
        return 0;
    }
    let mut num = (64 * 1024) / size;
    if num < 2 {
        num = 2;
    }
    if num > TRANSFER_NUM_OBJECTS {
        num = TRANSFER_NUM_OBJECTS;
    }
    num
}

/// The size-class table.
#[derive(Debug)]
pub struct SizeMap {
    class_array: [u8; CLASS_ARRAY_SIZE],
    class_to_size: [u32; NUM_CLASSES],
    class_to_pages: [u8; NUM_CLASSES],
    num_objects_to_move: [u8; NUM_CLASSES],
    /// Indexed by any class byte (a pagemap entry's low byte), so the free path needs no
    /// bounds check; classes past the last have `limit` 0 (no offset starts an object).
    boundary: [Boundary; 256],
}

/// What tells an object start of a class from any other offset in its span without a division,
/// in one multiplication and one comparison: for `off < MAX_SPAN_OFFSET`, `off` starts one of
/// the span's `n` objects iff `off * magic (mod 2^64) <= max_product`.
///
/// With `magic = floor(2^64 / size) + 1` and `e = magic * size - 2^64` (so `1 <= e <= size`):
/// an object start `off = k * size` gives `k * e` (no wrap: `k * e <= off`), which is at most
/// `max_product = (n - 1) * e` exactly when `k < n`; any other offset `k * size + r`
/// (`0 < r < size`) gives `k * e + r * magic`, which does not wrap (`r * magic < 2^64 - 2^64 /
/// size + size`, and `k * e <= off < 2^21`) and is at least `magic > max_product`. (Lemire,
/// Kaser and Kurz's divisibility test, with the magic rounded so that `e` is never 0 and the
/// object count folded into the bound.)
///
/// `limit` (the end of the span's last object) keeps [`SizeMap::is_object_start`] exact for
/// any offset. Class 0 (and every class byte past the last class) has `magic` 0, `max_product`
/// 0 and `limit` 0: no offset starts an object.
#[derive(Debug, Clone, Copy)]
struct Boundary {
    magic: u64,
    max_product: u64,
    limit: u32,
}

/// Offsets below this are in the domain of the one-comparison object-start test
/// ([`SizeMap::start_test`]): every offset in a span of 255 pages, plus a page (`2^21`).
pub const MAX_SPAN_OFFSET: usize = 256 << PAGE_SHIFT;

/// The table, computed at compile time.
pub static SIZE_MAP: SizeMap = SizeMap::compute();

impl SizeMap {
    /// Computes the table as gperftools 2.10 does at start-up (see the module docs).
    pub const fn compute() -> SizeMap {
        let mut class_to_size = [0u32; NUM_CLASSES];
        let mut class_to_pages = [0u8; NUM_CLASSES];
        let mut sc = 1;
        let mut size = ALIGNMENT;
        while size <= MAX_SIZE {
            let alignment = alignment_for_size(size);
            let blocks_to_move = num_move_size(size) / 4;
            let mut psize = 0;
            loop {
                psize += PAGE_SIZE;
                while psize % size > (psize >> 3) {
                    psize += PAGE_SIZE;
                }
                if psize / size >= blocks_to_move {
                    break;
                }
            }
            let my_pages = psize >> PAGE_SHIFT;
            let mut merged = false;
            if sc > 1 && my_pages == class_to_pages[sc - 1] as usize {
                let my_objects = (my_pages << PAGE_SHIFT) / size;
                let prev_objects = ((class_to_pages[sc - 1] as usize) << PAGE_SHIFT)
                    / class_to_size[sc - 1] as usize;
                if my_objects == prev_objects {
                    class_to_size[sc - 1] = size as u32;
                    merged = true;
                }
            }
            if !merged {
                assert!(sc < NUM_CLASSES, "more size classes than NUM_CLASSES");
                class_to_pages[sc] = my_pages as u8;
                class_to_size[sc] = size as u32;
                sc += 1;
            }
            size += alignment;
        }
        assert!(sc == NUM_CLASSES, "fewer size classes than NUM_CLASSES");

        let mut class_array = [0u8; CLASS_ARRAY_SIZE];
        let mut next_size = 0;
        let mut c = 1;
        while c < NUM_CLASSES {
            let max_in_class = class_to_size[c] as usize;
            let mut s = next_size;
            while s <= max_in_class {
                class_array[class_index(s)] = c as u8;
                s += ALIGNMENT;
            }
            next_size = max_in_class + ALIGNMENT;
            c += 1;
        }

        let mut num_objects_to_move = [0u8; NUM_CLASSES];
        let mut c = 1;
        while c < NUM_CLASSES {
            num_objects_to_move[c] = num_move_size(class_to_size[c] as usize) as u8;
            c += 1;
        }
        let mut boundary = [Boundary {
            magic: 0,
            max_product: 0,
            limit: 0,
        }; 256];
        let mut c = 1;
        while c < NUM_CLASSES {
            let size = class_to_size[c] as u64;
            let span = (class_to_pages[c] as u64) << PAGE_SHIFT;
            let n = span / size;
            // floor(2^64 / size) + 1: u64::MAX / size is floor(2^64 / size) unless size divides
            // 2^64 (a power of two), where it is one less.
            let magic = u64::MAX / size + if size.is_power_of_two() { 2 } else { 1 };
            let e = magic.wrapping_mul(size);
            assert!(e >= 1 && e <= size, "object-start magic out of range");
            let max_product = (n - 1) * e;
            assert!(
                max_product < magic,
                "object-start bound not below the magic"
            );
            assert!(
                span <= MAX_SPAN_OFFSET as u64,
                "class span past the test's domain"
            );
            boundary[c] = Boundary {
                magic,
                max_product,
                limit: (n * size) as u32,
            };
            c += 1;
        }
        SizeMap {
            class_array,
            class_to_size,
            class_to_pages,
            num_objects_to_move,
            boundary,
        }
    }

    /// Every class's object size (class 0: 0).
    pub const fn class_sizes(&self) -> [u32; NUM_CLASSES] {
        self.class_to_size
    }

    /// The class serving `size` bytes (`1..=MAX_SIZE`; 0 is served by class 1).
    #[inline]
    pub fn class(&self, size: usize) -> usize {
        debug_assert!(size <= MAX_SIZE);
        self.class_array[class_index(size)] as usize
    }

    /// The class serving `layout`, or `None` if it needs whole pages (too large, or aligned
    /// beyond what any class offers).
    ///
    /// Objects of a class of size `s` sit at `span_start + i * s` with the span page-aligned, so a
    /// class serves alignment `a <= PAGE_SIZE` exactly when `s` is a multiple of `a`.
    #[inline]
    pub fn class_for(&self, layout: Layout) -> Option<usize> {
        let size = layout.size();
        if size > MAX_SIZE {
            return None;
        }
        let mut c = self.class(size);
        let align = layout.align();
        if align > ALIGNMENT {
            if align > PAGE_SIZE {
                return None;
            }
            while !(self.class_to_size[c] as usize).is_multiple_of(align) {
                c += 1;
                if c >= NUM_CLASSES {
                    return None;
                }
            }
        }
        Some(c)
    }

    /// The object size of class `c` (0 for class 0).
    #[inline]
    pub fn class_size(&self, c: usize) -> usize {
        self.class_to_size[c] as usize
    }

    /// Pages in a span of class `c`.
    #[inline]
    pub fn class_pages(&self, c: usize) -> usize {
        self.class_to_pages[c] as usize
    }

    /// Objects moved at once between a thread cache and the central list (the batch size).
    #[inline]
    pub fn batch_size(&self, c: usize) -> usize {
        self.num_objects_to_move[c] as usize
    }

    /// Whether byte offset `off` from the start of a span of class `c` is where one of its
    /// objects starts (a multiple of the object size, below the span's last object's end).
    /// Always false for class 0.
    #[inline(always)]
    pub fn is_object_start(&self, c: usize, off: usize) -> bool {
        let b = self.boundary[c & 0xff];
        off < b.limit as usize && (off as u64).wrapping_mul(b.magic) <= b.max_product
    }

    /// The constants of class byte `c`'s one-comparison object-start test: `(magic,
    /// max_product)`; for `off < MAX_SPAN_OFFSET`, `off` starts an object of the class's span
    /// iff `off * magic (mod 2^64) <= max_product`. Class 0 and bytes past the last class give
    /// `(0, 0)`, which a caller that wants every offset refused must treat apart (`0 * 0 <= 0`).
    pub const fn start_test(&self, c: u8) -> (u64, u64) {
        let b = self.boundary[c as usize];
        (b.magic, b.max_product)
    }

    /// Objects in one span of class `c`.
    #[inline]
    pub fn objects_per_span(&self, c: usize) -> usize {
        (self.class_pages(c) << PAGE_SHIFT) / self.class_size(c)
    }
}

/// The bytes a request of `size` bytes (alignment 8 or less) occupies: the class size, or whole
/// pages above [`MAX_SIZE`]. `None` if rounding overflows. This is what gperftools' `nallocx(size,
/// 0)` returns for `size >= 1`.
pub fn rounded_size(size: usize) -> Option<usize> {
    if size <= MAX_SIZE {
        Some(SIZE_MAP.class_size(SIZE_MAP.class(size)))
    } else {
        size.checked_add(PAGE_SIZE - 1)
            .map(|s| s & !(PAGE_SIZE - 1))
    }
}

/// One run of [`classes`]: every request size in `from..=to` is rounded to `rounded` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassRun {
    /// Smallest request size in the run.
    pub from: usize,
    /// Largest request size in the run.
    pub to: usize,
    /// The size every request in the run is rounded to.
    pub rounded: usize,
}

/// The size classes as runs `FROM TO ROUNDED` covering 1 up to the largest class (what
/// `fsm classes --policy tcmalloc` prints).
pub fn classes() -> impl Iterator<Item = ClassRun> {
    (1..NUM_CLASSES).map(|c| ClassRun {
        from: if c == 1 {
            1
        } else {
            SIZE_MAP.class_size(c - 1) + 1
        },
        to: SIZE_MAP.class_size(c),
        rounded: SIZE_MAP.class_size(c),
    })
}

/// Largest number of objects any class's span holds (sizes the inspection bitmaps).
pub const MAX_OBJECTS_PER_SPAN: usize = max_objects_per_span();

const fn max_objects_per_span() -> usize {
    let m = SizeMap::compute();
    let mut best = 0;
    let mut c = 1;
    while c < NUM_CLASSES {
        let n = ((m.class_to_pages[c] as usize) << PAGE_SHIFT) / m.class_to_size[c] as usize;
        if n > best {
            best = n;
        }
        c += 1;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighty_five_classes_from_8_to_256k() {
        assert_eq!(SIZE_MAP.class_size(1), 8);
        assert_eq!(SIZE_MAP.class_size(NUM_CLASSES - 1), MAX_SIZE);
        for c in 2..NUM_CLASSES {
            assert!(SIZE_MAP.class_size(c) > SIZE_MAP.class_size(c - 1));
        }
        // The merged-away sizes of the reference notes.
        let sizes: Vec<usize> = (1..NUM_CLASSES).map(|c| SIZE_MAP.class_size(c)).collect();
        assert!(!sizes.contains(&832) && !sizes.contains(&960));
        assert!(sizes.contains(&896) && sizes.contains(&1024) && sizes.contains(&6656));
        assert_eq!(SIZE_MAP.class_pages(SIZE_MAP.class(1024)), 1);
        assert_eq!(SIZE_MAP.class_pages(SIZE_MAP.class(1152)), 2);
        assert_eq!(SIZE_MAP.batch_size(SIZE_MAP.class(2048)), 32);
        assert_eq!(SIZE_MAP.batch_size(SIZE_MAP.class(4096)), 16);
        assert_eq!(SIZE_MAP.batch_size(NUM_CLASSES - 1), 2);
    }

    #[test]
    fn lookup_gives_the_smallest_fitting_class() {
        let step = if cfg!(miri) { 61 } else { 1 };
        for size in (1..=MAX_SIZE).step_by(step) {
            let c = SIZE_MAP.class(size);
            assert!(SIZE_MAP.class_size(c) >= size, "size {size}");
            assert!(SIZE_MAP.class_size(c - 1) < size || c == 1, "size {size}");
        }
        assert_eq!(SIZE_MAP.class(0), 1);
    }

    #[test]
    fn object_starts_are_the_multiples_of_the_size_inside_the_span() {
        // Every offset of every class's span and a little past it (sampled under Miri).
        let step = if cfg!(miri) { 97 } else { 1 };
        for c in 1..NUM_CLASSES {
            let size = SIZE_MAP.class_size(c);
            let span = SIZE_MAP.class_pages(c) << PAGE_SHIFT;
            let n = SIZE_MAP.objects_per_span(c);
            for off in (0..span + 2 * size)
                .step_by(step)
                .chain([n * size - size, n * size])
            {
                let want = off < n * size && off % size == 0;
                assert_eq!(
                    SIZE_MAP.is_object_start(c, off),
                    want,
                    "class {c} offset {off}"
                );
            }
        }
        assert!(!SIZE_MAP.is_object_start(0, 0));
    }

    #[test]
    fn the_one_comparison_test_is_exact_below_max_span_offset() {
        // Every offset the free path can form (a page index below 256, an offset in the page),
        // for every class (sampled under Miri, plus the boundary offsets).
        let step = if cfg!(miri) { 16411 } else { 1 };
        for c in 1..NUM_CLASSES {
            let (magic, max_product) = SIZE_MAP.start_test(c as u8);
            let size = SIZE_MAP.class_size(c);
            let n = SIZE_MAP.objects_per_span(c);
            for off in (0..MAX_SPAN_OFFSET).step_by(step).chain([
                0,
                size,
                n * size - size,
                n * size,
                MAX_SPAN_OFFSET - 1,
            ]) {
                let want = off < n * size && off % size == 0;
                let got = (off as u64).wrapping_mul(magic) <= max_product;
                assert_eq!(got, want, "class {c} offset {off}");
            }
        }
        assert_eq!(SIZE_MAP.start_test(0), (0, 0));
        assert_eq!(SIZE_MAP.start_test(NUM_CLASSES as u8), (0, 0));
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        for align in [16, 32, 64, 128, 256, 512, 1024, 4096, 8192] {
            for size in [1, 7, 100, 1000, 5000, 70000] {
                let l = Layout::from_size_align(size, align).unwrap();
                let c = SIZE_MAP.class_for(l).unwrap();
                assert_eq!(SIZE_MAP.class_size(c) % align, 0);
                assert!(SIZE_MAP.class_size(c) >= size);
            }
        }
        assert!(
            SIZE_MAP
                .class_for(Layout::from_size_align(8, 16384).unwrap())
                .is_none()
        );
    }

    #[test]
    fn runs_cover_every_size() {
        let mut next = 1;
        for r in classes() {
            assert_eq!(r.from, next);
            assert!(r.to >= r.from && r.rounded == r.to);
            next = r.to + 1;
        }
        assert_eq!(next, MAX_SIZE + 1);
        assert_eq!(classes().count(), 85);
    }
}
