//! The single-threaded core: one thread cache, the central lists and the page heap behind
//! `&mut self`, as a [`FreeSpaceManager`].
//!
//! ```text
//!   allocate(layout)
//!     class_for(layout) -> c        (size map; None: whole pages)
//!     thread cache lists[c] --miss--> central[c]: transfer cache -> spans --> page heap --> source
//!   deallocate(ptr)
//!     pagemap[ptr >> 13] -> (span, class)     the pointer alone says where it belongs
//!     class != 0: push on lists[c]  (too long: a batch goes back to central[c])
//!     class == 0: a large span: back to the page heap, coalesced with its free neighbours
//! ```
//!
//! Bad frees it reports (see [`FreeSpaceManager::detects`]): a pointer in no span of this heap
//! ([`FreeError::Foreign`]); a pointer inside a span that is not the start of an object (below
//! the span's last object's end) or of a large block, or into free pages
//! ([`FreeError::NotABlock`]: a large block freed twice is one); a small object freed again while
//! it is free ([`FreeError::DoubleFree`]), wherever it is (thread cache, transfer cache, its
//! span's free list), so `Detects::double_free_above` is 0:
//!
//! * an object of 16 B or more carries the process's key ([`crate::key`]) from its first free
//!   until it is handed out again, and a free that finds the key searches the thread cache, the
//!   transfer cache and the object's span;
//! * an 8 B object has no room for the key (its one word is the link), so every span of the 8 B
//!   class carries a bitmap of the objects handed out to callers ([`Span::handed`], 128 bytes
//!   from the metadata arena, recycled with the span): `allocate` sets the object's bit, a free
//!   that finds it clear is refused, an accepted free clears it. A free pays one bit test (its
//!   span is already known); an allocation finds the object's bitmap through the pool's hint
//!   (the page of the last 8 B free: the thread cache hands out the object freed last first) or
//!   else a pagemap lookup.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{
    AllocError, BlockKind, Corruption, Detects, FreeError, FreeSpaceManager, Inspector,
    MemorySource, Stats,
};

use crate::central::{Central, PageSource};
use crate::check::{self, Parts};
use crate::key::process_key;
use crate::page_heap::PageHeap;
use crate::pagemap::PageMap;
use crate::size_map::{MAX_OBJECTS_PER_SPAN, NUM_CLASSES, PAGE_SHIFT, PAGE_SIZE, SIZE_MAP};
use crate::span::{HANDED_CLASS, HANDED_SIZE, HandedPool, Location, Span};
use crate::thread_cache::{Backend, DEFAULT_OVERALL_THREAD_CACHE_SIZE, STEAL_AMOUNT, ThreadCache};

/// The page heap, its pagemap and the source, as the central lists see them, with the pool of
/// the handed-out bitmaps that `Core` puts on every span of the 8 B class.
pub(crate) struct HeapAccess<'a, S: MemorySource + ?Sized> {
    pub heap: &'a mut PageHeap,
    pub pagemap: &'a PageMap,
    pub source: &'a mut S,
    pub handed: &'a mut HandedPool,
}

impl<S: MemorySource + ?Sized> PageSource for HeapAccess<'_, S> {
    fn new_class_span(&mut self, pages: usize, class: usize) -> Option<*mut Span> {
        // The bitmap first: if the span then fails, the bitmap waits in the pool.
        let handed = if class == HANDED_CLASS {
            self.handed.alloc(&mut self.heap.arena, self.source)?
        } else {
            core::ptr::null_mut()
        };
        let Some(s) = self.heap.new_span(pages, self.pagemap, self.source) else {
            if !handed.is_null() {
                // SAFETY: just taken from the pool; no span holds it.
                unsafe { self.handed.recycle(handed) };
            }
            return None;
        };
        // SAFETY: `s` was just carved and is in use; its objects are all free, so no bit of
        // its (clear) bitmap is set.
        unsafe {
            self.heap.register_class(s, class, self.pagemap);
            (*s).handed = handed;
        }
        Some(s)
    }
    unsafe fn delete_class_span(&mut self, s: *mut Span) {
        // SAFETY: forwarded caller contract; the span's objects are all free, its bitmap (if
        // any) clear and held by no one else once unlinked here.
        unsafe {
            let handed = (*s).handed;
            if !handed.is_null() {
                (*s).handed = core::ptr::null_mut();
                self.handed.recycle(handed);
            }
            self.heap.unregister_class(s, self.pagemap);
            self.heap
                .delete_span(s, self.pagemap, Some(&mut *self.source));
        }
    }
    fn pagemap(&self) -> &PageMap {
        self.pagemap
    }
}

