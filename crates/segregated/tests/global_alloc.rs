//! Segregated lists (the default composition: best fit as the page level) as the process's
//! `#[global_allocator]`: a few hundred thousand `String`s are built, sorted, put in a `BTreeMap`
//! and dropped, then nothing may be left live.
//!
//! Over a `BrkRegion` normally; over a `FixedRegion` on a static array under Miri (which cannot
//! run `mmap`), with fewer strings.

use std::collections::BTreeMap;

use allocator_traits::Locked;
use segregated::Segregated;

#[cfg(not(miri))]
#[global_allocator]
static HEAP: Locked<Segregated<segregated::BestFit<allocator_traits::BrkRegion>>> = Locked::new(
    Segregated::best_fit(allocator_traits::BrkRegion::new(1 << 28)),
);

#[cfg(miri)]
static mut ARENA: [u64; 1 << 18] = [0; 1 << 18];

#[cfg(miri)]
#[global_allocator]
static HEAP: Locked<Segregated> = Locked::new(Segregated::best_fit(
    // SAFETY: ARENA is used by this region alone.
    unsafe { allocator_traits::FixedRegion::from_raw_parts(&raw mut ARENA as *mut u8, 8 << 18) },
));

const N: usize = if cfg!(miri) { 300 } else { 300_000 };

fn main() {
    let before = HEAP.stats();
    {
        let mut strings: Vec<String> = (0..N)
            .map(|i| format!("string number {:>9}", (i * 7919) % N))
            .collect();
        strings.sort();
        assert!(strings.windows(2).all(|w| w[0] <= w[1]));
        let map: BTreeMap<String, usize> = strings.into_iter().zip(0..).collect();
        assert_eq!(map.len(), N);
        assert_eq!(map.values().sum::<usize>(), N * (N - 1) / 2);
        let during = HEAP.stats();
        assert!(
            during.live_blocks >= N,
            "the strings live in the segregated heap"
        );
        let tiny = HEAP.lock().tiny_stats();
        println!(
            "{N} strings in a BTreeMap: {} live blocks, {} bytes asked, {} held, footprint {}; \
             tiny: {} objects in {} blocks",
            during.live_blocks,
            during.live_requested,
            during.live_held,
            during.footprint,
            tiny.live_objects,
            tiny.live_blocks
        );
    }
    let after = HEAP.stats();
    assert!(
        after.live_blocks <= before.live_blocks + 8,
        "everything was freed: {before:?} -> {after:?}"
    );
    println!(
        "after drop: {} live blocks; peak footprint {} bytes; {} allocs, {} frees",
        after.live_blocks, after.peak_footprint, after.allocs, after.frees
    );
}
