//! The kit's offset profile for `segregated::offsets::SegregatedOffsets` (Go's classes, a user
//! table, a base offset that is not page-aligned, no empty span kept), and hand-worked
//! placements.

use allocator_traits::{FreeError, OffsetManager};
use segregated::classes::GO;
use segregated::offsets::SegregatedOffsets;

/// A user table: a few classes, the largest 4 KiB.
#[cfg(not(miri))]
static SMALL: segregated::ClassTable = match segregated::ClassTable::new(&[16, 64, 256, 1024, 4096])
{
    Ok(t) => t,
    Err(_) => panic!("a valid table"),
};

// Coalescing: empty spans go back to best fit, which merges them; the spans a class keeps are
// given back when nothing is live (and whenever the page level refuses), so after freeing
// everything the whole space is one request again.
//
// Under Miri only the unaligned base runs the kit (it covers what `go` does, with the offset
// arithmetic off the page): each suite takes about 30 s of Miri's time there.
#[cfg(not(miri))]
allocator_traits::offset_suite!(go, true, |len: usize| {
    SegregatedOffsets::new(0..len).unwrap()
});

#[cfg(not(miri))]
allocator_traits::offset_suite!(user_table, true, |len: usize| {
    SegregatedOffsets::with_table(0..len, &SMALL, 1).unwrap()
});

#[cfg(not(miri))]
allocator_traits::offset_suite!(keep_none, true, |len: usize| {
    SegregatedOffsets::with_table(0..len, &GO, 0).unwrap()
});

/// A space that starts at an offset that is not a multiple of the page (nor of the granule).
mod unaligned_base {
    use super::*;
    allocator_traits::offset_suite!(go, true, |len: usize| {
        let m = SegregatedOffsets::new(1000..1000 + len).unwrap();
        m.check_invariants().unwrap();
        m
    });
}

#[test]
fn sizes_round_to_their_class_lowest_slot_first() {
    let mut m = SegregatedOffsets::new(0..1 << 20).unwrap();
    let a = m.allocate(40, 8).unwrap();
    let b = m.allocate(33, 1).unwrap();
    let c = m.allocate(48, 16).unwrap();
    // Class 48: an 8 KiB span at 0 (best fit's lowest offset), slots 0, 1, 2.
    assert_eq!((a, b, c), (0, 48, 96));
    assert_eq!(m.held(a), Some(48));
    // Size 0 is the smallest class (8 bytes), in a span of its own class.
    let z = m.allocate(0, 1).unwrap();
    assert_eq!((z, m.held(z)), (8192, Some(8)));
    // Freeing slot 1 makes it the lowest free slot again.
    m.free(b).unwrap();
    assert_eq!(m.allocate(48, 1).unwrap(), 48);
    // An alignment the class's objects lack moves the request to an aligned class: 24 bytes at
    // 16 is class 32.
    let d = m.allocate(24, 16).unwrap();
    assert_eq!((d % 16, m.held(d)), (0, Some(32)));
    let s = m.stats();
    assert_eq!(s.live_blocks, 5);
    assert_eq!(
        s.live_requested,
        40 + 48 + 48 + 24,
        "a, c, the 48 in b's slot, d (z asked 0)"
    );
    assert_eq!(s.live_held, 48 * 3 + 8 + 32);
    assert_eq!(m.span_count(), 3);
    m.check_invariants().unwrap();
}

