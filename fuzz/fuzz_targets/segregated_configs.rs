//! Fuzzes segregated in the settings a user can pick, not only the default over buddy (the
//! `segregated` target): the input's first byte chooses the page level (buddy or best fit from
//! `fit`, as `Segregated::best_fit` composes it), tiny combining, the empty spans each class
//! keeps, and the checked or unchecked heap (see [`run_setting`]); the rest runs through the
//! conformance kit's harness (allocate, free, grow, shrink, realign with contents checked
//! against a shadow, the invariant walk after every operation, the bad frees the setting claims
//! to detect): `cargo +nightly fuzz run segregated_configs`.
#![no_main]

use allocator_traits::conformance::{FUZZ_CAPACITY, fuzz_one};
use allocator_traits::{BoxedRegion, FreeSpaceManager};
use segregated::{Config, GO, Segregated};

/// Runs `ops` on segregated over the page level `large`, checked or not.
fn run<L: FreeSpaceManager>(large: L, config: Config, unchecked: bool, ops: &[u8]) {
    if unchecked {
        fuzz_one(&mut Segregated::unchecked(&GO, config, large), 4096, ops);
    } else {
        fuzz_one(&mut Segregated::with_table(&GO, config, large), 4096, ops);
    }
}

/// Runs `ops` on the heap byte `a` names: bit 0 best fit from `fit` as the page level (else
/// buddy), bit 1 tiny combining, bits 2-3 the empty spans kept per class (0, 1, 2 or 8), bit 4
/// the unchecked heap (small frees trusted; `detects()` claims less, and the harness holds it
/// to that).
fn run_setting(a: u8, ops: &[u8]) {
    let config = Config {
        tiny: a & 2 != 0,
        keep_empty: [0, 1, 2, 8][usize::from((a >> 2) & 3)],
    };
    let unchecked = a & 16 != 0;
    let region = BoxedRegion::new(FUZZ_CAPACITY).expect("region");
    if a & 1 == 0 {
        let buddy =
            buddy::Buddy::try_new(region, buddy::Config::new(FUZZ_CAPACITY)).expect("buddy");
        run(buddy, config, unchecked, ops);
    } else {
        let fit = fit::FitHeap::new(region, fit::Config::best_fit());
        run(fit, config, unchecked, ops);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let [a, ops @ ..] = data {
        run_setting(*a, ops);
    }
});
