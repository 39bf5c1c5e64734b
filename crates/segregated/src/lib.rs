//! Segregated free lists (simple segregated storage with size classes, as in Go's allocator and
//! tcmalloc) as a [`FreeSpaceManager`].
//!
//! Requests up to the largest size class are rounded to a class ([`classes`]: Go's 67 classes by
//! default, or a table the user supplies) and served from *spans*: power-of-two runs of pages,
//! each carved into objects of one class ([`span`]). Each class keeps its spans that have a free
//! object in a *partial* list and the others in a *full* list; each span keeps its own free list.
//! Tiny requests (under 16 B, alignment at most 8) share 16-byte blocks ([`tiny`]). Anything
//! larger goes to a second manager `L`, which is also the page level spans come from and return
//! to: composition through the trait. The default `L` is best fit from `fit`
//! ([`Segregated::best_fit`]); the buddy system works as well.
//!
//! ```text
//!   allocate(layout)
//!     size < 16, align <= 8 ---------> tiny: bump inside the current 16 B block
//!     size <= 32 KiB  --> class c --> classes[c].partial -> span -> its free list (or bump)
//!     larger ------------------------> L.allocate(layout)
//!
//!   classes[c]:  partial -> [span]<->[span]      full -> [span]<->[span]
//!   span (8..128 KiB, anywhere L puts it):    |hdr|bits|obj|obj|obj|...|obj|tail|
//!                                                        ^ free objects linked through word 0
//!   the page level: L (any FreeSpaceManager, e.g. buddy or best fit) over the region
//!   |== span ==|== large object ==|.. free ..|== span ==|....
//! ```
//!
//! * **Costs.** A small allocation or free is O(1): a table lookup, a list head, a bit. Rounding to
//!   the class loses up to 12.5 % (Go's table's bound) as internal fragmentation; a span's header
//!   and tail, free objects, and the page level's own free space are external. A span whose
//!   objects are all free goes back to `L`, except that each class keeps up to
//!   [`Config::keep_empty`] empty spans (default 1) so that an alloc/free pair at a span boundary
//!   does not reach `L` every time ([`Segregated::release_empty_spans`] gives them back).
//! * **Where the class is kept.** Nowhere per object: free derives the class from the `Layout`,
//!   finds the span in the [`pagemap`] (per 4 KiB granule: the spans there and their classes)
//!   and checks the slot arithmetic and the span's bitmap, so a foreign pointer (outside every
//!   span), a pointer that is not an object, a double free and a free with another class's
//!   layout are reported as [`FreeError`]s. The map is written when a span is taken from `L`
//!   and erased before it goes back, so a span it names is always ours and initialised.
//! * **Fast paths.** `allocate` and `deallocate` are inline: a size class up to 1024 B (or a
//!   tiny object in the current block) is served with the class's state (list heads, counters
//!   and a copy of its span geometry in one 64-byte line), the span header and bitmap, and the
//!   object; each fast path either does the whole operation or changes nothing and leaves it to
//!   the general path (out of line), which also checks the span header's magic and class, a
//!   canary against stray writes. A free that changes a span's list (full to partial, or empty
//!   and beyond [`Config::keep_empty`]) ends in an out-of-line call.
//! * **Statistics.** [`Stats`] covers all paths, exactly: the fast paths add and subtract the
//!   live counts and test two gates below which no peak can change, `live_blocks` is
//!   `allocs - frees`; [`Segregated::class_stats`] shows the waste per class (live objects
//!   counted over the class's spans) and [`Segregated::tiny_stats`] what tiny combining saves.
//!
//! ```
//! use allocator_traits::{BoxedRegion, FreeSpaceManager, Layout};
//! use segregated::Segregated;
//!
//! // The default: best fit (from `fit`) as the page level and for large sizes.
//! let mut heap = Segregated::best_fit(BoxedRegion::new(1 << 20).unwrap());
//! let layout = Layout::from_size_align(40, 8).unwrap();
//! let a = heap.allocate(layout).unwrap();
//! assert_eq!(a.len(), 48); // Go's class for 40 bytes
//! // SAFETY: `a` was allocated above with `layout`.
//! unsafe { heap.deallocate(a.cast(), layout) }.unwrap();
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

pub mod classes;
mod inspect;
pub mod pagemap;
pub mod span;
pub mod tiny;

use core::alloc::Layout;
use core::ptr::NonNull;

pub use allocator_traits::{
    AllocError, Detects, FreeError, FreeSpaceManager, Inspector, MemorySource, Stats,
};
pub use classes::{ClassTable, GO, GO_SIZES, SpanGeometry, TableError};

use classes::{INDEX8, MAX_CLASSES};
use pagemap::PageMap;
use span::{SpanHeader, SpanList, TINY_BLOCK, slot_of};
use tiny::TinyState;

