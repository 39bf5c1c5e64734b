//! Fuzzes buddy through the conformance kit's harness (allocate, free, grow, shrink, realign
//! with contents checked against a shadow, the invariant walk after every operation, the bad
//! frees it claims to detect): `cargo +nightly fuzz run buddy`.
#![no_main]

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::{FUZZ_CAPACITY, fuzz_one};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let region = BoxedRegion::new(FUZZ_CAPACITY).expect("region");
    let mut m = buddy::Buddy::try_new(region, buddy::Config::new(FUZZ_CAPACITY)).expect("buddy");
    fuzz_one(&mut m, 4096, data);
});
