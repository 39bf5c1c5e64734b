//! Merging: a freed block rejoins its buddy as long as the buddy is free, order after order.
//!
//! ```text
//!   free(B, order 1), buddy A free at order 1, buddy of AB free at order 2:
//!   order 1  [A free ][B freed]              bit test: A free -> unlink A (O(1)), merge
//!   order 2  [AB.............][C free.......]  bit test: C free -> unlink C, merge
//!   order 3  [ABC...........................]  buddy not free (or top order) -> push on list 3
//! ```
//!
//! The buddy of the block at `addr` of size `s` is at `addr ^ s`; whether it is free is one bit
//! in the free bitmap of its order, never a list scan, and taking it off its list is clearing that
//! bit (the lists are the bitmaps, [`crate::freelist`]): the buddy's memory is never touched. Adding fresh memory to the heap goes through the same path, so a new grant
//! merges with free blocks at the end of the previous one.

use crate::bitmap::Bits;
use crate::{Buddy, MemorySource};

impl<S: MemorySource> Buddy<S> {
    /// Returns the (not allocated, not listed) block `block` of order `k` to the free lists,
    /// merging it with free buddies.
    ///
    /// # Safety
    /// `block` is a block of order `k` inside the heap's data, owned by the heap and in use by
    /// nobody.
    pub(crate) unsafe fn put(&mut self, mut block: *mut u8, mut k: u32) {
        while k + 1 < self.orders {
            let size = self.size(k);
            let buddy = block.map_addr(|a| a ^ size);
            let bi = self.index(k, buddy as usize);
            if !self.bits.test(Bits::Free, k, bi) {
                break;
            }
            self.bits.put(Bits::Free, k, bi, false);
            // SAFETY: the free bit said `buddy` is a free block of order k, in list k; it merges.
            unsafe { self.lists.remove(k, buddy) };
            if (buddy as usize) < (block as usize) {
                block = buddy;
            }
            k += 1;
        }
        let i = self.index(k, block as usize);
        self.bits.put(Bits::Free, k, i, true);
        // SAFETY: `block` is a block of order k that nobody uses (caller, and merged buddies
        // were free).
        unsafe { self.lists.push(k, block) };
    }
}
