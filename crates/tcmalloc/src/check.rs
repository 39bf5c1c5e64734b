//! The invariant walk: every structure of the page heap, the spans, the central lists, the
//! transfer caches and the thread caches, checked against the relations their fields' docs state
//! (gperftools' `PageHeap::Check`, glibc's `do_check_malloc_state`).
//!
//! ```text
//!   1 page heap lists   free[k] / large: well linked, counts right, every span Free with k
//!                        pages, exact in the pagemap at both ends, no free neighbour on either
//!                        side (coalesced), pages add up to free_pages
//!   2 tiling            each region, start to end: pagemap[first page] is a span starting
//!                        there; free spans are on their list, large spans exact at both ends,
//!                        class spans map every page with their class; span records in use add
//!                        up to the span allocator's count, regions to system_pages; a
//!                        handed-out bitmap on exactly `Core`'s spans of the 8 B class
//!   3 class spans       free list: objects inside, at boundaries, none twice; refcount =
//!                        objects out >= 1; level = level_of(refcount) iff it has a free object,
//!                        and on that level's list; no object both on it and in a cache;
//!                        `Core`'s 8 B spans: handed-out bit set iff neither free nor cached
//!   4 central[c]        level lists well linked and of class c; spans and free_objects add up
//!   5 transfer[c]       used <= capacity <= max; whole batches of class-c objects, tail last
//!   6 thread caches     exactly `length` objects of the list's class, then null; lowater,
//!                        max_length, overages in range; size = sum of length * object size
//! ```
//!
//! It allocates nothing (a heap behind a lock may be the process's allocator): a span's
//! duplicates are found with bitmaps on the stack (one bit per object: free in the span, cached),
//! and the cached objects of a class are walked once per span of the class, so the cost is
//! O(pages + spans * cached objects). It reads the first word of free and cached objects (their
//! links), never a live block's bytes, and checks each object's place before it follows its link:
//! a cached object's through the pagemap (once, in 5 and 6), a span's free object's from the span
//! itself (its offset from the span's start; the tiling in 2 has checked the span's pages), so
//! the per-object cost is a subtraction, a division and a bit. The walk runs after every operation
//! of the conformance kit, under Miri too, so a passing check is a branch (`ensure!`), not a call,
//! and empty lists are passed over without one.

use allocator_traits::Corruption;

use crate::central::{Central, NUM_LEVELS, level_of};
use crate::page_heap::PageHeap;
use crate::pagemap::PageMap;
use crate::size_map::{MAX_PAGES, NUM_CLASSES, PAGE_SHIFT, SIZE_MAP};
use crate::span::{
    HANDED_CLASS, Location, NO_LEVEL, OBJECT_BITS_WORDS, ObjectBits, Span, SpanList,
};
use crate::thread_cache::{MAX_DYNAMIC_FREE_LIST_LENGTH, MAX_OVERAGES, ThreadCache};
use crate::transfer::MAX_SLOTS;

type Walk<T = ()> = Result<T, Corruption>;

/// `ensure!(holds, structure, at, problem)`: unless `holds`, returns the corruption from the
/// enclosing function (or closure). A passing check is one branch, no call: the conformance kit
/// runs the walk after every operation, under Miri too, where each call is interpreted.
macro_rules! ensure {
    ($holds:expr, $structure:expr, $at:expr, $problem:expr $(,)?) => {
        if !$holds {
            return Err(Corruption::new($structure, $at, $problem));
        }
    };
}

/// The structures the walk covers. `caches` are the thread caches the caller can read safely
/// (all of them for `Core`; the calling thread's own for `Tcmalloc`).
pub(crate) struct Parts<'a> {
    pub heap: &'a PageHeap,
    pub pagemap: &'a PageMap,
    pub central: [&'a Central; NUM_CLASSES],
    pub caches: &'a [&'a ThreadCache],
}

/// What the walk counted, for the caller's cross-checks against its statistics.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Census {
    /// Objects out of their spans (the sum of the class spans' `refcount`s).
    pub out: usize,
    /// Of those, objects in the given thread caches and in the transfer caches.
    pub cached: usize,
    /// Large spans in use (one block each).
    pub large: usize,
}

/// Runs the whole walk over structures with no handed-out bitmap on any span (`Tcmalloc`).
pub(crate) fn check(p: &Parts<'_>) -> Walk<Census> {
    walk(p, false)
}

