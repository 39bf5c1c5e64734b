//! The conformance kit on the single-threaded core over a fixed region.
#![cfg(not(loom))]

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::Profile;
use tcmalloc::Core;

allocator_traits::conformance_suite!(tcmalloc_core, Profile::NON_COALESCING, |capacity: usize| {
    Core::new(BoxedRegion::new(capacity).unwrap())
});
