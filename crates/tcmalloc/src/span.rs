//! Spans: runs of contiguous pages, the unit the page heap hands out and the central lists cut
//! into objects.
//!
//! ```text
//!   Span { start, pages, location, class, refcount, objects, prev/next, handed }
//!
//!   page heap free list      central list of a class          large object
//!   [ free span, 5 pages ]   [ obj | obj | obj | obj ]         [ 40 pages in use ]
//!                              ^ objects: free objects linked through their first word
//! ```
//!
//! A span sits on at most one doubly-linked [`SpanList`] at a time: a page heap free list, or one
//! of its class's central lists. Span records come from the metadata arena through a
//! [`SpanAllocator`] that recycles them.
//!
//! A span of the 8 B class ([`HANDED_CLASS`]) in a [`crate::Core`] also has a bitmap of the
//! objects handed out to callers ([`Span::handed`], one bit per object, 128 bytes from the
//! metadata arena through a [`HandedPool`]): an 8 B object has no room for the double-free key
//! ([`crate::key`]), so `Core` tells its double free by the bit.
//!
//! ```text
//!   8 B span:  [ o0 | o1 | o2 | o3 | ... | o1023 ]      objects: o2 -> o3 -> null
//!   handed:     1    0    0    0   ...    1             o1 cached, o0 and o1023 with callers
//! ```

use core::ptr::null_mut;

use allocator_traits::MemorySource;

use crate::metadata::MetaArena;
use crate::size_map::{MAX_OBJECTS_PER_SPAN, PAGE_SHIFT, SizeMap};

/// Words of an [`ObjectBits`]: one bit for each object of the span with the most objects.
pub const OBJECT_BITS_WORDS: usize = MAX_OBJECTS_PER_SPAN.div_ceil(64);

/// One bit per object of a span: object `i` is bit `i % 64` of word `i / 64`.
pub type ObjectBits = [u64; OBJECT_BITS_WORDS];

/// The size class whose spans carry a handed-out bitmap in a [`crate::Core`]: the 8 B class, the
/// only one whose objects have no second word for the double-free key.
pub const HANDED_CLASS: usize = 1;

/// The object size of [`HANDED_CLASS`] (8).
pub const HANDED_SIZE: usize = SizeMap::compute().class_sizes()[HANDED_CLASS] as usize;

/// Where a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Handed out by the page heap (to a central list or as a large object).
    InUse,
    /// On one of the page heap's normal free lists: free, its pages committed.
    Free,
    /// On one of the page heap's returned free lists: free, its pages given back to the source
    /// (`MemorySource::decommit`), committed again when carved.
    Returned,
}

impl Location {
    /// Whether a span here is on a page heap free list (normal or returned).
    #[inline]
    pub fn is_free(self) -> bool {
        self != Location::InUse
    }
}

/// A run of pages.
#[derive(Debug)]
pub struct Span {
    /// First byte (carries the memory's provenance).
    pub start: *mut u8,
    /// Length in pages.
    pub pages: usize,
    /// In use, free, or free with its pages returned to the source. `Free` iff on a page heap
    /// normal free list, `Returned` iff on a returned one.
    pub location: Location,
    /// Size class of its objects (0: a large object or a free span); every page of a span of
    /// class `c != 0` maps to it in the pagemap with class `c`, other spans' pages have class 0.
    pub class: u8,
    /// Central list level the span is on (`NO_LEVEL` when on none): `level_of(refcount)` iff
    /// the span has a free object, else `NO_LEVEL`.
    pub level: u8,
    /// Objects handed out of this span (to caches or callers): `objects_per_span(class)` minus
    /// the length of `objects`; at least 1 while the span is with its central list.
    pub refcount: u32,
    /// Free objects of the span, linked through their first word, each at an object boundary
    /// inside the span, none twice (null for free and large spans).
    pub objects: *mut u8,
    /// Previous span on the same list.
    pub prev: *mut Span,
    /// Next span on the same list.
    pub next: *mut Span,
    /// The objects handed out to callers, for a span of class [`HANDED_CLASS`] in a
    /// [`crate::Core`] (null for every other span, and for every span of a `Tcmalloc`, whose
    /// other threads' caches no walk can read): bit `i` is set iff object `i` is neither on
    /// `objects` nor in a cache (the thread cache, a transfer batch); bits at and past
    /// `objects_per_span(class)` are clear. `Core` sets the bit when it hands the object to a
    /// caller and clears it when it accepts the object's free; a free that finds it clear is a
    /// double free.
    pub handed: *mut ObjectBits,
}

