//! Splitting: serving an order-`k` request from the smallest free block of order `j >= k`.
//!
//! ```text
//!   take(order 1) with only an order-3 block free:
//!   order 3  [...............................]      pop it
//!   order 2  [...............|###############]      upper half -> free list 2
//!   order 1  [.......|#######]                      upper half -> free list 1
//!   result   [.......]                              lower half, marked allocated at order 1
//! ```
//!
//! Each halving pushes the upper half on its order's list and sets its free bit: `j - k` steps,
//! at most the number of orders.

use crate::bitmap::Bits;
use crate::freelist::FreeNode;
use crate::{Buddy, MemorySource};

impl<S: MemorySource> Buddy<S> {
    /// Takes a free block of order `k`, splitting a larger one if needed, and marks it allocated.
    pub(crate) fn take(&mut self, k: u32) -> Option<*mut u8> {
        let mut j = self.lists.first_at_least(k)?;
        let block = self.lists.pop(j)?.cast::<u8>();
        let i = self.index(j, block as usize);
        self.bits.put(Bits::Free, j, i, false);
        while j > k {
            j -= 1;
            let half = self.size(j);
            let upper = block.wrapping_add(half);
            let ui = self.index(j, upper as usize);
            self.bits.put(Bits::Free, j, ui, true);
            // SAFETY: `upper` is the upper half of a block we own and just took off its list:
            // free, aligned to `half >= 16`, valid for writes.
            unsafe { self.lists.push(j, upper.cast::<FreeNode>()) };
        }
        let i = self.index(k, block as usize);
        self.bits.put(Bits::Alloc, k, i, true);
        Some(block)
    }
}
