//! The offset manager's invariant walk ([`OffsetManager::check_invariants`]): the bitmaps as the
//! pointer heap's walk checks them (module `blocks`), then the blocks tiling the space against
//! the map of requested sizes and the stats.
//!
//! ```text
//!   per order k:  leaf words  f a f a ...  free xor allocated; no free pair (2j, 2j+1) below
//!                 the top order; summary bit iff the word below is non-zero; mask bit k iff
//!                 the order has a free bit                        (Blocks::check_orders, shared)
//!   blocks:       tiled.start [free o3][live o0][live o0][free o1] ... tiled.end
//!                 the blocks found are all the bits set, and tile `tiled` exactly
//!                                                                 (Blocks::walk_blocks, shared)
//!   map:          one entry per live block, at most its size; nothing else
//!   stats:        live_blocks, live_held, live_requested (the map's sum), footprint (the end
//!                 of the highest live block)
//! ```
//!
//! [`OffsetManager::check_invariants`]: allocator_traits::OffsetManager::check_invariants

use allocator_traits::Corruption;

use super::BuddyOffsets;

/// Walks `m`. O(bitmap words + blocks * orders).
pub(super) fn walk(m: &BuddyOffsets) -> Result<(), Corruption> {
    Corruption::ensure(
        m.tiled.start <= m.tiled.end && m.tiled.end <= m.cover_end,
        "bitmaps",
        m.tiled.end,
        "the bitmaps do not cover the space's blocks",
    )?;
    let bits_set = m.blocks.check_orders()?;
    let (mut asked, mut top) = (0usize, m.range.start);
    let found = m
        .blocks
        .walk_blocks(m.tiled.start, m.tiled.end, bits_set, |at, k| {
            let size = m.blocks.size(k);
            let a = m.requested.get(&at).copied();
            Corruption::ensure(a.is_some(), "requested", at, "a live block has no entry")?;
            let a = a.unwrap_or(0);
            Corruption::ensure(a <= size, "requested", at, "more bytes asked than held")?;
            asked += a;
            top = at + size;
            Ok(())
        })?;
    Corruption::ensure(
        found.bytes == m.tiled.len(),
        "blocks",
        found.bytes,
        "the free and allocated blocks do not tile the space",
    )?;
    Corruption::ensure(
        m.requested.len() == found.live,
        "requested",
        m.requested.len(),
        "an entry where no live block starts",
    )?;
    let s = m.stats;
    found.check_stats(&s)?;
    Corruption::ensure(
        asked == s.live_requested,
        "stats",
        asked,
        "live_requested is not the bytes asked for the live blocks",
    )?;
    Corruption::ensure(
        top - m.range.start == s.footprint,
        "stats",
        top,
        "the footprint is not the end of the highest live block",
    )
}

#[cfg(test)]
mod tests {
    use allocator_traits::OffsetManager;

    use super::BuddyOffsets;
    use crate::bitmap::Bits;

    /// A 64 KiB space of 16-byte blocks starting at 1000 (tiled from 1008) with live blocks of
    /// several orders and free blocks of several orders.
    fn busy() -> (BuddyOffsets, Vec<usize>) {
        let mut m = BuddyOffsets::new(1000..1000 + (64 << 10), 16).unwrap();
        let live: Vec<_> = [16, 100, 16, 40, 500, 3000]
            .iter()
            .map(|&s| m.allocate(s, 8).unwrap())
            .collect();
        m.check_invariants().unwrap();
        (m, live)
    }

