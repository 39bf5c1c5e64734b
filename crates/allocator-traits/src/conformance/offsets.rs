//! The kit's offset profile: the checks every [`OffsetManager`] runs.
//!
//! ```text
//!   range()            [base ............................................. base+len)
//!   live (shadow)           [A 100 @64]     [B 4096 @4096]       [C 0 @9000]
//!   after every op: inside the range, aligned as asked, A/B/C disjoint (held bytes included),
//!   held(offset) >= size, stats.live_blocks == 3, live_requested == 100 + 4096 + 0,
//!   live_held == the sum of held(), footprint >= the end of the highest range, walk passes
//! ```
//!
//! * **shadow model**: random sequences of allocate (sizes from 0 to a quarter of the range,
//!   alignments 1 to 4 KiB), free and grow, each followed by the checks above; then everything is
//!   freed and (for a coalescing manager) the whole range is one request again.
//! * **edges**: a size of 0, sizes and alignments too large or not a power of two (clean errors),
//!   fill until refused, grow to make room.
//! * **bad frees** (per [`OffsetManager::detects`]): an offset outside the range, a double free,
//!   an offset inside a live range, a never-allocated offset: each an error naming the offset,
//!   counted, and changing nothing else.
//!
//! ```ignore
//! allocator_traits::offset_suite!(best_fit, true, |len| fit::offsets::FitOffsets::new(0..len, cfg));
//! ```

use std::collections::BTreeMap;
use std::vec::Vec;

use super::checks::Rng;
use crate::offset::largest_request;
use crate::{OffsetManager, Stats};

/// The range the checks give a fresh manager: 1 MiB, 256 KiB under Miri (the edge check fills
/// it with 4 KiB ranges one by one).
pub const OFFSET_RANGE: usize = if cfg!(miri) { 256 << 10 } else { 1 << 20 };
/// Sequences (fewer under Miri).
const SEQUENCES: u64 = if cfg!(miri) { 2 } else { 40 };
/// Operations per sequence.
const STEPS: usize = if cfg!(miri) { 40 } else { 400 };

/// The live ranges as the kit knows them: offset -> (size asked, bytes held).
#[derive(Debug, Default)]
pub struct OffsetShadow {
    live: BTreeMap<usize, (usize, usize)>,
}

impl OffsetShadow {
    /// An empty shadow.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live ranges.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no range is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The offset of the `i`-th live range (in offset order, modulo the count).
    pub fn nth(&self, i: usize) -> Option<usize> {
        let n = self.live.len();
        (n > 0).then(|| *self.live.keys().nth(i % n).expect("in range"))
    }

    /// Allocates through `m` and checks the answer: inside the range, aligned, `held` at least
    /// the size, overlapping no live range. Returns the offset (or the error, changing nothing).
    pub fn allocate<M: OffsetManager + ?Sized>(
        &mut self,
        m: &mut M,
        size: usize,
        align: usize,
    ) -> Option<usize> {
        let before = m.stats();
        let Ok(o) = m.allocate(size, align) else {
            let after = m.stats();
            assert_eq!(
                after.failed_allocs,
                before.failed_allocs + 1,
                "a refusal is counted"
            );
            assert_eq!(
                after.live_blocks, before.live_blocks,
                "a refusal places nothing"
            );
            return None;
        };
        let r = m.range();
        let held = m
            .held(o)
            .unwrap_or_else(|| panic!("no held() for the new range at {o}"));
        assert!(held >= size, "range at {o} holds {held} < {size} bytes");
        assert!(o.is_multiple_of(align), "offset {o} not aligned to {align}");
        assert!(
            o >= r.start && o.checked_add(held).is_some_and(|e| e <= r.end),
            "range {o}+{held} outside {r:?}"
        );
        if let Some((&p, &(_, ph))) = self.live.range(..=o).next_back() {
            assert!(
                p + ph <= o,
                "range {o}+{held} overlaps the live range {p}+{ph}"
            );
        }
        if let Some((&n, _)) = self.live.range(o..).next() {
            assert!(
                o + held <= n,
                "range {o}+{held} overlaps the live range at {n}"
            );
        }
        self.live.insert(o, (size, held));
        Some(o)
    }

