//! The workload every `global_*` test binary runs through its `#[global_allocator]`: the
//! conformance kit's strings workload (built, sorted, put into a `BTreeMap` and dropped, contents
//! checked), then fit's own invariant walk over the heap.

use allocator_traits::{BrkRegion, FreeSpaceManager, Locked, conformance};
use fit::FitHeap;

pub fn run(heap: &Locked<FitHeap<BrkRegion>>, n: usize) {
    let during = conformance::check_global_workload(n, || heap.stats());
    assert!(during.peak_footprint >= during.peak_live_held, "{during:?}");
    let after = heap.stats();
    assert!(after.allocs >= n as u64, "{after:?}");
    // Nothing may allocate while the heap's lock is held (that would deadlock on the spin
    // lock): copy what we need out, then report.
    let (config, consistent, free_chunks) = {
        let h = heap.lock();
        (*h.config(), h.check_invariants(), h.free_list().count())
    };
    consistent.expect("heap consistent after the workload");
    eprintln!(
        "{config}: {} allocs, peak live {} B requested / {} B held, peak footprint {} B, \
         free list now {free_chunks} chunks",
        after.allocs, after.peak_live_requested, after.peak_live_held, after.peak_footprint,
    );
}
