//! Classes, spans, tiny combining, large objects, bad frees and the per-class statistics.

use allocator_traits::{BoxedRegion, FreeError, FreeSpaceManager, Layout};
use buddy::Buddy;
use segregated::{Config, GO, Segregated, TINY};

type Heap = Segregated<Buddy<BoxedRegion>>;

fn heap_with(config: Config) -> Heap {
    let cap = 1 << 22;
    let pages = Buddy::try_new(BoxedRegion::new(cap).unwrap(), buddy::Config::new(cap)).unwrap();
    Segregated::with_table(&GO, config, pages)
}

fn heap() -> Heap {
    heap_with(Config::DEFAULT)
}

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn addr(b: core::ptr::NonNull<[u8]>) -> usize {
    b.cast::<u8>().as_ptr() as usize
}

#[test]
fn objects_of_a_class_are_carved_from_one_span() {
    let mut h = heap();
    let c = GO.class_of(40);
    let g = GO.geometry(c).unwrap();
    let blocks: Vec<_> = (0..10).map(|_| h.allocate(l(40, 8)).unwrap()).collect();
    for w in blocks.windows(2) {
        assert_eq!(addr(w[1]) - addr(w[0]), 48, "consecutive slots of the span");
    }
    let span = addr(blocks[0]) & !(g.span_bytes() - 1);
    assert_eq!(addr(blocks[0]), span + g.first as usize * 48);
    let cs = h.class_stats(c).unwrap();
    assert_eq!((cs.spans, cs.live_objects, cs.live_requested), (1, 10, 400));
    assert_eq!(cs.rounding_waste(), 80);
    assert_eq!(cs.free_objects, g.objects() - 10);
    // Freed objects are reused last-in first-out.
    // SAFETY: live block.
    unsafe { h.deallocate(blocks[3].cast(), l(40, 8)).unwrap() };
    assert_eq!(addr(h.allocate(l(33, 8)).unwrap()), addr(blocks[3]));
}

#[test]
fn a_span_whose_objects_are_all_free_goes_back_to_the_page_level() {
    let mut h = heap_with(Config {
        tiny: true,
        keep_empty: 0,
    });
    let c = GO.class_of(1024);
    let per_span = GO.geometry(c).unwrap().objects();
    let blocks: Vec<_> = (0..per_span + 1)
        .map(|_| h.allocate(l(1000, 8)).unwrap())
        .collect();
    assert_eq!(h.class_stats(c).unwrap().spans, 2);
    let pages_live = h.large().stats().live_blocks;
    for b in &blocks[..per_span] {
        // SAFETY: live blocks.
        unsafe { h.deallocate(b.cast(), l(1000, 8)).unwrap() };
    }
    assert_eq!(h.class_stats(c).unwrap().spans, 1);
    assert_eq!(h.large().stats().live_blocks, pages_live - 1);
}

#[test]
fn one_empty_span_is_kept_by_default_and_can_be_released() {
    let mut h = heap();
    let c = GO.class_of(2048);
    for _ in 0..3 {
        let b = h.allocate(l(2048, 8)).unwrap();
        // SAFETY: each block is freed once, with its layout.
        unsafe { h.deallocate(b.cast(), l(2048, 8)).unwrap() };
    }
    assert_eq!(
        h.class_stats(c).unwrap().spans,
        1,
        "kept, not returned each time"
    );
    assert_eq!(
        h.large().stats().allocs,
        2,
        "one span (and the page map) taken from the page level"
    );
    assert!(h.pagemap_bytes() > 0);
    assert_eq!(h.release_empty_spans(), 1);
    assert_eq!(h.class_stats(c).unwrap().spans, 0);
    assert_eq!(
        h.large().stats().live_blocks,
        0,
        "the page map went back with the last span"
    );
    assert_eq!(h.pagemap_bytes(), 0);
}

