//! The checks of the kit. Each takes the policy's [`Profile`] and a `make(capacity)` closure.

use std::boxed::Box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::string::{String, ToString};
use std::vec::Vec;

use core::alloc::Layout;
use core::ptr::NonNull;

use quickcheck::{Arbitrary, Gen};

use super::{Op, Profile, Shadow};
use crate::{AllocError, FreeError, FreeSpaceManager, Locked, Stats};

/// The region size the checks build the policy with: the profile's, [`Profile::miri_capacity`]
/// under Miri (the walk after every operation costs in proportion to the region: buddy's
/// bitmaps, the span tables; and Miri is ~1000x slower).
fn capacity(p: Profile) -> usize {
    if cfg!(miri) {
        p.capacity.min(p.miri_capacity)
    } else {
        p.capacity
    }
}

/// A shadow for the checks of a policy with profile `p`: under Miri it walks the heap after
/// every [`Profile::miri_walk_every`]-th operation; natively after every one.
fn shadow_for(p: Profile) -> Shadow {
    let every = if cfg!(miri) { p.miri_walk_every } else { 1 };
    Shadow::new(p.max_align).walking_every(every)
}

/// Frees every live block (the `idx`-th each time), checking after each free as the shadow
/// does, then runs every check once more (the walk included) on the emptied heap.
fn drain<M: FreeSpaceManager>(shadow: &mut Shadow, m: &mut M, idx: usize) {
    while !shadow.is_empty() {
        shadow.apply(m, Op::Free { idx });
    }
    shadow.check(m);
}

/// Random cases run by the shadow model (fewer under Miri, which is ~1000x slower).
const CASES: usize = if cfg!(miri) { 2 } else { 100 };
/// Quickcheck's size parameter: sequences up to this many operations.
const OPS: usize = if cfg!(miri) { 30 } else { 250 };
/// Shrinking attempts after a failure.
const SHRINK_BUDGET: usize = 300;

/// Runs the shadow model over random operation sequences; on failure shrinks the sequence and
/// panics with the smallest failing one.
pub fn check_shadow_model<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    let mut g = Gen::new(OPS);
    run_sequences(p, capacity(p), &make, CASES, || Vec::arbitrary(&mut g));
}

/// Region size for [`check_shadow_near_oom`]: small enough that its sequences fill it.
const PRESSED_CAPACITY: usize = if cfg!(miri) { 64 << 10 } else { 256 << 10 };
/// Cases and operations of [`check_shadow_near_oom`].
const PRESSED_CASES: usize = if cfg!(miri) { 2 } else { 60 };
const PRESSED_OPS: usize = if cfg!(miri) { 30 } else { 300 };

/// The shadow model against the region's end: sequences whose sizes are fractions of a small
/// region (up to 1/8 of it per allocation, grows up to 1/4), mostly allocations, so that
/// allocations and grows are refused mid-sequence. After every refusal the shadow checks that the
/// block kept its bytes, that the live set and the counters did not change, and that the
/// policy's invariant walk passes; the next operations go on from there. Fails if no sequence
/// was refused an allocation or a grow (a run that never reached the end proves nothing).
pub fn check_shadow_near_oom<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    let cap = PRESSED_CAPACITY;
    let mut g = Gen::new(PRESSED_OPS);
    let (allocs, resizes) = run_sequences(p, cap, &make, PRESSED_CASES, || {
        (0..PRESSED_OPS).map(|_| pressing_op(&mut g, cap)).collect()
    });
    if !cfg!(miri) {
        assert!(
            allocs > 0 && resizes > 0,
            "{PRESSED_CASES} sequences over a {cap}-byte region saw {allocs} refused allocations \
             and {resizes} refused grows: they never pressed against the region's end"
        );
    }
}

