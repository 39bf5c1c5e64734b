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
    /// Returns block `i` of order `k` (not allocated, not listed) to the free lists, merging it
    /// with free buddies.
    ///
    /// # Safety
    /// `k < orders`, block `i` of order `k` is in the map (inside the range the bitmaps cover),
    /// and it is owned by the manager and in use by nobody.
    #[inline(always)]
    pub(crate) unsafe fn put_index(&mut self, mut k: u32, mut i: usize) {
        // Each buddy found free leaves its list (its bit cleared): the pair is one block of the
        // next order, which nobody uses either.
        // SAFETY: `k < orders` throughout; block `i` of order `k` is in the map (caller, then
        // the merged block of two blocks in the map).
        unsafe {
            while k + 1 < self.orders && self.bits.take_free(k, i ^ 1) {
                i = (i >> 1) + self.up[k as usize] as usize;
                k += 1;
            }
            self.bits.set_free(k, i);
        }
    }

    /// Frees live block `i` of order `k`: clears its allocation bit and merges it back.
    ///
    /// # Safety
    /// `k < orders`, block `i` of order `k` is live (its allocation bit is set), and its owner
    /// gives it up.
    #[inline(always)]
    pub(crate) unsafe fn release(&mut self, k: u32, i: usize) {
        // SAFETY: a live block of order `k < orders` is in the map; once its bit is cleared it
        // is neither allocated nor listed, and nobody uses it (caller).
        unsafe {
            self.bits.put_alloc(k, i, false);
            self.put_index(k, i);
        }
    }
}