/// Runs the whole walk over a `Core`'s structures: every span of [`HANDED_CLASS`] has a
/// handed-out bitmap ([`Span::handed`]) and it is checked; `p.caches` must be every cache.
pub(crate) fn check_core(p: &Parts<'_>) -> Walk<Census> {
    walk(p, true)
}

/// The walk; `handed_bits`: the spans of [`HANDED_CLASS`] in use have a handed-out bitmap
/// (and no other span has one), otherwise no span has one.
fn walk(p: &Parts<'_>, handed_bits: bool) -> Walk<Census> {
    check_free_lists(p.heap, p.pagemap)?;
    let mut census = Census::default();
    for list in p.caches {
        census.cached += check_thread_cache(list, p.pagemap)?;
    }
    for (class, c) in p.central.iter().enumerate().skip(1) {
        census.cached += check_central(class, c, p.pagemap)?;
    }
    let mut spans = [0usize; NUM_CLASSES];
    let mut free_objects = [0usize; NUM_CLASSES];
    let mut records = 0usize;
    let mut region_pages = 0usize;
    let mut free_spans = (0usize, 0usize);
    let mut result = Ok(());
    p.heap.for_each_region(|start, len| {
        if result.is_err() {
            return;
        }
        region_pages += len >> PAGE_SHIFT;
        result = tile_region(start, len, p, &mut |s| {
            records += 1;
            // SAFETY: `tile_region` hands over spans it found exact in the pagemap.
            let (loc, class, pages, handed, at) = unsafe {
                let sp = &*s;
                (
                    sp.location,
                    sp.class as usize,
                    sp.pages,
                    sp.handed,
                    sp.start as usize,
                )
            };
            let wants_bits = handed_bits && loc == Location::InUse && class == HANDED_CLASS;
            ensure!(
                handed.is_null() != wants_bits,
                "span",
                at,
                "handed-out bitmap on a span that is not a Core's 8 B class span, or none on one",
            );
            match (loc, class) {
                (Location::Free | Location::Returned, _) => {
                    free_spans.0 += 1;
                    free_spans.1 += pages;
                }
                (Location::InUse, 0) => census.large += 1,
                (Location::InUse, c) => {
                    spans[c] += 1;
                    // SAFETY: as above; a class span of class `c`.
                    let (out, free) = unsafe { check_class_span(s, c, p) }?;
                    census.out += out;
                    free_objects[c] += free;
                }
            }
            Ok(())
        });
    });
    result?;
    let heap = p.heap;
    ensure!(
        region_pages == heap.system_pages,
        "page heap",
        heap.system_pages,
        "system_pages is not the regions' pages",
    );
    ensure!(
        records == heap.spans.live,
        "span records",
        heap.spans.live,
        "records in use are not the spans tiling the regions",
    );
    let listed = (1..=MAX_PAGES)
        .map(|k| heap.free[k].len + heap.returned[k].len)
        .sum::<usize>()
        + heap.large.len
        + heap.large_returned.len;
    ensure!(
        free_spans == (listed, heap.free_pages + heap.returned_pages),
        "page heap",
        heap.free_pages,
        "free spans in the regions are not those on the free lists",
    );
    for class in 1..NUM_CLASSES {
        let c = p.central[class];
        ensure!(
            spans[class] == c.spans,
            "central spans",
            class,
            "spans of the class in the regions are not the central list's count",
        );
        ensure!(
            free_objects[class] == c.free_objects,
            "central free objects",
            class,
            "objects on the class's span free lists are not free_objects",
        );
    }
    Ok(census)
}

/// Whether `list` is empty and says so consistently (no head, no tail, count 0): what
/// [`check_list`] would pass without a span to visit. Most lists are; the callers skip the call.
#[inline(always)]
fn is_empty(list: &SpanList) -> bool {
    list.head.is_null() && list.tail.is_null() && list.len == 0
}

/// Checks that `list` is well linked and holds `len` spans; calls `each` on every span.
fn check_list(
    list: &SpanList,
    structure: &'static str,
    mut each: impl FnMut(*mut Span) -> Walk,
) -> Walk {
    let mut prev: *mut Span = core::ptr::null_mut();
    let mut cur = list.head;
    let mut n = 0usize;
    while !cur.is_null() {
        ensure!(
            n < list.len,
            structure,
            cur as usize,
            "more spans than the list's count (a cycle?)",
        );
        // SAFETY: spans on a list are valid records of ours (the walk checks each in turn).
        let back = unsafe { (*cur).prev };
        ensure!(
            back == prev,
            structure,
            cur as usize,
            "prev link is not the span before",
        );
        each(cur)?;
        prev = cur;
        // SAFETY: as above.
        cur = unsafe { (*cur).next };
        n += 1;
    }
    ensure!(
        n == list.len,
        structure,
        n,
        "fewer spans than the list's count",
    );
    ensure!(
        list.tail == prev,
        structure,
        prev as usize,
        "tail is not the last span",
    );
    Ok(())
}