/// One operation of [`check_shadow_near_oom`]: sizes relative to the region's `cap`.
fn pressing_op(g: &mut Gen, cap: usize) -> Op {
    let sz = |g: &mut Gen, most: usize| -> usize {
        match u8::arbitrary(g) % 10 {
            0..=3 => usize::arbitrary(g) % 64,
            4..=6 => usize::arbitrary(g) % 2048,
            _ => usize::arbitrary(g) % most.max(1),
        }
    };
    let idx = usize::arbitrary(g);
    match u8::arbitrary(g) % 16 {
        0..=8 => Op::Alloc {
            size: sz(g, cap / 8),
            align_shift: match u8::arbitrary(g) % 8 {
                0..=5 => u8::arbitrary(g) % 5,
                _ => u8::arbitrary(g) % 13,
            },
        },
        9..=11 => Op::Free { idx },
        12 | 13 => Op::Grow {
            idx,
            extra: sz(g, cap / 4),
        },
        14 => Op::Shrink {
            idx,
            by: sz(g, cap / 8),
        },
        _ => Op::Realign {
            idx,
            size: sz(g, cap / 8),
            align_shift: u8::arbitrary(g) % 13,
        },
    }
}

/// The message of a caught panic.
fn panic_message(e: &(dyn core::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// Runs `cases` sequences from `ops` through the shadow model over a `cap`-byte region, each
/// followed by a drain (every live block freed, checking after each free) and the
/// [`check_drained`] leak check; on failure shrinks the sequence and panics with the smallest
/// failing one and what broke. Returns the refusals seen (allocations, resizes).
fn run_sequences<M: FreeSpaceManager, F: Fn(usize) -> M>(
    p: Profile,
    cap: usize,
    make: &F,
    cases: usize,
    mut ops: impl FnMut() -> Vec<Op>,
) -> (u64, u64) {
    let run = |ops: &[Op]| {
        catch_unwind(AssertUnwindSafe(|| {
            let mut m = make(cap);
            let mut shadow = shadow_for(p);
            shadow.check(&m);
            for &op in ops {
                shadow.apply(&mut m, op);
            }
            shadow.check(&m);
            let refused = shadow.refusals();
            drain(&mut shadow, &mut m, 0);
            check_drained(&m);
            refused
        }))
        .map_err(|e| panic_message(&*e))
    };
    let mut refused = (0, 0);
    for case in 0..cases {
        let ops = ops();
        let first = match run(&ops) {
            Ok(r) => {
                refused = (refused.0 + r.0, refused.1 + r.1);
                continue;
            }
            Err(why) => why,
        };
        // Shrink greedily: keep any smaller sequence that still fails.
        let mut smallest = (ops, first);
        let mut budget = SHRINK_BUDGET;
        'outer: while budget > 0 {
            for candidate in smallest.0.shrink() {
                budget -= 1;
                if let Err(why) = run(&candidate) {
                    smallest = (candidate, why);
                    continue 'outer;
                }
                if budget == 0 {
                    break;
                }
            }
            break;
        }
        panic!(
            "shadow model failed on case {case}: {}; smallest failing sequence ({} ops): {:?}",
            smallest.1,
            smallest.0.len(),
            smallest.0
        );
    }
    refused
}

/// After every block is freed, nothing leaked, as [`crate::FreeSpaceManager::inspect`] shows it:
/// no block is still live (a live block that holds a region the policy reports, a span of a
/// size-class front over a page level, is that region's container, not a leak); the blocks tile
/// the regions (free, cached, top and the policy's own overhead account for every byte a region
/// has).
pub fn check_drained<M: FreeSpaceManager + ?Sized>(m: &M) {
    let t = Tally::of(m);
    for &(addr, len) in &t.live {
        let container = t
            .regions
            .iter()
            .any(|&(s, n)| s >= addr && s + n <= addr + len);
        assert!(
            container,
            "after every block was freed, inspect() still shows a live block {addr:#x}+{len} \
             (leaked)"
        );
    }
    let regions: usize = t.regions.iter().map(|r| r.1).sum();
    if t.blocks > 0 {
        assert_eq!(
            t.block_bytes, regions,
            "after every block was freed, inspect()'s blocks cover {} bytes of its regions' \
             {regions}: free, cached, top and overhead must account for every byte ({t:?})",
            t.block_bytes
        );
    }
}

/// What inspect() shows, for [`check_drained`].
#[derive(Debug, Default)]
struct Tally {
    regions: Vec<(usize, usize)>,
    live: Vec<(usize, usize)>,
    blocks: usize,
    block_bytes: usize,
}

impl Tally {
    fn of<M: FreeSpaceManager + ?Sized>(m: &M) -> Tally {
        let mut t = Tally::default();
        m.inspect(&mut t);
        t
    }
}

impl crate::Inspector for Tally {
    fn region(&mut self, start: usize, len: usize) {
        self.regions.push((start, len));
    }
    fn block(&mut self, addr: usize, len: usize, kind: crate::BlockKind) {
        if matches!(kind, crate::BlockKind::Live { .. }) {
            self.live.push((addr, len));
        }
        self.blocks += 1;
        self.block_bytes += len;
    }
}

/// Zero-size layouts are served (distinct, aligned blocks) and freed like any other.
pub fn check_zero_size<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    let mut m = make(capacity(p));
    let mut shadow = shadow_for(p);
    for shift in 0..5u8 {
        shadow.apply(
            &mut m,
            Op::Alloc {
                size: 0,
                align_shift: shift,
            },
        );
        shadow.apply(
            &mut m,
            Op::Alloc {
                size: 0,
                align_shift: shift,
            },
        );
    }
    assert_eq!(
        shadow.len(),
        10,
        "zero-size allocations must succeed on a fresh heap"
    );
    // Grow a zero-size block and shrink a block to zero.
    shadow.apply(&mut m, Op::Grow { idx: 3, extra: 40 });
    shadow.apply(&mut m, Op::Shrink { idx: 3, by: 1000 });
    drain(&mut shadow, &mut m, 1);
    assert_eq!(m.stats().live_blocks, 0);
}

