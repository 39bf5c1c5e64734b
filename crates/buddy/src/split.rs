//! Splitting: serving an order-`k` request from the smallest free block of order `j >= k`.
//!
//! ```text
//!   take(order 1) with only an order-3 block free:
//!   order 3  [...............................]      take it off list 3
//!   order 2  [...............|###############]      upper half -> free list 2
//!   order 1  [.......|#######]                      upper half -> free list 1
//!   result   [.......]                              lower half, marked allocated at order 1
//! ```
//!
//! The block taken is the lowest free one of the smallest non-empty order `j >= k` (the free
//! bitmap's summary finds it; see module `bitmap`). Each halving puts the upper half on its
//! order's list by setting its free bit: `j - k` steps, at most the number of orders. No block's
//! memory is read or written.

use crate::blocks::Blocks;

impl Blocks {
    /// Takes a free block of order `k`, splitting a larger one if needed, and marks it
    /// allocated; returns its index in order `k`.
    #[inline(always)]
    pub(crate) fn take(&mut self, k: u32) -> Option<usize> {
        let mut j = self.bits.first_order_at_least(k)?;
        // SAFETY: `k <= j < orders` (a non-empty order is one of the heap's, and callers pass
        // `k < orders`), and order `j` has a free block; block `i` of order `j` is in the map
        // (`take_lowest` found it), and so are both halves of a block in the map, order after
        // order.
        unsafe {
            let mut i = self.bits.take_lowest(j);
            while j > k {
                j -= 1;
                // The lower half of block `i` (it stays ours) and its buddy, the upper half,
                // which joins list j.
                i = (i - self.up[j as usize] as usize) << 1;
                self.bits.set_free(j, i + 1);
            }
            self.bits.put_alloc(k, i, true);
            Some(i)
        }
    }
}
