//! The workspace's conformance kit, with the buddy system as the page level and large-object
//! manager.

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::Profile;
use buddy::Buddy;
use segregated::{Config, GO, Segregated};

fn pages(capacity: usize) -> Buddy<BoxedRegion> {
    Buddy::try_new(
        BoxedRegion::new(capacity).unwrap(),
        buddy::Config::new(capacity),
    )
    .unwrap()
}

/// The first configuration's profile: under Miri the walk (segregated's and the buddy
/// system's) and the inspect picture run after every 4th operation, not every one: they were
/// 85% of the suite's time there (native instruction counts of the same build), the
/// configurations below after every 8th (`Profile::further`).
const FIRST: Profile = Profile {
    miri_walk_every: 4,
    miri_capacity: MIRI_CAPACITY,
    ..Profile::NON_COALESCING
};

/// The region under Miri: 256 KiB. At the kit's default 128 KiB a fresh heap whose region
/// starts at an unlucky address could not serve a 4 KiB-aligned block once the kit's huge
/// requests had left a span of each kept class (`go_classes::huge_layouts_are_clean_errors`
/// under Miri, session 8; the keep-none configurations likewise natively, built with
/// `--cfg miri`): the buddy system's bitmaps and the kept spans take too much of it.
const MIRI_CAPACITY: usize = 256 << 10;

/// A further configuration's profile (`Profile::further`) over [`MIRI_CAPACITY`] under Miri.
const fn further(p: Profile) -> Profile {
    Profile {
        miri_capacity: MIRI_CAPACITY,
        ..p.further()
    }
}

// Default options: empty spans are kept (one per class), so the region does not come back whole.
allocator_traits::conformance_suite!(go_classes, FIRST, |capacity: usize| {
    Segregated::new(pages(capacity))
});

// Keeping no empty span, every span goes back to the buddy system, which merges it all again.
allocator_traits::conformance_suite!(
    go_classes_keep_none,
    further(Profile::COALESCING),
    |capacity: usize| {
        Segregated::with_table(
            &GO,
            Config {
                tiny: true,
                keep_empty: 0,
            },
            pages(capacity),
        )
    }
);

static SMALL_TABLE: segregated::ClassTable =
    match segregated::ClassTable::new(&[16, 32, 64, 128, 512, 2048]) {
        Ok(t) => t,
        Err(_) => panic!("valid table"),
    };

allocator_traits::conformance_suite!(
    user_table_no_tiny,
    further(Profile::NON_COALESCING),
    |capacity: usize| {
        Segregated::with_table(
            &SMALL_TABLE,
            Config {
                tiny: false,
                keep_empty: 1,
            },
            pages(capacity),
        )
    }
);

fn best_fit(capacity: usize) -> fit::FitHeap<BoxedRegion> {
    fit::FitHeap::new(BoxedRegion::new(capacity).unwrap(), fit::Config::best_fit())
}

// Best fit (from `fit`) as the page level and large-object manager.
allocator_traits::conformance_suite!(
    over_best_fit,
    further(Profile::NON_COALESCING),
    |capacity: usize| { Segregated::new(best_fit(capacity)) }
);

// Unchecked (`Segregated::unchecked`, the registry's `segregated:unchecked`): `detects()`
// claims no double free, so the kit checks everything else (its foreign-pointer check still
// runs: pointers outside every span go to the general path). Over both page levels.
allocator_traits::conformance_suite!(
    unchecked_over_buddy,
    further(Profile::NON_COALESCING),
    |capacity| { Segregated::unchecked(&GO, Config::DEFAULT, pages(capacity)) }
);

allocator_traits::conformance_suite!(
    unchecked_keep_none,
    further(Profile::COALESCING),
    |capacity: usize| {
        Segregated::unchecked(
            &GO,
            Config {
                tiny: true,
                keep_empty: 0,
            },
            pages(capacity),
        )
    }
);

allocator_traits::conformance_suite!(
    unchecked_over_best_fit,
    further(Profile::NON_COALESCING),
    |capacity| Segregated::unchecked(&GO, Config::DEFAULT, best_fit(capacity))
);
