//! The invariant walk ([`allocator_traits::FreeSpaceManager::check_invariants`]): every structure
//! of the heap against the others, as glibc's `do_check_malloc_state` does for its bins.
//!
//! ```text
//!   per order k:   leaf words   f a f a ...   free xor allocated; no free pair (2j, 2j+1)
//!                  summary      bit set iff the word below is non-zero; nothing free below low[k]
//!                  list k       nonempty bit k iff the order has a free bit
//!   blocks:        data start ... data_end, in address order:
//!                  [ free k=3 ][ alloc k=0 ][ alloc k=0 ][ free k=1 ] ... [gap] ...
//!                  each found block aligned to its size, inside the data; the blocks found
//!                  are all the bits set (none hidden inside another) and cover `granted` bytes
//!   stats:         allocated blocks == live_blocks, their bytes == live_held;
//!                  headroom <= its exact value (allocator_traits::FastStats)
//! ```
//!
//! The free lists are the free bits (module `bitmap`), so "a list is well linked" is: the
//! non-empty mask agrees with its bits, and the summary that finds its lowest entry has a bit
//! exactly over the words with a free block. The walk reads only the bitmaps (word by word) and steps
//! over the data block by block; it never reads a block's memory.

use allocator_traits::Corruption;

use crate::{Buddy, MemorySource, Phase};

impl<S: MemorySource> Buddy<S> {
    /// The walk. O(bitmap words + blocks * orders).
    pub(crate) fn walk(&self) -> Result<(), Corruption> {
        if self.phase != Phase::Ready {
            return Ok(());
        }
        let bits_set = self.blocks.check_orders()?;
        let start = self.origin.next_multiple_of(1 << self.blocks.min_shift);
        let found = self
            .blocks
            .walk_blocks(start, self.data_end, bits_set, |_, _| Ok(()))?;
        Corruption::ensure(
            found.bytes == self.granted,
            "blocks",
            found.bytes,
            "the free and allocated blocks do not tile the data granted",
        )?;
        let s = self.stats.get();
        found.check_stats(&s)?;
        self.stats.check_headroom()
    }
}

#[cfg(test)]
mod tests {
    use allocator_traits::{BoxedRegion, FreeSpaceManager, Layout};

    use crate::bitmap::Bits;
    use crate::{Buddy, Config};

    fn heap() -> Buddy<BoxedRegion> {
        Buddy::try_new(BoxedRegion::new(1 << 16).unwrap(), Config::new(1 << 16)).unwrap()
    }

    fn l(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    /// A heap with a few live blocks and free blocks of several orders.
    fn busy() -> (Buddy<BoxedRegion>, Vec<core::ptr::NonNull<[u8]>>) {
        let mut h = heap();
        let blocks: Vec<_> = [16, 100, 16, 40, 500]
            .iter()
            .map(|&s| h.allocate(l(s)).unwrap())
            .collect();
        h.walk().unwrap();
        (h, blocks)
    }

    /// The lowest order at or above `from` with a free block.
    fn free_order(h: &Buddy<BoxedRegion>, from: u32) -> u32 {
        (from..h.blocks.orders)
            .find(|&k| h.blocks.bits.count_free(k) > 0)
            .expect("a free block")
    }

    fn problem(h: &Buddy<BoxedRegion>) -> &'static str {
        h.walk()
            .expect_err("the walk must report the planted corruption")
            .problem
    }

    #[test]
    fn a_healthy_heap_passes_after_a_long_random_workload() {
        let mut h = Buddy::try_new(
            BoxedRegion::new(1 << 20).unwrap(),
            Config::new(1 << 20).grow_by(1 << 14),
        )
        .unwrap();
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let mut live = Vec::new();
        let n = if cfg!(miri) { 300 } else { 20_000 };
        for step in 0..n {
            if !next().is_multiple_of(3) || live.is_empty() {
                let lay = Layout::from_size_align(1 + (next() % 2000) as usize, 8).unwrap();
                if let Ok(b) = h.allocate(lay) {
                    live.push((b, lay));
                }
            } else {
                let (b, lay) = live.swap_remove((next() % live.len() as u64) as usize);
                // SAFETY: a live block with its layout.
                unsafe { h.deallocate(b.cast(), lay).unwrap() };
            }
            if step % 97 == 0 {
                h.walk().unwrap();
            }
        }
        h.walk().unwrap();
        for (b, lay) in live {
            // SAFETY: a live block with its layout.
            unsafe { h.deallocate(b.cast(), lay).unwrap() };
        }
        h.walk().unwrap();
    }

