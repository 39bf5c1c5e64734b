//! The real heap: structure checks after random operations in every configuration, bad frees,
//! in-place resizing, inspection.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{
    AllocError, BlockKind, BoxedRegion, FreeError, FreeSpaceManager, Inspector, MemorySource,
};
use fit::{Coalesce, Config, FitHeap, Mechanism, Order, Policy};

fn heap(cap: usize, cfg: Config) -> FitHeap<BoxedRegion> {
    FitHeap::new(BoxedRegion::new(cap).unwrap(), cfg)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as usize
    }
}

fn all_configs() -> Vec<Config> {
    let mut v = Vec::new();
    for p in Policy::ALL {
        for o in Order::ALL {
            for c in [Coalesce::Off, Coalesce::ListOrder, Coalesce::Physical] {
                let cfg = Config::new(p).with_order(o).with_coalesce(c);
                v.push(cfg);
                v.push(cfg.with_checked(true));
                if cfg.uses_index() {
                    v.push(cfg.with_mechanism(Mechanism::List));
                }
            }
        }
    }
    v
}

/// The first of the `n` bytes at `p` that is not `tag`. Compared 64 at a time: under Miri,
/// which interprets a loop per byte, that loop was most of the random test's time.
///
/// # Safety
/// `p..p + n` is readable and initialised, and not written while this runs.
unsafe fn first_not(p: *const u8, n: usize, tag: u8) -> Option<usize> {
    // SAFETY: the caller's contract.
    let bytes = unsafe { core::slice::from_raw_parts(p, n) };
    let want = [tag; 64];
    let chunk = bytes.chunks(64).position(|c| c != &want[..c.len()])?;
    bytes[chunk * 64..]
        .iter()
        .position(|&b| b != tag)
        .map(|k| chunk * 64 + k)
}

#[test]
fn random_operations_keep_the_heap_consistent() {
    let steps = if cfg!(miri) { 40 } else { 1500 };
    let configs = all_configs();
    let configs: Vec<Config> = if cfg!(miri) {
        configs.into_iter().step_by(12).collect()
    } else {
        configs
    };
    for cfg in configs {
        for header in [0, 48] {
            let cfg = cfg
                .with_header(header)
                .with_align(if header > 0 { 8 } else { 1 });
            let mut h = heap(256 << 10, cfg);
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let mut live: Vec<(NonNull<u8>, Layout, u8)> = Vec::new();
            for step in 0..steps {
                let r = rng.next() % 100;
                let what;
                if r < 45 || live.is_empty() {
                    let size = rng.next() % [64, 600, 5000][rng.next() % 3];
                    let align = 1 << (rng.next() % 8);
                    let layout = Layout::from_size_align(size, align).unwrap();
                    what = format!("alloc {layout:?}");
                    if let Ok(b) = h.allocate(layout) {
                        let p = b.cast::<u8>();
                        assert!(b.len() >= size);
                        assert_eq!(p.as_ptr() as usize % align, 0);
                        let tag = step as u8;
                        // SAFETY: fresh block of at least `size` bytes.
                        unsafe { p.as_ptr().write_bytes(tag, size) };
                        live.push((p, layout, tag));
                    }
                } else if r < 80 {
                    let (p, l, tag) = live.swap_remove(rng.next() % live.len());
                    what = format!("free {p:?} {l:?}");
                    // SAFETY: live block of `l.size()` bytes we wrote; check they survived.
                    let changed = unsafe { first_not(p.as_ptr(), l.size(), tag) };
                    assert_eq!(changed, None, "{cfg} step {step}: a byte changed");
                    // SAFETY: live block with its layout.
                    unsafe { h.deallocate(p, l).unwrap() };
                } else {
                    let i = rng.next() % live.len();
                    let (p, l, tag) = live[i];
                    let new_size = rng.next() % 3000;
                    let new = Layout::from_size_align(new_size, l.align()).unwrap();
                    what = format!("resize {p:?} {l:?} -> {new:?}");
                    // SAFETY: live block with its layout.
                    let r = unsafe {
                        if new_size >= l.size() {
                            h.grow(p, l, new)
                        } else {
                            h.shrink(p, l, new)
                        }
                    };
                    if let Ok(b) = r {
                        let q = b.cast::<u8>();
                        // SAFETY: the block has at least `new_size` bytes, the kept ones ours.
                        let changed = unsafe { first_not(q.as_ptr(), l.size().min(new_size), tag) };
                        assert_eq!(changed, None, "{cfg} step {step}: a kept byte changed");
                        // SAFETY: as above.
                        unsafe { q.as_ptr().write_bytes(tag, new_size) };
                        live[i] = (q, new, tag);
                    }
                }
                if let Err(e) = h.check_invariants() {
                    panic!("{cfg} header {header}, step {step}: {e} after {what}");
                }
                let s = h.stats();
                assert_eq!(s.live_blocks, live.len());
                assert_eq!(
                    s.live_requested,
                    live.iter().map(|l| l.1.size()).sum::<usize>()
                );
            }
            for (p, l, _) in live.drain(..) {
                // SAFETY: live block with its layout.
                unsafe { h.deallocate(p, l) }.unwrap();
            }
            h.check_invariants().unwrap();
            if cfg.coalesce == Coalesce::Physical {
                assert_eq!(h.free_list().count(), 1, "{cfg}");
            }
        }
    }
}