/// `Span::level` of a span on no central list.
pub const NO_LEVEL: u8 = u8::MAX;

impl Span {
    /// Page number of the first page.
    #[inline]
    pub fn first_page(&self) -> usize {
        self.start as usize >> PAGE_SHIFT
    }

    /// Page number of the last page.
    #[inline]
    pub fn last_page(&self) -> usize {
        self.first_page() + self.pages - 1
    }

    /// Length in bytes.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.pages << PAGE_SHIFT
    }
}

/// A doubly-linked list of spans (`prev` of the head and `next` of the tail are null).
#[derive(Debug)]
pub struct SpanList {
    /// First span, or null.
    pub head: *mut Span,
    /// Last span (null iff `head` is).
    pub tail: *mut Span,
    /// Number of spans on the list.
    pub len: usize,
}

impl SpanList {
    /// An empty list.
    pub const fn new() -> Self {
        SpanList {
            head: null_mut(),
            tail: null_mut(),
            len: 0,
        }
    }

    /// Whether the list is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Pushes `s` at the front.
    ///
    /// # Safety
    /// `s` is a valid span on no list.
    #[inline]
    pub unsafe fn push(&mut self, s: *mut Span) {
        // SAFETY: `s` is valid (caller) and so is the head, when non-null.
        unsafe {
            (*s).prev = null_mut();
            (*s).next = self.head;
            if self.head.is_null() {
                self.tail = s;
            } else {
                (*self.head).prev = s;
            }
        }
        self.head = s;
        self.len += 1;
    }

    /// Unlinks `s`.
    ///
    /// # Safety
    /// `s` is a valid span on this list.
    #[inline]
    pub unsafe fn remove(&mut self, s: *mut Span) {
        // SAFETY: `s` and its neighbours are valid spans on this list.
        unsafe {
            let (p, n) = ((*s).prev, (*s).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if n.is_null() {
                self.tail = p;
            } else {
                (*n).prev = p;
            }
            (*s).prev = null_mut();
            (*s).next = null_mut();
        }
        self.len -= 1;
    }

    /// Iterates over the spans (for inspection).
    pub fn iter(&self) -> impl Iterator<Item = *mut Span> + '_ {
        let mut cur = self.head;
        core::iter::from_fn(move || {
            if cur.is_null() {
                return None;
            }
            let s = cur;
            // SAFETY: spans on a list are valid while the list is borrowed.
            cur = unsafe { (*s).next };
            Some(s)
        })
    }
}

impl Default for SpanList {
    fn default() -> Self {
        Self::new()
    }
}

/// Hands out span records from the metadata arena and recycles freed ones
/// (gperftools' `PageHeapAllocator<Span>`).
#[derive(Debug)]
pub struct SpanAllocator {
    free: *mut Span,
    /// Span records currently in use.
    pub live: usize,
}

// SAFETY: the recycled records are owned by the allocator's owner.
unsafe impl Send for SpanAllocator {}

impl SpanAllocator {
    /// An allocator with no records.
    pub const fn new() -> Self {
        SpanAllocator {
            free: null_mut(),
            live: 0,
        }
    }

    /// A new span record for `pages` pages at `start`, in use, class 0, on no list.
    pub fn new_span<S: MemorySource + ?Sized>(
        &mut self,
        start: *mut u8,
        pages: usize,
        arena: &mut MetaArena,
        source: &mut S,
    ) -> Option<*mut Span> {
        let s = if self.free.is_null() {
            arena.alloc_one::<Span, S>(source)?
        } else {
            let s = self.free;
            // SAFETY: recycled records are valid and linked through `next`.
            self.free = unsafe { (*s).next };
            s
        };
        // SAFETY: `s` is a properly aligned record of ours, not used by anyone else.
        unsafe {
            s.write(Span {
                start,
                pages,
                location: Location::InUse,
                class: 0,
                level: NO_LEVEL,
                refcount: 0,
                objects: null_mut(),
                prev: null_mut(),
                next: null_mut(),
                handed: null_mut(),
            })
        };
        self.live += 1;
        Some(s)
    }

