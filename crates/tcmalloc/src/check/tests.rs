//! Planted corruptions the walk must report (one per invariant family), and a clean walk after
//! long random workloads.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{BoxedRegion, Corruption, FreeSpaceManager};

use crate::Core;
use crate::size_map::{PAGE_SHIFT, SIZE_MAP};
use crate::span::{Location, Span};

fn core() -> Core<BoxedRegion> {
    Core::new(BoxedRegion::new(4 << 20).unwrap())
}

fn alloc(c: &mut Core<BoxedRegion>, size: usize) -> *mut u8 {
    let l = Layout::from_size_align(size, 8).unwrap();
    c.allocate(l).unwrap().cast::<u8>().as_ptr()
}

fn free(c: &mut Core<BoxedRegion>, p: *mut u8, size: usize) {
    let l = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: the tests free only blocks they allocated with this size, once.
    unsafe { c.deallocate(NonNull::new(p).unwrap(), l) }.unwrap();
}

fn span_of(c: &Core<BoxedRegion>, p: *mut u8) -> *mut Span {
    c.pagemap.get(p as usize >> PAGE_SHIFT)
}

#[track_caller]
fn expect(c: &Core<BoxedRegion>, problem: &str) -> Corruption {
    let e = c
        .check_invariants()
        .expect_err("the planted corruption must be reported");
    assert!(
        e.problem.contains(problem),
        "expected \"{problem}\", the walk said: {e}"
    );
    e
}

/// A small heap in a known state: objects of two classes out and cached, a large block.
fn busy() -> (Core<BoxedRegion>, Vec<*mut u8>) {
    let mut c = core();
    let mut v: Vec<_> = (0..40).map(|_| alloc(&mut c, 48)).collect();
    for p in v.drain(30..) {
        free(&mut c, p, 48);
    }
    v.extend((0..5).map(|_| alloc(&mut c, 1100)));
    v.push(alloc(&mut c, 300_000));
    c.check_invariants().unwrap();
    (c, v)
}

#[test]
fn healthy_heaps_pass_after_long_random_workloads() {
    let mut c = Core::new(BoxedRegion::new(if cfg!(miri) { 8 << 20 } else { 256 << 20 }).unwrap());
    let mut live: Vec<(*mut u8, Layout)> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let ops = if cfg!(miri) { 600 } else { 60_000 };
    for op in 0..ops {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let r = rng;
        if live.len() < 50 || (!r.is_multiple_of(3) && live.len() < 2000) {
            let size = match r >> 60 {
                0 => 20_000 + (r >> 20) as usize % 300_000,
                1 => 1 + (r >> 20) as usize % 8192,
                _ => 1 + (r >> 20) as usize % 600,
            };
            let align = 1 << ((r >> 40) % 7);
            let l = Layout::from_size_align(size, align).unwrap();
            if let Ok(b) = c.allocate(l) {
                live.push((b.cast::<u8>().as_ptr(), l));
            }
        } else {
            let i = (r >> 8) as usize % live.len();
            let (p, l) = live.swap_remove(i);
            // SAFETY: allocated above with `l`, freed once.
            unsafe { c.deallocate(NonNull::new(p).unwrap(), l) }.unwrap();
        }
        if op % 997 == 0 {
            c.check_invariants()
                .unwrap_or_else(|e| panic!("op {op}: {e}"));
        }
        if op % 20_011 == 0 {
            c.flush_thread_cache();
        }
    }
    c.check_invariants().unwrap();
    let s = c.stats();
    assert!(
        s.allocs as usize > ops / 2 && s.failed_allocs == 0,
        "the workload ran: {s:?}"
    );
    for (p, l) in live.drain(..) {
        // SAFETY: as above.
        unsafe { c.deallocate(NonNull::new(p).unwrap(), l) }.unwrap();
    }
    c.check_invariants().unwrap();
    c.flush_thread_cache();
    c.check_invariants().unwrap();
}

