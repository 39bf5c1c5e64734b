//! The binary buddy system as the process's `#[global_allocator]`, over a region that grows like
//! `brk` a megabyte at a time.
//!
//! Run with `cargo run -p buddy --example buddy_global`.

use std::collections::BTreeMap;

use allocator_traits::{BrkRegion, Locked};
use buddy::{Buddy, Config};

/// Up to 1 GiB (the largest block), committed 1 MiB at a time.
#[global_allocator]
static HEAP: Locked<Buddy<BrkRegion>> = Locked::new(Buddy::new(
    BrkRegion::new(1 << 30),
    Config::new(1 << 30).grow_by(1 << 20),
));

fn main() {
    let mut words: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..50_000u32 {
        *words.entry(format!("w{}", i % 7_919)).or_default() += 1;
    }
    let s = HEAP.stats();
    println!(
        "{} words; buddy holds {} live blocks ({} B asked, {} B held), footprint {} B",
        words.len(),
        s.live_blocks,
        s.live_requested,
        s.live_held,
        s.footprint
    );
}
