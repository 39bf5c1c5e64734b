//! The page heap: the back end that hands out spans of whole pages, and gives free pages back to
//! the operating system little by little.
//!
//! ```text
//!              normal (committed)            returned (decommitted)
//!   free[1]   -> [1 page] -> [1 page]        returned[1]   -> [1 page]
//!   free[2]   -> [2 pages]                   returned[2]
//!   ...                                                          exact lists, 1..=128 pages
//!   free[128] -> [128 pages]                 returned[128]
//!   large     -> [300] -> [1500]             large_returned -> [700]   best fit (length, address)
//! ```
//!
//! A request for `n` pages takes the first span of the first non-empty exact list from `n` up,
//! normal before returned at each length, else the best fit among the large spans of both kinds
//! (ties broken by the lower address); the span is carved and the remainder goes back on the list
//! of its length and kind; pages carved from a returned span are committed again
//! (`MemorySource::recommit`). A freed span is coalesced at once with a neighbour on either side
//! that is free in the same way (normal with normal, returned with returned: gperftools 2.10 never
//! merges the two), found through the pagemap entries of the pages just before and after it.
//!
//! Release (gperftools' `IncrementalScavenge`, release rate 1): every page freed counts down
//! `scavenge_counter`; when it goes below zero, one span is released (round robin over the
//! lengths, the oldest span of a normal list, the smallest large one): its pages go to
//! `MemorySource::decommit` (`madvise(MADV_DONTNEED)`) and it moves to the returned lists; the
//! counter is then set to wait `1000 / rate` pages per page released (at most 2^20), or 2^18
//! pages if there was nothing to release. Before growing, if at least a quarter of the heap is
//! free in both kinds, everything free is released first so that the pieces coalesce (at most
//! once per 128 MiB of growth). When nothing fits, the heap grows from the [`MemorySource`] by at
//! least 128 pages (1 MiB), or by exactly what is needed if the source cannot give that much
//! (gperftools' `GrowHeap`).

use core::ptr::null_mut;

use allocator_traits::{Inspector, MemorySource};

use crate::metadata::MetaArena;
use crate::pagemap::PageMap;
use crate::size_map::{MAX_PAGES, PAGE_SHIFT, PAGE_SIZE};
use crate::span::{Location, Span, SpanAllocator, SpanList};

/// gperftools' `FLAGS_tcmalloc_release_rate` default: pages freed per page released, / 1000.
pub const RELEASE_RATE: f64 = 1.0;
/// Pages freed before the next try when a release found nothing (`kDefaultReleaseDelay`).
const DEFAULT_RELEASE_DELAY: i64 = 1 << 18;
/// Longest wait between releases, in pages freed (`kMaxReleaseDelay`).
const MAX_RELEASE_DELAY: i64 = 1 << 20;

/// A range of pages the heap took from the source (adjacent grants merged).
#[derive(Debug)]
struct Chunk {
    start: usize,
    len: usize,
    next: *mut Chunk,
}

/// The page heap.
#[derive(Debug)]
pub struct PageHeap {
    /// `free[k]` holds exactly the normal free spans of `k` pages (`1 <= k <= MAX_PAGES`;
    /// `free[0]` is unused); each is exact in the pagemap at its first and last page, and no two
    /// free spans of the same kind are adjacent (a freed span is coalesced at once).
    pub(crate) free: [SpanList; MAX_PAGES + 1],
    /// The normal free spans longer than `MAX_PAGES` pages.
    pub(crate) large: SpanList,
    /// As `free`, for the returned spans (pages decommitted).
    pub(crate) returned: [SpanList; MAX_PAGES + 1],
    /// As `large`, for the returned spans.
    pub(crate) large_returned: SpanList,
    /// Pages still to be freed before the next release (gperftools' `scavenge_counter_`).
    scavenge_counter: i64,
    /// The list the next release starts from: 1..=MAX_PAGES, or 0 for the large spans.
    release_index: usize,
    /// Recycled span records.
    pub spans: SpanAllocator,
    /// Where spans, pagemap nodes and thread caches come from.
    pub arena: MetaArena,
    chunks: *mut Chunk,
    /// Pages on the normal free lists: the sum of `pages` over `free` and `large`.
    pub free_pages: usize,
    /// Pages on the returned lists: the sum of `pages` over `returned` and `large_returned`.
    pub returned_pages: usize,
    /// Pages taken from the source: the sum of the regions' lengths, tiled exactly by spans.
    pub system_pages: usize,
}