struct CoreBackend<'a, S: MemorySource> {
    central: &'a mut [Central; NUM_CLASSES],
    heap: HeapAccess<'a, S>,
    unclaimed: &'a mut isize,
    max_size: &'a mut usize,
}

impl<S: MemorySource> Backend for CoreBackend<'_, S> {
    fn remove_range(&mut self, class: usize, n: usize) -> Option<(*mut u8, *mut u8, usize)> {
        self.central[class].remove_range(n, &mut self.heap)
    }
    unsafe fn insert_range(&mut self, class: usize, head: *mut u8, tail: *mut u8, n: usize) {
        // SAFETY: forwarded caller contract.
        unsafe { self.central[class].insert_range(head, tail, n, &mut self.heap) }
    }
    fn max_size(&self) -> usize {
        *self.max_size
    }
    fn increase_cache_limit(&mut self) {
        // One thread: nobody to steal from, only the unclaimed budget.
        if *self.unclaimed > 0 {
            *self.unclaimed -= STEAL_AMOUNT as isize;
            *self.max_size += STEAL_AMOUNT;
        }
    }
}

/// The single-threaded tcmalloc over a [`MemorySource`].
pub struct Core<S: MemorySource> {
    pub(crate) source: S,
    pub(crate) heap: PageHeap,
    pub(crate) pagemap: PageMap,
    pub(crate) central: [Central; NUM_CLASSES],
    pub(crate) cache: ThreadCache,
    /// The bitmaps of [`Span::handed`] (one per span of [`HANDED_CLASS`] in use).
    pub(crate) handed: HandedPool,
    unclaimed: isize,
    max_size: usize,
    /// `live_blocks` = objects out of the spans (their `refcount`s) minus those cached, plus
    /// the large spans in use.
    pub(crate) stats: Stats,
}

impl<S: MemorySource> core::fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Core")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The central lists of every class (class 0's is unused).
pub(crate) const fn centrals() -> [Central; NUM_CLASSES] {
    let mut i = 0;
    let mut a = [const { Central::new(0) }; NUM_CLASSES];
    while i < NUM_CLASSES {
        a[i] = Central::new(i);
        i += 1;
    }
    a
}

impl<S: MemorySource> Core<S> {
    /// A heap that takes its memory (pages and metadata) from `source`. `const`, so it can sit in
    /// a `static` behind [`allocator_traits::Locked`].
    pub const fn new(source: S) -> Self {
        Core {
            source,
            heap: PageHeap::new(),
            pagemap: PageMap::new(),
            central: centrals(),
            cache: ThreadCache::new(),
            handed: HandedPool::new(),
            // The one thread cache starts with 64 KiB of the overall budget, as a new
            // gperftools thread cache does.
            unclaimed: (DEFAULT_OVERALL_THREAD_CACHE_SIZE - STEAL_AMOUNT) as isize,
            max_size: STEAL_AMOUNT,
            stats: Stats::new(),
        }
    }

