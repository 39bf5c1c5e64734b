//! The workspace's conformance kit, run on the single-arena core over a fixed region (mapped
//! chunks are kept in the region too: `NoMmap`).

use allocator_traits::BoxedRegion;
use allocator_traits::conformance::Profile;
use ptmalloc2::{Arena, NoMmap, Tunables};

fn make(capacity: usize, tunables: &str) -> Arena<BoxedRegion, NoMmap> {
    // Under Miri the kit uses a 128 KiB region: too small for glibc's 128 KiB top_pad (the first
    // growth asks for the request plus the pad, and fails as a whole).
    let pad = if cfg!(miri) {
        ":glibc.malloc.top_pad=0"
    } else {
        ""
    };
    Arena::over(
        BoxedRegion::new(capacity).expect("region"),
        &Tunables::parse(&format!("{tunables}{pad}")).expect("tunables"),
    )
}

// glibc's defaults: the tcache and fastbins keep chunks out of coalescing.
allocator_traits::conformance_suite!(defaults, Profile::NON_COALESCING, |capacity: usize| {
    make(capacity, "")
});

// No tcache, no fastbins: every free coalesces, so draining gives the whole region back.
allocator_traits::conformance_suite!(
    coalescing,
    Profile::COALESCING.further(),
    |capacity: usize| make(
        capacity,
        "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"
    )
);