/// Grow and shrink may change the alignment: every block comes back aligned to the new
/// alignment with its contents kept, whether the policy resizes it in place or moves it.
pub fn check_realign<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    let mut m = make(capacity(p));
    let mut shadow = shadow_for(p);
    for (i, size) in [24usize, 100, 1000, 5000, 0, 300].into_iter().enumerate() {
        shadow.apply(
            &mut m,
            Op::Alloc {
                size,
                align_shift: if i % 2 == 0 { 3 } else { 0 },
            },
        );
    }
    for (idx, size, align_shift) in [
        (0, 64, 6),
        (1, 4096, 12),
        (2, 1000, 5),
        (3, 200, 7),
        (4, 16, 4),
        (5, 8000, 9),
        (0, 8, 12),
        (2, 3000, 3),
    ] {
        shadow.apply(
            &mut m,
            Op::Realign {
                idx,
                size,
                align_shift,
            },
        );
    }
    drain(&mut shadow, &mut m, 0);
}

/// Huge sizes and alignments give a clean error (no panic, no overflow), and leave the manager
/// working; alignments up to the profile's `max_align` are served.
pub fn check_huge<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    let mut m = make(capacity(p));
    let top_align = 1usize << (usize::BITS - 2);
    let layouts = [
        Layout::from_size_align(isize::MAX as usize - 4095, 4096),
        Layout::from_size_align(isize::MAX as usize, 1),
        Layout::from_size_align(isize::MAX as usize - 15, 8),
        Layout::from_size_align(1 << 40, 8),
        Layout::from_size_align(capacity(p) + 1, 8),
        Layout::from_size_align(1, top_align),
        Layout::from_size_align(1, p.max_align.saturating_mul(2)),
        Layout::from_size_align(capacity(p), p.max_align),
    ];
    for layout in layouts.into_iter().flatten() {
        match m.allocate(layout) {
            Err(AllocError::OutOfMemory { .. } | AllocError::Unsupported { .. }) => {}
            Err(e) => {
                panic!("allocate({layout:?}) gave {e}: expected out-of-memory or unsupported")
            }
            Ok(b) => {
                // A policy may serve some of these (e.g. from a second memory source): then it
                // must be a real block.
                let addr = b.cast::<u8>().as_ptr() as usize;
                assert!(
                    b.len() >= layout.size() && addr.is_multiple_of(layout.align()),
                    "{layout:?}"
                );
                // SAFETY: just allocated with `layout`.
                unsafe { m.deallocate(b.cast(), layout) }.expect("free of a fresh block");
            }
        }
    }
    // Every alignment up to max_align works on a fresh manager.
    let mut shadow = shadow_for(p);
    let mut align = 1;
    while align <= p.max_align {
        let before = shadow.len();
        shadow.apply(
            &mut m,
            Op::Alloc {
                size: 24,
                align_shift: align.trailing_zeros() as u8,
            },
        );
        assert_eq!(
            shadow.len(),
            before + 1,
            "alignment {align} refused on a fresh heap"
        );
        align *= 2;
    }
    // Growing a block to a huge size fails cleanly and keeps it.
    shadow.apply(
        &mut m,
        Op::Grow {
            idx: 0,
            extra: 1 << 40,
        },
    );
    drain(&mut shadow, &mut m, 0);
}

