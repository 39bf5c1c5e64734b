//! The kit's offset profile for every fit policy over offsets (`fit::offsets::FitOffsets`), with
//! and without coalescing, at three granules; hand-worked placements; configurations refused.

use allocator_traits::OffsetManager;
use fit::offsets::FitOffsets;
use fit::{Coalesce, Config, Order, Policy};

fn make(len: usize, policy: Policy, coalesce: Coalesce, granule: usize) -> FitOffsets {
    let cfg = Config::new(policy).with_coalesce(coalesce);
    FitOffsets::new(0..len, cfg, granule).expect("a configuration the index serves")
}

macro_rules! suites {
    ($($name:ident = $p:expr, $granule:expr;)*) => { $(
        mod $name {
            use super::*;
            allocator_traits::offset_suite!(coalesce, true, |len: usize| {
                make(len, $p, Coalesce::Physical, $granule)
            });
            allocator_traits::offset_suite!(no_coalesce, false, |len: usize| {
                make(len, $p, Coalesce::Off, $granule)
            });
        }
    )* };
}

suites! {
    best_fit = Policy::BestFit, 16;
    first_fit = Policy::FirstFit, 16;
    next_fit = Policy::NextFit, 16;
    worst_fit = Policy::WorstFit, 16;
}

#[cfg(not(miri))]
suites! {
    best_fit_bytes = Policy::BestFit, 1;
    first_fit_bytes = Policy::FirstFit, 1;
    best_fit_256 = Policy::BestFit, 256;
}

/// A space that starts at an offset that is not a multiple of the granule.
mod unaligned_base {
    use super::*;
    allocator_traits::offset_suite!(best_fit, true, |len: usize| {
        let cfg = Config::best_fit();
        // 1000 rounds up to 1024, the last 24 bytes are less than a granule.
        let m = FitOffsets::new(1000..1000 + len, cfg, 64).unwrap();
        m.check_invariants().unwrap();
        m
    });
}

#[test]
fn best_fit_takes_the_smallest_lowest_range_and_keeps_the_end_for_last() {
    let mut m = make(1 << 16, Policy::BestFit, Coalesce::Physical, 16);
    let a = m.allocate(100, 1).unwrap(); // 0..112
    let b = m.allocate(16, 1).unwrap(); // 112..128
    let c = m.allocate(300, 1).unwrap(); // 128..432
    let d = m.allocate(16, 1).unwrap(); // 432..448
    let e = m.allocate(100, 1).unwrap(); // 448..560
    let _f = m.allocate(16, 1).unwrap(); // 560..576
    assert_eq!((a, b, c, d, e), (0, 112, 128, 432, 448));
    m.free(c).unwrap();
    m.free(a).unwrap();
    m.free(e).unwrap();
    // Free: 0..112, 128..432, 448..560, and the end from 576.
    assert_eq!(m.allocate(90, 1).unwrap(), 0, "the lowest of the smallest");
    assert_eq!(
        m.allocate(90, 1).unwrap(),
        448,
        "then the other 112-byte range"
    );
    assert_eq!(
        m.allocate(200, 1).unwrap(),
        128,
        "the end of the space comes last"
    );
    assert_eq!(m.allocate(200, 1).unwrap(), 576);
    m.check_invariants().unwrap();
}

#[test]
fn alignment_leaves_a_free_front_piece() {
    let mut m = make(1 << 20, Policy::FirstFit, Coalesce::Physical, 16);
    let a = m.allocate(16, 1).unwrap();
    let b = m.allocate(100, 4096).unwrap();
    assert_eq!((a, b), (0, 4096));
    assert_eq!(m.free_ranges().next(), Some((16, 4080)));
    let c = m.allocate(4000, 16).unwrap();
    assert_eq!(c, 16, "first fit fills the front piece");
    m.check_invariants().unwrap();
}

#[test]
fn free_by_offset_refuses_what_is_not_a_live_range() {
    use allocator_traits::FreeError;
    let mut m = make(1 << 16, Policy::BestFit, Coalesce::Physical, 16);
    let a = m.allocate(100, 1).unwrap();
    assert_eq!(m.free(a + 16), Err(FreeError::NotABlock { ptr: a + 16 }));
    assert_eq!(m.free(1 << 16), Err(FreeError::Foreign { ptr: 1 << 16 }));
    m.free(a).unwrap();
    assert_eq!(m.free(a), Err(FreeError::NotABlock { ptr: a }));
    assert_eq!(m.stats().bad_frees, 3);
    m.check_invariants().unwrap();
}

#[test]
fn grow_extends_the_free_end_and_an_empty_space_grows_from_nothing() {
    let mut m = make(0, Policy::BestFit, Coalesce::Physical, 16);
    assert!(m.allocate(1, 1).is_err());
    m.grow(100).unwrap();
    assert_eq!(m.range(), 0..100);
    assert_eq!(m.free_ranges().collect::<Vec<_>>(), vec![(0, 96)]);
    let a = m.allocate(40, 1).unwrap();
    m.grow(1000).unwrap();
    assert_eq!(m.free_ranges().collect::<Vec<_>>(), vec![(48, 1040)]);
    m.free(a).unwrap();
    assert_eq!(m.free_ranges().collect::<Vec<_>>(), vec![(0, 1088)]);
    m.check_invariants().unwrap();
}

#[test]
fn footprint_is_the_highest_live_end() {
    let mut m = make(1 << 20, Policy::BestFit, Coalesce::Physical, 16);
    let a = m.allocate(1000, 1).unwrap();
    let b = m.allocate(5000, 1).unwrap();
    assert_eq!(m.stats().footprint, 1008 + 5008);
    m.free(b).unwrap();
    assert_eq!(m.stats().footprint, 1008);
    assert_eq!(m.stats().peak_footprint, 6016);
    m.free(a).unwrap();
    assert_eq!(m.stats().footprint, 0);
}

#[test]
fn configurations_the_index_does_not_serve_are_refused() {
    for cfg in [
        Config::best_fit().with_order(Order::InsertFront),
        Config::first_fit().with_coalesce(Coalesce::ListOrder),
        Config::best_fit().with_checked(true),
    ] {
        assert!(FitOffsets::new(0..4096, cfg, 16).is_err(), "{cfg:?}");
    }
    assert!(FitOffsets::new(0..4096, Config::best_fit(), 24).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..0;
    assert!(FitOffsets::new(backwards, Config::best_fit(), 16).is_err());
    assert!(FitOffsets::new(0..usize::MAX, Config::best_fit(), 1).is_err());
    assert!(FitOffsets::new(0..usize::MAX, Config::best_fit(), 1 << 33).is_ok());
}

#[test]
fn inspect_tiles_the_space() {
    use allocator_traits::{BlockKind, Inspector};
    #[derive(Default)]
    struct Tiles(Vec<(usize, usize, BlockKind)>, Vec<(usize, usize)>);
    impl Inspector for Tiles {
        fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
            self.0.push((addr, len, kind));
        }
        fn list_entry(&mut self, addr: usize, len: usize) {
            self.1.push((addr, len));
        }
    }
    let mut m = FitOffsets::new(8..1000, Config::first_fit(), 16).unwrap();
    let a = m.allocate(20, 1).unwrap();
    let mut t = Tiles::default();
    m.inspect(&mut t);
    assert_eq!(a, 16);
    assert_eq!(
        t.0,
        vec![
            (8, 8, BlockKind::Padding),
            (16, 32, BlockKind::Live { requested: 20 }),
            (48, 944, BlockKind::Free),
            (992, 8, BlockKind::Padding),
        ]
    );
    assert_eq!(t.1, vec![(48, 944)]);
}
