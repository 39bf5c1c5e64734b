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

/// 200 000 strings, not 300 000: next fit's rover settles among the small chunks that the
/// temporaries leave, and its searches walk them (about 10-25 s in a debug build at 300 000).
#[test]
fn strings_sorted_into_a_btreemap_and_dropped() {
    workload::run(&HEAP, 200_000);
}