#[test]
fn an_empty_span_goes_back_beyond_keep_empty() {
    let mut m = SegregatedOffsets::with_table(0..1 << 20, &GO, 1).unwrap();
    let keep = m.allocate(8, 8).unwrap(); // something live throughout
    // Class 1024: 8 per 8 KiB span. Two spans, then both emptied.
    let objs: Vec<usize> = (0..16).map(|_| m.allocate(1000, 8).unwrap()).collect();
    assert_eq!(m.span_count(), 3);
    assert_eq!(m.stats().footprint, 3 * 8192);
    for &o in &objs[8..] {
        m.free(o).unwrap();
    }
    // The second span is empty and kept (one per class).
    assert_eq!(m.span_count(), 3);
    for &o in &objs[..8] {
        m.free(o).unwrap();
    }
    // Now two empty spans of the class: one goes back to the page level.
    assert_eq!(m.span_count(), 2);
    m.check_invariants().unwrap();
    assert_eq!(m.release_empty_spans(), 1);
    assert_eq!(m.span_count(), 1);
    assert_eq!(m.stats().footprint, 8192);
    // With nothing live at all, no span is kept: the manager is as fresh.
    m.free(keep).unwrap();
    assert_eq!(m.span_count(), 0);
    assert_eq!(m.stats().footprint, 0);
    m.check_invariants().unwrap();
}

