//! Merging: a freed block rejoins its buddy as long as the buddy is free, order after order.
//!
//! ```text
//!   free(B, order 1), buddy A free at order 1, buddy of AB free at order 2:
//!   order 1  [A free ][B freed]              bit test: A free -> unlink A (O(1)), merge
//!   order 2  [AB.............][C free.......]  bit test: C free -> unlink C, merge
//!   order 3  [ABC...........................]  buddy not free (or top order) -> push on list 3
//! ```
//!
//! The buddy of the block at `addr` of size `s` is at `addr ^ s`: in the bitmaps, the buddy of
//! block `i` is block `i ^ 1`, and the block two buddies merge into is block `(i >> 1) + up(k)`
//! of the next order (`up(k)` is 0 or 1, fixed per order by where the region starts). Whether the
//! buddy is free is one bit in the free bitmap of its order, never a list scan, and taking it off
//! its list is clearing that bit (the lists are the bitmaps, module `bitmap`): the loop works
//! on bitmap indices alone and never touches the buddy's memory. Adding fresh memory to the heap
//! goes through the same path, so a new grant merges with free blocks at the end of the previous
//! one.

use crate::blocks::Blocks;

impl Blocks {
    /// Returns block `i` of order `k` (not listed; its allocation bit, if set, is cleared) to
    /// the free lists, merging it with free buddies.
    ///
    /// # Safety
    /// `k < orders`, block `i` of order `k` is in the map (inside the range the bitmaps cover),
    /// and it is owned by the manager and in use by nobody.
    #[inline(always)]
    pub(crate) unsafe fn put_index(&mut self, mut k: u32, mut i: usize) {
        let top = self.orders - 1;
        // Each buddy found free leaves its list (its bit cleared): the pair is one block of the
        // next order, which nobody uses either. One read and write of the leaf word per level
        // (`free_or_merge`: the block's and its buddy's bits share it).
        // SAFETY: `k < orders` throughout; block `i` of order `k` is in the map (caller, then
        // the merged block of two blocks in the map).
        unsafe {
            while self.bits.free_or_merge(k, i, k < top) {
                i = (i >> 1) + self.up[k as usize] as usize;
                k += 1;
            }
        }
    }

    /// Frees live block `i` of order `k`: clears its allocation bit and merges it back.
    ///
    /// # Safety
    /// `k < orders`, block `i` of order `k` is live (its allocation bit is set), and its owner
    /// gives it up.
    #[inline(always)]
    pub(crate) unsafe fn release(&mut self, k: u32, i: usize) {
        // SAFETY: a live block of order `k < orders` is in the map; `put_index` clears its
        // allocation bit, and then it is neither allocated nor listed, and nobody uses it
        // (caller).
        unsafe { self.put_index(k, i) };
    }
}