#[test]
fn bad_frees_name_the_pointer_and_change_nothing() {
    let mut h = heap(64 << 10, Config::best_fit());
    let l = Layout::from_size_align(40, 8).unwrap();
    let a = h.allocate(l).unwrap().cast::<u8>();
    let b = h.allocate(l).unwrap().cast::<u8>();
    let before = h.free_list().collect::<Vec<_>>();
    let mut outside = 0u64;
    let foreign = NonNull::from(&mut outside).cast::<u8>();
    // SAFETY: the heap detects foreign pointers and frees nothing.
    let e = unsafe { h.deallocate(foreign, l) }.unwrap_err();
    assert_eq!(
        e,
        FreeError::Foreign {
            ptr: foreign.as_ptr() as usize
        }
    );
    // SAFETY: the heap detects layout mismatches and frees nothing.
    let e = unsafe { h.deallocate(a, Layout::from_size_align(41, 8).unwrap()) }.unwrap_err();
    assert!(
        matches!(e, FreeError::LayoutMismatch { size: 41, .. }),
        "{e}"
    );
    // SAFETY: a misaligned interior pointer is refused before anything is read.
    let e = unsafe { h.deallocate(NonNull::new(a.as_ptr().wrapping_add(1)).unwrap(), l) };
    assert!(matches!(e, Err(FreeError::NotABlock { .. })), "{e:?}");
    assert_eq!(h.free_list().collect::<Vec<_>>(), before);
    // SAFETY: `a` is live with `l`.
    unsafe { h.deallocate(a, l) }.unwrap();
    // SAFETY: the heap detects double frees.
    let e = unsafe { h.deallocate(a, l) }.unwrap_err();
    assert_eq!(
        e,
        FreeError::DoubleFree {
            ptr: a.as_ptr() as usize
        }
    );
    assert!(
        e.to_string()
            .contains(&format!("{:#x}", a.as_ptr() as usize))
    );
    // SAFETY: `b` is live; after it is freed and merged with `a`, a second free of `b` still
    // finds its old header marked free.
    unsafe { h.deallocate(b, l) }.unwrap();
    assert!(matches!(
        // SAFETY: as above.
        unsafe { h.deallocate(b, l) },
        Err(FreeError::DoubleFree { .. })
    ));
    assert_eq!(h.stats().bad_frees, 5);
    h.check_invariants().unwrap();
}

