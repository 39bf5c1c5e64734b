//! Best fit as the process's `#[global_allocator]`, over a region that grows like `brk`: every
//! `String`, `Vec` and `BTreeMap` of the program comes from it.
//!
//! Run with `cargo run -p fit --example fit_global`.

use std::collections::BTreeMap;

use allocator_traits::{BrkRegion, Locked};
use fit::{Config, FitHeap};

/// 1 GiB of address space, committed as the heap grows.
#[global_allocator]
static HEAP: Locked<FitHeap<BrkRegion>> =
    Locked::new(FitHeap::new(BrkRegion::new(1 << 30), Config::best_fit()));

fn main() {
    let mut words: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..50_000u32 {
        *words.entry(format!("w{}", i % 7_919)).or_default() += 1;
    }
    let longest: Vec<String> = words.keys().rev().take(3).cloned().collect();
    let s = HEAP.stats();
    println!(
        "{} words (last: {longest:?}); best fit holds {} live blocks, footprint {} B (peak {} B)",
        words.len(),
        s.live_blocks,
        s.footprint,
        s.peak_footprint
    );
}
