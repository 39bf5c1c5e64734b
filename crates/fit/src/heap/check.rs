//! The heap's invariant walk ([`FreeSpaceManager::check_invariants`]): the mechanism's own
//! structure, then the blocks in address order against it.
//!
//! [`FreeSpaceManager::check_invariants`]: allocator_traits::FreeSpaceManager::check_invariants

use allocator_traits::{Corruption, MemorySource};

use super::FitHeap;
use super::block::{FIRST, MIN_BLOCK, W, key};
use crate::config::{Coalesce, Order};

impl<M: MemorySource> FitHeap<M> {
    /// Walks the mechanism (the list's links, order and rover, or the index's tree: see their
    /// walks), then the blocks in address order: they tile the heap from the prologue to the
    /// sentinel; a block's `PREV_USED` bit says whether the block before is live; a free block's
    /// footer equals its size; a live block's check word (with `:checked`) agrees with its slack
    /// and fits it; no two free blocks are neighbours where coalescing is full; every free block
    /// is in the mechanism, which holds nothing else; the live blocks add up to the stats, whose
    /// headroom keeps every peak seen, and the footprint is the source's. O(blocks).
    pub(super) fn walk(&self) -> Result<(), Corruption> {
        let mem = self.mem();
        let base = self.base_addr();
        let s = self.stats.get();
        let footprint = s.footprint == self.source.footprint() && mem.end <= s.footprint;
        Corruption::ensure(
            footprint,
            "stats",
            base,
            "footprint differs from the source's",
        )?;
        if mem.end == 0 {
            let empty = self.free.len() == 0 && s.live_blocks == 0;
            return Corruption::ensure(empty, "heap", base, "blocks but no memory");
        }
        let sentinel = mem.sentinel();
        self.free.check_invariants(base, |off| {
            let at = base.wrapping_add(off);
            let inside = off >= FIRST && off < sentinel && mem.holds_word(off);
            Corruption::ensure(inside, "free blocks", at, "a free block outside the heap")?;
            let h = mem.header(off);
            let fits = h.size() >= MIN_BLOCK && h.size() <= sentinel - off;
            Corruption::ensure(fits, "free blocks", at, "block size out of range")?;
            Corruption::ensure(!h.used(), "free blocks", at, "a free block marked in use")
        })?;
        let full = match self.config.coalesce {
            Coalesce::Physical => true,
            Coalesce::ListOrder => self.config.order == Order::AddrSort,
            Coalesce::Off => false,
        };
        let checked = self.config.checked;
        let mut off = FIRST;
        let (mut prev_used, mut free) = (true, 0usize);
        let (mut blocks, mut held, mut requested, mut known) = (0usize, 0usize, 0usize, true);
        const T: &str = "boundary tags";
        while off < sentinel {
            let at = base + off;
            let h = mem.header(off);
            let size = h.size();
            let fits = size >= MIN_BLOCK && size <= sentinel - off;
            Corruption::ensure(fits, T, at, "block size out of range")?;
            let bit = h.prev_used() == prev_used;
            Corruption::ensure(bit, T, at, "PREV_USED differs from the block before")?;
            if h.used() {
                let usable = self.usable(size);
                let from_slack = h.slack().and_then(|sl| usable.checked_sub(sl));
                let req = if checked {
                    let r = mem.word(off + size - W) ^ key(off);
                    let ok = r <= usable && from_slack.is_none_or(|f| f == r);
                    Corruption::ensure(
                        ok,
                        "check word",
                        at,
                        "check word disagrees with the header",
                    )?;
                    Some(r)
                } else {
                    from_slack
                };
                match req {
                    Some(r) => requested += r,
                    None => known = false,
                }
                blocks += 1;
                held += size;
            } else {
                let footer = mem.word(off + size - W) == size;
                Corruption::ensure(footer, T, at, "footer differs from the header's size")?;
                Corruption::ensure(!full || prev_used, T, at, "two free neighbours not merged")?;
                let listed = self.free.is_listed(off);
                Corruption::ensure(
                    listed,
                    "free blocks",
                    at,
                    "a free block is not in the mechanism",
                )?;
                free += 1;
            }
            prev_used = h.used();
            off += size;
        }
        let end = mem.header(sentinel);
        let sentinel_ok =
            end.size() == 0 && end.used() && end.prev_used() == prev_used && end.high_bits() == 0;
        Corruption::ensure(
            sentinel_ok,
            "sentinel",
            base + sentinel,
            "not an in-use header of size 0 after the last block",
        )?;
        let count = self.free.len() == free;
        Corruption::ensure(
            count,
            "free blocks",
            base,
            "the mechanism holds more blocks than are free",
        )?;
        let agree = (blocks, held) == (s.live_blocks, s.live_held)
            && (!known || requested == s.live_requested);
        Corruption::ensure(agree, "stats", base, "live blocks differ from the stats")?;
        // The fast paths raise the peaks only when the headroom runs out.
        self.stats.check_headroom()
    }
}