#[test]
fn tiny_objects_share_16_byte_blocks() {
    let mut h = heap();
    let a = h.allocate(l(4, 4)).unwrap();
    let b = h.allocate(l(3, 1)).unwrap();
    let c = h.allocate(l(8, 8)).unwrap();
    assert_eq!(addr(b), addr(a) + 4);
    assert_eq!(addr(c), addr(a) + 8, "aligned to 8 inside the block");
    assert_eq!(addr(a) % 16, 0);
    let t = h.tiny_stats();
    assert_eq!((t.live_objects, t.live_blocks), (3, 1));
    // Alone, the three would take 8 + 8 + 8 bytes of class 1; together they take one block.
    assert_eq!(t.unshared_bytes, 24);
    assert_eq!(t.bytes_saved(), 8);
    let d = h.allocate(l(2, 2)).unwrap();
    assert_eq!(addr(d) & !15, addr(a) + 16, "no room left: a new block");
    // SAFETY: live blocks, each freed once with its layout.
    unsafe {
        h.deallocate(a.cast(), l(4, 4)).unwrap();
        assert_eq!(
            h.deallocate(a.cast(), l(4, 4)),
            Err(FreeError::DoubleFree { ptr: addr(a) })
        );
        h.deallocate(b.cast(), l(3, 1)).unwrap();
        h.deallocate(c.cast(), l(8, 8)).unwrap();
    }
    // The first block is empty: it went back to its span (it is no longer the current block).
    let t = h.tiny_stats();
    assert_eq!((t.live_objects, t.live_blocks), (1, 1));
    let cs = h.class_stats(TINY).unwrap();
    assert_eq!(cs.live_objects, 1);
}

#[test]
fn tiny_combining_can_be_turned_off() {
    let mut h = heap_with(Config {
        tiny: false,
        keep_empty: 1,
    });
    let a = h.allocate(l(4, 4)).unwrap();
    let b = h.allocate(l(4, 4)).unwrap();
    assert_eq!((a.len(), addr(b) - addr(a)), (8, 8), "class 1 (8 B)");
    assert_eq!(h.tiny_stats().live_objects, 0);
}

#[test]
fn large_requests_go_to_the_large_manager() {
    let mut h = heap();
    let big = h.allocate(l(100_000, 8)).unwrap();
    assert!(big.len() >= 100_000);
    assert_eq!(h.large().stats().live_requested, 100_000);
    let s = h.stats();
    assert_eq!(s.live_requested, 100_000);
    assert_eq!(s.live_held, 131072, "the buddy system's power of two");
    // SAFETY: live block.
    unsafe { h.deallocate(big.cast(), l(100_000, 8)).unwrap() };
    assert_eq!(h.stats().live_held, 0);
    // An alignment no class has goes there too.
    let a = h.allocate(l(64, 1 << 16)).unwrap();
    assert_eq!(addr(a) % (1 << 16), 0);
    assert_eq!(h.large().stats().live_blocks, 1);
    assert_eq!(h.pagemap_bytes(), 0, "no span yet, so no page map");
}

#[test]
fn aligned_small_requests_take_aligned_classes() {
    let mut h = heap();
    for align in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096] {
        let b = h.allocate(l(24, align)).unwrap();
        assert_eq!(addr(b) % align, 0, "align {align}");
        assert!(b.len() <= align.max(32) * 2);
    }
}

#[test]
fn bad_frees_are_reported() {
    let mut h = heap();
    let a = h.allocate(l(100, 8)).unwrap();
    let _keep = h.allocate(l(100, 8)).unwrap();
    let mut local = [0u64; 4];
    let foreign = core::ptr::NonNull::from(&mut local[0]).cast::<u8>();
    // SAFETY: every call below is a bad free the heap detects.
    unsafe {
        assert!(matches!(
            h.deallocate(foreign, l(100, 8)),
            Err(FreeError::Foreign { .. })
        ));
        assert!(matches!(
            h.deallocate(a.cast::<u8>().add(8), l(100, 8)),
            Err(FreeError::NotABlock { .. })
        ));
        assert!(matches!(
            h.deallocate(a.cast(), l(200, 8)),
            Err(FreeError::LayoutMismatch { .. })
        ));
        // A class with larger spans: the page map has no span of that class there.
        assert!(matches!(
            h.deallocate(a.cast(), l(30000, 8)),
            Err(FreeError::LayoutMismatch { .. }
                | FreeError::NotABlock { .. }
                | FreeError::Foreign { .. })
        ));
        h.deallocate(a.cast(), l(100, 8)).unwrap();
        assert_eq!(
            h.deallocate(a.cast(), l(100, 8)),
            Err(FreeError::DoubleFree { ptr: addr(a) })
        );
    }
    assert_eq!(h.stats().bad_frees, 5);
}