#[test]
fn an_object_cached_and_free_in_its_span_is_reported() {
    let (mut c, v) = busy();
    let p = v[0];
    c.flush_thread_cache();
    // `p` alone on the thread cache's list (its link null) ...
    free(&mut c, p, 48);
    c.check_invariants().unwrap();
    // ... and appended to its span's free list too (one link word serves both tails), counters
    // kept consistent.
    let s = span_of(&c, p);
    let class = SIZE_MAP.class(48);
    // SAFETY: `s` is `p`'s live span with free objects linked through their first word.
    unsafe {
        let mut last = (*s).objects;
        while !last.cast::<*mut u8>().read().is_null() {
            last = last.cast::<*mut u8>().read();
        }
        last.cast::<*mut u8>().write(p);
        (*s).refcount -= 1;
    }
    c.central[class].free_objects += 1;
    expect(&c, "object free in its span and cached");
}

#[test]
fn an_object_pushed_twice_onto_a_list_is_reported() {
    let (mut c, v) = busy();
    let class = SIZE_MAP
        .class_for(Layout::from_size_align(48, 8).unwrap())
        .unwrap();
    // Twice onto the thread cache list: the list now runs in a cycle.
    free(&mut c, v[0], 48);
    // SAFETY: `v[0]` is a block of the class (a double free, planted on purpose).
    unsafe { c.cache.push(class, v[0], usize::MAX, 0) };
    expect(&c, "list longer than its length counter");

    // Twice onto a span's own free list.
    let (c, v) = busy();
    let s = span_of(&c, v[1]);
    // SAFETY: `s` is a live span with free objects; its head object is linked to itself.
    unsafe {
        let head = (*s).objects;
        head.cast::<*mut u8>().write(head);
    }
    expect(&c, "object twice on the span's free list");
}

#[test]
fn a_span_count_off_is_reported() {
    let (c, v) = busy();
    let s = span_of(&c, v[0]);
    // SAFETY: a live span of ours; only its counter changes.
    unsafe { (*s).refcount += 1 };
    expect(&c, "refcount is not the number of objects out");

    let (mut c, _) = busy();
    c.central[SIZE_MAP.class(48)].free_objects -= 1;
    expect(
        &c,
        "objects on the class's span free lists are not free_objects",
    );

    let (mut c, _) = busy();
    c.heap.free_pages += 1;
    expect(&c, "free_pages is not the pages on the free lists");

    let (mut c, _) = busy();
    c.heap.returned_pages += 1;
    expect(&c, "returned_pages is not the pages on the returned lists");

    let (mut c, _) = busy();
    c.stats.live_blocks += 1;
    expect(&c, "live_blocks is not the objects out");
}

#[test]
fn a_pagemap_entry_naming_the_wrong_span_is_reported() {
    let (c, v) = busy();
    // A 1100 B object's span has two pages; its last page is made to name the 48 B span.
    let big = span_of(&c, v[31]);
    let small = span_of(&c, v[0]);
    // SAFETY: a record of ours; read only.
    let (last, pages) = unsafe { ((*big).last_page(), (*big).pages) };
    assert_eq!(pages, 2);
    c.pagemap.set(last, small);
    expect(&c, "span's last page does not map to it");

    // The first page of a large span naming another span: the region's tiling breaks there.
    let (c, v) = busy();
    let small = span_of(&c, v[0]);
    c.pagemap.set(v[35] as usize >> PAGE_SHIFT, small);
    expect(&c, "does not map to a span starting there");

    // A page's class byte not its span's.
    let (c, v) = busy();
    c.pagemap.set_class(v[35] as usize >> PAGE_SHIFT, 3, 0);
    expect(&c, "page's class entry is not its span's class");

    // A page's index in its span off (the object-start check of a free would go wrong).
    let (c, v) = busy();
    let page = v[31] as usize >> PAGE_SHIFT;
    let class = c.pagemap.class(page);
    c.pagemap.set_class(page, class, 1);
    expect(&c, "page's class entry is not its span's class");
}

