//! Segregated lists (the default composition: best fit as the page level) as the process's
//! `#[global_allocator]`: a few hundred thousand `String`s are built, sorted, put in a `BTreeMap`
//! and dropped, then nothing may be left live.
//!
//! Over a `BrkRegion` normally; over a `FixedRegion` on a static array under Miri (which cannot
//! run `mmap`), with fewer strings.

use allocator_traits::Locked;
use segregated::Segregated;

#[cfg(not(miri))]
#[global_allocator]
static HEAP: Locked<Segregated<segregated::BestFit<allocator_traits::BrkRegion>>> = Locked::new(
    Segregated::best_fit(allocator_traits::BrkRegion::new(1 << 28)),
);

#[cfg(miri)]
static mut ARENA: [u64; 1 << 18] = [0; 1 << 18];

#[cfg(miri)]
#[global_allocator]
static HEAP: Locked<Segregated> = Locked::new(Segregated::best_fit(
    // SAFETY: ARENA is used by this region alone.
    unsafe { allocator_traits::FixedRegion::from_raw_parts(&raw mut ARENA as *mut u8, 8 << 18) },
));

const N: usize = if cfg!(miri) { 300 } else { 300_000 };

fn main() {
    // The one strings workload of the kit: built, sorted, put in a BTreeMap, dropped, checked.
    let during = allocator_traits::conformance::check_global_workload(N, || HEAP.stats());
    println!(
        "{N} strings in a BTreeMap: {} live blocks, {} bytes asked, {} held, footprint {}",
        during.live_blocks, during.live_requested, during.live_held, during.footprint
    );
    let after = HEAP.stats();
    println!(
        "after drop: {} live blocks; peak footprint {} bytes; {} allocs, {} frees",
        after.live_blocks, after.peak_footprint, after.allocs, after.frees
    );
}