#[test]
fn grows_in_place_into_a_free_neighbour_and_at_the_end() {
    let mut h = heap(1 << 20, Config::first_fit());
    let l = |n| Layout::from_size_align(n, 8).unwrap();
    let a = h.allocate(l(100)).unwrap().cast::<u8>();
    let b = h.allocate(l(100)).unwrap().cast::<u8>();
    let c = h.allocate(l(100)).unwrap().cast::<u8>();
    // SAFETY: live blocks with their layouts.
    unsafe {
        h.deallocate(b, l(100)).unwrap();
        let a2 = h.grow(a, l(100), l(200)).unwrap();
        assert_eq!(a2.cast::<u8>(), a, "grew into the freed neighbour");
        let c2 = h.grow(c, l(100), l(100_000)).unwrap();
        assert_eq!(c2.cast::<u8>(), c, "grew at the end of the heap");
        let c3 = h.shrink(c, l(100_000), l(10)).unwrap();
        assert_eq!(c3.cast::<u8>(), c);
        assert_eq!(h.stats().in_place_resizes, 3);
        h.check_invariants().unwrap();
    }
}

#[test]
fn large_alignments_leave_a_free_chunk_in_front() {
    let mut h = heap(1 << 20, Config::best_fit());
    let small = h.allocate(Layout::from_size_align(8, 8).unwrap()).unwrap();
    let big = h
        .allocate(Layout::from_size_align(100, 4096).unwrap())
        .unwrap();
    assert_eq!(big.cast::<u8>().as_ptr() as usize % 4096, 0);
    assert!(h.free_list().count() >= 2);
    h.check_invariants().unwrap();
    // SAFETY: live blocks with their layouts.
    unsafe {
        h.deallocate(big.cast(), Layout::from_size_align(100, 4096).unwrap())
            .unwrap();
        h.deallocate(small.cast(), Layout::from_size_align(8, 8).unwrap())
            .unwrap();
    }
    assert_eq!(h.free_list().count(), 1);
    assert!(matches!(
        h.allocate(Layout::from_size_align(8, 1 << 40).unwrap()),
        Err(AllocError::OutOfMemory { .. } | AllocError::Unsupported { .. })
    ));
}

#[test]
fn inspect_tiles_the_heap_and_shows_list_and_rover() {
    #[derive(Default)]
    struct Rec {
        region: (usize, usize),
        blocks: Vec<(usize, usize, BlockKind)>,
        list: Vec<(usize, usize)>,
        rover: Option<usize>,
    }
    impl Inspector for Rec {
        fn region(&mut self, s: usize, l: usize) {
            self.region = (s, l);
        }
        fn block(&mut self, a: usize, l: usize, k: BlockKind) {
            self.blocks.push((a, l, k));
        }
        fn list_entry(&mut self, a: usize, l: usize) {
            self.list.push((a, l));
        }
        fn value(&mut self, n: std::fmt::Arguments<'_>, v: usize) {
            assert_eq!(n.to_string(), "rover");
            self.rover = Some(v);
        }
    }
    let cfg = Config::next_fit().with_order(Order::InsertFront);
    let mut h = heap(1 << 20, cfg);
    let l = Layout::from_size_align(20, 4).unwrap();
    let ps: Vec<_> = (0..4).map(|_| h.allocate(l).unwrap()).collect();
    // SAFETY: live block.
    unsafe { h.deallocate(ps[1].cast(), l) }.unwrap();
    let mut r = Rec::default();
    h.inspect(&mut r);
    let mut at = r.region.0;
    for &(a, len, _) in &r.blocks {
        assert_eq!(a, at, "blocks tile the region");
        at += len;
    }
    assert_eq!(at, r.region.0 + r.region.1);
    assert!(r.blocks.contains(&(
        ps[0].cast::<u8>().as_ptr() as usize,
        20,
        BlockKind::Live { requested: 20 }
    )));
    assert_eq!(r.list.len(), 2);
    assert_eq!(
        r.list[0].0 + core::mem::size_of::<usize>(),
        ps[1].cast::<u8>().as_ptr() as usize,
        "lifo: the freed block first"
    );
    assert!(r.rover.is_some());
}