#[test]
fn a_free_span_not_coalesced_is_reported() {
    let (mut c, _) = busy();
    // Split the heap's free tail into two adjacent free spans, both listed, counts right.
    let s = c.heap.large.head;
    let s = if s.is_null() {
        (1..=crate::size_map::MAX_PAGES)
            .rev()
            .find(|&k| !c.heap.free[k].is_empty())
            .map(|k| c.heap.free[k].head)
            .unwrap()
    } else {
        s
    };
    // SAFETY: `s` is a free span of ours with more than one page; the new record covers its tail.
    unsafe {
        let pages = (*s).pages;
        assert!(pages > 2);
        let list = if pages > crate::size_map::MAX_PAGES {
            &mut c.heap.large
        } else {
            &mut c.heap.free[pages]
        };
        list.remove(s);
        (*s).pages = 1;
        c.heap.free[1].push(s);
        c.pagemap.set((*s).last_page(), s);
        let t = c
            .heap
            .spans
            .new_span(
                (*s).start.add(1 << PAGE_SHIFT),
                pages - 1,
                &mut c.heap.arena,
                &mut c.source,
            )
            .unwrap();
        (*t).location = Location::Free;
        c.pagemap.set((*t).first_page(), t);
        c.pagemap.set((*t).last_page(), t);
        let list = if pages - 1 > crate::size_map::MAX_PAGES {
            &mut c.heap.large
        } else {
            &mut c.heap.free[pages - 1]
        };
        list.push(t);
    }
    expect(&c, "not coalesced");
}

#[test]
fn thread_cache_and_transfer_cache_damage_is_reported() {
    // A length counter off.
    let (mut c, _) = busy();
    let class = SIZE_MAP.class(48);
    c.cache.lists[class].length += 1;
    expect(&c, "list shorter than its length counter");

    // An object of another class on a list.
    let (mut c, v) = busy();
    let other = SIZE_MAP.class(64);
    // SAFETY: `v[0]` is a live 48 B block pushed onto the 64 B list (the plant).
    unsafe { c.cache.push(other, v[0], usize::MAX, 0) };
    expect(&c, "object not in a span of the list's class");

    // A transfer cache batch cut short.
    let mut c = core();
    let batch = SIZE_MAP.batch_size(class);
    let v: Vec<_> = (0..batch * 100).map(|_| alloc(&mut c, 48)).collect();
    for p in v {
        free(&mut c, p, 48);
    }
    c.flush_thread_cache();
    c.check_invariants().unwrap();
    let b = *c.central[class]
        .transfer
        .batches()
        .first()
        .expect("a flushed batch is parked");
    // SAFETY: the batch's objects are free and ours; the second one's link is cut.
    unsafe {
        let second = b.head.cast::<*mut u8>().read();
        second.cast::<*mut u8>().write(core::ptr::null_mut());
    }
    expect(&c, "list shorter than its length counter");
}

