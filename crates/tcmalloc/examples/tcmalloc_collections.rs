//! The gperftools-style core (size classes, central lists, page heap) over OS pages, used with
//! allocator-api2's `Vec` and `Box` and with `hashbrown::HashMap`, then its statistics.
//!
//! Run with `cargo run -p tcmalloc --example tcmalloc_collections`.

use allocator_traits::allocator_api2::boxed::Box;
use allocator_traits::allocator_api2::vec::Vec;
use allocator_traits::{Locked, OsPages};
use tcmalloc::Core;

fn main() {
    let heap = Locked::new(Core::new(OsPages::new()));

    let mut squares = Vec::new_in(&heap);
    squares.extend((0..10_000u64).map(|i| i * i));
    let boxed = Box::new_in([7u8; 300], &heap);
    let mut names = hashbrown::HashMap::new_in(&heap);
    for i in 0..5_000u32 {
        names.insert(i, i.count_ones());
    }
    let s = heap.stats();
    println!(
        "{} squares, a box of {} B, {} names: {} live blocks, {} B asked, {} B held (rounding to \
         gperftools' classes), footprint {} B",
        squares.len(),
        boxed.len(),
        names.len(),
        s.live_blocks,
        s.live_requested,
        s.live_held,
        s.footprint
    );
    drop((squares, boxed, names));
    println!(
        "after dropping them: {} live blocks",
        heap.stats().live_blocks
    );
}