/// Planted corruptions: each breaks one invariant of the walk and must be reported, under both
/// mechanisms.
#[cfg(test)]
mod tests {
    use core::alloc::Layout;
    use core::ptr::NonNull;

    use allocator_traits::{BoxedRegion, FreeError, FreeSpaceManager};

    use super::super::block::{FIRST, GRAIN, USED};
    use super::super::free::Free;
    use super::*;
    use crate::config::{Config, Mechanism};
    use crate::list::{Chunk, Store};

    type Heap = FitHeap<BoxedRegion>;

    fn heap(cfg: Config) -> Heap {
        FitHeap::new(BoxedRegion::new(1 << 16).unwrap(), cfg)
    }

    fn both(cfg: Config) -> [Heap; 2] {
        [heap(cfg), heap(cfg.with_mechanism(Mechanism::List))]
    }

    /// `n` live blocks of 40 bytes; returns their offsets.
    fn blocks(h: &mut Heap, n: usize) -> std::vec::Vec<usize> {
        sized(h, n, 40)
    }

    /// `n` live blocks of `size` bytes; returns their offsets.
    fn sized(h: &mut Heap, n: usize, size: usize) -> std::vec::Vec<usize> {
        let l = Layout::from_size_align(size, 8).unwrap();
        (0..n)
            .map(|_| h.allocate(l).unwrap().cast::<u8>().as_ptr().addr() - h.base_addr() - W)
            .collect()
    }

    fn free(h: &mut Heap, off: usize) {
        free_sized(h, off, 40)
    }

    fn free_sized(h: &mut Heap, off: usize, size: usize) {
        let ptr = NonNull::new(h.mem().base.wrapping_add(off + W)).unwrap();
        // SAFETY: `off` is a live block of `h` allocated with this layout.
        unsafe { h.deallocate(ptr, Layout::from_size_align(size, 8).unwrap()) }.unwrap();
    }

