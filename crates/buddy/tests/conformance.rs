//! The workspace's conformance kit, over a region taken whole and over one grown in chunks.

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::Profile;
use buddy::{Buddy, Config};

allocator_traits::conformance_suite!(whole_region, Profile::COALESCING, |capacity: usize| {
    Buddy::try_new(BoxedRegion::new(capacity).unwrap(), Config::new(capacity)).unwrap()
});

allocator_traits::conformance_suite!(
    grown_in_chunks,
    Profile::COALESCING.further(),
    |capacity: usize| {
        Buddy::try_new(
            BoxedRegion::new(capacity).unwrap(),
            Config::new(capacity).grow_by(capacity / 16),
        )
        .unwrap()
    }
);

allocator_traits::conformance_suite!(
    min_block_64,
    Profile::COALESCING.further(),
    |capacity: usize| {
        Buddy::try_new(
            BoxedRegion::new(capacity).unwrap(),
            Config::new(capacity).min_block(64),
        )
        .unwrap()
    }
);

/// A heap whose data starts 48 bytes past the region's (aligned) start: the bitmaps of
/// neighbouring orders then start at different block boundaries (`up(k) = 1` for the small
/// orders), which the index arithmetic of split and merge must follow.
fn misaligned(capacity: usize) -> Buddy<BoxedRegion> {
    let mut region = BoxedRegion::new(capacity + 48).unwrap();
    // Taken from the region before the heap sees it, and never given back.
    allocator_traits::MemorySource::acquire(&mut region, 48, 16).unwrap();
    Buddy::try_new(region, Config::new(capacity + 48)).unwrap()
}

allocator_traits::conformance_suite!(
    misaligned_start,
    Profile::COALESCING.further(),
    |capacity: usize| { misaligned(capacity) }
);