/// Page heap free lists, normal and returned: well linked, exact lengths, exact pagemap ends,
/// coalesced with neighbours of the same kind, page counts right.
fn check_free_lists(heap: &PageHeap, pm: &PageMap) -> Walk {
    for kind in [Location::Free, Location::Returned] {
        let mut pages = 0usize;
        for k in 0..=MAX_PAGES + 1 {
            let (list, name) = match (k, kind) {
                (0, Location::Free) => (&heap.free[0], "page heap free[0]"),
                (0, _) => (&heap.returned[0], "page heap returned[0]"),
                (k, Location::Free) if k <= MAX_PAGES => (&heap.free[k], "page heap free list"),
                (k, _) if k <= MAX_PAGES => (&heap.returned[k], "page heap returned list"),
                (_, Location::Free) => (&heap.large, "page heap large list"),
                _ => (&heap.large_returned, "page heap large returned list"),
            };
            if is_empty(list) {
                continue;
            }
            check_list(list, name, |s| {
                // SAFETY: a span on a free list (checked linked) is a record of ours.
                let sp = unsafe { &*s };
                let at = sp.start as usize;
                let len_ok = if k <= MAX_PAGES {
                    sp.pages == k
                } else {
                    sp.pages > MAX_PAGES
                };
                ensure!(len_ok, name, at, "span of the wrong length for its list");
                ensure!(
                    sp.location == kind,
                    name,
                    at,
                    "span on a free list is not free in that list's way",
                );
                ensure!(
                    sp.class == 0
                        && sp.refcount == 0
                        && sp.objects.is_null()
                        && sp.level == NO_LEVEL,
                    name,
                    at,
                    "free span with a class, objects or a level",
                );
                ensure!(
                    pm.get(sp.first_page()) == s && pm.get(sp.last_page()) == s,
                    "pagemap",
                    at,
                    "free span's first or last page does not map to it",
                );
                let before = pm.get(sp.first_page().wrapping_sub(1));
                // SAFETY: the entry of the page before a span is exact when a span ends there.
                let merged_before = before.is_null()
                    || unsafe {
                        (*before).location != kind || (*before).last_page() != sp.first_page() - 1
                    };
                ensure!(
                    merged_before,
                    name,
                    at,
                    "free span next to a free span of its kind before it (not coalesced)",
                );
                let after = pm.get(sp.last_page() + 1);
                // SAFETY: as above, for the page after.
                let merged_after = after.is_null()
                    || unsafe {
                        (*after).location != kind || (*after).first_page() != sp.last_page() + 1
                    };
                ensure!(
                    merged_after,
                    name,
                    at,
                    "free span next to a free span of its kind after it (not coalesced)",
                );
                pages += sp.pages;
                Ok(())
            })?;
        }
        let (want, problem) = if kind == Location::Free {
            (
                heap.free_pages,
                "free_pages is not the pages on the free lists",
            )
        } else {
            (
                heap.returned_pages,
                "returned_pages is not the pages on the returned lists",
            )
        };
        ensure!(pages == want, "page heap", want, problem);
    }
    Ok(())
}