    /// The memory source.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn parts(&mut self) -> (&mut ThreadCache, CoreBackend<'_, S>) {
        (
            &mut self.cache,
            CoreBackend {
                central: &mut self.central,
                heap: HeapAccess {
                    heap: &mut self.heap,
                    pagemap: &self.pagemap,
                    source: &mut self.source,
                    handed: &mut self.handed,
                },
                unclaimed: &mut self.unclaimed,
                max_size: &mut self.max_size,
            },
        )
    }

    /// Gives every free page of the page heap back to the source now (gperftools'
    /// `MallocExtension::ReleaseFreeMemory`); returns the pages released.
    pub fn release_free_memory(&mut self) -> usize {
        let n = self
            .heap
            .release_at_least(usize::MAX, &self.pagemap, &mut self.source);
        self.stats.set_footprint(self.source.footprint());
        n
    }

    /// Gives everything in the thread cache back to the central lists (what a thread's exit
    /// does in the concurrent allocator).
    pub fn flush_thread_cache(&mut self) {
        let (cache, mut backend) = self.parts();
        cache.flush(&mut backend);
    }

    fn alloc_large(&mut self, layout: Layout) -> Option<*mut Span> {
        let pages = layout.size().checked_add(PAGE_SIZE - 1)? >> PAGE_SHIFT;
        let pages = pages.max(1);
        if layout.align() > PAGE_SIZE {
            self.heap
                .new_span_aligned(pages, layout.align(), &self.pagemap, &mut self.source)
        } else {
            self.heap.new_span(pages, &self.pagemap, &mut self.source)
        }
    }

    /// Finds the block `ptr` points at: `(span, class)` or the error a free of it reports.
    fn block_of(&self, ptr: NonNull<u8>) -> Result<(*mut Span, usize), FreeError> {
        let addr = ptr.as_ptr() as usize;
        let page = addr >> PAGE_SHIFT;
        let class = self.pagemap.class(page);
        let s = self.pagemap.get(page);
        if s.is_null() {
            // Inside a large or free span (exact only at its ends), or not ours at all.
            return Err(if self.heap.holds(addr) {
                FreeError::NotABlock { ptr: addr }
            } else {
                FreeError::Foreign { ptr: addr }
            });
        }
        // SAFETY: pagemap entries name span records of ours (maybe stale, but valid memory).
        let (start, pages, loc, sclass) =
            unsafe { ((*s).start as usize, (*s).pages, (*s).location, (*s).class) };
        let not_block = FreeError::NotABlock { ptr: addr };
        if loc != Location::InUse || addr < start || addr >= start + (pages << PAGE_SHIFT) {
            return Err(not_block);
        }
        if class != 0 {
            if sclass as usize != class || !SIZE_MAP.is_object_start(class, addr - start) {
                return Err(not_block);
            }
        } else if sclass != 0 || addr != start {
            return Err(not_block);
        }
        Ok((s, class))
    }

    /// `Err(DoubleFree)` if the object `ptr` of class `class` (16 B or more) in span `s` is
    /// free: in the thread cache, in a transfer batch, or on its span's free list. Searched only
    /// when the object carries the key (every free object does).
    fn check_not_free(&self, s: *mut Span, class: usize, ptr: *mut u8) -> Result<(), FreeError> {
        let list = self.cache.list(class);
        // SAFETY: `ptr` is an object start of `class` (checked by `block_of`).
        let marked = unsafe { self.cache.carries_key(class, ptr, process_key()) };
        if !marked {
            return Ok(());
        }
        let batch = SIZE_MAP.batch_size(class);
        let in_batch = |head: *mut u8| {
            let mut o = head;
            (0..batch).any(|_| {
                let hit = o == ptr;
                // SAFETY: a batch is `batch` linked free objects of ours.
                o = unsafe { o.cast::<*mut u8>().read() };
                hit
            })
        };
        let in_span = || {
            // SAFETY: `s` is `ptr`'s live span; its free objects are linked through their first
            // word, null-terminated.
            let mut o = unsafe { (*s).objects };
            while !o.is_null() {
                if o == ptr {
                    return true;
                }
                // SAFETY: as above.
                o = unsafe { o.cast::<*mut u8>().read() };
            }
            false
        };
        let free = list.contains(ptr)
            || self.central[class]
                .transfer
                .batches()
                .iter()
                .any(|b| in_batch(b.head))
            || in_span();
        if free {
            Err(FreeError::DoubleFree { ptr: ptr as usize })
        } else {
            Ok(())
        }
    }

    /// Accepts the free of the 8 B object `ptr` of span `s` by clearing its handed-out bit, or
    /// `Err(DoubleFree)` if the bit is clear (the object is free: cached or in its span).
    ///
    /// # Safety
    /// `(s, HANDED_CLASS)` is what [`block_of`](Self::block_of) said of `ptr`.
    unsafe fn take_handed(&mut self, s: *mut Span, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: `s` is `ptr`'s live span of the 8 B class (caller); such a span of a `Core`
        // has a bitmap (`Span::handed`), and `ptr` is one of its objects (below the last
        // object's end), so its word is inside the bitmap.
        unsafe {
            let handed = (*s).handed;
            if handed.is_null() {
                // A broken invariant the walk reports: no bit to read, so the free is decided
                // as it was before the bitmaps (the key check, which an 8 B object never
                // carries).
                return self.check_not_free(s, HANDED_CLASS, ptr);
            }
            let start = (*s).start as usize;
            let i = (ptr as usize - start) / HANDED_SIZE;
            let word = &mut (*handed)[i / 64];
            let bit = 1u64 << (i % 64);
            if *word & bit == 0 {
                return Err(FreeError::DoubleFree { ptr: ptr as usize });
            }
            *word &= !bit;
            // The next 8 B allocation is likely this object again (the thread cache is LIFO).
            self.handed
                .set_hint(ptr as usize >> PAGE_SHIFT, start, handed);
        }
        Ok(())
    }

    /// Sets the handed-out bit of the 8 B object `p`, about to be handed to a caller.
    fn mark_handed(&mut self, p: *mut u8) {
        let page = p as usize >> PAGE_SHIFT;
        let (start, handed) = match self.handed.hint(page) {
            Some(h) => h,
            None => {
                let s = self.pagemap.get(page);
                if s.is_null() {
                    return;
                }
                // SAFETY: `p` was just taken from a live span of the 8 B class, whose every page
                // maps to it.
                let (start, handed) = unsafe { ((*s).start as usize, (*s).handed) };
                if handed.is_null() {
                    return;
                }
                self.handed.set_hint(page, start, handed);
                (start, handed)
            }
        };
        let i = (p as usize - start) / HANDED_SIZE;
        // SAFETY: `handed` is the bitmap of `p`'s live span (from its record or the pool's hint,
        // which names a live span's page), with a word for each of its objects.
        unsafe { (*handed)[i / 64] |= 1u64 << (i % 64) };
    }

    fn held(&self, s: *mut Span, class: usize) -> usize {
        if class != 0 {
            SIZE_MAP.class_size(class)
        } else {
            // SAFETY: `s` is a live large span of ours.
            unsafe { (*s).bytes() }
        }
    }
}