/// The default page level and large-object manager: best fit (`fit`) over a memory source.
pub type BestFit<S> = fit::FitHeap<S>;

impl<S: MemorySource> Segregated<BestFit<S>> {
    /// Go's size classes with tiny combining, over best fit (`fit`, in-band boundary tags,
    /// immediate coalescing) on `source`: the default composition. `const`, so a `static` can
    /// hold it.
    pub const fn best_fit(source: S) -> Self {
        Segregated::new(fit::FitHeap::new(source, fit::Config::best_fit()))
    }
}

/// The slot of the tiny blocks in the per-class state (after every real class).
pub const TINY: usize = MAX_CLASSES + 1;
const SLOTS: usize = MAX_CLASSES + 2;

/// Options of a [`Segregated`] heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Let requests under 16 bytes with alignment at most 8 share 16-byte blocks (Go's tiny
    /// allocator). On by default.
    pub tiny: bool,
    /// Empty spans each class keeps instead of returning them to the page level at once.
    pub keep_empty: u32,
}

impl Config {
    /// Tiny combining on, one empty span kept per class.
    pub const DEFAULT: Config = Config {
        tiny: true,
        keep_empty: 1,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Per-class state: the class's span lists and counters, and a copy of its span geometry, so
/// that the fast paths read one cache line per class.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct ClassState {
    /// Spans with a free object; allocation takes from the head.
    partial: *mut SpanHeader,
    full: *mut SpanHeader,
    requested: usize,
    /// `SpanGeometry::recip`.
    recip: u64,
    /// Spans with no live object (in the partial list).
    empty: u32,
    spans: u32,
    /// `SpanGeometry::size`.
    size: u32,
    /// `SpanGeometry::header_at`.
    header_at: u32,
    /// `SpanGeometry::objects()`.
    objects: u32,
    /// `SpanGeometry::slots`.
    slots: u32,
}

impl ClassState {
    const EMPTY: ClassState = ClassState {
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
    };

    /// An empty class whose spans have geometry `g`.
    const fn with_geometry(g: &SpanGeometry) -> ClassState {
        ClassState {
            recip: g.recip,
            size: g.size,
            header_at: g.header_at,
            objects: g.objects() as u32,
            slots: g.slots as u32,
            ..ClassState::EMPTY
        }
    }
}

/// The waste of one size class, from [`Segregated::class_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassStats {
    /// Class number (1-based; [`TINY`] for the tiny blocks).
    pub class: usize,
    /// Object size.
    pub size: usize,
    /// Bytes per span.
    pub span_bytes: usize,
    /// Spans held.
    pub spans: usize,
    /// Live objects (live tiny blocks for [`TINY`]).
    pub live_objects: usize,
    /// Bytes callers asked for, over live objects (over the tiny objects in live blocks, for
    /// [`TINY`]).
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

/// What the fast path of `deallocate` did.
#[derive(Clone, Copy)]
enum Freed {
    /// Freed, nothing left to do.
    Done,
    /// Nothing changed: the general path takes it.
    Declined,
    /// Freed; span `.1` of class `.0` was full and changes lists.
    Unfull(usize, *mut SpanHeader),
    /// Freed; span `.1` of class `.0` is empty, counted as such, and goes back to the page
    /// level.
    Emptied(usize, *mut SpanHeader),
}

/// Which path a layout takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Tiny,
    Class(usize),
    Large,
}

/// A segregated-fit heap: size classes over spans from the page level `L`, which also serves
/// large requests. `L` defaults to best fit from `fit` ([`Segregated::best_fit`]).
pub struct Segregated<L = BestFit<allocator_traits::FixedRegion>> {
    large: L,
    table: &'static ClassTable,
    config: Config,
    classes: [ClassState; SLOTS],
    tiny: TinyState,
    /// The class of the span starting at each page.
    pages: PageMap,
    stats: Stats,
    /// The table's first-level index (sizes up to 1024 by 8 bytes), copied for the fast paths.
    index8: [u8; INDEX8],
    /// Sizes below this go to the tiny blocks (16 with tiny combining, else 0).
    tiny_below: usize,
    /// Bytes a tiny object of each size would hold in its own class (for [`TinyStats`]).
    tiny_unshared: [u16; TINY_BLOCK],
    /// The fast paths update `stats`' live counts themselves and call
    /// [`Segregated::raise_peaks`] only when `live_requested` or `live_held` passes these
    /// gates, below which no peak can change (see [`Segregated::set_gates`]).
    gate_requested: usize,
    gate_held: usize,
    /// Spans held, over all classes (the page map goes back to `L` with the last one).
    spans: usize,
}

// SAFETY: the heap owns its spans (through `L`) and its raw pointers point only into them, so
// moving it to another thread moves exclusive access along.
unsafe impl<L: Send> Send for Segregated<L> {}