/// Bad frees the policy claims to detect are reported, name the pointer, and change nothing.
pub fn check_bad_frees<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    let mut m = make(capacity(p));
    let d = m.detects();
    let mut shadow = shadow_for(p);
    for size in [8, 100, 3000, 24, 0] {
        shadow.apply(
            &mut m,
            Op::Alloc {
                size,
                align_shift: 3,
            },
        );
    }
    // Every refused free names the pointer, is counted in `bad_frees`, and frees nothing.
    let expect_error =
        |m: &mut M, before: Stats, r: Result<(), FreeError>, ptr: usize, what: &str| {
            let e = r.expect_err(what);
            assert_eq!(
                e.ptr(),
                ptr,
                "{what}: the error must name the pointer ({e})"
            );
            let after = m.stats();
            assert_eq!(
                after.bad_frees,
                before.bad_frees + 1,
                "{what}: bad_frees not counted"
            );
            assert_eq!(
                after.live_blocks, before.live_blocks,
                "{what}: a block was freed"
            );
        };
    if d.foreign {
        let outside = Box::new([0u64; 8]);
        let ptr = NonNull::from(&outside[0]).cast::<u8>();
        let layout = Layout::new::<u64>();
        let before = m.stats();
        // SAFETY: the policy claims to detect foreign pointers; nothing is freed.
        let r = unsafe { m.deallocate(ptr, layout) };
        expect_error(
            &mut m,
            before,
            r,
            ptr.as_ptr() as usize,
            "free of a foreign pointer",
        );
        shadow.check(&m);
        // Growing or shrinking a foreign block is refused the same way, and nothing changes.
        // The last case asks for more alignment: the block must be checked before a move too.
        for (new_size, new_align) in [(200, 8), (4, 8), (200, 64.min(p.max_align.max(8)))] {
            let new = Layout::from_size_align(new_size, new_align).expect("layout");
            let before = m.stats();
            // SAFETY: the policy claims to detect foreign pointers; `outside` is readable memory.
            let r = unsafe {
                if new_size > layout.size() {
                    m.grow(ptr, layout, new)
                } else {
                    m.shrink(ptr, layout, new)
                }
            };
            let what = format!("resize of a foreign pointer to {new:?}");
            match r {
                Err(AllocError::InvalidBlock(e)) => {
                    assert_eq!(
                        e.ptr(),
                        ptr.as_ptr() as usize,
                        "{what}: the error must name the pointer ({e})"
                    );
                }
                other => panic!("{what}: expected InvalidBlock, got {other:?}"),
            }
            let after = m.stats();
            assert_eq!(
                (after.live_blocks, after.allocs, after.frees, after.resizes),
                (
                    before.live_blocks,
                    before.allocs,
                    before.frees,
                    before.resizes
                ),
                "{what}: the op counters changed"
            );
            shadow.check(&m);
        }
    }
    if d.double_free {
        for size in [16, 200, 5000]
            .into_iter()
            .filter(|&s| s > d.double_free_above)
        {
            let layout = Layout::from_size_align(size, 8).expect("layout");
            let b = m.allocate(layout).expect("allocation on a fresh heap");
            // SAFETY: freed once, legitimately.
            unsafe { m.deallocate(b.cast(), layout) }.expect("first free");
            let before = m.stats();
            // SAFETY: the policy claims to detect double frees; nothing is freed.
            let r = unsafe { m.deallocate(b.cast(), layout) };
            let what = format!("double free of a {size}-byte block");
            expect_error(&mut m, before, r, b.cast::<u8>().as_ptr() as usize, &what);
            shadow.check(&m);
        }
    }
    if d.layout_mismatch {
        let layout = Layout::from_size_align(64, 8).expect("layout");
        let b = m.allocate(layout).expect("allocation on a fresh heap");
        let wrong = Layout::from_size_align(64 * 1024, 8).expect("layout");
        let before = m.stats();
        // SAFETY: the policy claims to detect layout mismatches; nothing is freed.
        let r = unsafe { m.deallocate(b.cast(), wrong) };
        let at = b.cast::<u8>().as_ptr() as usize;
        expect_error(&mut m, before, r, at, "free with a wrong layout");
        // SAFETY: now freed with its real layout.
        unsafe { m.deallocate(b.cast(), layout) }.expect("free with the right layout");
    }
    // The heap still works after every refusal.
    for i in 0..if cfg!(miri) { 12 } else { 50 } {
        shadow.apply(
            &mut m,
            Op::Alloc {
                size: i * 13,
                align_shift: 3,
            },
        );
    }
    drain(&mut shadow, &mut m, 7);
}