// SAFETY: all state is owned by the core (the source's memory included).
unsafe impl<S: MemorySource + Send> Send for Core<S> {}

impl<S: MemorySource> Core<S> {
    /// A block for `layout` and the bytes it holds; the stats see only the footprint.
    fn alloc_raw(&mut self, layout: Layout) -> Result<(*mut u8, usize), AllocError> {
        let r = if let Some(class) = SIZE_MAP.class_for(layout) {
            // The thread cache's fast path first: the back end's borrows are built on a miss only.
            let p = match self.cache.try_pop(class) {
                Some(p) => Some(p),
                None => {
                    let (cache, mut backend) = self.parts();
                    cache.fetch_from_central(class, &mut backend)
                }
            };
            if class == HANDED_CLASS
                && let Some(p) = p
            {
                self.mark_handed(p);
            }
            p.map(|p| (p, SIZE_MAP.class_size(class)))
        } else if layout.size() > isize::MAX as usize - PAGE_SIZE {
            return Err(AllocError::unsupported(
                layout,
                "size overflows the address space",
            ));
        } else {
            // SAFETY: a span we just got is valid.
            self.alloc_large(layout)
                .map(|s| unsafe { ((*s).start, (*s).bytes()) })
        };
        self.stats.set_footprint(self.source.footprint());
        r.ok_or(AllocError::out_of_memory(layout))
    }