impl<L> Segregated<L> {
    /// The statistics: `stats` with `live_blocks` filled in (the fast paths count allocations
    /// and frees only; every path counts both).
    fn stats_now(&self) -> Stats {
        let mut s = self.stats;
        s.live_blocks = s.allocs.saturating_sub(s.frees) as usize;
        s
    }
}

impl<L> core::fmt::Debug for Segregated<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Segregated")
            .field("config", &self.config)
            .field("classes", &self.table.len())
            .field("stats", &self.stats_now())
            .finish_non_exhaustive()
    }
}

impl<L: FreeSpaceManager> Segregated<L> {
    /// Go's size classes with tiny combining over the page level (and large-object manager)
    /// `large`. `const`, so a `static` can hold it.
    pub const fn new(large: L) -> Self {
        Self::with_table(&GO, Config::DEFAULT, large)
    }

    /// A heap with the given class table and options.
    pub const fn with_table(table: &'static ClassTable, config: Config, large: L) -> Self {
        let mut classes = [ClassState::EMPTY; SLOTS];
        let mut c = 1;
        while c <= table.len() {
            if let Some(g) = table.geometry(c) {
                classes[c] = ClassState::with_geometry(&g);
            }
            c += 1;
        }
        classes[TINY] = ClassState::with_geometry(&table.tiny_geometry());
        let mut tiny_unshared = [0u16; TINY_BLOCK];
        let mut s = 0;
        while s < TINY_BLOCK {
            let own = table.size(table.class_of(s));
            let s1 = if s == 0 { 1 } else { s };
            tiny_unshared[s] = if own > s1 { own as u16 } else { s1 as u16 };
            s += 1;
        }
        Segregated {
            large,
            table,
            config,
            classes,
            tiny: TinyState::EMPTY,
            pages: PageMap::EMPTY,
            stats: Stats::new(),
            index8: table.index8,
            tiny_below: if config.tiny { TINY_BLOCK } else { 0 },
            tiny_unshared,
            gate_requested: 0,
            gate_held: 0,
            spans: 0,
        }
    }

