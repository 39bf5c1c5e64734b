//! The page heap: the back end that hands out spans of whole pages.
//!
//! ```text
//!   free[1]   -> [1 page] -> [1 page]
//!   free[2]   -> [2 pages]
//!   ...                                   exact lists for 1..=128 pages (LIFO)
//!   free[128] -> [128 pages]
//!   large     -> [300 pages] -> [1500 pages]   longer spans: best fit by (length, address)
//! ```
//!
//! A request for `n` pages takes the first span of the first non-empty exact list from `n` up,
//! else the best fit among the large spans (ties broken by the lower address); the span is carved
//! and the remainder goes back on the list of its length. A freed span is coalesced at once with a
//! free neighbour on either side (found through the pagemap entries of the pages just before and
//! just after it). When nothing fits, the heap grows from the [`MemorySource`] by at least 128
//! pages (1 MiB), or by exactly what is needed if the source cannot give that much
//! (gperftools' `GrowHeap`). Pages are never given back to the source.

use core::ptr::null_mut;

use allocator_traits::{Inspector, MemorySource};

use crate::metadata::MetaArena;
use crate::pagemap::PageMap;
use crate::size_map::{MAX_PAGES, PAGE_SHIFT, PAGE_SIZE};
use crate::span::{Location, Span, SpanAllocator, SpanList};

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
    /// `free[k]` holds exactly the free spans of `k` pages (`1 <= k <= MAX_PAGES`; `free[0]` is
    /// unused); each is exact in the pagemap at its first and last page, and no two free spans
    /// are adjacent (a freed span is coalesced at once).
    pub(crate) free: [SpanList; MAX_PAGES + 1],
    /// The free spans longer than `MAX_PAGES` pages.
    pub(crate) large: SpanList,
    /// Recycled span records.
    pub spans: SpanAllocator,
    /// Where spans, pagemap nodes and thread caches come from.
    pub arena: MetaArena,
    chunks: *mut Chunk,
    /// Pages on the free lists: the sum of `pages` over `free` and `large`.
    pub free_pages: usize,
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
            spans: SpanAllocator::new(),
            arena: MetaArena::new(),
            chunks: null_mut(),
            free_pages: 0,
            system_pages: 0,
        }
    }

    fn list(&mut self, pages: usize) -> &mut SpanList {
        if pages <= MAX_PAGES {
            &mut self.free[pages]
        } else {
            &mut self.large
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
                    self.delete_span(s, pm);
                    return None;
                };
                self.delete_span(s, pm);
                s = tail;
            }
            if (*s).pages > n {
                let Some(tail) = self.split(s, n, pm, source) else {
                    self.delete_span(s, pm);
                    return None;
                };
                self.delete_span(tail, pm);
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
        }
        // Best fit by (length, address) among the large spans.
        let mut best: *mut Span = null_mut();
        for s in self.large.iter() {
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
            self.list(len).remove(s);
            self.free_pages -= len;
            (*s).location = Location::InUse;
            (*s).pages = n;
            pm.set((*s).first_page(), s);
            pm.set((*s).last_page(), s);
            if let Some(r) = rest {
                (*r).location = Location::Free;
                pm.set((*r).first_page(), r);
                pm.set((*r).last_page(), r);
                self.list(len - n).push(r);
                self.free_pages += len - n;
            }
            Some(s)
        }
    }

    /// Returns span `s` to the heap, coalescing it with free neighbours.
    ///
    /// # Safety
    /// `s` is an in-use span of this heap, with no objects in use and on no central list.
    pub unsafe fn delete_span(&mut self, s: *mut Span, pm: &PageMap) {
        // SAFETY: `s` is ours; the pagemap's entries for the pages bordering a span are exact, so
        // a neighbour found there is a valid span of ours.
        unsafe {
            let first = (*s).first_page();
            if first > 0 {
                let prev = pm.get(first - 1);
                if !prev.is_null()
                    && (*prev).location == Location::Free
                    && (*prev).last_page() == first - 1
                {
                    let plen = (*prev).pages;
                    self.list(plen).remove(prev);
                    self.free_pages -= plen;
                    (*s).start = (*prev).start;
                    (*s).pages += plen;
                    self.spans.delete(prev);
                }
            }
            let after = (*s).last_page() + 1;
            let next = pm.get(after);
            if !next.is_null()
                && (*next).location == Location::Free
                && (*next).first_page() == after
            {
                let nlen = (*next).pages;
                self.list(nlen).remove(next);
                self.free_pages -= nlen;
                (*s).pages += nlen;
                self.spans.delete(next);
            }
            (*s).location = Location::Free;
            (*s).class = 0;
            (*s).refcount = 0;
            (*s).objects = null_mut();
            pm.set((*s).first_page(), s);
            pm.set((*s).last_page(), s);
            let len = (*s).pages;
            self.list(len).push(s);
            self.free_pages += len;
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
        unsafe { self.delete_span(s, pm) };
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
        out.value(format_args!("page heap free pages"), self.free_pages);
        out.value(format_args!("page heap system pages"), self.system_pages);
        out.value(format_args!("metadata bytes"), self.arena.used);
    }
}

impl Default for PageHeap {
    fn default() -> Self {
        Self::new()
    }
}