    #[test]
    fn a_flipped_free_bit_is_reported() {
        let (mut h, _b) = busy();
        // A free block loses its bit (its list still counts it).
        let k = free_order(&h, 0);
        let i = h.blocks.bits.first_free(k).unwrap();
        h.blocks.bits.flip(Bits::Free, k, i);
        // The summary over the word (now empty, where the order has one), the non-empty mask
        // (the order's only free block), or the blocks (one fewer) say it.
        let p = problem(&h);
        assert!(
            p == "a summary bit is set over a word with no free block below it"
                || p == "the non-empty mask disagrees with the order's free bits"
                || p == "the free and allocated blocks do not tile the data granted",
            "{p}"
        );
    }

    #[test]
    fn a_flipped_allocation_bit_is_reported() {
        let (mut h, b) = busy();
        let a = b[0].cast::<u8>().as_ptr() as usize;
        h.blocks.bits.flip(Bits::Alloc, 0, h.index(0, a));
        assert_eq!(
            problem(&h),
            "the free and allocated blocks do not tile the data granted"
        );
    }

    #[test]
    fn a_list_entry_of_the_wrong_order_is_reported() {
        let (mut h, _b) = busy();
        // A free block is entered in the list below as well (as its lower half): an entry of
        // the wrong order, hidden inside a real free block.
        let k = free_order(&h, 1);
        let i = h.blocks.bits.first_free(k).unwrap();
        let addr = h.addr_of(k, i);
        // SAFETY: blocks of the heap's orders, in the map (a planted corruption).
        unsafe { h.blocks.bits.set_free(k - 1, h.index(k - 1, addr)) };
        assert_eq!(
            problem(&h),
            "a free or allocated bit names a block inside another block or outside the data"
        );
    }

    #[test]
    fn two_free_buddies_left_unmerged_are_reported() {
        let (mut h, b) = busy();
        // Free the second 16-byte block by its bits alone, without merging with its free
        // buddy.
        let a = b[2].cast::<u8>().as_ptr() as usize;
        let i = h.index(0, a);
        // SAFETY: blocks of the heap's orders, in the map (a planted corruption).
        unsafe { h.blocks.bits.put_alloc(0, i, false) };
        if !h.blocks.bits.test(Bits::Free, 0, i ^ 1) {
            // Make its buddy free as well (it was the first 16-byte block: live).
            // SAFETY: blocks of the heap's orders, in the map (a planted corruption).
            unsafe { h.blocks.bits.put_alloc(0, i ^ 1, false) };
            // SAFETY: blocks of the heap's orders, in the map (a planted corruption).
            unsafe { h.blocks.bits.set_free(0, i ^ 1) };
        }
        // SAFETY: blocks of the heap's orders, in the map (a planted corruption).
        unsafe { h.blocks.bits.set_free(0, i) };
        assert_eq!(problem(&h), "two free buddies are left unmerged");
    }

    #[test]
    fn a_broken_list_is_reported() {
        // The lists have no links (they are the free bits); what can break is the non-empty
        // mask and the summary that finds the lowest entry.
        let (mut h, _b) = busy();
        let k = free_order(&h, 0);
        h.blocks.bits.flip_nonempty(k);
        assert_eq!(
            problem(&h),
            "the non-empty mask disagrees with the order's free bits"
        );

        let mut big =
            Buddy::try_new(BoxedRegion::new(1 << 20).unwrap(), Config::new(1 << 20)).unwrap();
        let _x = big.allocate(l(16)).unwrap();
        big.walk().unwrap();
        assert!(
            (0..big.blocks.orders).any(|k| {
                big.blocks
                    .bits
                    .first_free(k)
                    .is_some_and(|i| big.blocks.bits.clear_summary(k, i))
            }),
            "an order with a summary and a free block"
        );
        assert_eq!(
            big.walk().unwrap_err().problem,
            "a word with a free block below it has no summary bit"
        );
        // And a bit left over a word with no free block (the summary is exact): the last
        // leaf word of an order with a summary has no free block on this heap.
        let mut big =
            Buddy::try_new(BoxedRegion::new(1 << 20).unwrap(), Config::new(1 << 20)).unwrap();
        let _x = big.allocate(l(16)).unwrap();
        assert!(big.blocks.bits.set_last_summary_bit(0));
        assert_eq!(
            big.walk().unwrap_err().problem,
            "a summary bit is set over a word with no free block below it"
        );
    }

    #[test]
    fn wrong_statistics_are_reported() {
        let (mut h, _b) = busy();
        h.stats.raw_mut().live_held += 16;
        assert_eq!(
            problem(&h),
            "live_held is not the bytes of the allocated blocks"
        );
        let (mut h, _b) = busy();
        h.stats.plant_headroom(h.stats.exact_headroom() + 1);
        assert_eq!(
            problem(&h),
            "the headroom is above the live counts' distance to the peaks"
        );
    }
}