#[test]
fn resizing_within_a_class_stays_in_place() {
    let mut h = heap();
    let a = h.allocate(l(100, 8)).unwrap();
    // SAFETY: `a` is live with the layouts passed.
    unsafe {
        a.cast::<u8>().as_ptr().write_bytes(9, 100);
        let g = h.grow(a.cast(), l(100, 8), l(110, 8)).unwrap();
        assert_eq!(addr(g), addr(a), "100 and 110 are both class 112");
        let m = h.grow(a.cast(), l(110, 8), l(500, 8)).unwrap();
        assert_ne!(addr(m), addr(a));
        assert!((0..100).all(|i| *m.cast::<u8>().as_ptr().add(i) == 9));
        h.deallocate(m.cast(), l(500, 8)).unwrap();
    }
    let s = h.stats();
    assert_eq!((s.resizes, s.in_place_resizes, s.live_blocks), (2, 1, 0));
}

#[test]
fn spans_go_back_to_best_fit_too() {
    // Best fit checks the alignment a block is freed with: a span must go back with the layout
    // it was taken with, or best fit refuses it and the span leaks.
    let pages = fit::FitHeap::new(BoxedRegion::new(1 << 20).unwrap(), fit::Config::best_fit());
    let mut h = Segregated::with_table(
        &GO,
        Config {
            tiny: true,
            keep_empty: 0,
        },
        pages,
    );
    for size in [100, 3000, 20000] {
        let b = h.allocate(l(size, 8)).unwrap();
        // SAFETY: live block, freed once with its layout.
        unsafe { h.deallocate(b.cast(), l(size, 8)).unwrap() };
        let s = h.large().stats();
        assert_eq!(s.bad_frees, 0, "size {size}: the span was refused");
        assert_eq!(
            s.live_blocks, 0,
            "size {size}: the span and, with it, the page map went back"
        );
    }
}

#[test]
fn a_span_given_back_is_forgotten_by_the_page_map() {
    let mut h = heap_with(Config {
        tiny: true,
        keep_empty: 0,
    });
    let a = h.allocate(l(100, 8)).unwrap();
    let t = h.allocate(l(5, 1)).unwrap();
    let u = h.allocate(l(12, 8)).unwrap();
    // SAFETY: live blocks, freed once; the second frees are bad frees the heap detects.
    unsafe {
        h.deallocate(a.cast(), l(100, 8)).unwrap();
        h.deallocate(t.cast(), l(5, 1)).unwrap();
        h.deallocate(u.cast(), l(12, 8)).unwrap();
        assert_eq!(h.class_stats(GO.class_of(100)).unwrap().spans, 0);
        // The span's bytes belong to the page level again: no span is read there.
        assert_eq!(
            h.deallocate(a.cast(), l(100, 8)),
            Err(FreeError::Foreign { ptr: addr(a) })
        );
    }
    assert_eq!(h.stats().bad_frees, 1);
    assert_eq!(h.stats().live_blocks, 0);
}

#[test]
fn an_emptied_heap_leaves_the_page_level_whole() {
    // The kit's fill-and-drain on the 64 KiB region it uses under Miri: with no span kept, the
    // page map goes back with the last span, so the largest block is the fresh heap's again.
    let mut p = allocator_traits::conformance::Profile::COALESCING;
    p.capacity = 64 * 1024;
    allocator_traits::conformance::check_fill_and_drain(p, |capacity: usize| {
        let pages = Buddy::try_new(
            BoxedRegion::new(capacity).unwrap(),
            buddy::Config::new(capacity),
        )
        .unwrap();
        Segregated::with_table(
            &GO,
            Config {
                tiny: true,
                keep_empty: 0,
            },
            pages,
        )
    });
}

#[test]
fn an_unchecked_heap_still_reports_pointers_outside_every_span() {
    let cap = 1 << 22;
    let pages = Buddy::try_new(BoxedRegion::new(cap).unwrap(), buddy::Config::new(cap)).unwrap();
    let mut h = Segregated::unchecked(&GO, Config::DEFAULT, pages);
    let d = h.detects();
    assert!(d.foreign && !d.double_free && !d.layout_mismatch);
    let a = h.allocate(l(100, 8)).unwrap();
    let mut local = [0u64; 4];
    let foreign = core::ptr::NonNull::from(&mut local[0]).cast::<u8>();
    // SAFETY: a pointer outside every span is reported, not freed; `a` is live.
    unsafe {
        for size in [3, 100, 5000] {
            assert!(matches!(
                h.deallocate(foreign, l(size, 8)),
                Err(FreeError::Foreign { .. })
            ));
        }
        h.deallocate(a.cast(), l(100, 8)).unwrap();
    }
    assert_eq!(h.stats().bad_frees, 3);
    assert_eq!(h.stats().live_blocks, 0);
    h.check_invariants().unwrap();
}
