//! One free list per order, kept out of band: the members of list `k` are the blocks whose free
//! bit is set in order `k`'s bitmap ([`crate::bitmap`]), and the bitmap's summary levels find
//! the lowest one. This module keeps what the bits do not say at a glance: each list's length
//! and a mask of the non-empty orders, which finds the smallest order at or above a request
//! with one `trailing_zeros`.
//!
//! ```text
//!   order 0 (16 B):  free bits 0 0 1 0 0 1 ...   len 2
//!   order 1 (32 B):  free bits 0 0 0 0 ...       len 0
//!   order 2 (64 B):  free bits 0 1 0 0 ...       len 1      nonempty = 0b101
//! ```
//!
//! Nothing is written into a free block, so joining or leaving a list touches neither the block
//! nor other free blocks (an intrusive doubly linked list writes the neighbours' links: two more
//! cache lines, often far apart, per operation).
//!
//! Every change of a list goes through two calls made together: the free bit
//! ([`crate::bitmap::Bitmaps::put`] with `Bits::Free`) and [`FreeLists::push`] or
//! [`FreeLists::remove`] here.

use crate::order::MAX_ORDERS;

/// The lengths of the free lists of every order.
pub(crate) struct FreeLists {
    /// `lens[k]` is the number of free bits set in order `k`'s bitmap.
    lens: [usize; MAX_ORDERS],
    /// Bit `k` set iff `lens[k] > 0`.
    nonempty: u64,
}

impl FreeLists {
    pub(crate) const fn new() -> Self {
        FreeLists {
            lens: [0; MAX_ORDERS],
            nonempty: 0,
        }
    }

    /// The block at `block` joins list `k` (its free bit has just been set).
    ///
    /// # Safety
    /// `block` is a block of order `k` of the heap that nobody uses: from now on the heap may hand
    /// it out.
    #[inline]
    pub(crate) unsafe fn push(&mut self, k: u32, block: *mut u8) {
        debug_assert!((block as usize).is_multiple_of(16));
        let k = k as usize;
        self.lens[k] += 1;
        self.nonempty |= 1 << k;
    }

    /// The block at `block` leaves list `k` (its free bit has just been cleared).
    ///
    /// # Safety
    /// `block` is in list `k`; the caller takes it over (to hand out, or to merge).
    #[inline]
    pub(crate) unsafe fn remove(&mut self, k: u32, block: *mut u8) {
        debug_assert!((block as usize).is_multiple_of(16));
        let k = k as usize;
        debug_assert!(self.lens[k] > 0);
        self.lens[k] -= 1;
        if self.lens[k] == 0 {
            self.nonempty &= !(1 << k);
        }
    }

    /// The smallest non-empty order `>= k`, if any.
    #[inline]
    pub(crate) fn first_at_least(&self, k: u32) -> Option<u32> {
        let above = self.nonempty.checked_shr(k).unwrap_or(0);
        (above != 0).then(|| k + above.trailing_zeros())
    }

    /// Number of blocks in list `k`.
    pub(crate) fn len(&self, k: u32) -> usize {
        self.lens[k as usize]
    }

    /// The mask of non-empty orders (bit `k` set iff list `k` has a block).
    pub(crate) fn nonempty(&self) -> u64 {
        self.nonempty
    }

    /// Sets list `k`'s length without touching its bits (a corruption, for the walk's tests).
    #[cfg(test)]
    pub(crate) fn set_len(&mut self, k: u32, n: usize) {
        self.lens[k as usize] = n;
    }
}