    /// The class table.
    pub fn table(&self) -> &'static ClassTable {
        self.table
    }

    /// The options.
    pub fn config(&self) -> Config {
        self.config
    }

    /// The page level and large-object manager.
    pub fn large(&self) -> &L {
        &self.large
    }

    /// The waste of class `c` (1-based, or [`TINY`]).
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

    /// What tiny combining holds and saves right now.
    pub fn tiny_stats(&self) -> TinyStats {
        self.tiny.stats()
    }

    /// Bytes of the page map (taken from the page level: one byte per 8 KiB of the spans' range).
    pub fn pagemap_bytes(&self) -> usize {
        self.pages.bytes()
    }

    /// Gives every empty span back to the page level; returns how many.
    pub fn release_empty_spans(&mut self) -> usize {
        let mut n = 0;
        for c in 1..SLOTS {
            let mut s = self.classes[c].partial;
            while !s.is_null() {
                // SAFETY: `s` is a span in class c's partial list.
                let (next, live) = unsafe { ((*s).next, (*s).live) };
                let current_tiny = c == TINY && s == self.tiny.span && !self.tiny.block.is_null();
                if live == 0 && !current_tiny {
                    // SAFETY: an empty span of class c, in its partial list.
                    unsafe { self.drop_span(c, s) };
                    n += 1;
                }
                s = next;
            }
        }
        n
    }

    #[inline]
    fn geo(&self, c: usize) -> Option<SpanGeometry> {
        if c == TINY {
            Some(self.table.tiny_geometry())
        } else {
            self.table.geometry(c)
        }
    }

    #[inline]
    fn path(&self, layout: Layout) -> Path {
        let (size, align) = (layout.size(), layout.align());
        if self.config.tiny && size < TINY_BLOCK && align <= 8 {
            return Path::Tiny;
        }
        match self.table.class_for(size, align) {
            0 => Path::Large,
            c => Path::Class(c),
        }
    }

    fn sync_footprint(&mut self) {
        self.stats.set_footprint(self.large.stats().footprint);
        self.set_gates();
    }

    /// A new span for class `c` from the page level, pushed on its partial list.
    fn new_span(&mut self, c: usize) -> Option<*mut SpanHeader> {
        let g = self.geo(c)?;
        let bytes = g.span_bytes();
        let layout = Layout::from_size_align(bytes, g.span_align()).ok()?;
        let block = self.large.allocate(layout).ok()?;
        let span = block.cast::<u8>().as_ptr();
        if !self.pages.cover(span as usize, bytes, &mut self.large) {
            // SAFETY: the block was just allocated with `layout` and is unused.
            let _ = unsafe { self.large.deallocate(block.cast(), layout) };
            self.sync_footprint();
            return None;
        }
        self.pages.set(span, bytes, c as u8);
        let per_slot = if c == TINY { 16 } else { 1 };
        // SAFETY: a fresh block of `bytes` bytes aligned to `bytes`, ours alone.
        let s = unsafe { span::init_span(span, c as u16, &g, per_slot) };
        let st = &mut self.classes[c];
        // SAFETY: `s` is a fresh span in no list.
        unsafe { SpanList::push(&mut st.partial, s) };
        st.spans += 1;
        self.spans += 1;
        st.empty += 1;
        self.sync_footprint();
        Some(s)
    }

    /// Returns an empty span of class `c` (in its partial list) to the page level.
    ///
    /// # Safety
    /// `s` is a span of class `c` with no live object, in the partial list.
    unsafe fn drop_span(&mut self, c: usize, s: *mut SpanHeader) {
        let Some(g) = self.geo(c) else { return };
        let st = &mut self.classes[c];
        // SAFETY: `s` is in the partial list (caller).
        unsafe {
            SpanList::remove(&mut st.partial, s);
            (*s).magic = 0;
        }
        st.spans -= 1;
        self.spans -= 1;
        st.empty -= 1;
        let bytes = g.span_bytes();
        // The page level may hand these bytes out again: the map must not send a free there.
        self.pages.set(span::base_of(s, &g), bytes, 0);
        // The layout `new_span` asked with (a page level that checks the alignment, as best fit
        // does, would refuse another one and the span would leak).
        if let Ok(layout) = Layout::from_size_align(bytes, g.span_align()) {
            // SAFETY: the span was allocated from `large` with this layout and nothing in it is
            // live. A refusal cannot happen for a block `large` gave us; if it did, the span is
            // only leaked.
            let base = span::base_of(s, &g);
            // SAFETY: as above.
            let _ = unsafe { self.large.deallocate(NonNull::new_unchecked(base), layout) };
        }
        if self.spans == 0 {
            // No span left: the page map (taken from `L` with the first span) goes back too, so
            // that an emptied heap leaves `L` as it found it.
            self.pages.release(&mut self.large);
        }
        self.sync_footprint();
    }

    /// Takes a free slot of class `c` (or a fresh span's first slot): its span, address and
    /// slot number. Does not touch the bitmap.
    #[inline]
    fn slot_alloc(&mut self, c: usize) -> Option<(*mut SpanHeader, *mut u8, usize)> {
        let g = self.geo(c)?;
        let mut s = self.classes[c].partial;
        if s.is_null() {
            s = self.new_span(c)?;
        }
        // SAFETY: `s` is a span of class c in its partial list, so it has a free slot.
        unsafe {
            let base = span::base_of(s, &g);
            let (obj, slot) = if !(*s).free.is_null() {
                let o = (*s).free;
                (*s).free = o.cast::<*mut u8>().read();
                (o, slot_of(o as usize - base as usize, g.recip))
            } else {
                let slot = (*s).bump as usize;
                (*s).bump += 1;
                (base.wrapping_add(slot * g.size as usize), slot)
            };
            let st = &mut self.classes[c];
            if (*s).live == 0 {
                st.empty -= 1;
            }
            (*s).live += 1;
            if (*s).live as usize == g.objects() {
                SpanList::remove(&mut st.partial, s);
                SpanList::push(&mut st.full, s);
                (*s).full = true;
            }
            Some((s, obj, slot))
        }
    }

    /// Puts `obj` back on its span's free list; returns the span to the page level if it is
    /// empty and the class already keeps enough empty spans.
    ///
    /// # Safety
    /// `obj` is a live slot of span `s` of class `c` (validated), given up by the caller.
    #[inline]
    unsafe fn slot_free(&mut self, c: usize, s: *mut SpanHeader, obj: *mut u8) {
        let keep = self.config.keep_empty;
        let st = &mut self.classes[c];
        // SAFETY: `obj` is a slot of `s` of at least 8 bytes, no longer used; `s` is in one of
        // class c's lists.
        unsafe {
            obj.cast::<*mut u8>().write((*s).free);
            (*s).free = obj;
            (*s).live -= 1;
            if (*s).full {
                SpanList::remove(&mut st.full, s);
                SpanList::push(&mut st.partial, s);
                (*s).full = false;
            }
            if (*s).live == 0 {
                st.empty += 1;
                let current_tiny = c == TINY && s == self.tiny.span;
                if st.empty > keep && !current_tiny {
                    self.drop_span(c, s);
                }
            }
        }
    }

    /// The span of a pointer freed as class `c`: the page map must record a span of class `c`
    /// at the pointer's span address before the header there is read.
    #[inline]
    fn find_span(&self, ptr: *mut u8, c: usize) -> Result<*mut SpanHeader, FreeError> {
        let a = ptr as usize;
        let Some(g) = self.geo(c) else {
            return Err(FreeError::Foreign { ptr: a });
        };
        let (base, class) = match self.pages.lookup(a) {
            Some(x) => x,
            None => return Err(FreeError::Foreign { ptr: a }),
        };
        if class as usize != c {
            return Err(FreeError::LayoutMismatch {
                ptr: a,
                size: 0,
                align: 0,
            });
        }
        if a >= base as usize + g.span_bytes() {
            return Err(FreeError::NotABlock { ptr: a });
        }
        let s = base.wrapping_add(g.header_at as usize).cast::<SpanHeader>();
        // SAFETY: the page map says a span of class c starts at `base` and contains the
        // pointer, so its header is at `base + header_at`, initialised.
        let (magic, class) = unsafe { ((*s).magic, (*s).class) };
        if magic != SpanHeader::magic_for(s as usize) || class as usize != c {
            return Err(FreeError::Corrupted {
                ptr: a,
                what: "span header does not match the page map",
            });
        }
        Ok(s)
    }

    /// Checks that `ptr` is a live object of class `c`; returns its span and slot.
    #[inline]
    fn check_object(&self, ptr: *mut u8, c: usize) -> Result<(*mut SpanHeader, usize), FreeError> {
        let s = self.find_span(ptr, c)?;
        let g = self
            .geo(c)
            .ok_or(FreeError::Foreign { ptr: ptr as usize })?;
        let off = ptr as usize - span::base_of(s, &g) as usize;
        let slot = slot_of(off, g.recip);
        let a = ptr as usize;
        // SAFETY: `s` is a span of class c (checked), `slot < bump <= slots` before the bit test.
        unsafe {
            if slot * g.size as usize != off
                || slot < g.first as usize
                || slot >= (*s).bump as usize
            {
                return Err(FreeError::NotABlock { ptr: a });
            }
            if !span::test_bit(s, slot) {
                return Err(FreeError::DoubleFree { ptr: a });
            }
        }
        Ok((s, slot))
    }

    fn fix_mismatch(e: FreeError, layout: Layout) -> FreeError {
        match e {
            FreeError::LayoutMismatch { ptr, .. } => FreeError::LayoutMismatch {
                ptr,
                size: layout.size(),
                align: layout.align(),
            },
            e => e,
        }
    }

    /// Allocates without recording the operation; returns the block and the bytes it holds.
    #[inline]
    fn alloc_inner(&mut self, layout: Layout) -> Result<(NonNull<[u8]>, usize), AllocError> {
        match self.path(layout) {
            Path::Tiny => self.tiny_alloc(layout),
            Path::Class(c) => {
                let Some((s, obj, slot)) = self.slot_alloc(c) else {
                    return Err(AllocError::out_of_memory(layout));
                };
                // SAFETY: `slot` is a slot of span `s` of class c.
                unsafe { span::put_bit(s, slot, true) };
                self.classes[c].requested += layout.size();
                let size = self.table.size(c);
                // SAFETY: slots are never null.
                let p = unsafe { NonNull::new_unchecked(obj) };
                Ok((NonNull::slice_from_raw_parts(p, size), size))
            }
            Path::Large => {
                let before = self.large.stats().live_held;
                let b = self.large.allocate(layout)?;
                let held = self.large.stats().live_held.saturating_sub(before);
                self.sync_footprint();
                Ok((b, held.max(layout.size())))
            }
        }
    }

    /// Frees without recording the operation; returns the bytes the block held.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::deallocate`].
    #[inline]
    unsafe fn free_inner(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<usize, FreeError> {
        match self.path(layout) {
            // SAFETY: forwarded caller contract.
            Path::Tiny => unsafe { self.tiny_free(ptr, layout) },
            Path::Class(c) => {
                let (s, slot) = self
                    .check_object(ptr.as_ptr(), c)
                    .map_err(|e| Self::fix_mismatch(e, layout))?;
                // SAFETY: validated live slot of `s`.
                unsafe { span::put_bit(s, slot, false) };
                let st = &mut self.classes[c];
                st.requested -= layout.size().min(st.requested);
                let size = self.table.size(c);
                let obj = self.geo(c).map_or(ptr.as_ptr(), |g| {
                    span::base_of(s, &g).wrapping_add(slot * size)
                });
                // SAFETY: validated live slot of `s` (its pointer derived from the span's, not
                // the caller's), given up by the caller.
                unsafe { self.slot_free(c, s, obj) };
                Ok(size)
            }
            Path::Large => {
                let before = self.large.stats().live_held;
                // SAFETY: forwarded caller contract.
                unsafe { self.large.deallocate(ptr, layout) }?;
                let held = before.saturating_sub(self.large.stats().live_held);
                self.sync_footprint();
                Ok(held.max(layout.size()))
            }
        }
    }
}

