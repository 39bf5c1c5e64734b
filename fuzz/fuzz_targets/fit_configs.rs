//! Fuzzes every fit policy in every setting a user can pick, not only best fit's default (the
//! `best_fit` target): the input's first two bytes choose the policy, the list order, the
//! coalescing, the index or the list, the check word, OSTEP's header and rounding and a small
//! trim threshold (see [`config`]); the rest runs through the conformance kit's harness
//! (allocate, free, grow, shrink, realign with contents checked against a shadow, the invariant
//! walk after every operation, the bad frees the setting claims to detect):
//! `cargo +nightly fuzz run fit_configs`.
#![no_main]

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::{FUZZ_CAPACITY, fuzz_one};
use fit::{Coalesce, Config, Mechanism, Order, Policy};

/// The setting two bytes name. `a`: bits 0-1 the policy, 2 the check word, 3-4 the coalescing
/// (physical, off, OSTEP's list order, physical), 5-7 the list order (0 and 5-7 address order,
/// else `Order::ALL[n]`). `b`: bit 0 the list even in address order, bits 1-2 OSTEP's header
/// (none, 8, 16 or 32 bytes), bits 3-4 OSTEP's rounding (none, 8, 16 or 64 bytes), bit 5 a trim
/// threshold of 4 KiB (else glibc's 128 KiB, above most of the region).
fn config(a: u8, b: u8) -> Config {
    let policy = Policy::ALL[usize::from(a & 3)];
    let coalesce = match (a >> 3) & 3 {
        1 => Coalesce::Off,
        2 => Coalesce::ListOrder,
        _ => Coalesce::Physical,
    };
    let order = match (a >> 5) as usize {
        n @ 1..=4 => Order::ALL[n],
        _ => Order::AddrSort,
    };
    let mechanism = if b & 1 == 1 {
        Mechanism::List
    } else {
        Mechanism::Index
    };
    let mut cfg = Config::new(policy)
        .with_order(order)
        .with_coalesce(coalesce)
        .with_mechanism(mechanism)
        .with_checked(a & 4 != 0)
        .with_header([0, 8, 16, 32][usize::from((b >> 1) & 3)])
        .with_align([1, 8, 16, 64][usize::from((b >> 3) & 3)]);
    if b & 32 != 0 {
        cfg = cfg.with_trim_threshold(4096);
    }
    cfg
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [a, b, ops @ ..] = data else {
        return;
    };
    let region = BoxedRegion::new(FUZZ_CAPACITY).expect("region");
    let mut m = fit::FitHeap::new(region, config(*a, *b));
    fuzz_one(&mut m, 4096, ops);
});