    fn problem(m: &BuddyOffsets) -> &'static str {
        m.check_invariants()
            .expect_err("the walk must report the planted corruption")
            .problem
    }

    /// The lowest order at or above `from` with a free block, and that block's index.
    fn a_free_block(m: &mut BuddyOffsets, from: u32) -> (u32, usize) {
        (from..m.blocks.orders)
            .find_map(|k| m.blocks.bits.first_free(k).map(|i| (k, i)))
            .expect("a free block")
    }

    #[test]
    fn a_healthy_manager_passes_after_a_long_random_workload() {
        let len = if cfg!(miri) { 64 << 10 } else { 1 << 20 };
        let mut m = BuddyOffsets::new(48..48 + len, 16).unwrap();
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let mut live = Vec::new();
        let n = if cfg!(miri) { 200 } else { 20_000 };
        for step in 0..n {
            match next() % 16 {
                0 => {
                    m.grow((next() % 5000) as usize).unwrap();
                }
                r if r < 10 || live.is_empty() => {
                    let align = 1 << (next() % 10);
                    if let Ok(o) = m.allocate((next() % 2000) as usize, align) {
                        live.push(o);
                    }
                }
                _ => {
                    let o = live.swap_remove((next() % live.len() as u64) as usize);
                    m.free(o).unwrap();
                }
            }
            if step % 97 == 0 {
                m.check_invariants().unwrap();
            }
        }
        m.check_invariants().unwrap();
        for o in live {
            m.free(o).unwrap();
        }
        m.check_invariants().unwrap();
        assert_eq!(m.stats().footprint, 0);
    }

    #[test]
    fn a_flipped_free_bit_is_reported() {
        let (mut m, _) = busy();
        let (k, i) = a_free_block(&mut m, 0);
        m.blocks.bits.flip(Bits::Free, k, i);
        let p = problem(&m);
        assert!(
            p == "a summary bit is set over a word with no free block below it"
                || p == "the non-empty mask disagrees with the order's free bits"
                || p == "the free and allocated blocks do not tile the space",
            "{p}"
        );
    }

    #[test]
    fn a_flipped_allocation_bit_is_reported() {
        let (mut m, live) = busy();
        let i = m.blocks.index(0, live[0]);
        m.blocks.bits.flip(Bits::Alloc, 0, i);
        assert_eq!(
            problem(&m),
            "the free and allocated blocks do not tile the space"
        );
    }

    #[test]
    fn a_block_both_free_and_allocated_is_reported() {
        let (mut m, live) = busy();
        let i = m.blocks.index(0, live[0]);
        m.blocks.bits.flip(Bits::Free, 0, i);
        assert_eq!(problem(&m), "a block is both free and allocated");
    }

    #[test]
    fn a_list_entry_of_the_wrong_order_is_reported() {
        let (mut m, _) = busy();
        // A free block also entered in the list below (as its lower half).
        let (k, i) = a_free_block(&mut m, 1);
        let at = m.blocks.addr_of(k, i);
        let j = m.blocks.index(k - 1, at);
        // SAFETY: a block of the manager's orders, in the map (a planted corruption).
        unsafe { m.blocks.bits.set_free(k - 1, j) };
        assert_eq!(
            problem(&m),
            "a free or allocated bit names a block inside another block or outside the data"
        );
    }

    #[test]
    fn two_free_buddies_left_unmerged_are_reported() {
        let (mut m, live) = busy();
        // The second 16-byte block (1152) was split off a free 128-byte block: its buddy (1168)
        // is free. Free it by its bits alone, without merging.
        let i = m.blocks.index(0, live[2]);
        // SAFETY: blocks of the manager's orders, in the map (a planted corruption).
        unsafe {
            m.blocks.bits.put_alloc(0, i, false);
            m.blocks.bits.set_free(0, i);
        }
        assert!(
            m.blocks.bits.test(Bits::Free, 0, i ^ 1),
            "its buddy is the free upper half"
        );
        assert_eq!(problem(&m), "two free buddies are left unmerged");
    }

    #[test]
    fn a_broken_summary_or_mask_is_reported() {
        let (mut m, _) = busy();
        let (k, _) = a_free_block(&mut m, 0);
        m.blocks.bits.flip_nonempty(k);
        assert_eq!(
            problem(&m),
            "the non-empty mask disagrees with the order's free bits"
        );
        // Order 0 of a 64 KiB space has 128 leaf words: a summary.
        let mut m = BuddyOffsets::new(0..64 << 10, 16).unwrap();
        m.allocate(16, 1).unwrap();
        let i = m.blocks.bits.first_free(0).unwrap();
        assert!(m.blocks.bits.clear_summary(0, i));
        assert_eq!(
            problem(&m),
            "a word with a free block below it has no summary bit"
        );
        let mut m = BuddyOffsets::new(0..64 << 10, 16).unwrap();
        m.allocate(16, 1).unwrap();
        assert!(m.blocks.bits.set_last_summary_bit(0));
        assert_eq!(
            problem(&m),
            "a summary bit is set over a word with no free block below it"
        );
    }

    #[test]
    fn a_map_out_of_step_with_the_bits_is_reported() {
        let (mut m, live) = busy();
        m.requested.remove(&live[1]);
        assert_eq!(problem(&m), "a live block has no entry");
        let (mut m, live) = busy();
        m.requested.insert(live[1] + 16, 1);
        assert_eq!(problem(&m), "an entry where no live block starts");
        let (mut m, live) = busy();
        m.requested.insert(live[1], 129);
        assert_eq!(problem(&m), "more bytes asked than held");
    }

    #[test]
    fn wrong_statistics_are_reported() {
        let (mut m, _) = busy();
        m.stats.live_held += 16;
        assert_eq!(
            problem(&m),
            "live_held is not the bytes of the allocated blocks"
        );
        let (mut m, _) = busy();
        m.stats.live_blocks -= 1;
        assert_eq!(
            problem(&m),
            "live_blocks is not the number of allocated blocks"
        );
        let (mut m, _) = busy();
        m.stats.live_requested += 1;
        assert_eq!(
            problem(&m),
            "live_requested is not the bytes asked for the live blocks"
        );
        let (mut m, _) = busy();
        m.stats.footprint -= 16;
        assert_eq!(
            problem(&m),
            "the footprint is not the end of the highest live block"
        );
    }

    #[test]
    fn bitmaps_that_do_not_cover_the_space_are_reported() {
        let (mut m, _) = busy();
        m.cover_end = m.tiled.end - 16;
        assert_eq!(problem(&m), "the bitmaps do not cover the space's blocks");
    }
}
