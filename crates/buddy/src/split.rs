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

use crate::bitmap::Bits;
use crate::{Buddy, MemorySource};

impl<S: MemorySource> Buddy<S> {
    /// Takes a free block of order `k`, splitting a larger one if needed, and marks it allocated.
    pub(crate) fn take(&mut self, k: u32) -> Option<*mut u8> {
        let mut j = self.lists.first_at_least(k)?;
        let mut i = self.bits.first_free(j)?;
        self.bits.put(Bits::Free, j, i, false);
        // SAFETY: the free bit said block `i` of order `j` was in list j; we take it over.
        unsafe { self.lists.remove(j, self.at(self.addr_of(j, i))) };
        while j > k {
            j -= 1;
            // The lower half of block `i` (it stays ours) and its buddy, the upper half.
            i = (i - self.up[j as usize] as usize) << 1;
            self.bits.put(Bits::Free, j, i + 1, true);
            let upper = self.at(self.addr_of(j, i + 1));
            // SAFETY: `upper` is the upper half of a block we just took off its list: a block of
            // order j that nobody uses.
            unsafe { self.lists.push(j, upper) };
        }
        self.bits.put(Bits::Alloc, k, i, true);
        Some(self.at(self.addr_of(k, i)))
    }
}
