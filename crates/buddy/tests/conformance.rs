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

/// A region whose start is 48 bytes past a 4 KiB boundary: the bitmaps of neighbouring orders
/// then start at different block boundaries (`up(k) = 1` for the small orders), which the
/// index arithmetic of split and merge must follow. The memory is leaked (a few per test).
fn misaligned(capacity: usize) -> allocator_traits::FixedRegion {
    let mem: &'static mut [u8] = Box::leak(vec![0u8; capacity + 8192].into_boxed_slice());
    let p = mem.as_mut_ptr();
    let skip = (4096 - p as usize % 4096) % 4096 + 48;
    // SAFETY: `skip + capacity` bytes of the leaked buffer are in bounds and used by this region
    // alone, for the rest of the process.
    unsafe { allocator_traits::FixedRegion::from_raw_parts(p.add(skip), capacity) }
}

allocator_traits::conformance_suite!(misaligned_start, Profile::COALESCING, |capacity: usize| {
    Buddy::try_new(misaligned(capacity), Config::new(capacity)).unwrap()
});
