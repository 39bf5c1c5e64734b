//! The binary buddy system over a 4 MiB region, used with allocator-api2's `Vec` and `Box` and
//! with `hashbrown::HashMap`, then its statistics: every block is a power of two.
//!
//! Run with `cargo run -p buddy --example buddy_collections`.

use allocator_traits::allocator_api2::boxed::Box;
use allocator_traits::allocator_api2::vec::Vec;
use allocator_traits::{BoxedRegion, Locked};
use buddy::{Buddy, Config};

fn main() {
    let region = BoxedRegion::new(4 << 20).expect("4 MiB");
    let heap = Locked::new(Buddy::try_new(region, Config::new(4 << 20)).expect("a buddy heap"));

    let mut squares = Vec::new_in(&heap);
    squares.extend((0..10_000u64).map(|i| i * i));
    let boxed = Box::new_in([7u8; 300], &heap);
    let mut names = hashbrown::HashMap::new_in(&heap);
    for i in 0..5_000u32 {
        names.insert(i, i.count_ones());
    }
    let s = heap.stats();
    println!(
        "{} squares, a box of {} B, {} names: {} live blocks, {} B asked, {} B held (powers of \
         two), footprint {} B",
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
