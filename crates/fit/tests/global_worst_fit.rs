//! worst-fit as the `#[global_allocator]` of this test binary, over a `BrkRegion`, running a
//! real workload (see `support/workload.rs`). Not run under Miri (it needs mmap).
#![cfg(not(miri))]

use allocator_traits::{BrkRegion, Locked};
use fit::{Config, FitHeap};

#[path = "support/workload.rs"]
mod workload;

#[global_allocator]
static HEAP: Locked<FitHeap<BrkRegion>> =
    Locked::new(FitHeap::new(BrkRegion::new(1 << 32), Config::worst_fit()));

/// 300 000 strings: worst fit takes every block from the largest free block and never reuses the
/// small holes the freed temporaries leave, so the free blocks grow with every string; the index
/// finds the largest in O(log n) (the list's scan made this quadratic: hours at 300 000).
#[test]
fn strings_sorted_into_a_btreemap_and_dropped() {
    workload::run(&HEAP, 300_000);
}
