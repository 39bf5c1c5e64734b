//! The conformance kit on the single-threaded core over a fixed region.
#![cfg(not(loom))]

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::Profile;
use tcmalloc::Core;

/// 256 KiB under Miri: at 128 KiB the 64 KiB metadata chunk leaves too little for a 5000-byte
/// object's span or a 1 KiB-aligned one (both refused on a fresh heap). Under Miri the walk and
/// the inspect picture run after every 8th operation (and after each sequence and drain): they
/// visit every object of every span (the suite took 691 virtual seconds walking after every
/// operation, 373 after every second, session 8).
const PROFILE: Profile = Profile {
    miri_capacity: 256 << 10,
    miri_walk_every: 8,
    ..Profile::NON_COALESCING
};

allocator_traits::conformance_suite!(tcmalloc_core, PROFILE, |capacity: usize| {
    Core::new(BoxedRegion::new(capacity).unwrap())
});