    /// Recycles `s`.
    ///
    /// # Safety
    /// `s` came from this allocator, is on no list, and no pagemap entry that may be read as
    /// authoritative still names it.
    pub unsafe fn delete(&mut self, s: *mut Span) {
        // SAFETY: `s` is ours (caller).
        unsafe { (*s).next = self.free };
        self.free = s;
        self.live -= 1;
    }
}

impl Default for SpanAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Hands out the handed-out bitmaps of [`Span::handed`] from the metadata arena and recycles
/// those of spans that went back to the page heap (linked through their first word); remembers
/// the bitmap of one page, so an 8 B allocation after a free of the same page finds it without
/// a pagemap lookup.
#[derive(Debug)]
pub struct HandedPool {
    free: *mut ObjectBits,
    /// Bitmaps currently on a span: the spans of [`HANDED_CLASS`] in use.
    pub live: usize,
    /// `hint_page` (`usize::MAX`: none) is a page of a live span of [`HANDED_CLASS`] that starts
    /// at `hint_start` and has the bitmap `hint_bits`; cleared when that bitmap is recycled.
    hint_page: usize,
    hint_start: usize,
    hint_bits: *mut ObjectBits,
}

// SAFETY: the recycled bitmaps are owned by the pool's owner.
unsafe impl Send for HandedPool {}

impl HandedPool {
    /// A pool with no bitmap.
    pub const fn new() -> Self {
        HandedPool {
            free: null_mut(),
            live: 0,
            hint_page: usize::MAX,
            hint_start: 0,
            hint_bits: null_mut(),
        }
    }

    /// A bitmap with every bit clear, or `None` if the arena cannot grow.
    pub fn alloc<S: MemorySource + ?Sized>(
        &mut self,
        arena: &mut MetaArena,
        source: &mut S,
    ) -> Option<*mut ObjectBits> {
        let b = if self.free.is_null() {
            arena.alloc_one::<ObjectBits, S>(source)?
        } else {
            let b = self.free;
            // SAFETY: a recycled bitmap is ours and holds the next one's address in its first
            // word (written by `recycle` as a pointer).
            self.free = unsafe { b.cast::<*mut ObjectBits>().read() };
            b
        };
        // SAFETY: `b` is an aligned bitmap of ours that no span holds.
        unsafe { b.write([0; OBJECT_BITS_WORDS]) };
        self.live += 1;
        Some(b)
    }

    /// Takes back a bitmap.
    ///
    /// # Safety
    /// `b` came from this pool's [`alloc`](Self::alloc) and no span holds it any more.
    pub unsafe fn recycle(&mut self, b: *mut ObjectBits) {
        // SAFETY: `b` is ours (caller), aligned for a pointer, and at least a word long.
        unsafe { b.cast::<*mut ObjectBits>().write(self.free) };
        self.free = b;
        self.live -= 1;
        if self.hint_bits == b {
            self.hint_page = usize::MAX;
            self.hint_bits = null_mut();
        }
    }

    /// The start and bitmap of the span of `page` if it is the remembered page.
    #[inline(always)]
    pub fn hint(&self, page: usize) -> Option<(usize, *mut ObjectBits)> {
        (page == self.hint_page).then_some((self.hint_start, self.hint_bits))
    }

    /// Remembers that `page` belongs to the live span of [`HANDED_CLASS`] starting at `start`
    /// with the bitmap `bits` (from this pool).
    #[inline(always)]
    pub fn set_hint(&mut self, page: usize, start: usize, bits: *mut ObjectBits) {
        self.hint_page = page;
        self.hint_start = start;
        self.hint_bits = bits;
    }
}

impl Default for HandedPool {
    fn default() -> Self {
        Self::new()
    }
}
