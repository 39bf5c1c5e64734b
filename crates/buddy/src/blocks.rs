//! The blocks of a buddy system over a range of addresses, apart from any memory: where the
//! block of order `k` at an address sits in the bitmaps, and the three moves every buddy
//! manager makes on them (take with splitting, module `split`; put back with merging, module
//! `merge`; cut a fresh range into maximal blocks, [`Blocks::free_range`]). The pointer heap
//! ([`crate::Buddy`]) and the offset manager ([`crate::offsets::BuddyOffsets`]) both keep one,
//! and differ only in where the bitmaps' words live (granted by the `MemorySource` inside the
//! region, or a `Vec` of CPU memory out of band) and what an address means (a pointer, an
//! offset).
//!
//! ```text
//!   addresses   origin (first block)                                     end of the blocks
//!               |o2 (64 B) ......|o1 .....|o0 |o0 |o3 (128 B) .....................|
//!   order 0     base(0) = origin rounded down to 32: bit pair i <-> base(0) + 16 i
//!   order 1     base(1) = origin rounded down to 64: bit pair i <-> base(1) + 32 i
//!   order k     base(k) = origin rounded down to 2 * size(k); up(k) = (base(k) - base(k+1)) / 2size(k)
//!   buddy of pair i is pair i ^ 1; the block both make is pair (i >> 1) + up(k) of order k + 1
//! ```

use allocator_traits::{Corruption, Stats};

use crate::bitmap::{Bitmaps, Bits};
use crate::order::{MAX_ORDERS, block_size};

/// The orders and the bitmaps of a buddy system over a range of addresses starting at `origin`
/// (the first block's address, a multiple of `1 << min_shift`).
#[derive(Clone, Copy)]
pub(crate) struct Blocks {
    /// Per order: block `i` free iff its free bit is set (then it is on list `k`), allocated as
    /// exactly this order iff its allocation bit is set; never both, never two free buddies
    /// below the top order; the blocks with a bit set tile the manager's blocks' range.
    pub(crate) bits: Bitmaps,
    /// Number of orders: blocks go from `1 << min_shift` to `1 << (min_shift + orders - 1)`.
    pub(crate) orders: u32,
    /// log2 of the smallest block.
    pub(crate) min_shift: u32,
    /// Per order `k`, 0 or 1: block `i` of order `k` lies in block `(i >> 1) + up[k]` of order
    /// `k + 1` (the bitmaps of each order start at the origin rounded down to twice the order's
    /// block size, so the next order's may start one block earlier).
    pub(crate) up: [u8; MAX_ORDERS],
    /// Per order `k`, the address block 0 of the order's bitmaps stands for: `origin` rounded
    /// down to twice the order's block size (so the buddy of block `i` is block `i ^ 1`).
    pub(crate) bases: [usize; MAX_ORDERS],
}

/// What [`Blocks::walk_blocks`] found stepping through a range.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Blocks found (free and allocated).
    pub(crate) blocks: usize,
    /// Their bytes.
    pub(crate) bytes: usize,
    /// Allocated blocks found.
    pub(crate) live: usize,
    /// Their bytes.
    pub(crate) held: usize,
}

impl Tally {
    /// The stats' live counts against the allocated blocks found.
    pub(crate) fn check_stats(&self, s: &Stats) -> Result<(), Corruption> {
        Corruption::ensure(
            self.live == s.live_blocks,
            "stats",
            self.live,
            "live_blocks is not the number of allocated blocks",
        )?;
        Corruption::ensure(
            self.held == s.live_held,
            "stats",
            self.held,
            "live_held is not the bytes of the allocated blocks",
        )
    }
}

/// `origin` rounded down to a multiple of `2^shift` (0 for a shift of the word's width or more).
fn round_down(origin: usize, shift: u32) -> usize {
    origin & !1usize.checked_shl(shift).map_or(usize::MAX, |b| b - 1)
}

impl Blocks {
    pub(crate) const fn empty() -> Self {
        Blocks {
            bits: Bitmaps::empty(),
            orders: 0,
            min_shift: 0,
            up: [0; MAX_ORDERS],
            bases: [0; MAX_ORDERS],
        }
    }

    /// Sets the orders and where each order's bitmaps start for blocks from `origin` on (the
    /// bitmaps themselves are laid out afterwards, [`Bitmaps::init`]). `orders` is at most
    /// [`MAX_ORDERS`] and `min_shift + orders <= usize::BITS`.
    pub(crate) fn set_origin(&mut self, origin: usize, min_shift: u32, orders: u32) {
        debug_assert!(orders as usize <= MAX_ORDERS && min_shift + orders <= usize::BITS);
        self.min_shift = min_shift;
        self.orders = orders;
        for k in 0..orders {
            self.bases[k as usize] = round_down(origin, k + min_shift + 1);
        }
        // (The top order merges into nothing: its `up` stays 0.)
        for k in 0..orders.saturating_sub(1) {
            let shift = k + min_shift + 1;
            let (this, next) = (round_down(origin, shift), round_down(origin, shift + 1));
            self.up[k as usize] = ((this - next) >> shift) as u8;
        }
    }

