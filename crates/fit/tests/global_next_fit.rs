//! next-fit as the `#[global_allocator]` of this test binary, over a `BrkRegion`, running a
//! real workload (see `support/workload.rs`). Not run under Miri (it needs mmap).
#![cfg(not(miri))]

use allocator_traits::{BrkRegion, Locked};
use fit::{Config, FitHeap};

#[path = "support/workload.rs"]
mod workload;

#[global_allocator]
static HEAP: Locked<FitHeap<BrkRegion>> =
    Locked::new(FitHeap::new(BrkRegion::new(1 << 32), Config::next_fit()));

/// 300 000 strings (the index finds next fit's block in O(log n), where the list walked the
/// small blocks the temporaries leave behind the rover).
#[test]
fn strings_sorted_into_a_btreemap_and_dropped() {
    workload::run(&HEAP, 300_000);
}