/// The fast paths: a size class or a tiny object whose span is at hand. Each either does the
/// whole operation (with its statistics) or changes nothing and declines, and the general path
/// then handles (or reports) the request.
impl<L: FreeSpaceManager> Segregated<L> {
    /// Counts an allocation of `requested` bytes holding `held` in `stats`: plain adds, and a
    /// call to [`Segregated::raise_peaks`] only when a gate is passed.
    #[inline(always)]
    fn count_alloc(&mut self, requested: usize, held: usize) {
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
    fn count_free(&mut self, requested: usize, held: usize) {
        let st = &mut self.stats;
        st.frees += 1;
        st.live_requested = st.live_requested.saturating_sub(requested);
        st.live_held = st.live_held.saturating_sub(held);
    }

    /// What `Stats::record_alloc` does to the peaks after adding live bytes, for the fast paths
    /// (which have added them already); then moves the gates.
    #[inline(always)]
    fn raise_peaks(&mut self) {
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
    fn set_gates(&mut self) {
        let st = &self.stats;
        self.gate_held = st.peak_live_held;
        self.gate_requested = if st.footprint == st.peak_footprint {
            st.peak_live_requested
                .min(st.live_requested_at_peak_footprint)
        } else {
            st.peak_live_requested
        };
    }

    /// The common case of `allocate`: a size class up to 1024 B at alignment <= 8 whose partial
    /// list has a span, or a tiny object that fits in the current block.
    #[inline(always)]
    fn alloc_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        let size = layout.size();
        if layout.align() > 8 || size > 1024 {
            return None;
        }
        if size < self.tiny_below {
            return self.tiny_alloc_fast(size, layout.align());
        }
        // Class 0 (no class this small in a user table) has no spans.
        let c = self.index8[(size + 7) >> 3] as usize;
        debug_assert!(c < SLOTS);
        // SAFETY: `index8` comes from a `ClassTable`, whose entries are classes up to its
        // length, at most `MAX_CLASSES < SLOTS`.
        let st = unsafe { self.classes.get_unchecked_mut(c) };
        let s = st.partial;
        if s.is_null() {
            return None;
        }
        // SAFETY: `s` heads class c's partial list: a live span of class c with a free slot,
        // either on its free list or at `bump < slots`; its bitmap has a bit per slot.
        let obj = unsafe {
            let base = s.cast::<u8>().wrapping_sub(st.header_at as usize);
            let mut obj = (*s).free;
            if !obj.is_null() {
                (*s).free = obj.cast::<*mut u8>().read();
            } else {
                let b = (*s).bump;
                (*s).bump = b + 1;
                obj = base.wrapping_add(b as usize * st.size as usize);
            }
            span::put_bit(s, slot_of(obj as usize - base as usize, st.recip), true);
            let live = (*s).live;
            if live == 0 {
                st.empty -= 1;
            }
            (*s).live = live + 1;
            st.requested += size;
            if live + 1 == st.objects {
                SpanList::remove(&mut st.partial, s);
                SpanList::push(&mut st.full, s);
                (*s).full = true;
            }
            obj
        };
        let held = st.size as usize;
        self.count_alloc(size, held);
        // SAFETY: slots are never null.
        let p = unsafe { NonNull::new_unchecked(obj) };
        Some(NonNull::slice_from_raw_parts(p, held))
    }

    /// A tiny object that fits in the current block.
    #[inline(always)]
    fn tiny_alloc_fast(&mut self, size: usize, align: usize) -> Option<NonNull<[u8]>> {
        let t = &mut self.tiny;
        let size1 = size.max(1);
        // `align` is a power of two at most 8.
        let off = (t.off + align - 1) & !(align - 1);
        if t.block.is_null() || off + size1 > TINY_BLOCK {
            return None;
        }
        // SAFETY: the current block is a live slot of the tiny span `t.span`.
        unsafe { *span::tiny_mask(t.span, t.slot) |= 1 << off };
        t.off = off + size1;
        t.objects += 1;
        t.unshared += self.tiny_unshared[size] as usize;
        let p = t.block.wrapping_add(off);
        self.classes[TINY].requested += size1;
        self.count_alloc(size, size1);
        // SAFETY: inside a slot, never null.
        let p = unsafe { NonNull::new_unchecked(p) };
        Some(NonNull::slice_from_raw_parts(p, size1))
    }

    /// The common case of `deallocate`: a live object of a size class up to 1024 B whose span
    /// was not full and, if it becomes empty, is kept; or a tiny object whose block keeps an
    /// object or is the current one. Returns false, having changed nothing, for anything
    /// else.
    #[inline(always)]
    fn free_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> Freed {
        let size = layout.size();
        if layout.align() > 8 || size > 1024 {
            return Freed::Declined;
        }
        if size < self.tiny_below {
            return if self.tiny_free_fast(ptr, size) {
                Freed::Done
            } else {
                Freed::Declined
            };
        }
        let c = self.index8[(size + 7) >> 3] as usize;
        let a = ptr.as_ptr() as usize;
        // The page map says which span (and class) holds `a` before anything of it is read.
        // Class 0 (no span there, or no class for the size in a user table) declines.
        let (base, class) = self.pages.lookup_raw(a);
        if class as usize != c || c == 0 {
            return Freed::Declined;
        }
        debug_assert!(c < SLOTS);
        // SAFETY: as in `alloc_fast`, `c` is at most `MAX_CLASSES < SLOTS`.
        let st = unsafe { self.classes.get_unchecked_mut(c) };
        let s = base
            .wrapping_add(st.header_at as usize)
            .cast::<SpanHeader>();
        // SAFETY: the page map says a span of class c starts at `base` and holds `a` (so
        // `a >= base`); its entries are written by `new_span` once the span is ours and erased
        // by `drop_span` before it goes back, so the header is initialised. (The header's magic
        // and class, a canary against stray writes, are checked on the general path only.)
        // The slot is checked against `slots` before its bit is read. A slot in the header
        // (below `first`) or never handed out (at or above `bump`) has its bit clear, so the bit
        // test sends it to the general path, which reports it.
        unsafe {
            let off = a - base as usize;
            let slot = slot_of(off, st.recip);
            if slot * st.size as usize != off
                || slot >= st.slots as usize
                || !span::test_bit(s, slot)
            {
                return Freed::Declined;
            }
            span::put_bit(s, slot, false);
            // Written through the span's pointer: the caller's may cover only its bytes.
            let obj = base.wrapping_add(off);
            obj.cast::<*mut u8>().write((*s).free);
            (*s).free = obj;
            let live = (*s).live - 1;
            (*s).live = live;
            st.requested = st.requested.saturating_sub(size);
            // The object was live, so `stats` counts it and its class size: no underflow.
            // (`live_blocks` is `allocs - frees`, filled in by `stats()`.)
            let held = st.size as usize;
            let stats = &mut self.stats;
            stats.frees += 1;
            stats.live_requested = stats.live_requested.saturating_sub(size);
            stats.live_held = stats.live_held.wrapping_sub(held);
            if (*s).full {
                return Freed::Unfull(c, s);
            }
            if live == 0 {
                let st = self.classes.get_unchecked_mut(c);
                st.empty += 1;
                if st.empty > self.config.keep_empty {
                    return Freed::Emptied(c, s);
                }
            }
        }
        Freed::Done
    }

    /// The end of a free the fast path did, when span `s` of class `c` changes lists: from
    /// full to partial (and, with one object per span, becomes empty too: counted here), or,
    /// empty (and counted), goes back to the page level.
    ///
    /// # Safety
    /// `s` is a span of class `c`: in its full list for [`Freed::Unfull`], empty and in its
    /// partial list for [`Freed::Emptied`].
    #[cold]
    #[inline(never)]
    unsafe fn free_span_change(&mut self, how: Freed) -> Result<(), FreeError> {
        let (c, s) = match how {
            Freed::Unfull(c, s) => {
                let st = &mut self.classes[c];
                // SAFETY: `s` is in the full list (caller).
                unsafe {
                    SpanList::remove(&mut st.full, s);
                    SpanList::push(&mut st.partial, s);
                    (*s).full = false;
                    if (*s).live != 0 {
                        return Ok(());
                    }
                }
                st.empty += 1;
                if st.empty <= self.config.keep_empty {
                    return Ok(());
                }
                (c, s)
            }
            Freed::Emptied(c, s) => (c, s),
            Freed::Done | Freed::Declined => return Ok(()),
        };
        // SAFETY: an empty span of class c in its partial list, counted as empty.
        unsafe { self.drop_span(c, s) };
        Ok(())
    }

    /// A tiny object whose block keeps another object or is the current block.
    #[inline(always)]
    fn tiny_free_fast(&mut self, ptr: NonNull<u8>, size: usize) -> bool {
        let a = ptr.as_ptr() as usize;
        let (base, class) = self.pages.lookup_raw(a);
        if class as usize != TINY {
            return false;
        }
        let st = &mut self.classes[TINY];
        let s = base
            .wrapping_add(st.header_at as usize)
            .cast::<SpanHeader>();
        // SAFETY: as in `free_fast`: the page map vouches for a tiny span at `base` holding
        // `a`; `slot < slots` is checked before the block's mask is read (blocks in the header
        // or never handed out have empty masks).
        unsafe {
            let off = a - base as usize;
            let slot = off / TINY_BLOCK;
            let bit = 1u16 << (off % TINY_BLOCK);
            if slot >= st.slots as usize {
                return false;
            }
            let mask = span::tiny_mask(s, slot);
            let m = *mask;
            if m & bit == 0 {
                return false;
            }
            let left = m & !bit;
            if left == 0 {
                // An emptied block other than the current one goes back to its span: the
                // general path does that.
                let block = base.wrapping_add(slot * TINY_BLOCK);
                if block != self.tiny.block || self.config.keep_empty == 0 {
                    return false;
                }
                self.tiny.off = 0;
            }
            *mask = left;
        }
        let size1 = size.max(1);
        st.requested = st.requested.saturating_sub(size1);
        let t = &mut self.tiny;
        t.objects -= 1;
        t.unshared = t.unshared.saturating_sub(self.tiny_unshared[size] as usize);
        self.count_free(size, size1);
        true
    }

    /// `allocate` beyond the fast path.
    #[cold]
    #[inline(never)]
    fn allocate_slow(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.alloc_inner(layout) {
            Ok((b, held)) => {
                self.stats.record_alloc(layout.size(), held);
                Ok(b)
            }
            Err(e) => {
                self.stats.record_failure();
                Err(e)
            }
        }
    }

    /// `deallocate` beyond the fast path.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::deallocate`].
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_slow(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded caller contract.
        match unsafe { self.free_inner(ptr, layout) } {
            Ok(held) => {
                self.stats.record_free(layout.size(), held);
                Ok(())
            }
            Err(e) => {
                self.stats.record_bad_free();
                Err(e)
            }
        }
    }
}

impl<L: FreeSpaceManager> FreeSpaceManager for Segregated<L> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.alloc_fast(layout) {
            Some(b) => Ok(b),
            None => self.allocate_slow(layout),
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        // The calls below are the function's last act, so they can be jumps, and the fast path
        // needs no registers saved.
        match self.free_fast(ptr, layout) {
            Freed::Done => Ok(()),
            // SAFETY: forwarded caller contract.
            Freed::Declined => unsafe { self.deallocate_slow(ptr, layout) },
            // SAFETY: `free_fast` says which span changes and how.
            how => unsafe { self.free_span_change(how) },
        }
    }

    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match (self.path(old), self.path(new)) {
            (Path::Class(a), Path::Class(b)) if a == b => {
                self.check_object(ptr.as_ptr(), a)
                    .map_err(|e| AllocError::InvalidBlock(Self::fix_mismatch(e, old)))?;
                let st = &mut self.classes[a];
                st.requested = st.requested - old.size().min(st.requested) + new.size();
                let size = self.table.size(a);
                self.stats
                    .record_resize(old.size(), size, new.size(), size, true);
                Ok(NonNull::slice_from_raw_parts(ptr, size))
            }
            (Path::Tiny, Path::Tiny) => {
                // SAFETY: forwarded caller contract.
                unsafe { self.tiny_resize_in_place(ptr, old, new) }
            }
            (Path::Large, Path::Large) => {
                let before = self.large.stats().live_held;
                // SAFETY: forwarded caller contract.
                let b = unsafe { self.large.resize_in_place(ptr, old, new) }?;
                let after = self.large.stats().live_held;
                self.sync_footprint();
                // Only the change in held bytes is known: record it as such.
                let (oh, nh) = if after >= before {
                    (0, after - before)
                } else {
                    (before - after, 0)
                };
                self.stats
                    .record_resize(old.size(), oh, new.size(), nh, true);
                Ok(b)
            }
            // Another class: the block moves, but is checked first (the small paths can), so
            // that `resize_by_moving` never copies from a bad pointer.
            (Path::Tiny, _) => {
                self.check_tiny(ptr.as_ptr())
                    .map_err(|e| AllocError::InvalidBlock(Self::fix_mismatch(e, old)))?;
                Err(AllocError::NotInPlace)
            }
            (Path::Class(c), _) => {
                self.check_object(ptr.as_ptr(), c)
                    .map_err(|e| AllocError::InvalidBlock(Self::fix_mismatch(e, old)))?;
                Err(AllocError::NotInPlace)
            }
            // The large manager checks the block when it is freed, after the copy.
            (Path::Large, _) => Err(AllocError::NotInPlace),
        }
    }

    fn stats(&self) -> Stats {
        self.stats_now()
    }

    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    /// Not yet written: the walk over this policy's structures lands with issue 11's per-policy
    /// work (until then it checks nothing).
    fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
        Ok(())
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        self.show(out);
    }

    fn detects(&self) -> Detects {
        let l = self.large.detects();
        Detects {
            // Small sizes detect both by range, magic and bitmap; large ones as `L` does.
            foreign: l.foreign,
            double_free: l.double_free,
            layout_mismatch: false,
        }
    }
}