/// Walks a region span by span through the pagemap and checks each span's pagemap entries and
/// list membership; `each` gets every span found.
fn tile_region(
    start: usize,
    len: usize,
    p: &Parts<'_>,
    each: &mut dyn FnMut(*mut Span) -> Walk,
) -> Walk {
    let pm = p.pagemap;
    let end = start + len;
    let mut addr = start;
    while addr < end {
        let page = addr >> PAGE_SHIFT;
        let s = pm.get(page);
        // SAFETY: a non-null pagemap entry names a span record of ours.
        let exact = !s.is_null() && unsafe { (*s).start as usize == addr && (*s).pages >= 1 };
        ensure!(
            exact,
            "pagemap",
            addr,
            "page where a span starts does not map to a span starting there",
        );
        // SAFETY: checked just above.
        let sp = unsafe { &*s };
        ensure!(
            sp.bytes() <= end - addr,
            "span",
            addr,
            "span runs past the end of its region",
        );
        ensure!(
            pm.get(sp.last_page()) == s,
            "pagemap",
            addr,
            "span's last page does not map to it",
        );
        let class = sp.class as usize;
        match sp.location {
            Location::Free | Location::Returned => {
                // Its list was checked well linked: a span is on it iff its neighbours say so.
                let on_list = if sp.prev.is_null() {
                    p.heap.list_of(sp.pages, sp.location).head == s
                } else {
                    // SAFETY: a non-null link names a span record of ours.
                    unsafe { (*sp.prev).next == s }
                };
                ensure!(on_list, "span", addr, "free span on no free list");
            }
            Location::InUse if class == 0 => ensure!(
                sp.refcount == 0
                    && sp.objects.is_null()
                    && sp.level == NO_LEVEL
                    && sp.prev.is_null()
                    && sp.next.is_null(),
                "span",
                addr,
                "large span with objects, a level or list links",
            ),
            Location::InUse => {
                ensure!(
                    class < NUM_CLASSES && sp.pages == SIZE_MAP.class_pages(class),
                    "span",
                    addr,
                    "class span of the wrong length for its class",
                );
            }
        }
        for (i, pg) in (sp.first_page()..=sp.last_page()).enumerate() {
            let want = if sp.location == Location::InUse && class != 0 {
                class | i << 8
            } else {
                0
            };
            ensure!(
                pm.entry(pg) == want,
                "pagemap",
                pg << PAGE_SHIFT,
                "page's class entry is not its span's class and its index in the span",
            );
            ensure!(
                class == 0 || pm.get(pg) == s,
                "pagemap",
                pg << PAGE_SHIFT,
                "page of a class span does not map to it",
            );
        }
        each(s)?;
        addr += sp.bytes();
    }
    Ok(())
}

/// The span and index of object `o` of class `class`: `o`'s page maps to an in-use span of the
/// class, and `o` sits at one of its object boundaries.
fn object_place(
    pm: &PageMap,
    class: usize,
    o: *mut u8,
    structure: &'static str,
) -> Walk<(*mut Span, usize)> {
    let addr = o as usize;
    let page = addr >> PAGE_SHIFT;
    let s = pm.get(page);
    ensure!(
        !s.is_null() && pm.class(page) == class,
        structure,
        addr,
        "object not in a span of the list's class",
    );
    // SAFETY: a non-null pagemap entry names a span record of ours.
    let (start, loc, sclass) = unsafe { ((*s).start as usize, (*s).location, (*s).class) };
    let size = SIZE_MAP.class_size(class);
    let n = SIZE_MAP.objects_per_span(class);
    ensure!(
        loc == Location::InUse && sclass as usize == class && addr >= start,
        structure,
        addr,
        "object's page maps to a span not of the list's class",
    );
    let off = addr - start;
    ensure!(
        off < n * size && off.is_multiple_of(size),
        structure,
        addr,
        "object not at an object boundary of its span",
    );
    Ok((s, off / size))
}

/// Calls `f` on each of the `n` objects of a null-terminated list starting at `head`, after
/// checking its place; fails if the list is not exactly `n` long.
fn walk_objects(
    pm: &PageMap,
    class: usize,
    head: *mut u8,
    n: usize,
    structure: &'static str,
    mut f: impl FnMut(*mut u8, *mut Span, usize) -> Walk,
) -> Walk<*mut u8> {
    let mut o = head;
    let mut last = core::ptr::null_mut();
    for _ in 0..n {
        ensure!(
            !o.is_null(),
            structure,
            last as usize,
            "list shorter than its length counter",
        );
        let (s, i) = object_place(pm, class, o, structure)?;
        f(o, s, i)?;
        last = o;
        // SAFETY: `o` is a free object of ours (placed just above), linked through its first word.
        o = unsafe { o.cast::<*mut u8>().read() };
    }
    ensure!(
        o.is_null(),
        structure,
        last as usize,
        "list longer than its length counter",
    );
    Ok(last)
}