    fn problem(h: &Heap) -> &'static str {
        h.check_invariants()
            .expect_err("the walk must report it")
            .problem
    }

    #[test]
    fn a_footer_that_differs_from_the_header() {
        for mut h in both(Config::best_fit()) {
            let b = blocks(&mut h, 3);
            free(&mut h, b[1]);
            h.check_invariants().unwrap();
            let size = h.mem().size(b[1]);
            h.free.mem_mut().set_word(b[1] + size - W, size + GRAIN);
            assert_eq!(problem(&h), "footer differs from the header's size");
        }
    }

    #[test]
    fn a_prev_used_bit_that_lies() {
        for mut h in both(Config::best_fit()) {
            let b = blocks(&mut h, 3);
            let w = h.mem().word(b[2]);
            h.free
                .mem_mut()
                .set_word(b[2], w & !super::super::block::PREV_USED);
            assert_eq!(problem(&h), "PREV_USED differs from the block before");
        }
    }

    #[test]
    fn a_free_block_missing_from_the_mechanism() {
        for mut h in both(Config::best_fit()) {
            let b = blocks(&mut h, 3);
            free(&mut h, b[1]);
            h.check_invariants().unwrap();
            match &mut h.free {
                Free::List(l) => l.store_mut().unlink(b[1]),
                Free::Index(i) => i.unlink_for_test(crate::heap::block::id_of(b[1])),
            }
            assert_eq!(problem(&h), "a free block is not in the mechanism");
        }
    }

    #[test]
    fn a_list_out_of_order() {
        let mut h = heap(Config::best_fit().with_mechanism(Mechanism::List));
        let b = blocks(&mut h, 5);
        free(&mut h, b[1]);
        free(&mut h, b[3]);
        h.check_invariants().unwrap();
        let Free::List(l) = &mut h.free else {
            unreachable!()
        };
        l.store_mut().move_after(b[3], None);
        assert_eq!(problem(&h), "out of the list order");
    }

    #[test]
    fn a_size_sorted_list_out_of_order() {
        let mut h = heap(Config::best_fit().with_order(Order::SizeAsc));
        let b = blocks(&mut h, 5);
        free(&mut h, b[1]);
        h.check_invariants().unwrap();
        let Free::List(l) = &mut h.free else {
            unreachable!()
        };
        // The top block (larger) now goes before the 48-byte block.
        let top = l.store().last().unwrap();
        l.store_mut().move_after(top, None);
        assert_eq!(problem(&h), "out of the list order");
    }

    #[test]
    fn an_index_out_of_key_order() {
        for cfg in [Config::best_fit(), Config::first_fit(), Config::next_fit()] {
            // Blocks too large for the bins live in the tree.
            let mut h = heap(cfg);
            let b = sized(&mut h, 7, 3000);
            for i in [1, 3, 5] {
                free_sized(&mut h, b[i], 3000);
            }
            h.check_invariants().unwrap();
            let Free::Index(i) = &mut h.free else {
                unreachable!()
            };
            i.swap_children_for_test();
            let p = problem(&h);
            assert!(
                p == "out of the key order" || p == "aux is not the largest size of the subtree",
                "{p}"
            );
        }
    }

    #[test]
    fn two_free_neighbours_unmerged() {
        for mut h in both(Config::best_fit()) {
            let b = blocks(&mut h, 4);
            free(&mut h, b[1]);
            h.check_invariants().unwrap();
            // Mark b[2] free and put it in the mechanism, as a free that skipped coalescing would.
            let size = h.mem().size(b[2]);
            h.free.mem_mut().set_free(b[2], size, None);
            match &mut h.free {
                Free::List(l) => {
                    l.store_mut()
                        .insert_after(Some(b[1]), Chunk { addr: b[2], size });
                }
                Free::Index(i) => i.link_for_test(crate::heap::block::id_of(b[2])),
            }
            assert_eq!(problem(&h), "two free neighbours not merged");
        }
    }

    #[test]
    fn a_cycle_in_the_list() {
        let mut h = heap(Config::first_fit().with_order(Order::InsertFront));
        let b = blocks(&mut h, 5);
        free(&mut h, b[1]);
        free(&mut h, b[3]);
        h.check_invariants().unwrap();
        let Free::List(l) = &mut h.free else {
            unreachable!()
        };
        let (first, last) = (l.store().first().unwrap(), l.store().last().unwrap());
        l.store_mut().set_next(last, first);
        assert_eq!(
            problem(&h),
            "more chunks linked than the length says (a cycle?)"
        );
    }

    #[test]
    fn a_link_outside_the_heap() {
        for mut h in both(Config::first_fit()) {
            let b = blocks(&mut h, 3);
            free(&mut h, b[1]);
            let end = h.mem().end;
            match &mut h.free {
                Free::List(l) => l.store_mut().set_next(b[1], end + 64),
                Free::Index(i) => i.set_root_for_test(u32::MAX - 7),
            }
            let p = problem(&h);
            assert!(
                p == "a link points outside the heap" || p == "the root lies outside the heap",
                "{p}"
            );
        }
    }

    #[test]
    fn a_listed_block_marked_in_use() {
        for mut h in both(Config::first_fit()) {
            let b = blocks(&mut h, 3);
            free(&mut h, b[1]);
            let w = h.mem().word(b[1]);
            h.free.mem_mut().set_word(b[1], w | USED);
            assert_eq!(problem(&h), "a free block marked in use");
        }
    }

    #[test]
    fn a_check_word_that_disagrees() {
        let mut h = heap(Config::first_fit().with_checked(true));
        let b = blocks(&mut h, 2);
        let size = h.mem().size(b[0]);
        h.free.mem_mut().set_word(b[0] + size - W, 39 ^ key(b[0]));
        assert_eq!(problem(&h), "check word disagrees with the header");
    }

    #[test]
    fn stats_that_differ_from_the_blocks() {
        let mut h = heap(Config::first_fit());
        blocks(&mut h, 2);
        h.stats.record_alloc(8, 32);
        assert_eq!(problem(&h), "live blocks differ from the stats");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_slack_above_the_usable_bytes_is_refused() {
        // A header whose slack bits exceed its block's usable bytes (no live block has one):
        // the free is a layout mismatch and the block stays live.
        for mut h in both(Config::best_fit()) {
            let b = blocks(&mut h, 2);
            let w = h.mem().word(b[0]);
            h.free.mem_mut().set_word(b[0], w | (41 << 48));
            let ptr = NonNull::new(h.mem().base.wrapping_add(b[0] + W)).unwrap();
            // SAFETY: the free is refused before it touches the block (the test's point).
            let e = unsafe { h.deallocate(ptr, Layout::from_size_align(40, 8).unwrap()) };
            assert!(matches!(e, Err(FreeError::LayoutMismatch { size: 40, .. })));
            assert!(h.mem().header(b[0]).used());
            assert_eq!((h.stats().bad_frees, h.stats().live_blocks), (1, 2));
        }
    }

    #[test]
    fn pointers_at_the_heaps_edges_are_foreign() {
        let l = Layout::from_size_align(40, 8).unwrap();
        let mut h = heap(Config::best_fit());
        let nowhere = NonNull::<u128>::dangling().cast::<u8>();
        // SAFETY: the heap refuses foreign pointers before it reads anything.
        let e = unsafe { h.deallocate(nowhere, l) };
        assert!(
            matches!(e, Err(FreeError::Foreign { .. })),
            "empty heap: {e:?}"
        );
        blocks(&mut h, 2);
        let (base, end) = (h.mem().base, h.mem().end);
        for off in [0, FIRST, end - W, end, end + GRAIN] {
            let ptr = NonNull::new(base.wrapping_add(off)).unwrap();
            // SAFETY: as above.
            let e = unsafe { h.deallocate(ptr, l) };
            assert!(matches!(e, Err(FreeError::Foreign { .. })), "{off}: {e:?}");
        }
        assert_eq!(h.stats().bad_frees, 6);
        h.check_invariants().unwrap();
    }

    #[test]
    fn a_headroom_past_the_peaks() {
        let mut h = heap(Config::best_fit());
        blocks(&mut h, 2);
        h.stats.plant_headroom(h.stats.exact_headroom() + 1);
        assert_eq!(
            problem(&h),
            "the headroom is above the live counts' distance to the peaks"
        );
    }

    #[test]
    fn a_broken_sentinel() {
        let mut h = heap(Config::first_fit());
        blocks(&mut h, 2);
        let s = h.mem().sentinel();
        h.free.mem_mut().set_word(s, 0);
        assert_eq!(
            problem(&h),
            "not an in-use header of size 0 after the last block"
        );
    }

    /// Plants `plant` (given the index and a live block's node, which is no node of the tree)
    /// in a next-fit heap with one free block between two live ones, and returns the walk's
    /// complaint.
    fn planted_in_next_fit(
        plant: impl FnOnce(&mut crate::index::Index<super::super::block::Mem>, u32),
    ) -> &'static str {
        let mut h = heap(Config::next_fit());
        let b = blocks(&mut h, 3);
        free(&mut h, b[1]);
        h.check_invariants().unwrap();
        let Free::Index(i) = &mut h.free else {
            unreachable!()
        };
        plant(i, crate::heap::block::id_of(b[0]));
        problem(&h)
    }

    #[test]
    fn a_rover_off_the_index() {
        let p = planted_in_next_fit(|i, live| i.set_rover_for_test(live));
        assert_eq!(p, "the rover is not a block of the index");
    }

    #[test]
    fn a_finger_off_the_tree() {
        let p = planted_in_next_fit(|i, live| i.set_finger_for_test(live));
        assert_eq!(p, "the finger is not a node of the tree");
    }

    /// A best-fit heap with three free blocks of one size in a bin (a root and two children),
    /// checked, then `plant` run on its index: the walk's complaint.
    fn planted_in_a_bin(
        plant: impl FnOnce(&mut crate::index::Index<super::super::block::Mem>),
    ) -> &'static str {
        let mut h = heap(Config::best_fit());
        let b = blocks(&mut h, 7);
        for i in [1, 3, 5] {
            free(&mut h, b[i]);
        }
        h.check_invariants().unwrap();
        let Free::Index(i) = &mut h.free else {
            unreachable!()
        };
        plant(i);
        problem(&h)
    }

    #[test]
    fn a_bin_out_of_heap_order() {
        let p = planted_in_a_bin(|i| i.swap_bin_root_for_test());
        assert!(
            p == "below its parent (heap order)" || p == "a root with a prev or sibling link",
            "{p}"
        );
    }

    #[test]
    fn a_bin_root_with_its_own_child_link() {
        // A root's first child lives in the bins' `heads`, never in the root.
        let p = planted_in_a_bin(|i| i.child_in_bin_root_for_test());
        assert_eq!(p, "a root with a child link");
    }

    #[test]
    fn an_empty_bin_with_a_first_child() {
        let mut h = heap(Config::best_fit());
        let b = blocks(&mut h, 3);
        free(&mut h, b[1]);
        h.check_invariants().unwrap();
        let Free::Index(i) = &mut h.free else {
            unreachable!()
        };
        i.head_of_empty_bin_for_test(100, crate::heap::block::id_of(b[1]));
        assert_eq!(problem(&h), "an empty bin with a first child");
    }

    #[test]
    fn a_bitmap_bit_that_lies() {
        for cfg in [Config::best_fit(), Config::first_fit()] {
            let mut h = heap(cfg);
            let b = blocks(&mut h, 3);
            free(&mut h, b[1]);
            h.check_invariants().unwrap();
            let Free::Index(i) = &mut h.free else {
                unreachable!()
            };
            i.flip_bitmap_for_test(5);
            assert_eq!(problem(&h), "bit set iff the bin is not empty");
        }
    }

    #[test]
    fn a_bin_suffix_entry_that_lies() {
        let mut h = heap(Config::first_fit());
        let b = blocks(&mut h, 3);
        free(&mut h, b[1]);
        h.check_invariants().unwrap();
        let Free::Index(i) = &mut h.free else {
            unreachable!()
        };
        i.spoil_suffix_for_test(5, 0);
        assert_eq!(problem(&h), "not the lowest root of the bins from here up");
    }

    #[test]
    fn a_suffix_entry_past_the_last_bin() {
        // A free block in the last bin (2064 bytes), a live one after it: bin 127's entry is
        // its root, whatever node above it the entry past the bins names, so only that entry's
        // own check can see a node planted there.
        let mut h = heap(Config::first_fit());
        let b = sized(&mut h, 2, 2056);
        free_sized(&mut h, b[0], 2056);
        h.check_invariants().unwrap();
        let Free::Index(i) = &mut h.free else {
            unreachable!()
        };
        i.spoil_suffix_for_test(crate::index::bins::BINS, crate::index::treap::NIL - 1);
        assert_eq!(problem(&h), "the entry past the last bin is not empty");
    }
}