// SAFETY: every pointer the heap holds is to memory it owns (from its source and arena).
unsafe impl Send for PageHeap {}

impl PageHeap {
    /// An empty heap.
    pub const fn new() -> Self {
        PageHeap {
            free: [const { SpanList::new() }; MAX_PAGES + 1],
            large: SpanList::new(),
            returned: [const { SpanList::new() }; MAX_PAGES + 1],
            large_returned: SpanList::new(),
            scavenge_counter: 0,
            release_index: 0,
            spans: SpanAllocator::new(),
            arena: MetaArena::new(),
            chunks: null_mut(),
            free_pages: 0,
            returned_pages: 0,
            system_pages: 0,
        }
    }

    /// The free list a span of `pages` pages at `location` (`Free` or `Returned`) belongs on.
    pub(crate) fn list_of(&self, pages: usize, location: Location) -> &SpanList {
        match (pages <= MAX_PAGES, location) {
            (true, Location::Returned) => &self.returned[pages],
            (true, _) => &self.free[pages],
            (false, Location::Returned) => &self.large_returned,
            (false, _) => &self.large,
        }
    }

    fn list(&mut self, pages: usize, location: Location) -> &mut SpanList {
        match (pages <= MAX_PAGES, location) {
            (true, Location::Returned) => &mut self.returned[pages],
            (true, _) => &mut self.free[pages],
            (false, Location::Returned) => &mut self.large_returned,
            (false, _) => &mut self.large,
        }
    }

    /// Takes free span `s` off its list and out of the page counts.
    ///
    /// # Safety
    /// `s` is on the free list its length and location name.
    unsafe fn unlink_free(&mut self, s: *mut Span) {
        // SAFETY: caller.
        let (len, loc) = unsafe { ((*s).pages, (*s).location) };
        // SAFETY: caller.
        unsafe { self.list(len, loc).remove(s) };
        if loc == Location::Returned {
            self.returned_pages -= len;
        } else {
            self.free_pages -= len;
        }
    }

    /// Puts free span `s` (its `location` set) on its list and into the page counts.
    ///
    /// # Safety
    /// `s` is a free span of ours on no list.
    unsafe fn link_free(&mut self, s: *mut Span) {
        // SAFETY: caller.
        let (len, loc) = unsafe { ((*s).pages, (*s).location) };
        // SAFETY: caller.
        unsafe { self.list(len, loc).push(s) };
        if loc == Location::Returned {
            self.returned_pages += len;
        } else {
            self.free_pages += len;
        }
    }

    /// A span of `n >= 1` pages, in use, class 0, recorded in the pagemap at its first and last
    /// page. `None` when the source is exhausted.
    pub fn new_span<S: MemorySource + ?Sized>(
        &mut self,
        n: usize,
        pm: &PageMap,
        source: &mut S,
    ) -> Option<*mut Span> {
        debug_assert!(n >= 1);
        if let Some(s) = self.search(n) {
            return self.carve(s, n, pm, source);
        }
        // About to grow while much is free in pieces of both kinds that cannot merge: release
        // everything so the pieces coalesce, at most once per 128 MiB of growth.
        const FORCED_COALESCE_INTERVAL: usize = 128 << 20;
        let system = self.system_pages << PAGE_SHIFT;
        if self.free_pages != 0
            && self.returned_pages != 0
            && (self.free_pages + self.returned_pages) * 4 >= self.system_pages
            && system / FORCED_COALESCE_INTERVAL
                != system.saturating_add(n << PAGE_SHIFT) / FORCED_COALESCE_INTERVAL
        {
            self.release_at_least(usize::MAX, pm, source);
            if let Some(s) = self.search(n) {
                return self.carve(s, n, pm, source);
            }
        }
        self.grow(n, pm, source)?;
        let s = self.search(n)?;
        self.carve(s, n, pm, source)
    }