/// A thread cache's lists; returns the objects it holds.
fn check_thread_cache(cache: &ThreadCache, pm: &PageMap) -> Walk<usize> {
    let mut bytes = 0usize;
    let mut objects = 0usize;
    for (class, l) in cache.lists.iter().enumerate() {
        let class_ok = class < NUM_CLASSES || (l.length == 0 && l.head.is_null());
        ensure!(
            class_ok,
            "thread cache list",
            class,
            "list past the last class holds objects",
        );
        if class >= NUM_CLASSES {
            continue;
        }
        const NAME: &str = "thread cache list";
        ensure!(
            l.object_size as usize == SIZE_MAP.class_size(class),
            NAME,
            class,
            "object size is not the class's",
        );
        ensure!(
            class != 0 || (l.length == 0 && l.head.is_null()),
            NAME,
            0,
            "class 0 holds objects",
        );
        ensure!(l.lowater <= l.length, NAME, class, "lowater above length");
        ensure!(
            (1..=MAX_DYNAMIC_FREE_LIST_LENGTH).contains(&l.max_length),
            NAME,
            class,
            "max_length out of range",
        );
        ensure!(
            l.overages <= MAX_OVERAGES,
            NAME,
            class,
            "overages out of range",
        );
        // An empty list (no head, length 0) passes the walk without a call.
        if class != 0 && (l.length != 0 || !l.head.is_null()) {
            walk_objects(pm, class, l.head, l.length as usize, NAME, |_, _, _| Ok(()))?;
        }
        bytes += l.length as usize * l.object_size as usize;
        objects += l.length as usize;
    }
    ensure!(
        bytes == cache.size,
        "thread cache",
        cache.size,
        "size is not the bytes on the lists",
    );
    Ok(objects)
}

/// A class's central lists and transfer cache; returns the objects in the transfer cache.
fn check_central(class: usize, c: &Central, pm: &PageMap) -> Walk<usize> {
    ensure!(
        c.class == class,
        "central",
        class,
        "central list of another class",
    );
    for level in 0..NUM_LEVELS {
        if is_empty(&c.levels[level]) {
            continue;
        }
        check_list(&c.levels[level], "central level list", |s| {
            // SAFETY: spans on a central list (checked linked) are records of ours.
            let sp = unsafe { &*s };
            ensure!(
                sp.location == Location::InUse
                    && sp.class as usize == class
                    && sp.level as usize == level
                    && !sp.objects.is_null(),
                "central level list",
                sp.start as usize,
                "span not of this class and level, or without a free object",
            );
            Ok(())
        })?;
    }
    let t = &c.transfer;
    ensure!(
        t.used() <= t.capacity()
            && t.capacity() <= t.max_capacity()
            && t.max_capacity() <= MAX_SLOTS,
        "transfer cache",
        class,
        "used, capacity and max_capacity out of order",
    );
    let batch = SIZE_MAP.batch_size(class);
    for b in t.batches() {
        let last = walk_objects(
            pm,
            class,
            b.head,
            batch,
            "transfer cache batch",
            |_, _, _| Ok(()),
        )?;
        ensure!(
            last == b.tail,
            "transfer cache batch",
            b.head as usize,
            "tail is not the batch's last object",
        );
    }
    Ok(t.used() * batch)
}

/// The corruption of an object `o` found on a list of span `s` (class `class`) that is not at an
/// object boundary of `s`: what [`object_place`] says of it (not in a span of the class, or not at
/// a boundary of its span), else that it is another span's object. The slow path of the walk's
/// per-object place test, taken only when the test fails.
#[cold]
#[inline(never)]
fn misplaced(
    pm: &PageMap,
    class: usize,
    s: *mut Span,
    o: *mut u8,
    structure: &'static str,
) -> Corruption {
    match object_place(pm, class, o, structure) {
        Err(e) => e,
        Ok((os, _)) if os != s => Corruption::new(structure, o as usize, "object of another span"),
        Ok(_) => Corruption::new(
            structure,
            o as usize,
            "object not at an object boundary of its span",
        ),
    }
}

