//! `Arena`'s statistics are exact through the fast paths (tcache hits and puts count with plain
//! adds and one headroom test, `allocator_traits::FastStats`): a random workload of sized
//! allocations and frees through the workspace's interface, with the live counts and peaks
//! computed here beside it; and C's size-less `free`, which counts a block's usable size as
//! its request, never takes the live bytes below zero.

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_traits::{BoxedRegion, FreeSpaceManager};
use ptmalloc2::{Arena, SystemPages, Tunables};
use workloads::synth::Rng;

fn arena() -> Arena<BoxedRegion, SystemPages> {
    Arena::new(
        BoxedRegion::new(16 << 20).expect("region"),
        SystemPages::new(),
        &Tunables::new(),
    )
}

#[test]
fn sized_frees_keep_live_bytes_and_peaks_exact() {
    let mut a = arena();
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let mut live: Vec<(NonNull<u8>, Layout, usize)> = Vec::new();
    let (mut requested, mut held, mut peak_requested, mut peak_held) = (0usize, 0usize, 0, 0);
    let (mut allocs, mut frees) = (0u64, 0u64);
    // Under Miri (about 4 minutes for the full run) a tenth of the steps.
    let steps = if cfg!(miri) { 4_000 } else { 40_000 };
    for step in 0..steps {
        let grow = live.len() < 200 || (live.len() < 2_000 && rng.next_u64().is_multiple_of(2));
        if grow {
            // Mostly tcache sizes, some that reach the bins (none mapped: under the 128 KiB
            // threshold, so a block holds its chunk: its usable size plus the size word; at
            // least the request + 8 rounded up to 16, more when the rest of a free chunk was
            // too small to split off).
            let size = match rng.next_u64() % 64 {
                0 => 20_000 + (rng.next_u64() % 100_000) as usize,
                1..=8 => 1_100 + (rng.next_u64() % 8_000) as usize,
                _ => 1 + (rng.next_u64() % 1_000) as usize,
            };
            let l = Layout::from_size_align(size, 8).unwrap();
            let b = a.allocate(l).expect("room");
            let chunk = b.len() + 8;
            assert!(chunk >= ((size + 8 + 15) & !15).max(32), "chunk of {size}");
            requested += size;
            held += chunk;
            allocs += 1;
            live.push((b.cast(), l, chunk));
        } else {
            let i = (rng.next_u64() % live.len() as u64) as usize;
            let (p, l, h) = live.swap_remove(i);
            // SAFETY: a live block of `a`, allocated with `l`.
            unsafe { a.deallocate(p, l) }.expect("free");
            requested -= l.size();
            held -= h;
            frees += 1;
        }
        peak_requested = peak_requested.max(requested);
        peak_held = peak_held.max(held);
        if step % 997 == 0 {
            a.check_invariants().expect("walk");
        }
        let s = a.stats();
        assert_eq!(
            (s.live_requested, s.live_held, s.live_blocks),
            (requested, held, live.len()),
            "step {step}"
        );
        assert_eq!(
            (s.peak_live_requested, s.peak_live_held),
            (peak_requested, peak_held),
            "step {step}"
        );
        assert_eq!((s.allocs, s.frees), (allocs, frees), "step {step}");
    }
}

#[test]
fn size_less_frees_never_take_live_bytes_below_zero() {
    let mut a = arena();
    let blocks: Vec<_> = (1..=100).map(|n| a.malloc(n).expect("room")).collect();
    for p in blocks {
        // SAFETY: live blocks of `a`, each freed once.
        unsafe { a.free(p) }.expect("free");
    }
    let s = a.stats();
    assert_eq!((s.live_requested, s.live_held, s.live_blocks), (0, 0, 0));
    assert_eq!(s.peak_live_requested, (1..=100).sum::<usize>());
    a.check_invariants().expect("walk");
    // The counters go on from zero: a sized free after them is exact again.
    let l = Layout::from_size_align(40, 8).unwrap();
    let b = a.allocate(l).expect("room");
    assert_eq!(a.stats().live_requested, 40);
    // SAFETY: a live block of `a`, allocated with `l`.
    unsafe { a.deallocate(b.cast(), l) }.expect("free");
    assert_eq!(a.stats().live_requested, 0);
}
