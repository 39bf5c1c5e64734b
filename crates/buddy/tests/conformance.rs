//! The workspace's conformance kit, over a region taken whole and over one grown in chunks.

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::Profile;
use buddy::{Buddy, Config};

allocator_traits::conformance_suite!(whole_region, Profile::COALESCING, |capacity: usize| {
    Buddy::try_new(BoxedRegion::new(capacity).unwrap(), Config::new(capacity)).unwrap()
});

allocator_traits::conformance_suite!(grown_in_chunks, Profile::COALESCING, |capacity: usize| {
    Buddy::try_new(
        BoxedRegion::new(capacity).unwrap(),
        Config::new(capacity).grow_by(capacity / 16),
    )
    .unwrap()
});

allocator_traits::conformance_suite!(min_block_64, Profile::COALESCING, |capacity: usize| {
    Buddy::try_new(
        BoxedRegion::new(capacity).unwrap(),
        Config::new(capacity).min_block(64),
    )
    .unwrap()
});