    /// Frees the live range at `offset` through `m` (it must succeed).
    pub fn free<M: OffsetManager + ?Sized>(&mut self, m: &mut M, offset: usize) {
        assert!(
            self.live.remove(&offset).is_some(),
            "not a live range of the shadow"
        );
        m.free(offset)
            .unwrap_or_else(|e| panic!("free of the live range at {offset}: {e}"));
    }

    /// Checks `m` against the shadow: every range still held as allocated, the stats, the
    /// footprint, the invariant walk.
    pub fn check<M: OffsetManager + ?Sized>(&self, m: &M) {
        let s: Stats = m.stats();
        let r = m.range();
        let (mut requested, mut held, mut end) = (0usize, 0usize, r.start);
        for (&o, &(size, h)) in &self.live {
            assert_eq!(m.held(o), Some(h), "the range at {o} changed its held size");
            requested += size;
            held += h;
            end = end.max(o + h);
        }
        assert_eq!(s.live_blocks, self.live.len(), "stats.live_blocks");
        assert_eq!(s.live_requested, requested, "stats.live_requested");
        assert_eq!(s.live_held, held, "stats.live_held");
        assert!(
            s.footprint >= end - r.start && s.footprint <= r.len(),
            "footprint {} not between the highest range's end {} and the length {}",
            s.footprint,
            end - r.start,
            r.len()
        );
        if let Err(c) = m.check_invariants() {
            panic!("invariant walk: {c}");
        }
    }
}

/// Random sequences of allocate, free and grow against the shadow, checked after every
/// operation; then a drain, after which a coalescing manager serves the whole range at once.
pub fn check_offset_shadow<M: OffsetManager, F: Fn(usize) -> M>(coalesces: bool, make: F) {
    for seed in 1..=SEQUENCES {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut m = make(OFFSET_RANGE);
        let mut shadow = OffsetShadow::new();
        shadow.check(&m);
        for _ in 0..STEPS {
            match rng.below(10) {
                0..=4 => {
                    // Mostly small, sometimes up to a quarter of the range.
                    let size = match rng.below(4) {
                        0 => rng.below(m.range().len() / 4),
                        1 => rng.below(16),
                        _ => rng.below(2048),
                    };
                    let align = 1usize << rng.below(13);
                    shadow.allocate(&mut m, size, align);
                }
                5..=8 => {
                    if let Some(o) = shadow.nth(rng.below(usize::MAX)) {
                        shadow.free(&mut m, o);
                    }
                }
                _ => {
                    if rng.below(8) == 0 {
                        let before = m.range();
                        let extra = 1 + rng.below(64 << 10);
                        if m.grow(extra).is_ok() {
                            let after = m.range();
                            assert_eq!(after.start, before.start, "grow moved the base");
                            assert_eq!(after.len(), before.len() + extra, "grow by {extra}");
                        }
                    }
                }
            }
            shadow.check(&m);
        }
        while let Some(o) = shadow.nth(0) {
            shadow.free(&mut m, o);
            shadow.check(&m);
        }
        assert_eq!(
            m.stats().footprint,
            0,
            "seed {seed}: nothing live, footprint 0"
        );
        if coalesces {
            // As on a fresh manager of the same (grown) space: all of it but what the
            // manager's granule leaves at the ends.
            let fresh = largest_request(&mut make(m.range().len()), 1);
            assert_eq!(
                largest_request(&mut m, 1),
                fresh,
                "seed {seed}: after freeing everything the whole range is one request"
            );
            m.check_invariants()
                .expect("walk after the largest request");
        }
    }
}