/// A small deterministic generator (xorshift64*), so the fill pattern is the same every run
/// (and a failing offset sequence is named by its seed).
#[derive(Debug, Clone)]
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (0 for `n == 0`).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The largest size (aligned to 16) that can be allocated right now, by bisection.
fn largest<M: FreeSpaceManager>(m: &mut M, cap: usize) -> usize {
    let (mut lo, mut hi) = (0usize, cap.saturating_mul(2));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let layout = Layout::from_size_align(mid, 16).expect("layout");
        match m.allocate(layout) {
            Ok(b) => {
                // SAFETY: just allocated with `layout`.
                unsafe { m.deallocate(b.cast(), layout) }.expect("free of a probe");
                lo = mid;
            }
            Err(_) => hi = mid - 1,
        }
    }
    lo
}

/// Fills a fixed region until it refuses, frees everything in random order, and (for a coalescing
/// policy) gets the whole region back.
pub fn check_fill_and_drain<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    let cap = if cfg!(miri) { 64 * 1024 } else { p.capacity };
    let mut m = make(cap);
    let fresh = largest(&mut m, cap);
    assert!(
        fresh > 0,
        "a fresh heap of {cap} bytes cannot allocate anything"
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<(NonNull<[u8]>, Layout)> = Vec::new();
    let mut asked = 0usize;
    for phase_size in [1024usize, 64, 8, 1] {
        let mut refusals = 0;
        while refusals < 3 {
            let size = 1 + (rng.next() as usize % phase_size);
            let layout = Layout::from_size_align(size, 8).expect("layout");
            match m.allocate(layout) {
                Ok(b) => {
                    live.push((b, layout));
                    asked += size;
                    assert!(
                        asked <= cap.saturating_mul(4) + 4096,
                        "a fixed region of {cap} bytes never refused ({asked} bytes given)"
                    );
                }
                Err(AllocError::OutOfMemory { .. }) => refusals += 1,
                Err(e) => panic!("allocate({layout:?}) gave {e} while filling"),
            }
        }
    }
    let s = m.stats();
    assert_eq!(s.live_blocks, live.len());
    assert!(s.footprint >= s.live_held);
    // Free in a random order.
    for i in (1..live.len()).rev() {
        let j = rng.next() as usize % (i + 1);
        live.swap(i, j);
    }
    for (b, layout) in live.drain(..) {
        // SAFETY: each block is live and freed once with its layout.
        unsafe { m.deallocate(b.cast(), layout) }.expect("free while draining");
    }
    let s = m.stats();
    assert_eq!(
        (s.live_blocks, s.live_requested, s.live_held),
        (0, 0, 0),
        "{s:?}"
    );
    check_drained(&m);
    let again = largest(&mut m, cap);
    if p.coalesces {
        // At least what the fresh heap gave: a heap that grows in chunks may have taken more of
        // its region while filling, so its largest block can be larger now (buddy's, where a
        // fresh heap's probe could not place a block aligned to its size and its bitmaps in
        // one grant), never smaller.
        assert!(
            again >= fresh,
            "after freeing everything the largest block is {again} bytes, on a fresh heap {fresh}"
        );
    } else {
        // No promise of the whole region; `check_drained` above checked that nothing leaked.
        assert!(
            again > 0,
            "nothing can be allocated after freeing everything"
        );
    }
}

