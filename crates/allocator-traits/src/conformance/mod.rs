//! The conformance kit: the tests every policy runs, instantiated in one line.
//!
//! ```ignore
//! allocator_traits::conformance_suite!(best_fit, Profile::COALESCING, |capacity| {
//!     fit::Heap::new(BoxedRegion::new(capacity).unwrap(), fit::Config::best_fit())
//! });
//! ```
//!
//! `make(capacity)` builds a fresh manager over a fixed region of `capacity` bytes (usually a
//! [`crate::BoxedRegion`]). The suite generates one `#[test]` per check, in a module named as the
//! first argument. What the policy claims to detect comes from its own
//! [`crate::FreeSpaceManager::detects`]; what it promises about coalescing and alignment comes
//! from the [`Profile`].
//!
//! The checks:
//! * **shadow model** (quickcheck): random sequences of allocate, deallocate, grow, shrink and
//!   in-place resize against a shadow of the live blocks: every block lies inside the region and is
//!   aligned as asked, no two live blocks overlap, each block's bytes (a pattern written on
//!   allocation) survive every other operation and every resize, the stats agree with the shadow,
//!   and the footprint never falls below the live bytes; after the sequence everything is freed
//!   and [`check_drained`] checks that nothing leaked;
//! * **near out-of-memory**: the same model with sizes that are fractions of a small region, so
//!   that allocations and grows are refused mid-sequence (each refusal checked: the block keeps its
//!   bytes, nothing else changes, the walk passes);
//! * **edges**: zero-size layouts, huge sizes and alignments (a clean error, no panic), a foreign
//!   pointer and a double free (an error wherever the policy claims to detect them);
//! * **fill and drain**: fill the region until it refuses, free everything, and (for a coalescing
//!   policy) get the whole region back: the largest block that fits is as large as on a fresh heap;
//!   for every policy, nothing leaked ([`check_drained`]: no live block left in `inspect`, whose
//!   blocks account for every byte of its regions);
//! * **collections**: allocator-api2 `Vec` and `Box`, and `hashbrown::HashMap::new_in` with tens of
//!   thousands of elements, grown and shrunk, through [`crate::Locked`].

mod checks;
mod fuzz;
mod offsets;
mod shadow;

pub use checks::*;
pub use fuzz::{FUZZ_CAPACITY, fuzz_one};
pub use offsets::*;
pub use shadow::{Op, Shadow};

/// What a policy promises, beyond what its [`crate::FreeSpaceManager::detects`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// After everything is freed, the whole region is one free block again: the largest
    /// allocation that succeeds is as large as on a fresh manager.
    pub coalesces: bool,
    /// The largest alignment the policy serves. Larger alignments must give a clean error.
    pub max_align: usize,
    /// Region size for the shadow-model and edge tests.
    pub capacity: usize,
    /// Region size for the collections test (it stores tens of thousands of entries).
    pub collections_capacity: usize,
    /// Region size for the shadow-model and edge tests under Miri (at most `capacity`): the
    /// smallest region the policy passes the checks in, 128 KiB unless the policy needs more
    /// (tcmalloc takes a 64 KiB metadata chunk before its first span).
    pub miri_capacity: usize,
    /// Under Miri, the checks run the policy's invariant walk and its inspect picture after
    /// every this-many operations (and at the end of every sequence and drain), the contents
    /// and stats after every one; natively always after every operation. 1 for a policy's
    /// first configuration; [`Profile::further`] for the others. Miri interprets the walk of
    /// the whole heap after every operation as most of a check's time.
    pub miri_walk_every: usize,
}

impl Profile {
    /// A policy that coalesces fully and serves alignments up to 4 KiB.
    pub const COALESCING: Profile = Profile {
        coalesces: true,
        max_align: 4096,
        capacity: 1 << 20,
        collections_capacity: 16 << 20,
        miri_capacity: 128 << 10,
        miri_walk_every: 1,
    };
    /// A policy that does not promise to get its whole region back (no coalescing, size
    /// classes that keep spans, caches).
    pub const NON_COALESCING: Profile = Profile {
        coalesces: false,
        ..Profile::COALESCING
    };

    /// How often [`further`](Self::further) walks under Miri.
    pub const FURTHER_WALK_EVERY: usize = 8;

    /// This profile for a policy's further configurations (the same checks over another set-up
    /// of a policy whose first configuration runs them walking after every operation): under
    /// Miri the walk and the inspect picture after every [`Self::FURTHER_WALK_EVERY`]-th
    /// operation. Every check still runs; natively nothing changes.
    pub const fn further(self) -> Profile {
        Profile {
            miri_walk_every: Self::FURTHER_WALK_EVERY,
            ..self
        }
    }
}

/// Generates the conformance tests for a policy: `conformance_suite!(name, profile, make)`,
/// where `make` is a closure `|capacity: usize| -> M`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $profile:expr, $make:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn shadow_model() {
                $crate::conformance::check_shadow_model($profile, $make);
            }
            #[test]
            fn shadow_model_near_oom() {
                $crate::conformance::check_shadow_near_oom($profile, $make);
            }
            #[test]
            fn zero_size_layouts() {
                $crate::conformance::check_zero_size($profile, $make);
            }
            #[test]
            fn realign_under_grow_and_shrink() {
                $crate::conformance::check_realign($profile, $make);
            }
            #[test]
            fn huge_layouts_are_clean_errors() {
                $crate::conformance::check_huge($profile, $make);
            }
            #[test]
            fn bad_frees_are_reported() {
                $crate::conformance::check_bad_frees($profile, $make);
            }
            #[test]
            fn fill_then_drain() {
                $crate::conformance::check_fill_and_drain($profile, $make);
            }
            #[test]
            fn collections() {
                $crate::conformance::check_collections($profile, $make);
            }
        }
    };
}
