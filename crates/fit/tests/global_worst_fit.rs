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

/// 10 000 strings only: worst fit takes every block from the largest chunk and never reuses the
/// small holes that the freed temporaries leave, so the list grows with every string and each
/// allocation scans all of it (quadratic: over 20 s at 20 000, hours at 300 000, in a debug build).
#[test]
fn strings_sorted_into_a_btreemap_and_dropped() {
    workload::run(&HEAP, 10_000);
}
