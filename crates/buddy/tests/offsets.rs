//! The kit's offset profile for `buddy::offsets::BuddyOffsets` at two smallest blocks (16 and 256 bytes) and over
//! a space whose start is not a multiple of the block size; hand-worked placements (split,
//! lowest offset first, alignment, merge on free, tiling, grow), bad frees and refused input.
//!
//! `coalesces` is true for every space here, sizes that are not powers of two included: the
//! kit's check is that after freeing everything the largest request equals a fresh manager's
//! over the same (grown) space, and a buddy system whose free buddies always merge comes back
//! to exactly the fresh tiling. (It does not serve the whole space in one request unless the
//! space is one aligned power-of-two block; neither does a fresh one.)

use allocator_traits::{FreeError, OffsetManager};
use buddy::offsets::{BuddyOffsets, NewError};

// Not under Miri: the walk after every step reads every bitmap word (about 1 000 for the kit's
// 256 KiB space at 16-byte blocks: over a minute of Miri); the 256-byte suites run the same
// code over fewer words.
#[cfg(not(miri))]
allocator_traits::offset_suite!(m16, true, |len: usize| BuddyOffsets::new(0..len, 16)
    .unwrap());
allocator_traits::offset_suite!(m256, true, |len: usize| BuddyOffsets::new(0..len, 256)
    .unwrap());

/// A space starting at 1000: with 64-byte blocks tiled from 1024, with 256-byte blocks too (the
/// bytes in front and the tail past the last whole block are no block).
mod unaligned_base {
    use super::*;
    #[cfg(not(miri))]
    allocator_traits::offset_suite!(m64, true, |len: usize| {
        let m = BuddyOffsets::new(1000..1000 + len, 64).unwrap();
        m.check_invariants().unwrap();
        m
    });
    allocator_traits::offset_suite!(m256, true, |len: usize| {
        let m = BuddyOffsets::new(1000..1000 + len, 256).unwrap();
        m.check_invariants().unwrap();
        m
    });
}

/// The free blocks of every order as (offset, length), smallest order first.
fn free(m: &BuddyOffsets) -> Vec<(usize, usize)> {
    (0..m.orders()).flat_map(|k| m.free_list(k)).collect()
}

#[test]
fn allocation_splits_the_lowest_block_of_the_smallest_order() {
    let mut m = BuddyOffsets::new(0..1024, 16).unwrap();
    assert_eq!(free(&m), [(0, 1024)]);
    assert_eq!(m.allocate(16, 1), Ok(0), "1024 halved down to 16");
    assert_eq!(
        free(&m),
        [
            (16, 16),
            (32, 32),
            (64, 64),
            (128, 128),
            (256, 256),
            (512, 512)
        ]
    );
    assert_eq!(m.allocate(40, 1), Ok(64), "the 64-byte block, no split");
    assert_eq!(
        m.allocate(0, 1),
        Ok(16),
        "a size of 0 takes the smallest block"
    );
    assert_eq!(m.allocate(10, 1), Ok(32), "32 split: the lower half");
    assert_eq!(free(&m), [(48, 16), (128, 128), (256, 256), (512, 512)]);
    assert_eq!(m.held(64), Some(64));
    let s = m.stats();
    assert_eq!((s.live_blocks, s.live_requested, s.live_held), (4, 66, 112));
    assert_eq!(s.internal_bytes(), 46);
    assert_eq!(s.footprint, 128);
    m.check_invariants().unwrap();
}

#[test]
fn alignment_takes_a_block_as_large_as_the_alignment() {
    let mut m = BuddyOffsets::new(0..4096, 16).unwrap();
    assert_eq!(m.allocate(16, 1), Ok(0));
    assert_eq!(
        m.allocate(1, 256),
        Ok(256),
        "a 256-byte block, aligned by its size"
    );
    assert_eq!(m.held(256), Some(256));
    assert_eq!(
        m.allocate(1, 8192),
        Err(allocator_traits::AllocError::OutOfMemory {
            size: 1,
            align: 8192
        })
    );
    m.check_invariants().unwrap();
}

#[test]
fn a_free_merges_with_its_buddy_order_after_order() {
    let mut m = BuddyOffsets::new(0..1024, 16).unwrap();
    let a = m.allocate(16, 1).unwrap(); // 0
    let b = m.allocate(16, 1).unwrap(); // 16
    let c = m.allocate(32, 1).unwrap(); // 32
    assert_eq!((a, b, c), (0, 16, 32));
    m.free(b).unwrap();
    assert_eq!(
        m.free_list(0),
        [(16, 16)],
        "its buddy (0) is live: no merge"
    );
    m.free(a).unwrap();
    assert_eq!(m.free_list(0), [], "0 and 16 merged");
    assert_eq!(m.free_list(1), [(0, 32)], "but 32 is live");
    assert_eq!(m.stats().footprint, 64);
    m.free(c).unwrap();
    assert_eq!(free(&m), [(0, 1024)], "all the way up");
    assert_eq!(m.stats().footprint, 0);
    m.check_invariants().unwrap();
}