#[test]
fn keep_none_returns_each_empty_span_at_once() {
    let mut m = SegregatedOffsets::with_table(0..1 << 20, &GO, 0).unwrap();
    let keep = m.allocate(8, 8).unwrap();
    let a = m.allocate(1000, 8).unwrap();
    assert_eq!(a, 8192);
    m.free(a).unwrap();
    assert_eq!(m.span_count(), 1);
    assert_eq!(m.stats().footprint, 8192);
    m.free(keep).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn large_requests_and_large_alignments_go_to_the_page_level() {
    let mut m = SegregatedOffsets::new(0..1 << 20).unwrap();
    let small = m.allocate(100, 8).unwrap(); // class 112, span 0..8 KiB
    let big = m.allocate(40_000, 8).unwrap(); // above 32 KiB: the page level
    assert_eq!((small, big), (0, 8192));
    assert_eq!(m.held(big), Some(40_000));
    // 100 bytes aligned to 8 KiB: no class is aligned that much.
    let aligned = m.allocate(100, 8192).unwrap();
    assert_eq!(aligned % 8192, 0);
    assert_eq!(m.held(aligned), Some(112), "best fit's 16-byte granule");
    assert_eq!(m.span_count(), 1);
    m.free(big).unwrap();
    assert_eq!(m.free(big), Err(FreeError::NotABlock { ptr: big }));
    assert_eq!(
        m.free(big + 16),
        Err(FreeError::NotABlock { ptr: big + 16 })
    );
    m.free(aligned).unwrap();
    m.free(small).unwrap();
    assert_eq!(m.stats().footprint, 0);
    m.check_invariants().unwrap();
}

#[test]
fn when_no_span_fits_the_request_goes_to_the_page_level() {
    // 12 KiB: one 8 KiB span of class 4096 (2 objects), then 4 KiB only the page level has.
    let mut m = SegregatedOffsets::new(0..12 << 10).unwrap();
    let a = m.allocate(4096, 4096).unwrap();
    let b = m.allocate(4096, 4096).unwrap();
    let c = m.allocate(4096, 4096).unwrap();
    assert_eq!((a, b, c), (0, 4096, 8192));
    assert_eq!(m.span_count(), 1);
    assert!(m.allocate(1, 1).is_err(), "full");
    m.check_invariants().unwrap();
}

#[test]
fn kept_spans_never_refuse_a_request() {
    let mut m = SegregatedOffsets::with_table(0..64 << 10, &GO, 1).unwrap();
    let keep = m.allocate(8, 8).unwrap(); // 0..8 KiB
    // Fill spans of three classes, then empty them: one kept span each.
    for size in [1000, 2000, 3000] {
        let o = m.allocate(size, 8).unwrap();
        m.free(o).unwrap();
    }
    assert_eq!(m.span_count(), 4);
    // The rest of the space in one request: the kept spans are given back for it.
    let rest = m.allocate(56 << 10, 1).unwrap();
    assert_eq!(rest, 8192);
    assert_eq!(m.span_count(), 1);
    m.free(rest).unwrap();
    m.free(keep).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn bad_offsets_are_named_and_change_nothing() {
    let mut m = SegregatedOffsets::new(4096..4096 + (1 << 20)).unwrap();
    let a = m.allocate(100, 16).unwrap(); // class 112 at 4096
    let b = m.allocate(100, 16).unwrap();
    assert_eq!((a, b), (4096, 4096 + 112));
    let before = m.stats();
    assert_eq!(m.free(0), Err(FreeError::Foreign { ptr: 0 }));
    assert_eq!(m.free(a + 8), Err(FreeError::NotABlock { ptr: a + 8 }));
    // The span's tail, past its last object (73 * 112 = 8176).
    assert_eq!(
        m.free(a + 8180),
        Err(FreeError::NotABlock { ptr: a + 8180 })
    );
    // A slot never handed out, and a double free: a free slot of the span.
    assert_eq!(m.free(a + 224), Err(FreeError::DoubleFree { ptr: a + 224 }));
    m.free(a).unwrap();
    assert_eq!(m.free(a), Err(FreeError::DoubleFree { ptr: a }));
    // Beyond every span: no range of the page level starts there.
    assert_eq!(
        m.free(a + 65536),
        Err(FreeError::NotABlock { ptr: a + 65536 })
    );
    let after = m.stats();
    assert_eq!(after.bad_frees, before.bad_frees + 6);
    assert_eq!(after.live_blocks, before.live_blocks - 1);
    m.check_invariants().unwrap();
}

#[test]
fn bad_input_is_refused_cleanly() {
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..0;
    assert!(SegregatedOffsets::new(backwards).is_err());
    // (From 4096: at 0 any alignment would be met.)
    let mut m = SegregatedOffsets::new(4096..1 << 16).unwrap();
    for (size, align) in [
        (usize::MAX, 1),
        (usize::MAX, 8),
        (8, 0),
        (8, 24),
        (8, 1 << (usize::BITS - 1)),
        (usize::MAX - 100, 1 << 20),
    ] {
        assert!(m.allocate(size, align).is_err(), "{size} at {align}");
    }
    assert_eq!(m.stats().failed_allocs, 6);
    assert!(m.grow(usize::MAX).is_err());
    m.check_invariants().unwrap();
}

#[test]
fn a_grown_space_serves_spans_past_the_old_end() {
    let mut m = SegregatedOffsets::new(0..8192).unwrap();
    let a = m.allocate(16, 16).unwrap();
    assert!(m.allocate(100, 8).is_err(), "no room for a second span");
    m.grow(8192).unwrap();
    let b = m.allocate(100, 8).unwrap();
    assert_eq!((a, b), (0, 8192));
    m.check_invariants().unwrap();
}

#[test]
fn inspect_shows_the_spans_in_offset_order() {
    use allocator_traits::{BlockKind, Inspector};
    #[derive(Default)]
    struct Seen(Vec<(usize, usize)>, Vec<(usize, usize, BlockKind)>);
    impl Inspector for Seen {
        fn region(&mut self, start: usize, len: usize) {
            self.0.push((start, len));
        }
        fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
            self.1.push((addr, len, kind));
        }
    }
    let mut m = SegregatedOffsets::new(0..1 << 16).unwrap();
    let a = m.allocate(4000, 8).unwrap(); // class 4096: span 0..8 KiB
    let b = m.allocate(1, 8).unwrap(); // class 8: span 8..16 KiB
    let _c = m.allocate(2, 8).unwrap();
    m.free(b).unwrap();
    let mut seen = Seen::default();
    m.inspect(&mut seen);
    assert_eq!(seen.0, vec![(0, 1 << 16), (0, 8192), (8192, 8192)]);
    let spans: Vec<_> = seen
        .1
        .iter()
        .skip_while(|b| b.0 != a || b.1 != 4096)
        .cloned()
        .collect();
    assert_eq!(
        spans,
        vec![
            (0, 4096, BlockKind::Live { requested: 4000 }),
            (4096, 4096, BlockKind::Free),
            (8192, 8, BlockKind::Free),
            (8200, 8, BlockKind::Live { requested: 2 }),
            (8208, 8192 - 16, BlockKind::Free),
        ]
    );
}