    /// Frees the checked block `(s, class)` at `ptr`.
    ///
    /// # Safety
    /// `(s, class)` is what [`block_of`](Self::block_of) said of `ptr`, a live block the caller
    /// gives up.
    unsafe fn free_raw(&mut self, s: *mut Span, class: usize, ptr: NonNull<u8>) {
        if class != 0 {
            // SAFETY: `ptr` is the start of an object of `class` in a live span (caller).
            let fits = unsafe {
                self.cache
                    .push(class, ptr.as_ptr(), self.max_size, process_key())
            };
            // The back end's borrows are built only when the list or the cache overflowed.
            if !fits {
                let (cache, mut backend) = self.parts();
                cache.overflow(class, &mut backend);
            }
        } else {
            // SAFETY: `s` is a live large span starting at `ptr` (caller).
            unsafe {
                self.heap
                    .delete_span(s, &self.pagemap, Some(&mut self.source))
            };
        }
    }
}

impl<S: MemorySource> FreeSpaceManager for Core<S> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.alloc_raw(layout) {
            Ok((p, held)) => {
                self.stats.record_alloc(layout.size(), held);
                let slice = core::ptr::slice_from_raw_parts_mut(p, held);
                NonNull::new(slice).ok_or(AllocError::out_of_memory(layout))
            }
            Err(e) => {
                self.stats.record_failure();
                Err(e)
            }
        }
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let checked = self.block_of(ptr).and_then(|(s, class)| {
            if class == HANDED_CLASS {
                // SAFETY: `block_of` said so of `ptr`.
                unsafe { self.take_handed(s, ptr.as_ptr()) }?;
            } else if class != 0 {
                self.check_not_free(s, class, ptr.as_ptr())?;
            }
            Ok((s, class))
        });
        let (s, class) = match checked {
            Ok(b) => b,
            Err(e) => {
                self.stats.record_bad_free();
                return Err(e);
            }
        };
        let held = self.held(s, class);
        // SAFETY: checked by `block_of`; the caller gives the block up.
        unsafe { self.free_raw(s, class, ptr) };
        self.stats.record_free(layout.size(), held);
        // Pages may have gone back to the source.
        self.stats.set_footprint(self.source.footprint());
        Ok(())
    }

    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let (s, class) = self.block_of(ptr).map_err(AllocError::InvalidBlock)?;
        let held = self.held(s, class);
        let fits = if class != 0 {
            SIZE_MAP.class_for(new) == Some(class)
        } else {
            SIZE_MAP.class_for(new).is_none()
                && new.align() <= old.align()
                && new.size().max(1).div_ceil(PAGE_SIZE) == held >> PAGE_SHIFT
        };
        if !fits {
            return Err(AllocError::NotInPlace);
        }
        self.stats
            .record_resize(old.size(), held, new.size(), held, true);
        let slice = core::ptr::slice_from_raw_parts_mut(ptr.as_ptr(), held);
        NonNull::new(slice).ok_or(AllocError::NotInPlace)
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    /// The walk of `check` (src/check.rs) over the page heap, pagemap, spans, central lists, transfer
    /// caches and the thread cache; then the statistics and the budget against what it counted.
    fn check_invariants(&self) -> Result<(), Corruption> {
        let census = check::check_core(&Parts {
            heap: &self.heap,
            pagemap: &self.pagemap,
            central: self.central.each_ref(),
            caches: &[&self.cache],
        })?;
        Corruption::ensure(
            census.out >= census.cached
                && census.out - census.cached + census.large == self.stats.live_blocks,
            "stats",
            self.stats.live_blocks,
            "live_blocks is not the objects out minus those cached plus the large spans",
        )?;
        Corruption::ensure(
            self.handed.live == self.central[HANDED_CLASS].spans,
            "handed-out bitmaps",
            self.handed.live,
            "bitmaps in use are not the 8 B class's spans",
        )?;
        Corruption::ensure(
            self.unclaimed + self.max_size as isize == DEFAULT_OVERALL_THREAD_CACHE_SIZE as isize,
            "thread cache budget",
            self.max_size,
            "max_size and the unclaimed budget do not add up to the overall limit",
        )
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        let mut regions = [(0usize, 0usize); 64];
        let mut nregions = 0;
        self.heap.for_each_region(|s, l| {
            if nregions < regions.len() {
                regions[nregions] = (s, l);
                nregions += 1;
            }
        });
        for &(start, len) in &regions[..nregions] {
            out.region(start, len);
        }
        for &(start, len) in &regions[..nregions] {
            self.inspect_region(start, len, out);
        }
        inspect_cache(&self.cache, "thread cache", out);
        inspect_central(&self.central, out);
        self.heap.inspect_lists(out);
        out.value(format_args!("thread cache size"), self.cache.size());
        out.value(format_args!("thread cache max_size"), self.max_size);
        out.value(
            format_args!("unclaimed cache space"),
            self.unclaimed.max(0) as usize,
        );
    }

    fn detects(&self) -> Detects {
        Detects {
            foreign: true,
            double_free: true,
            double_free_above: 0,
            layout_mismatch: false,
        }
    }
}