    /// A span of `n` pages whose start is aligned to `align` bytes (a power of two above a page).
    pub fn new_span_aligned<S: MemorySource + ?Sized>(
        &mut self,
        n: usize,
        align: usize,
        pm: &PageMap,
        source: &mut S,
    ) -> Option<*mut Span> {
        let extra = (align >> PAGE_SHIFT) - 1;
        let s = self.new_span(n.checked_add(extra)?, pm, source)?;
        // SAFETY: `s` is a span we just carved; no one else knows it.
        unsafe {
            let start = (*s).start as usize;
            let off = ((start.wrapping_neg()) & (align - 1)) >> PAGE_SHIFT;
            let mut s = s;
            if off > 0 {
                let Some(tail) = self.split(s, off, pm, source) else {
                    self.delete_span(s, pm, Some(&mut *source));
                    return None;
                };
                self.delete_span(s, pm, Some(&mut *source));
                s = tail;
            }
            if (*s).pages > n {
                let Some(tail) = self.split(s, n, pm, source) else {
                    self.delete_span(s, pm, Some(&mut *source));
                    return None;
                };
                self.delete_span(tail, pm, Some(&mut *source));
            }
            Some(s)
        }
    }

    /// Splits in-use span `s` after its first `n` pages; returns the tail (in use).
    ///
    /// # Safety
    /// `s` is an in-use span of this heap, longer than `n` pages.
    unsafe fn split<S: MemorySource + ?Sized>(
        &mut self,
        s: *mut Span,
        n: usize,
        pm: &PageMap,
        source: &mut S,
    ) -> Option<*mut Span> {
        // SAFETY: `s` is valid (caller); the tail lies inside it.
        unsafe {
            let tail_start = (*s).start.add(n << PAGE_SHIFT);
            let t = self
                .spans
                .new_span(tail_start, (*s).pages - n, &mut self.arena, source)?;
            (*s).pages = n;
            pm.set((*s).first_page(), s);
            pm.set((*s).last_page(), s);
            pm.set((*t).first_page(), t);
            pm.set((*t).last_page(), t);
            Some(t)
        }
    }

    fn search(&mut self, n: usize) -> Option<*mut Span> {
        for k in n..=MAX_PAGES {
            if !self.free[k].is_empty() {
                return Some(self.free[k].head);
            }
            if !self.returned[k].is_empty() {
                return Some(self.returned[k].head);
            }
        }
        // Best fit by (length, address) among the large spans of both kinds.
        let mut best: *mut Span = null_mut();
        for s in self.large.iter().chain(self.large_returned.iter()) {
            // SAFETY: spans on our lists are valid.
            let (len, at) = unsafe { ((*s).pages, (*s).start as usize) };
            if len < n {
                continue;
            }
            // SAFETY: as above.
            if best.is_null() || unsafe { (len, at) < ((*best).pages, (*best).start as usize) } {
                best = s;
            }
        }
        (!best.is_null()).then_some(best)
    }

    /// Takes free span `s` off its list and carves `n` pages from its front.
    fn carve<S: MemorySource + ?Sized>(
        &mut self,
        s: *mut Span,
        n: usize,
        pm: &PageMap,
        source: &mut S,
    ) -> Option<*mut Span> {
        // SAFETY: `s` is a free span on our lists; its remainder lies inside it.
        unsafe {
            let len = (*s).pages;
            let kind = (*s).location;
            let rest = if len > n {
                let r = self.spans.new_span(
                    (*s).start.add(n << PAGE_SHIFT),
                    len - n,
                    &mut self.arena,
                    source,
                )?;
                Some(r)
            } else {
                None
            };
            self.unlink_free(s);
            (*s).location = Location::InUse;
            (*s).pages = n;
            pm.set((*s).first_page(), s);
            pm.set((*s).last_page(), s);
            if kind == Location::Returned {
                // The carved pages are used again; the remainder stays returned.
                if let Some(start) = core::ptr::NonNull::new((*s).start) {
                    source.recommit(start, n << PAGE_SHIFT);
                }
            }
            if let Some(r) = rest {
                (*r).location = kind;
                pm.set((*r).first_page(), r);
                pm.set((*r).last_page(), r);
                self.link_free(r);
            }
            Some(s)
        }
    }