#[test]
fn works_over_a_static_region() {
    static mut ARENA: [u128; 4096] = [0; 4096];
    // SAFETY: ARENA is used by this region only.
    let region = unsafe {
        allocator_traits::FixedRegion::from_raw_parts((&raw mut ARENA).cast::<u8>(), 65536)
    };
    let mut h = FitHeap::new(region, "worst-fit:fifo".parse().unwrap());
    let mut v = Vec::new();
    while let Ok(b) = h.allocate(Layout::from_size_align(1000, 8).unwrap()) {
        v.push(b);
    }
    assert!(v.len() >= 60, "{}", v.len());
    assert!(h.stats().footprint <= 65536);
    for b in v {
        // SAFETY: live block.
        unsafe { h.deallocate(b.cast(), Layout::from_size_align(1000, 8).unwrap()) }.unwrap();
    }
    assert_eq!(h.free_list().count(), 1);
}

#[test]
fn one_word_headers_hold_requests_as_glibc_does() {
    // (request, block without the check word, block with it)
    for (req, plain, checked) in [
        (0, 32, 32),
        (24, 32, 48),
        (25, 48, 48),
        (100, 112, 128),
        (1000, 1008, 1024),
    ] {
        for (cfg, want) in [
            (Config::best_fit(), plain),
            (Config::best_fit().with_checked(true), checked),
        ] {
            let mut h = heap(1 << 20, cfg);
            let l = Layout::from_size_align(req, 8).unwrap();
            let b = h.allocate(l).unwrap();
            assert_eq!(h.stats().live_held, want, "{cfg} {req}");
            assert!(b.len() >= req);
            // SAFETY: live block.
            unsafe { h.deallocate(b.cast(), l) }.unwrap();
        }
    }
}

#[test]
fn the_check_word_refuses_pointers_into_live_blocks() {
    for checked in [true, false] {
        let mut h = heap(1 << 20, Config::first_fit().with_checked(checked));
        assert_eq!(h.detects_interior(), checked);
        let l = Layout::from_size_align(400, 16).unwrap();
        let b = h.allocate(l).unwrap().cast::<u8>();
        let after = h.allocate(l).unwrap();
        // Fill the payload with words that look like the header of a live 48-byte block whose
        // neighbour says it is live: only the check word tells them from real blocks.
        let words = b.as_ptr().cast::<usize>();
        for i in 0..400 / 8 {
            // SAFETY: inside the live block.
            unsafe { words.add(i).write(48 | 3) };
        }
        if !checked {
            continue;
        }
        let before = h.stats();
        for k in 1..400 / 16 {
            let p = NonNull::new(b.as_ptr().wrapping_add(16 * k)).unwrap();
            // SAFETY: the heap claims to refuse interior pointers with the check word.
            let e = unsafe { h.deallocate(p, Layout::from_size_align(24, 8).unwrap()) };
            assert!(
                matches!(
                    e,
                    Err(FreeError::NotABlock { .. } | FreeError::LayoutMismatch { .. })
                ),
                "{k}: {e:?}"
            );
        }
        assert_eq!(h.stats().live_blocks, before.live_blocks);
        h.check_invariants().unwrap();
        // SAFETY: live blocks with their layouts.
        unsafe {
            h.deallocate(b, l).unwrap();
            h.deallocate(after.cast(), l).unwrap();
        }
    }
}