impl<S: MemorySource> Core<S> {
    fn inspect_region(&self, start: usize, len: usize, out: &mut dyn Inspector) {
        let end = start + len;
        let mut addr = start;
        while addr < end {
            let s = self.pagemap.get(addr >> PAGE_SHIFT);
            // SAFETY: the first page of every span of a region maps to it.
            let ok = !s.is_null() && unsafe { (*s).start as usize == addr };
            if !ok {
                out.block(addr, end - addr, BlockKind::Padding);
                return;
            }
            // SAFETY: as above.
            let (bytes, loc, class) = unsafe { ((*s).bytes(), (*s).location, (*s).class as usize) };
            match (loc, class) {
                (Location::Free | Location::Returned, _) => out.block(addr, bytes, BlockKind::Free),
                (Location::InUse, 0) => out.block(addr, bytes, BlockKind::Live { requested: 0 }),
                (Location::InUse, c) => self.inspect_span(s, c, out),
            }
            addr += bytes;
        }
    }

    /// Reports every object of the class span `s` (free on its list, cached, or live) and the
    /// padding after the last one. The free list and the caches are walked once each into two
    /// bitmaps on the stack; each object's kind is then two bits of a word.
    fn inspect_span(&self, s: *mut Span, class: usize, out: &mut dyn Inspector) {
        const WORDS: usize = MAX_OBJECTS_PER_SPAN.div_ceil(64);
        let mut free = [0u64; WORDS];
        let mut cached = [0u64; WORDS];
        // SAFETY: `s` is a live class span of ours.
        let (start, bytes, mut obj) = unsafe { ((*s).start as usize, (*s).bytes(), (*s).objects) };
        let size = SIZE_MAP.class_size(class);
        let n = SIZE_MAP.objects_per_span(class);
        let limit = n * size;
        // Objects outside the span (another span's, on a cache list) are not marked.
        let mark = |bits: &mut [u64; WORDS], o: *mut u8| {
            let off = (o as usize).wrapping_sub(start);
            if off < limit {
                let i = off / size;
                bits[i / 64] |= 1 << (i % 64);
            }
        };
        let mut left = n;
        while !obj.is_null() && left > 0 {
            mark(&mut free, obj);
            left -= 1;
            // SAFETY: a span's free objects are linked through their first word.
            obj = unsafe { obj.cast::<*mut u8>().read() };
        }
        let list = self.cache.list(class);
        let mut o = list.head;
        for _ in 0..list.length() {
            if o.is_null() {
                break;
            }
            mark(&mut cached, o);
            // SAFETY: cached objects are linked through their first word.
            o = unsafe { o.cast::<*mut u8>().read() };
        }
        for b in self.central[class].transfer.batches() {
            let mut o = b.head;
            while !o.is_null() {
                mark(&mut cached, o);
                // SAFETY: batch objects are linked through their first word, null-terminated.
                o = unsafe { o.cast::<*mut u8>().read() };
            }
        }
        // Each word's objects in runs of one kind: a run's kind is read once, then one block
        // per object of the run.
        let mut addr = start;
        for w in 0..n.div_ceil(64) {
            let bits = (n - w * 64).min(64) as u32;
            let f = free[w];
            let c = cached[w] & !f;
            let l = !(f | c);
            let mut i = 0u32;
            while i < bits {
                let (kind, mask) = if f >> i & 1 != 0 {
                    (BlockKind::Free, f)
                } else if c >> i & 1 != 0 {
                    (BlockKind::Cached, c)
                } else {
                    (BlockKind::Live { requested: 0 }, l)
                };
                let run = (!(mask >> i)).trailing_zeros().min(bits - i);
                for _ in 0..run {
                    out.block(addr, size, kind);
                    addr += size;
                }
                i += run;
            }
        }
        if limit < bytes {
            out.block(start + limit, bytes - limit, BlockKind::Padding);
        }
    }
}