    /// Returns span `s` to the heap, coalescing it with normal free neighbours, then counts its
    /// pages towards the next release (which needs the source: with `None` the countdown goes
    /// on and the release waits for a later call).
    ///
    /// # Safety
    /// `s` is an in-use span of this heap, with no objects in use and on no central list.
    pub unsafe fn delete_span<S: MemorySource + ?Sized>(
        &mut self,
        s: *mut Span,
        pm: &PageMap,
        source: Option<&mut S>,
    ) {
        // SAFETY: `s` is ours (caller).
        let n = unsafe {
            (*s).location = Location::Free;
            (*s).class = 0;
            (*s).refcount = 0;
            (*s).objects = null_mut();
            (*s).pages
        };
        // SAFETY: `s` is a free span of ours on no list.
        unsafe { self.merge_into_free_list(s, pm) };
        self.incremental_scavenge(n, pm, source);
    }

    /// Coalesces free span `s` (on no list, `location` set) with its neighbours of the same
    /// kind and lists the result.
    ///
    /// # Safety
    /// `s` is a free span of ours on no list.
    unsafe fn merge_into_free_list(&mut self, s: *mut Span, pm: &PageMap) {
        // SAFETY: `s` is ours; the pagemap's entries for the pages bordering a span are exact, so
        // a neighbour found there is a valid span of ours.
        unsafe {
            let kind = (*s).location;
            let first = (*s).first_page();
            if first > 0 {
                let prev = pm.get(first - 1);
                if !prev.is_null() && (*prev).location == kind && (*prev).last_page() == first - 1 {
                    self.unlink_free(prev);
                    (*s).start = (*prev).start;
                    (*s).pages += (*prev).pages;
                    self.spans.delete(prev);
                }
            }
            let after = (*s).last_page() + 1;
            let next = pm.get(after);
            if !next.is_null() && (*next).location == kind && (*next).first_page() == after {
                self.unlink_free(next);
                (*s).pages += (*next).pages;
                self.spans.delete(next);
            }
            pm.set((*s).first_page(), s);
            pm.set((*s).last_page(), s);
            self.link_free(s);
        }
    }

    /// gperftools' `IncrementalScavenge`: `n` more pages freed; release one span when the
    /// countdown runs out.
    fn incremental_scavenge<S: MemorySource + ?Sized>(
        &mut self,
        n: usize,
        pm: &PageMap,
        source: Option<&mut S>,
    ) {
        self.scavenge_counter -= n as i64;
        if self.scavenge_counter >= 0 {
            return;
        }
        let Some(source) = source else { return };
        let released = self.release_at_least(1, pm, source);
        self.scavenge_counter = if released == 0 {
            DEFAULT_RELEASE_DELAY
        } else {
            // Release rate 1: wait 1000 freed pages per page released.
            ((1000.0 / RELEASE_RATE) * released as f64).min(MAX_RELEASE_DELAY as f64) as i64
        };
    }

    /// gperftools' `ReleaseAtLeastNPages`: releases spans round robin over the normal lists
    /// (the oldest span of an exact list, the smallest large one) until `n` pages are released
    /// or none is left; returns the pages released. Stops early if the source keeps the memory.
    pub fn release_at_least<S: MemorySource + ?Sized>(
        &mut self,
        n: usize,
        pm: &PageMap,
        source: &mut S,
    ) -> usize {
        let mut released = 0;
        while released < n && self.free_pages > 0 {
            for _ in 0..=MAX_PAGES {
                if released >= n {
                    break;
                }
                let i = self.release_index;
                self.release_index = (i + 1) % (MAX_PAGES + 1);
                let s = if i == 0 {
                    self.smallest_large()
                } else {
                    self.free[i].tail
                };
                if s.is_null() {
                    continue;
                }
                // SAFETY: `s` is a normal free span on our lists.
                let got = unsafe { self.release_span(s, pm, source) };
                if got == 0 {
                    return released;
                }
                released += got;
            }
        }
        released
    }