/// allocator-api2 `Vec` and `Box`, and `hashbrown::HashMap::new_in`, through [`Locked`].
pub fn check_collections<M: FreeSpaceManager, F: Fn(usize) -> M>(p: Profile, make: F) {
    use allocator_api2::boxed::Box as ABox;
    use allocator_api2::vec::Vec as AVec;

    let n: u64 = if cfg!(miri) { 300 } else { 40_000 };
    let heap = Locked::new(make(p.collections_capacity));
    {
        // The Allocator front hands out exactly the size asked: a caller may free with any size
        // up to the length it got (hashbrown sizes its tables by it), and the manager's counters
        // need the size it allocated.
        use allocator_api2::alloc::Allocator;
        let l = Layout::from_size_align(100, 8).unwrap();
        let b = heap.allocate(l).expect("100 bytes");
        assert_eq!(b.len(), 100, "Locked::allocate handed out more than asked");
        // SAFETY: just allocated with `l`, not used after.
        unsafe { heap.deallocate(b.cast(), l) };
    }
    {
        let mut v = AVec::new_in(&heap);
        for i in 0..n {
            v.push(i * 3);
        }
        v.truncate(n as usize / 10);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        let b = ABox::new_in([7u8; 300], &heap);
        let mut words: AVec<AVec<u8, _>, _> = AVec::new_in(&heap);
        for i in 0..(n / 20) {
            let mut w = AVec::with_capacity_in((i % 50) as usize, &heap);
            w.extend((0..(i % 50)).map(|x| x as u8));
            words.push(w);
        }
        let mut map = hashbrown::HashMap::new_in(&heap);
        for i in 0..n {
            map.insert(i, i.wrapping_mul(0x9e37_79b9));
        }
        for i in (0..n).step_by(2) {
            assert_eq!(map.remove(&i), Some(i.wrapping_mul(0x9e37_79b9)));
        }
        map.shrink_to_fit();
        for i in (1..n).step_by(2) {
            assert_eq!(map.get(&i), Some(&i.wrapping_mul(0x9e37_79b9)));
        }
        assert_eq!(map.len() as u64, n / 2);
        assert!(b.iter().all(|&x| x == 7));
        assert!(words.iter().enumerate().all(|(i, w)| w.len() == i % 50
            && w.iter().enumerate().all(|(j, &x)| x == j as u8)));
        assert!(heap.stats().live_blocks > 0);
    }
    let s = heap.stats();
    assert_eq!(
        (s.live_blocks, s.live_requested),
        (0, 0),
        "everything dropped: {s:?}"
    );
}

/// The global-allocator workload every policy's `#[global_allocator]` test binary runs: `n`
/// Strings built, sorted, put into a `BTreeMap` and dropped, with the contents checked at each
/// step. `stats` reads the installed allocator's counters; the check is that the strings really
/// lived in it and were all freed. Returns the counters seen while the map was full.
pub fn check_global_workload(n: usize, stats: impl Fn() -> crate::Stats) -> crate::Stats {
    use std::collections::BTreeMap;
    use std::string::String;

    let before = stats();
    let during = {
        let mut strings: Vec<String> = (0..n)
            .map(|i| std::format!("string number {:>9}", (i * 7919) % n))
            .collect();
        strings.sort();
        assert!(strings.windows(2).all(|w| w[0] <= w[1]), "sorted");
        let map: BTreeMap<String, usize> = strings.into_iter().zip(0..).collect();
        assert_eq!(map.len(), n);
        assert_eq!(map.values().sum::<usize>(), n * n.saturating_sub(1) / 2);
        let during = stats();
        assert!(
            during.live_blocks >= before.live_blocks + n,
            "the {n} strings must live in the installed allocator: {during:?}"
        );
        during
    };
    let after = stats();
    assert!(
        after.live_blocks <= before.live_blocks + 8,
        "the strings were freed: before {before:?}, after {after:?}"
    );
    during
}