/// Reports a thread cache's non-empty lists and their limits.
pub(crate) fn inspect_cache(cache: &ThreadCache, name: &str, out: &mut dyn Inspector) {
    for class in 1..NUM_CLASSES {
        let l = cache.list(class);
        if l.length() == 0 && l.max_length() <= 1 {
            continue;
        }
        let size = SIZE_MAP.class_size(class);
        out.begin_list(format_args!("{name} class {class} ({size} B)"));
        for o in l.iter() {
            out.list_entry(o as usize, size);
        }
        out.end_list();
        out.value(format_args!("{name} max_length[{class}]"), l.max_length());
        out.value(format_args!("{name} lowater[{class}]"), l.lowater());
        out.value(format_args!("{name} overages[{class}]"), l.overages());
    }
}

/// Reports the transfer caches and the central lists' spans.
pub(crate) fn inspect_central(central: &[Central], out: &mut dyn Inspector) {
    for (class, c) in central.iter().enumerate().skip(1) {
        let size = SIZE_MAP.class_size(class);
        let batch = SIZE_MAP.batch_size(class);
        if c.transfer.used() > 0 {
            out.begin_list(format_args!(
                "transfer cache class {class} ({size} B, batches of {batch})"
            ));
            for b in c.transfer.batches() {
                out.list_entry(b.head as usize, batch * size);
            }
            out.end_list();
        }
        for (level, list) in c.levels() {
            out.begin_list(format_args!(
                "central class {class} ({size} B) level {level}"
            ));
            for s in list.iter() {
                // SAFETY: spans on a central list are valid.
                unsafe { out.list_entry((*s).start as usize, (*s).bytes()) };
            }
            out.end_list();
        }
        if c.spans > 0 {
            out.value(format_args!("central spans[{class}]"), c.spans);
            out.value(
                format_args!("central free objects[{class}]"),
                c.free_objects,
            );
        }
    }
}
