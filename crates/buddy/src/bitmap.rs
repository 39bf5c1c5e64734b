//! The bitmaps that make the buddy test O(1): per order, one bit per possible block saying
//! "free" and one saying "allocated as exactly this order".
//!
//! ```text
//!   order 2 (64 B):  free  0 0 1 0      alloc 1 0 0 0
//!   order 1 (32 B):  free  0 0 0 0 0 0 0 1   alloc 0 0 1 0 ...
//!                          ^ block i of order k is bit i; its buddy is bit i ^ 1
//! ```
//!
//! The two bits of a block sit side by side (bits `2i` and `2i + 1` of the order's words), so
//! a block's bits and its buddy's share one word: a free reads one cache line of bitmap per
//! level. Bits are indexed from `base(k)`, the start of the region rounded down to twice the order's
//! block size, so that the buddy of block `i` is block `i ^ 1`. The metadata costs two bits per
//! possible block of every order: about `capacity / (2 * min_block)` bytes, 3.1 % of the region
//! with 16-byte minimum blocks.

use crate::order::MAX_ORDERS;

/// Which of the two bitmaps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Bits {
    /// The block is free (it is in its order's free list).
    Free,
    /// The block is live, allocated as exactly this order.
    Alloc,
}

/// The per-order bitmaps, stored in memory granted by the source.
pub(crate) struct Bitmaps {
    words: *mut u64,
    /// First word of each order's bits.
    off: [usize; MAX_ORDERS],
    /// Bits per order.
    bits: [usize; MAX_ORDERS],
}

impl Bitmaps {
    pub(crate) const fn empty() -> Self {
        Bitmaps {
            words: core::ptr::null_mut(),
            off: [0; MAX_ORDERS],
            bits: [0; MAX_ORDERS],
        }
    }

    /// Words needed for orders `0..orders` with `bits_of(k)` bits each (both bitmaps).
    pub(crate) fn words_needed(orders: u32, bits_of: impl Fn(u32) -> usize) -> Option<usize> {
        let mut total = 0usize;
        for k in 0..orders {
            total = total.checked_add(bits_of(k).div_ceil(32))?;
        }
        Some(total)
    }

    /// Lays the bitmaps over `words` (zeroed here).
    ///
    /// # Safety
    /// `words` is valid for reads and writes of `words_needed(orders, bits_of)` words, for as
    /// long as this value is used, and used by nothing else.
    pub(crate) unsafe fn init(
        &mut self,
        words: *mut u64,
        orders: u32,
        bits_of: impl Fn(u32) -> usize,
    ) {
        let mut at = 0;
        for k in 0..orders as usize {
            let b = bits_of(k as u32);
            self.bits[k] = b;
            self.off[k] = at;
            at += b.div_ceil(32);
        }
        // SAFETY: `at` words starting at `words` are ours (caller).
        unsafe { words.write_bytes(0, at) };
        self.words = words;
    }

    #[inline]
    fn locate(&self, which: Bits, k: u32, i: usize) -> Option<(usize, u64)> {
        let k = k as usize;
        if k >= MAX_ORDERS || i >= self.bits[k] {
            return None;
        }
        Some((
            self.off[k] + i / 32,
            1u64 << (2 * (i % 32) + which as usize),
        ))
    }

    /// Bit `i` of order `k` (false outside the map).
    #[inline]
    pub(crate) fn test(&self, which: Bits, k: u32, i: usize) -> bool {
        match self.locate(which, k, i) {
            // SAFETY: `w` is inside the words laid out by `init`.
            Some((w, m)) => unsafe { *self.words.add(w) & m != 0 },
            None => false,
        }
    }

    /// Sets or clears bit `i` of order `k` (ignored outside the map, which callers never reach).
    #[inline]
    pub(crate) fn put(&mut self, which: Bits, k: u32, i: usize, on: bool) {
        debug_assert!(self.locate(which, k, i).is_some());
        if let Some((w, m)) = self.locate(which, k, i) {
            // SAFETY: `w` is inside the words laid out by `init`.
            unsafe {
                let p = self.words.add(w);
                if on { *p |= m } else { *p &= !m }
            }
        }
    }
}
