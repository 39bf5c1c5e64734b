//! One ptmalloc2 arena (glibc 2.36's placement) growing like `brk`, big chunks mapped, used with
//! allocator-api2's `Vec` and `Box` and with `hashbrown::HashMap`, then its statistics.
//!
//! Run with `cargo run -p ptmalloc2 --example ptmalloc2_collections`.

use allocator_traits::allocator_api2::boxed::Box;
use allocator_traits::allocator_api2::vec::Vec;
use allocator_traits::{BrkRegion, Locked};
use ptmalloc2::{Arena, SystemPages, Tunables};

fn main() {
    // glibc's defaults; `Tunables::parse("glibc.malloc.tcache_count=0")` changes them.
    let arena = Arena::new(
        BrkRegion::new(1 << 30),
        SystemPages::new(),
        &Tunables::new(),
    );
    let heap = Locked::new(arena);

    let mut squares = Vec::new_in(&heap);
    squares.extend((0..10_000u64).map(|i| i * i));
    let boxed = Box::new_in([7u8; 300], &heap);
    let big = Vec::<u8, _>::with_capacity_in(1 << 20, &heap); // above the mmap threshold
    let mut names = hashbrown::HashMap::new_in(&heap);
    for i in 0..5_000u32 {
        names.insert(i, i.count_ones());
    }
    let s = heap.stats();
    println!(
        "{} squares, a box of {} B, {} B mapped, {} names: {} live blocks, {} B asked, {} B held, \
         footprint {} B",
        squares.len(),
        boxed.len(),
        big.capacity(),
        names.len(),
        s.live_blocks,
        s.live_requested,
        s.live_held,
        s.footprint
    );
    drop((squares, boxed, big, names));
    println!(
        "after dropping them: {} live blocks",
        heap.stats().live_blocks
    );
}