    /// Bits (blocks) order `k` needs for blocks between `origin` and `end` (saturating: a
    /// count that does not fit in a word cannot be allocated anyway).
    pub(crate) fn bits_of(origin: usize, end: usize, min_shift: u32, k: u32) -> usize {
        let base = round_down(origin, k + min_shift + 1);
        ((end - base) >> (k + min_shift)).saturating_add(2)
    }

    /// Bytes in a block of order `k`.
    #[inline(always)]
    pub(crate) fn size(&self, k: u32) -> usize {
        block_size(k, self.min_shift)
    }

    /// Address of the block of order `k` with index `i` in that order's bitmaps.
    #[inline(always)]
    pub(crate) fn addr_of(&self, k: u32, i: usize) -> usize {
        self.bases[k as usize] + (i << (k + self.min_shift))
    }

    /// Index of the block of order `k` at `addr` in that order's bitmaps.
    #[inline(always)]
    pub(crate) fn index(&self, k: u32, addr: usize) -> usize {
        addr.wrapping_sub(self.bases[k as usize]) >> (k + self.min_shift)
    }

    /// Cuts `start..end` into maximal blocks aligned to their size and frees each, merging with
    /// what is already free. Returns the bytes made into blocks.
    ///
    /// # Safety
    /// `start` and `end` are multiples of the smallest block, every block of `start..end` is in
    /// the map (inside the range the bitmaps cover), and no block there is free or allocated yet.
    pub(crate) unsafe fn free_range(&mut self, start: usize, end: usize) -> usize {
        let top = self.orders - 1;
        let mut at = start;
        while at < end {
            let mut k = (at.trailing_zeros().saturating_sub(self.min_shift)).min(top);
            while self.size(k) > end - at {
                k -= 1;
            }
            // SAFETY: `k < orders`; the block lies in `start..end`, so it is in the map and
            // neither free nor allocated (caller).
            unsafe { self.put_index(k, self.index(k, at)) };
            at += self.size(k);
        }
        end.saturating_sub(start)
    }

    /// The largest block (free or allocated) that starts at `addr` and ends by `end`, and
    /// whether it is free.
    pub(crate) fn block_starting_at(&self, addr: usize, end: usize) -> Option<(u32, bool)> {
        // Only the orders whose blocks `addr` is aligned to and that end by `end`.
        let room = end.checked_sub(addr).filter(|&r| r >> self.min_shift > 0)?;
        let fits = usize::BITS - 1 - room.leading_zeros();
        let top = (addr.trailing_zeros().min(fits))
            .checked_sub(self.min_shift)?
            .min(self.orders.checked_sub(1)?);
        (0..=top)
            .rev()
            .find_map(|k| self.state(k, addr).map(|free| (k, free)))
    }

    /// Whether the block of order `k` at `addr` is free (`Some(true)`), allocated as exactly
    /// that order (`Some(false)`), or neither (`None`, also outside the map).
    #[inline]
    pub(crate) fn state(&self, k: u32, addr: usize) -> Option<bool> {
        let i = self.index(k, addr);
        if self.bits.test(Bits::Free, k, i) {
            Some(true)
        } else if self.bits.test(Bits::Alloc, k, i) {
            Some(false)
        } else {
            None
        }
    }

    /// The bitmaps' own structure, order by order ([`Bitmaps::check_order`]), and the mask of
    /// non-empty orders against the free bits. Returns the bits set (free and allocated).
    pub(crate) fn check_orders(&self) -> Result<usize, Corruption> {
        let mut bits_set = 0usize;
        for k in 0..self.orders {
            let top = k + 1 == self.orders;
            let count = self.bits.check_order(k, top)?;
            Corruption::ensure(
                (self.bits.nonempty() >> k & 1 == 1) == (count.free > 0),
                "free lists",
                k as usize,
                "the non-empty mask disagrees with the order's free bits",
            )?;
            bits_set += count.free + count.alloc;
        }
        Corruption::ensure(
            self.bits.nonempty().checked_shr(self.orders).unwrap_or(0) == 0,
            "free lists",
            self.orders as usize,
            "the non-empty mask names an order the heap does not have",
        )?;
        Ok(bits_set)
    }

    /// Steps through `start..end` in address order, one block (or one smallest block of a gap)
    /// at a time, calling `live(addr, order)` on each allocated block, and checks that the
    /// blocks found account for the `bits_set` bits. O(blocks * orders + gaps).
    pub(crate) fn walk_blocks(
        &self,
        start: usize,
        end: usize,
        bits_set: usize,
        mut live: impl FnMut(usize, u32) -> Result<(), Corruption>,
    ) -> Result<Tally, Corruption> {
        let min = 1usize << self.min_shift;
        let mut t = Tally::default();
        let mut at = start;
        while at < end {
            match self.block_starting_at(at, end) {
                Some((k, free)) => {
                    t.blocks += 1;
                    t.bytes += self.size(k);
                    if !free {
                        t.live += 1;
                        t.held += self.size(k);
                        live(at, k)?;
                    }
                    at += self.size(k);
                }
                None => at += min,
            }
        }
        Corruption::ensure(
            t.blocks == bits_set,
            "blocks",
            t.blocks,
            "a free or allocated bit names a block inside another block or outside the data",
        )?;
        Ok(t)
    }
}