#[test]
fn a_space_that_is_not_a_power_of_two_is_tiled_by_maximal_aligned_blocks() {
    let m = BuddyOffsets::new(16..1000, 16).unwrap();
    let mut blocks = Vec::new();
    m.inspect(&mut Blocks(&mut blocks));
    assert_eq!(
        blocks,
        [
            (16, 16),
            (32, 32),
            (64, 64),
            (128, 128),
            (256, 256),
            (512, 256),
            (768, 128),
            (896, 64),
            (960, 32),
            (992, 8) // padding: the tail is less than a block
        ]
    );
    // Offsets are aligned absolutely: a space starting at 1000 with 64-byte blocks starts its
    // blocks at 1024.
    // 1024..5056: 1024 (1 KiB), 2048 (2 KiB), 4096 (512), 4608 (256), 4864 (128), 4992 (64).
    let mut m = BuddyOffsets::new(1000..1000 + 4096, 64).unwrap();
    assert_eq!(
        m.allocate(1, 1),
        Ok(4992),
        "the smallest order first, then the lowest"
    );
    assert_eq!(m.allocate(1, 1024), Ok(1024));
    assert_eq!(m.allocate(1, 1), Ok(4864), "4864 split");
    assert_eq!(m.held(4864), Some(64));
    m.check_invariants().unwrap();
}

/// Collects the blocks `inspect` shows.
struct Blocks<'a>(&'a mut Vec<(usize, usize)>);
impl allocator_traits::Inspector for Blocks<'_> {
    fn block(&mut self, addr: usize, len: usize, _kind: allocator_traits::BlockKind) {
        self.0.push((addr, len));
    }
}

#[test]
fn grow_tiles_the_new_tail_and_merges_it_with_the_free_end() {
    let mut m = BuddyOffsets::new(0..48, 16).unwrap();
    assert_eq!(free(&m), [(32, 16), (0, 32)]);
    let a = m.allocate(16, 1).unwrap();
    assert_eq!(a, 32, "the lowest block of the smallest order");
    m.grow(16).unwrap();
    assert_eq!(m.range(), 0..64);
    assert_eq!(free(&m), [(48, 16), (0, 32)], "48's buddy (32) is live");
    m.free(a).unwrap();
    assert_eq!(free(&m), [(0, 64)], "32 + 48, then with 0");
    // From nothing, and by less than a block at a time.
    let mut m = BuddyOffsets::new(0..0, 16).unwrap();
    assert!(m.allocate(0, 1).is_err());
    m.grow(10).unwrap();
    assert!(m.allocate(0, 1).is_err(), "10 bytes hold no 16-byte block");
    m.grow(10).unwrap();
    assert_eq!(m.allocate(0, 1), Ok(0));
    m.grow(1 << 20).unwrap(); // the bitmaps move to a larger vector
    assert_eq!(m.allocate(1 << 19, 1), Ok(1 << 19));
    m.free(0).unwrap();
    m.free(1 << 19).unwrap();
    assert_eq!(free(&m), [(1 << 20, 16), (0, 1 << 20)], "20 + 2^20 bytes");
    m.check_invariants().unwrap();
}

#[test]
fn bad_frees_are_named_and_change_nothing_but_the_count() {
    let mut m = BuddyOffsets::new(4096..8192, 16).unwrap();
    let a = m.allocate(100, 1).unwrap(); // 4096, 128 bytes
    let before = m.stats();
    assert_eq!(m.free(0), Err(FreeError::Foreign { ptr: 0 }));
    assert_eq!(m.free(8192), Err(FreeError::Foreign { ptr: 8192 }));
    assert_eq!(m.free(a + 16), Err(FreeError::NotABlock { ptr: a + 16 }));
    assert_eq!(m.free(a + 128), Err(FreeError::DoubleFree { ptr: a + 128 }));
    assert_eq!(m.free(a + 130), Err(FreeError::NotABlock { ptr: a + 130 }));
    let after = m.stats();
    assert_eq!(after.bad_frees, before.bad_frees + 5);
    assert_eq!((after.live_blocks, after.live_held), (1, 128));
    m.free(a).unwrap();
    assert_eq!(m.free(a), Err(FreeError::DoubleFree { ptr: a }));
    m.check_invariants().unwrap();
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    assert_eq!(
        BuddyOffsets::new(0..1024, 0).unwrap_err(),
        NewError::MinBlock(0)
    );
    assert_eq!(
        BuddyOffsets::new(0..1024, 24).unwrap_err(),
        NewError::MinBlock(24)
    );
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = BuddyOffsets::new(10..5, 16).unwrap_err();
    assert_eq!(reversed, NewError::Reversed { start: 10, end: 5 });
    assert_eq!(
        BuddyOffsets::new(usize::MAX - 3..usize::MAX, 16).unwrap_err(),
        NewError::StartTooHigh(usize::MAX - 3)
    );
    assert!(matches!(
        BuddyOffsets::new(0..usize::MAX, 1),
        Err(NewError::Bitmaps { .. })
    ));
    // Blocks up to the word's top, and huge requests refused cleanly.
    let mut m = BuddyOffsets::new(0..4096, 1 << 62).unwrap();
    assert_eq!(m.orders(), 2);
    assert!(m.allocate(1, 1).is_err(), "no block fits in 4 KiB");
    let mut m = BuddyOffsets::new(0..4096, 16).unwrap();
    for (size, align) in [(usize::MAX, 1), (1, 1 << 63), (1 << 62, 1), (8, 3), (8, 0)] {
        assert!(
            m.allocate(size, align).is_err(),
            "{size} aligned to {align}"
        );
    }
    assert!(m.grow(usize::MAX).is_err());
    assert_eq!(m.range(), 0..4096, "a refused grow changes nothing");
    m.check_invariants().unwrap();
}