/// Sizes and alignments at the edges; fill until refused; grow to make room.
pub fn check_offset_edges<M: OffsetManager, F: Fn(usize) -> M>(make: F) {
    // Fill a fresh manager with 4 KiB ranges until refused, then grow and place one more.
    let mut m = make(OFFSET_RANGE);
    let mut shadow = OffsetShadow::new();
    let base = m.range().start;
    let mut n = 0;
    while shadow.allocate(&mut m, 4096, 4096).is_some() {
        n += 1;
        assert!(n <= OFFSET_RANGE / 4096, "more 4 KiB ranges than fit");
    }
    let whole = usize::from(base.is_multiple_of(4096));
    assert!(
        n + 1 - whole >= OFFSET_RANGE / 4096,
        "a fresh range of {OFFSET_RANGE} bytes holds {} aligned ranges of 4 KiB (one fewer if \
         it starts unaligned)",
        OFFSET_RANGE / 4096
    );
    shadow.check(&m);
    match m.grow(4096) {
        Ok(()) => {
            assert_eq!(m.range(), base..base + OFFSET_RANGE + 4096);
            shadow
                .allocate(&mut m, 4096, 4096)
                .expect("the grown space serves a request");
            shadow.check(&m);
        }
        Err(e) => panic!("grow by 4 KiB: {e}"),
    }
    let before = m.range();
    assert!(
        m.grow(usize::MAX).is_err(),
        "a length that overflows is refused"
    );
    assert_eq!(m.range(), before, "a refused grow changes nothing");
    while let Some(o) = shadow.nth(0) {
        shadow.free(&mut m, o);
    }
    shadow.check(&m);

    // Zero bytes are served like any other request.
    let z = shadow
        .allocate(&mut m, 0, 1)
        .expect("a size of 0 is served");
    shadow.check(&m);
    // Too large, or an alignment that is not a power of two or too large: clean errors.
    for (size, align) in [
        (usize::MAX, 1),
        (usize::MAX - 4095, 4096),
        (m.range().len() + 1, 1),
        (8, 0),
        (8, 3),
        (8, 1 << (usize::BITS - 1)),
        (1, usize::MAX),
    ] {
        let before = m.stats();
        assert!(
            m.allocate(size, align).is_err(),
            "{size} bytes aligned to {align} must be refused"
        );
        assert_eq!(m.stats().live_blocks, before.live_blocks);
        shadow.check(&m);
    }
    shadow.free(&mut m, z);
    shadow.check(&m);
}

/// Each bad free the manager claims to detect is an error naming the offset, counted in
/// `bad_frees`, freeing nothing.
pub fn check_offset_bad_frees<M: OffsetManager, F: Fn(usize) -> M>(make: F) {
    let mut m = make(OFFSET_RANGE);
    let d = m.detects();
    let mut shadow = OffsetShadow::new();
    let mut offsets = Vec::new();
    for size in [100, 4000, 24, 0, 300] {
        offsets.push(shadow.allocate(&mut m, size, 16).expect("room"));
    }
    let r = m.range();
    let refused = |m: &mut M, offset: usize, what: &str| {
        let before = m.stats();
        let e = m
            .free(offset)
            .expect_err(&format!("{what} ({offset}) must be refused"));
        assert_eq!(e.ptr(), offset, "{what}: the error names the offset ({e})");
        let after = m.stats();
        assert_eq!(after.bad_frees, before.bad_frees + 1, "{what}: counted");
        assert_eq!(
            after.live_blocks, before.live_blocks,
            "{what}: freed nothing"
        );
        assert_eq!(after.live_held, before.live_held, "{what}: freed nothing");
    };
    if d.foreign {
        refused(&mut m, r.end, "an offset past the range");
        refused(&mut m, r.end + 4096, "an offset far past the range");
        if r.start > 0 {
            refused(&mut m, r.start - 1, "an offset before the range");
        }
        shadow.check(&m);
    }
    if d.double_free {
        let o = offsets.swap_remove(2);
        shadow.free(&mut m, o);
        refused(&mut m, o, "a double free");
        refused(&mut m, offsets[1] + 16, "an offset inside a live range");
        refused(&mut m, r.end - 16, "an offset never handed out");
        shadow.check(&m);
        // The neighbour merged with it: still refused, and the rest still frees.
        let o = offsets.swap_remove(0);
        shadow.free(&mut m, o);
        refused(&mut m, o, "a double free after a merge");
        shadow.check(&m);
    }
    while let Some(o) = shadow.nth(0) {
        shadow.free(&mut m, o);
    }
    shadow.check(&m);
}

/// Generates the offset profile's tests for a manager: `offset_suite!(name, coalesces, make)`,
/// where `make` is a closure `|len: usize| -> M` building a manager of `0..len`.
#[macro_export]
macro_rules! offset_suite {
    ($name:ident, $coalesces:expr, $make:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn offset_shadow_model() {
                $crate::conformance::check_offset_shadow($coalesces, $make);
            }
            #[test]
            fn offset_edges() {
                $crate::conformance::check_offset_edges($make);
            }
            #[test]
            fn offset_bad_frees() {
                $crate::conformance::check_offset_bad_frees($make);
            }
        }
    };
}