    fn smallest_large(&self) -> *mut Span {
        let mut best: *mut Span = null_mut();
        for s in self.large.iter() {
            let smaller = best.is_null()
                // SAFETY: spans on our lists are valid (and `best` is one when not null).
                || unsafe { ((*s).pages, (*s).start) < ((*best).pages, (*best).start) };
            if smaller {
                best = s;
            }
        }
        best
    }

    /// Decommits normal free span `s` and moves it to the returned lists (coalesced with
    /// returned neighbours); returns its pages, or 0 if the source kept the memory.
    ///
    /// # Safety
    /// `s` is a normal free span on our lists.
    unsafe fn release_span<S: MemorySource + ?Sized>(
        &mut self,
        s: *mut Span,
        pm: &PageMap,
        source: &mut S,
    ) -> usize {
        // SAFETY: `s` is ours and free: its pages hold nothing anyone needs.
        unsafe {
            let (start, len) = ((*s).start, (*s).pages);
            let Some(at) = core::ptr::NonNull::new(start) else {
                return 0;
            };
            if !source.decommit(at, len << PAGE_SHIFT) {
                return 0;
            }
            self.unlink_free(s);
            (*s).location = Location::Returned;
            self.merge_into_free_list(s, pm);
            len
        }
    }

    /// Marks every page of `s` as belonging to it with size class `class`.
    ///
    /// # Safety
    /// `s` is an in-use span of this heap.
    pub unsafe fn register_class(&mut self, s: *mut Span, class: usize, pm: &PageMap) {
        // SAFETY: `s` is valid (caller).
        unsafe {
            (*s).class = class as u8;
            for (i, p) in ((*s).first_page()..=(*s).last_page()).enumerate() {
                pm.set(p, s);
                pm.set_class(p, class, i);
            }
        }
    }

    /// Clears the class of every page of `s` (before it goes back to the heap).
    ///
    /// # Safety
    /// `s` is an in-use span of this heap.
    pub unsafe fn unregister_class(&mut self, s: *mut Span, pm: &PageMap) {
        // SAFETY: `s` is valid (caller).
        unsafe {
            (*s).class = 0;
            for p in (*s).first_page()..=(*s).last_page() {
                pm.set_class(p, 0, 0);
            }
        }
    }

    fn grow<S: MemorySource + ?Sized>(
        &mut self,
        n: usize,
        pm: &PageMap,
        source: &mut S,
    ) -> Option<()> {
        let bytes = n.checked_mul(PAGE_SIZE)?;
        let ask = bytes.max(MAX_PAGES * PAGE_SIZE);
        // At least 1 MiB; if the source (or the metadata the new pages need) cannot be had at
        // that size, exactly what is needed.
        self.grow_by(ask, n, pm, source)
            .or_else(|| (ask > bytes).then(|| self.grow_by(bytes, n, pm, source))?)
    }

    fn grow_by<S: MemorySource + ?Sized>(
        &mut self,
        bytes: usize,
        n: usize,
        pm: &PageMap,
        source: &mut S,
    ) -> Option<()> {
        let grant = source.acquire(bytes, PAGE_SIZE).ok()?;
        let start = grant.cast::<u8>().as_ptr();
        let pages = grant.len() >> PAGE_SHIFT;
        let give_back = |source: &mut S| {
            // SAFETY: the grant is ours and unused; a source that refuses keeps it (a leak of
            // address space, counted in the footprint).
            let _ = unsafe { source.release(grant.cast(), grant.len()) };
        };
        if pages < n || !pm.ensure(start as usize >> PAGE_SHIFT, pages, &mut self.arena, source) {
            give_back(source);
            return None;
        }
        let Some(s) = self.spans.new_span(start, pages, &mut self.arena, source) else {
            give_back(source);
            return None;
        };
        if !self.record_chunk(start as usize, pages << PAGE_SHIFT, source) {
            // SAFETY: the record is ours and named by nothing.
            unsafe { self.spans.delete(s) };
            give_back(source);
            return None;
        }
        self.system_pages += pages;
        // SAFETY: `s` is a fresh in-use span covering the new pages.
        unsafe { self.delete_span(s, pm, Some(source)) };
        Some(())
    }

