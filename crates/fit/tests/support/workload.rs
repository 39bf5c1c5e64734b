//! The workload every `global_*` test binary runs through its `#[global_allocator]`: a few hundred
//! thousand `String`s built, sorted, put into a `BTreeMap`, looked up and dropped.

use std::collections::BTreeMap;

use allocator_traits::{BrkRegion, Locked};
use fit::FitHeap;

pub fn run(heap: &Locked<FitHeap<BrkRegion>>, n: usize) {
    let before = heap.stats();
    let mut words: Vec<String> = (0..n)
        .map(|i| {
            let k = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            format!("w{k:07x}-{}", "x".repeat(i % 23))
        })
        .collect();
    let during = heap.stats();
    assert!(during.live_blocks >= before.live_blocks + n, "{during:?}");
    words.sort();
    assert!(words.windows(2).all(|w| w[0] <= w[1]));
    let map: BTreeMap<String, usize> = words.iter().cloned().zip(0..).collect();
    assert_eq!(map.len(), n);
    for (i, w) in words.iter().enumerate().step_by(997) {
        assert_eq!(map[w], i);
    }
    let peak = heap.stats();
    drop(map);
    drop(words);
    let after = heap.stats();
    assert!(after.live_blocks <= before.live_blocks + 16, "{after:?}");
    assert!(after.allocs >= 2 * n as u64);
    assert!(peak.peak_footprint >= peak.peak_live_held);
    // Nothing may allocate while the heap's lock is held (that would deadlock on the spin
    // lock): copy what we need out, then report.
    let (config, consistent, free_chunks) = {
        let h = heap.lock();
        (*h.config(), h.check_consistency(), h.free_list().count())
    };
    consistent.expect("heap consistent after the workload");
    eprintln!(
        "{config}: {} allocs, peak live {} B requested / {} B held, peak footprint {} B, \
         free list now {free_chunks} chunks",
        after.allocs, after.peak_live_requested, after.peak_live_held, after.peak_footprint,
    );
}
