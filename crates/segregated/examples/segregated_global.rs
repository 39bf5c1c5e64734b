//! Segregated lists as the process's `#[global_allocator]`: Go's size classes over best fit,
//! which grows like `brk`.
//!
//! Run with `cargo run -p segregated --example segregated_global`.

use std::collections::BTreeMap;

use allocator_traits::{BrkRegion, Locked};
use segregated::{BestFit, Segregated};

/// 1 GiB of address space for the page level, committed as it grows.
#[global_allocator]
static HEAP: Locked<Segregated<BestFit<BrkRegion>>> =
    Locked::new(Segregated::best_fit(BrkRegion::new(1 << 30)));

fn main() {
    let mut words: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..50_000u32 {
        *words.entry(format!("w{}", i % 7_919)).or_default() += 1;
    }
    let s = HEAP.stats();
    println!(
        "{} words; segregated holds {} live blocks ({} B asked, {} B held), footprint {} B",
        words.len(),
        s.live_blocks,
        s.live_requested,
        s.live_held,
        s.footprint
    );
}