/// A grow whose bitmaps cannot be allocated is refused and changes nothing. (Not under Miri: it
/// asks the allocator for petabytes.)
#[cfg(not(miri))]
#[test]
fn a_grow_past_what_the_bitmaps_can_hold_is_refused() {
    let mut m = BuddyOffsets::new(0..4096, 16).unwrap();
    let a = m.allocate(16, 1).unwrap();
    assert!(m.grow(1 << 60).is_err());
    assert_eq!(m.range(), 0..4096);
    m.free(a).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn one_byte_blocks_serve_any_size_rounded_to_a_power_of_two() {
    let mut m = BuddyOffsets::new(3..3 + 100, 1).unwrap();
    assert_eq!(m.allocate(0, 1), Ok(3), "the 1-byte block at 3");
    assert_eq!(m.allocate(3, 1), Ok(4), "a 4-byte block");
    assert_eq!(m.allocate(5, 1), Ok(8), "an 8-byte block");
    assert_eq!(m.held(8), Some(8));
    assert_eq!(m.stats().internal_bytes(), 1 + 1 + 3);
    for o in [3, 4, 8] {
        m.free(o).unwrap();
    }
    assert_eq!(m.stats().footprint, 0);
    m.check_invariants().unwrap();
}

/// Everything `inspect` shows.
#[derive(Default)]
struct Seen {
    region: Option<(usize, usize)>,
    blocks: Vec<(usize, usize, allocator_traits::BlockKind)>,
    lists: Vec<(String, Vec<(usize, usize)>)>,
    values: Vec<(String, usize)>,
}
impl allocator_traits::Inspector for Seen {
    fn region(&mut self, start: usize, len: usize) {
        self.region = Some((start, len));
    }
    fn block(&mut self, addr: usize, len: usize, kind: allocator_traits::BlockKind) {
        self.blocks.push((addr, len, kind));
    }
    fn begin_list(&mut self, name: std::fmt::Arguments<'_>) {
        self.lists.push((name.to_string(), Vec::new()));
    }
    fn list_entry(&mut self, addr: usize, len: usize) {
        self.lists.last_mut().unwrap().1.push((addr, len));
    }
    fn value(&mut self, name: std::fmt::Arguments<'_>, value: usize) {
        self.values.push((name.to_string(), value));
    }
}

#[test]
fn inspect_shows_the_space_its_blocks_in_offset_order_and_a_list_per_order() {
    use allocator_traits::BlockKind::{Free, Live, Padding};
    let mut m = BuddyOffsets::new(8..8 + 256, 32).unwrap(); // tiled 32..256
    let a = m.allocate(20, 1).unwrap();
    let b = m.allocate(40, 1).unwrap();
    assert_eq!((a, b), (32, 64));
    let mut seen = Seen::default();
    m.inspect(&mut seen);
    assert_eq!(seen.region, Some((8, 256)));
    assert_eq!(
        seen.blocks,
        [
            (8, 24, Padding),
            (32, 32, Live { requested: 20 }),
            (64, 64, Live { requested: 40 }),
            (128, 128, Free),
            (256, 8, Padding),
        ]
    );
    assert_eq!(
        seen.lists,
        [
            ("order 0 (32 B)".to_string(), vec![]),
            ("order 1 (64 B)".to_string(), vec![]),
            ("order 2 (128 B)".to_string(), vec![(128, 128)]),
        ]
    );
    assert_eq!(
        seen.values,
        [
            ("min block".to_string(), 32),
            ("orders".to_string(), 48),
            ("metadata bytes".to_string(), m.metadata_bytes()),
        ]
    );
}