/// A span of class `class`: its free list, refcount and level, no object both free in it
/// and cached, and its handed-out bitmap when it has one ([`Span::handed`]: a bit is set iff its
/// object is neither free nor cached, so `p.caches` must be every cache). Returns
/// `(objects out, objects free)`.
///
/// Each free object's place is computed from the span being walked (its offset from the span's
/// start: below the last object's end, a multiple of the object size), not looked up in the
/// pagemap: [`tile_region`] has checked that every page of the span maps to it with its class, so
/// an object inside the span is in a span of the class, and one outside is reported through
/// [`misplaced`] with the pagemap's view of it. The free objects are marked in one bitmap and the
/// span's cached objects in another; the cached lists were checked (exact lengths, every object
/// at an object boundary of a span of the class) before the tiling, so an object of them inside
/// this span's objects is one of its objects.
///
/// # Safety
/// `s` is a span record of ours, in use with class `class`, checked by [`tile_region`]; the
/// caches' lists and the class's transfer batches have passed [`check_thread_cache`] and
/// [`check_central`].
unsafe fn check_class_span(s: *mut Span, class: usize, p: &Parts<'_>) -> Walk<(usize, usize)> {
    // SAFETY: caller.
    let sp = unsafe { &*s };
    let at = sp.start as usize;
    let size = SIZE_MAP.class_size(class);
    let n = SIZE_MAP.objects_per_span(class);
    let limit = n * size;
    let mut free_marks: ObjectBits = [0; OBJECT_BITS_WORDS];
    let mut free = 0usize;
    let mut o = sp.objects;
    while !o.is_null() {
        ensure!(
            free < n,
            "span free list",
            at,
            "more free objects than the span holds",
        );
        let off = (o as usize).wrapping_sub(at);
        let i = off / size;
        if off >= limit || i * size != off {
            return Err(misplaced(p.pagemap, class, s, o, "span free list"));
        }
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        ensure!(
            free_marks[w] & bit == 0,
            "span free list",
            at,
            "object twice on the span's free list",
        );
        free_marks[w] |= bit;
        free += 1;
        // SAFETY: a free object of this span (placed just above), linked through its first word.
        o = unsafe { o.cast::<*mut u8>().read() };
    }
    let out = n - free;
    ensure!(
        sp.refcount as usize == out,
        "span",
        at,
        "refcount is not the number of objects out",
    );
    ensure!(
        out >= 1,
        "span",
        at,
        "span with no object out not returned to the page heap",
    );
    let want = if free > 0 {
        level_of(sp.refcount)
    } else {
        NO_LEVEL
    };
    ensure!(sp.level == want, "span", at, "level is not its fullness");
    if want != NO_LEVEL {
        let on_list = if sp.prev.is_null() {
            p.central[class].levels[want as usize].head == s
        } else {
            // SAFETY: a non-null link names a span record of ours.
            unsafe { (*sp.prev).next == s }
        };
        ensure!(
            on_list,
            "span",
            at,
            "span with a free object on no level list",
        );
    } else {
        ensure!(
            sp.prev.is_null() && sp.next.is_null(),
            "span",
            at,
            "full span linked to a list",
        );
    }
    // Cached objects of this span: not free in it, and not twice in the caches.
    let mut cached_marks: ObjectBits = [0; OBJECT_BITS_WORDS];
    let mut cached = 0usize;
    let mut visit = |head: *mut u8, len: usize, structure: &'static str| -> Walk {
        let mut o = head;
        for _ in 0..len {
            let off = (o as usize).wrapping_sub(at);
            if off < limit {
                let i = off / size;
                if i * size != off {
                    return Err(misplaced(p.pagemap, class, s, o, structure));
                }
                let (w, bit) = (i / 64, 1u64 << (i % 64));
                ensure!(
                    (free_marks[w] | cached_marks[w]) & bit == 0,
                    structure,
                    o as usize,
                    "object free in its span and cached, or cached twice",
                );
                cached_marks[w] |= bit;
                cached += 1;
            }
            // SAFETY: the list was checked to hold `len` objects of ours (caller), linked through
            // their first word.
            o = unsafe { o.cast::<*mut u8>().read() };
        }
        Ok(())
    };
    for cache in p.caches {
        let l = &cache.lists[class];
        visit(l.head, l.length as usize, "thread cache list")?;
    }
    let batch = SIZE_MAP.batch_size(class);
    for b in p.central[class].transfer.batches() {
        visit(b.head, batch, "transfer cache batch")?;
    }
    ensure!(
        cached <= out,
        "span",
        at,
        "more of its objects cached than out",
    );
    if !sp.handed.is_null() {
        // A Core's 8 B span (the caller checked): an object is handed out iff it is neither
        // free in the span nor cached.
        // SAFETY: a non-null `handed` is the span's bitmap, from the metadata arena.
        let handed = unsafe { &*sp.handed };
        for w in 0..OBJECT_BITS_WORDS {
            let objects = n.saturating_sub(w * 64).min(64);
            let valid = if objects == 64 {
                u64::MAX
            } else {
                (1u64 << objects) - 1
            };
            ensure!(
                handed[w] == !(free_marks[w] | cached_marks[w]) & valid,
                "span handed-out bitmap",
                at + w * 64 * size,
                "bit set is not: the object is neither free in its span nor cached",
            );
        }
    }
    Ok((out, free))
}

#[cfg(test)]
mod tests;