#[test]
fn a_free_block_at_the_end_goes_back_to_the_source() {
    for cfg in [
        Config::best_fit(),
        Config::first_fit().with_mechanism(Mechanism::List),
    ] {
        let mut h = heap(8 << 20, cfg);
        let small = Layout::from_size_align(100, 8).unwrap();
        let big = Layout::from_size_align(2 << 20, 8).unwrap();
        let a = h.allocate(small).unwrap();
        let b = h.allocate(big).unwrap();
        let grown = h.stats().footprint;
        assert!(grown > 2 << 20, "{cfg}");
        // SAFETY: live block.
        unsafe { h.deallocate(b.cast(), big) }.unwrap();
        let s = h.stats();
        assert!(
            s.footprint < 256 << 10,
            "{cfg}: footprint {} after freeing the block at the end",
            s.footprint
        );
        assert_eq!(s.peak_footprint, grown);
        h.check_invariants().unwrap();
        // Below the threshold nothing goes back.
        let c = h
            .allocate(Layout::from_size_align(40 << 10, 8).unwrap())
            .unwrap();
        let f = h.stats().footprint;
        // SAFETY: live block.
        unsafe { h.deallocate(c.cast(), Layout::from_size_align(40 << 10, 8).unwrap()) }.unwrap();
        assert_eq!(h.stats().footprint, f, "{cfg}");
        // SAFETY: live block.
        unsafe { h.deallocate(a.cast(), small) }.unwrap();
    }
    // A threshold of usize::MAX never gives memory back.
    let mut h = heap(8 << 20, Config::best_fit().with_trim_threshold(usize::MAX));
    let big = Layout::from_size_align(2 << 20, 8).unwrap();
    let b = h.allocate(big).unwrap();
    let f = h.stats().footprint;
    // SAFETY: live block.
    unsafe { h.deallocate(b.cast(), big) }.unwrap();
    assert_eq!(h.stats().footprint, f);
}

#[cfg(not(miri))]
#[test]
fn brk_region_gets_its_pages_back() {
    let mut h = FitHeap::new(
        allocator_traits::BrkRegion::new(1 << 30),
        Config::best_fit(),
    );
    let big = Layout::from_size_align(16 << 20, 8).unwrap();
    let b = h.allocate(big).unwrap();
    assert!(h.stats().footprint >= 16 << 20);
    // SAFETY: live block.
    unsafe { h.deallocate(b.cast(), big) }.unwrap();
    assert!(h.stats().footprint <= 256 << 10, "{}", h.stats().footprint);
    assert_eq!(h.stats().footprint, h.source().footprint());
    h.check_invariants().unwrap();
    // And grows again.
    let b = h.allocate(big).unwrap();
    // SAFETY: live block.
    unsafe { h.deallocate(b.cast(), big) }.unwrap();
}

#[test]
fn best_fit_keeps_the_wilderness_for_last() {
    let mut h = heap(64 << 10, Config::best_fit());
    let l = |n| Layout::from_size_align(n, 8).unwrap();
    let hole = h.allocate(l(4000)).unwrap().cast::<u8>();
    let _fence = h.allocate(l(100)).unwrap();
    // Fill until the free block at the end is smaller than the hole will be.
    let mut filler = Vec::new();
    while h.free_list().last().is_some_and(|(_, size)| size > 2000) {
        filler.push(h.allocate(l(1000)).unwrap());
    }
    let (top, top_size) = h.free_list().last().unwrap();
    assert!(top_size > 400, "{top_size}");
    // SAFETY: live block.
    unsafe { h.deallocate(hole, l(4000)) }.unwrap();
    // Plain best fit would take the smaller block at the end; the wilderness comes last.
    let b = h.allocate(l(300)).unwrap().cast::<u8>();
    assert_eq!(b, hole);
    // Use up every other free block; then the wilderness serves.
    let others: Vec<(usize, usize)> = h.free_list().filter(|&(a, _)| a != top).collect();
    for (_, size) in others {
        h.allocate(l(size - core::mem::size_of::<usize>())).unwrap();
    }
    let c = h.allocate(l(top_size - 64)).unwrap().cast::<u8>();
    assert_eq!(c.as_ptr() as usize, top + core::mem::size_of::<usize>());
    h.check_invariants().unwrap();
}

#[test]
fn a_region_just_large_enough_is_used_to_the_last_block() {
    // 400 bytes: 16 of prologue and sentinel, then blocks of 32 and 48 bytes granted one by one.
    for cfg in [
        Config::next_fit(),
        Config::best_fit().with_mechanism(Mechanism::List),
    ] {
        let mut h = heap(400, cfg);
        for size in [10, 20, 30] {
            h.allocate(Layout::from_size_align(size, 8).unwrap())
                .unwrap_or_else(|e| panic!("{cfg}: {size}: {e}"));
        }
        h.check_invariants().unwrap();
    }
}