    fn record_chunk<S: MemorySource + ?Sized>(
        &mut self,
        start: usize,
        len: usize,
        source: &mut S,
    ) -> bool {
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: chunk records are valid and ours.
            unsafe {
                if (*c).start + (*c).len == start {
                    (*c).len += len;
                    return true;
                }
                if start + len == (*c).start {
                    (*c).start = start;
                    (*c).len += len;
                    return true;
                }
                c = (*c).next;
            }
        }
        let Some(p) = self.arena.alloc(
            core::mem::size_of::<Chunk>(),
            core::mem::align_of::<Chunk>(),
            source,
        ) else {
            return false;
        };
        let p = p.cast::<Chunk>().as_ptr();
        // SAFETY: a fresh block of the right size and alignment.
        unsafe {
            p.write(Chunk {
                start,
                len,
                next: self.chunks,
            })
        };
        self.chunks = p;
        true
    }

    /// Whether `addr` lies in a range of pages the heap took from its source.
    pub fn holds(&self, addr: usize) -> bool {
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: chunk records are valid and ours.
            let (s, l, next) = unsafe { ((*c).start, (*c).len, (*c).next) };
            if addr >= s && addr - s < l {
                return true;
            }
            c = next;
        }
        false
    }

    /// Calls `f(start, len)` for each range of pages the heap holds, in address order.
    pub fn for_each_region(&self, mut f: impl FnMut(usize, usize)) {
        // Few regions: a selection by address is enough.
        let mut last = 0usize;
        let mut first = true;
        loop {
            let mut best: Option<(usize, usize)> = None;
            let mut c = self.chunks;
            while !c.is_null() {
                // SAFETY: chunk records are valid and ours.
                let (s, l) = unsafe { ((*c).start, (*c).len) };
                if (first || s > last) && best.is_none_or(|(b, _)| s < b) {
                    best = Some((s, l));
                }
                // SAFETY: as above.
                c = unsafe { (*c).next };
            }
            let Some((s, l)) = best else { break };
            f(s, l);
            last = s;
            first = false;
        }
    }

    /// Reports the free lists to `out`.
    pub fn inspect_lists(&self, out: &mut dyn Inspector) {
        for k in 1..=MAX_PAGES {
            if self.free[k].is_empty() {
                continue;
            }
            out.begin_list(format_args!("page heap free[{k}] ({} KiB spans)", k * 8));
            for s in self.free[k].iter() {
                // SAFETY: spans on our lists are valid.
                unsafe { out.list_entry((*s).start as usize, (*s).bytes()) };
            }
            out.end_list();
        }
        if !self.large.is_empty() {
            out.begin_list(format_args!("page heap large (> {MAX_PAGES} pages)"));
            for s in self.large.iter() {
                // SAFETY: spans on our lists are valid.
                unsafe { out.list_entry((*s).start as usize, (*s).bytes()) };
            }
            out.end_list();
        }
        for k in 1..=MAX_PAGES {
            if self.returned[k].is_empty() {
                continue;
            }
            out.begin_list(format_args!(
                "page heap returned[{k}] ({} KiB spans)",
                k * 8
            ));
            for s in self.returned[k].iter() {
                // SAFETY: spans on our lists are valid.
                unsafe { out.list_entry((*s).start as usize, (*s).bytes()) };
            }
            out.end_list();
        }
        if !self.large_returned.is_empty() {
            out.begin_list(format_args!(
                "page heap large returned (> {MAX_PAGES} pages)"
            ));
            for s in self.large_returned.iter() {
                // SAFETY: spans on our lists are valid.
                unsafe { out.list_entry((*s).start as usize, (*s).bytes()) };
            }
            out.end_list();
        }
        out.value(format_args!("page heap free pages"), self.free_pages);
        out.value(
            format_args!("page heap returned pages"),
            self.returned_pages,
        );
        out.value(format_args!("page heap system pages"), self.system_pages);
        out.value(format_args!("metadata bytes"), self.arena.used);
    }
}

impl Default for PageHeap {
    fn default() -> Self {
        Self::new()
    }
}