/// The span free list's place test (the offset from the span being walked, no pagemap lookup per
/// object): an object of another span of the class, one between object boundaries, and a pointer
/// outside every span are each reported (the slow path asks the pagemap which).
#[test]
fn a_misplaced_object_on_a_span_free_list_is_reported() {
    // Two spans of the 48 B class, both with free objects.
    let two_spans = || {
        let mut c = core();
        let n = SIZE_MAP.objects_per_span(SIZE_MAP.class(48));
        let v: Vec<_> = (0..n + 10).map(|_| alloc(&mut c, 48)).collect();
        // Three objects of the first span back on its free list (fewer than a batch: they go
        // to the span, not to the transfer cache).
        for &p in &v[1..4] {
            free(&mut c, p, 48);
        }
        c.flush_thread_cache();
        let (a, b) = (span_of(&c, v[0]), span_of(&c, v[n + 5]));
        assert_ne!(a, b);
        // SAFETY: records of ours; read only.
        assert!(unsafe { !(*a).objects.is_null() && !(*b).objects.is_null() });
        c.check_invariants().unwrap();
        (c, v, a, b)
    };
    let (c, _v, a, b) = two_spans();
    // SAFETY: both are live class spans with free objects; the head of `b`'s free list is
    // linked into `a`'s (a plant: `a`'s list now runs into `b`'s objects).
    unsafe {
        let head = (*a).objects;
        head.cast::<*mut u8>().write((*b).objects);
    }
    expect(&c, "object of another span");

    let (c, _v, a, _) = two_spans();
    // SAFETY: `a`'s free list head is moved 8 bytes into its object (still inside the span).
    unsafe { (*a).objects = (*a).objects.add(8) };
    expect(&c, "object not at an object boundary of its span");

    let (c, _v, a, _) = two_spans();
    let mut local = [0u64; 2];
    // SAFETY: the head's link now names a stack slot (null-linked): no span of the class.
    unsafe {
        let head = (*a).objects;
        head.cast::<*mut u8>().write(local.as_mut_ptr().cast());
    }
    expect(&c, "object not in a span of the list's class");
    let _ = local;
}

/// An 8 B span with objects live, cached (`v[0]`) and free, and its bit of object `p`.
fn tiny() -> (Core<BoxedRegion>, Vec<*mut u8>) {
    let mut c = core();
    let v: Vec<_> = (0..20).map(|_| alloc(&mut c, 8)).collect();
    free(&mut c, v[0], 8);
    c.check_invariants().unwrap();
    (c, v)
}

/// Flips the handed-out bit of the 8 B object `p`.
fn flip_handed(c: &Core<BoxedRegion>, p: *mut u8) {
    let s = span_of(c, p);
    // SAFETY: `s` is `p`'s live 8 B span, with its bitmap; `p` is one of its objects.
    unsafe {
        let i = (p as usize - (*s).start as usize) / 8;
        (*(*s).handed)[i / 64] ^= 1 << (i % 64);
    }
}

#[test]
fn a_handed_out_bit_off_is_reported() {
    const PROBLEM: &str = "bit set is not: the object is neither free in its span nor cached";
    // A live object's bit cleared (its free would be refused as a double free).
    let (c, v) = tiny();
    flip_handed(&c, v[5]);
    expect(&c, PROBLEM);
    // A cached object's bit set (its double free would be taken).
    let (c, v) = tiny();
    flip_handed(&c, v[0]);
    expect(&c, PROBLEM);
    // A free object's bit set.
    let (c, v) = tiny();
    let s = span_of(&c, v[1]);
    // SAFETY: a live span of ours with free objects; read only.
    let head = unsafe { (*s).objects };
    assert!(!head.is_null());
    flip_handed(&c, head);
    expect(&c, PROBLEM);
}

#[test]
fn a_handed_out_bitmap_missing_misplaced_or_leaked_is_reported() {
    const PROBLEM: &str = "handed-out bitmap on a span that is not a Core's 8 B class span";
    // An 8 B span without its bitmap.
    let (c, v) = tiny();
    let s = span_of(&c, v[1]);
    // SAFETY: a live span of ours; its bitmap pointer is dropped (the plant).
    unsafe { (*s).handed = core::ptr::null_mut() };
    expect(&c, PROBLEM);
    // A 48 B span with one.
    let (c, v) = busy();
    let s = span_of(&c, v[0]);
    let (t, w) = tiny();
    // SAFETY: records of ours; the 8 B span's bitmap is shared with a 48 B span (the plant).
    unsafe { (*s).handed = (*span_of(&t, w[1])).handed };
    expect(&c, PROBLEM);
    // A bitmap counted in use that no span holds.
    let (mut c, _) = tiny();
    c.handed.live += 1;
    expect(&c, "bitmaps in use are not the 8 B class's spans");
}
