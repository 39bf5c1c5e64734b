//! The bitmaps that make the buddy test O(1) and that *are* the free lists: per order, one bit
//! per possible block saying "free" and one saying "allocated as exactly this order", and above
//! the free bits a summary tree that finds the lowest free block of an order in a few word reads.
//!
//! ```text
//!   order 1 (32 B):
//!     summary level 1        1 0 0 ...          bit w: leaf word w has a free block
//!     leaf words   w0: f a f a f a ...  w1: f a f a ...   (f = free bit, a = alloc bit)
//!                      0 0 0 1 1 0        0 0 0 0
//!                      ^ block 0         ^ block 1 (live), block 2 (free) ...
//!     block i of order k is bit pair i; its buddy is pair i ^ 1 (same word)
//! ```
//!
//! * **Leaf words.** The two bits of a block sit side by side (bits `2i` and `2i + 1` of the
//!   order's leaf words, 32 blocks a word), so a block's bits and its buddy's share one word: a
//!   free reads one word of bitmap per level it climbs. Bits are indexed from `base(k)`, the start
//!   of the region rounded down to twice the order's block size, so that the buddy of block `i`
//!   is block `i ^ 1`.
//! * **Summary levels.** Level 1 has one bit per leaf word, level `l + 1` one bit per level-`l`
//!   word; the top level is one word. A bit is set exactly over the words below that are not
//!   zero (a leaf word: that has a free bit). [`Bitmaps::set_free`] sets the bits up from a
//!   leaf word that gains its first free bit, stopping at the first bit already set;
//!   [`Bitmaps::take_free`] clears them up from a leaf word that loses its last one, stopping
//!   at the first summary word left non-zero (one leaf word holds 32 blocks, so both climb
//!   rarely). [`Bitmaps::first_free`] tries a per-order hint first (a leaf word below which
//!   nothing is free), and otherwise searches from the hint upward through the summary (up
//!   while the summary word over the position has nothing after it, then down the lowest set
//!   bits). Until session 3 the summary was lazy (bits over emptied words stayed set until a
//!   search met them): cheaper frees, but searches that cleared stale bits one by one cost
//!   about 60 instructions per alloc/free pair at 1 000 live blocks.
//! * **Free lists.** The members of list `k` are the blocks whose free bit is set in order `k`;
//!   a mask of the non-empty orders (bit `k` iff the order's top summary word, or its only
//!   leaf word, is not zero) finds the smallest order at or above a request with one
//!   `trailing_zeros`. Nothing is written into a free block, so joining or leaving a list
//!   touches neither the block nor other free blocks (an intrusive doubly linked list writes
//!   the neighbours' links: two more cache lines, often far apart).
//! * **Cost.** Two bits per possible block of every order, about `capacity / (2 * min_block)`
//!   bytes (3.1 % of the region with 16-byte minimum blocks), plus 1/64 of that for the summary.

use allocator_traits::Corruption;

use crate::order::MAX_ORDERS;

/// Which of the two bitmaps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Bits {
    /// The block is free (a member of its order's free list).
    Free,
    /// The block is live, allocated as exactly this order.
    Alloc,
}

/// The free bits of a leaf word (the even bits).
const FREE_MASK: u64 = 0x5555_5555_5555_5555;

/// Summary levels an order may need: leaf words cover `2^5` blocks, each summary level 64 times
/// more, and no order has more than `2^64` blocks.
const MAX_LEVELS: usize = 10;

/// The per-order bitmaps and summaries, stored in words the owner lays them over (granted by
/// the `MemorySource` for the pointer heap, a `Vec` for the offset manager), and the mask
/// of orders that have a free block.
#[derive(Clone, Copy)]
pub(crate) struct Bitmaps {
    words: *mut u64,
    /// First leaf word of each order, as a pointer (`words + off[k]`), for the fast paths.
    leaf: [*mut u64; MAX_ORDERS],
    /// First word of each order's summary level 1, as a pointer (`words + sum[k][0]`; unused
    /// when the order has no summary), for the summary upkeep of the fast paths.
    sum1: [*mut u64; MAX_ORDERS],
    /// First leaf word of each order.
    off: [usize; MAX_ORDERS],
    /// Blocks (bit pairs) per order.
    bits: [usize; MAX_ORDERS],
    /// Summary levels of each order (0 when its leaf fits in one word).
    levels: [u8; MAX_ORDERS],
    /// First word of each summary level (level 1 at index 0) of each order.
    sum: [[usize; MAX_LEVELS]; MAX_ORDERS],
    /// Entries of each level of each order: `count[k][0]` leaf words, `count[k][l]` words of
    /// summary level `l` (one bit per entry of level `l - 1`).
    count: [[usize; MAX_LEVELS + 1]; MAX_ORDERS],
    /// Per order, a leaf word below which no free bit is set (a lower bound: setting a free bit
    /// below it lowers it, clearing one leaves it; [`Bitmaps::first_free`] raises it to the word
    /// it finds). The lowest free block is usually in this word, and then the summary is not read.
    low: [usize; MAX_ORDERS],
    /// Bit `k` set iff order `k` has a free bit (iff its top summary word, or its one leaf word,
    /// is not zero).
    nonempty: u64,
}

/// Words of each summary level above `leaf` leaf words, lowest level first.
fn summary_words(leaf: usize) -> impl Iterator<Item = usize> {
    let mut n = leaf;
    core::iter::from_fn(move || {
        if n <= 1 {
            return None;
        }
        n = n.div_ceil(64);
        Some(n)
    })
}

impl Bitmaps {
    pub(crate) const fn empty() -> Self {
        Bitmaps {
            words: core::ptr::null_mut(),
            leaf: [core::ptr::null_mut(); MAX_ORDERS],
            sum1: [core::ptr::null_mut(); MAX_ORDERS],
            off: [0; MAX_ORDERS],
            bits: [0; MAX_ORDERS],
            levels: [0; MAX_ORDERS],
            sum: [[0; MAX_LEVELS]; MAX_ORDERS],
            count: [[0; MAX_LEVELS + 1]; MAX_ORDERS],
            low: [0; MAX_ORDERS],
            nonempty: 0,
        }
    }

    /// Words needed for orders `0..orders` with `bits_of(k)` blocks each (both bitmaps and the
    /// summaries).
    pub(crate) fn words_needed(orders: u32, bits_of: impl Fn(u32) -> usize) -> Option<usize> {
        let mut total = 0usize;
        for k in 0..orders {
            let leaf = bits_of(k).div_ceil(32);
            total = total.checked_add(leaf)?;
            for n in summary_words(leaf) {
                total = total.checked_add(n)?;
            }
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
            let leaf = b.div_ceil(32);
            self.bits[k] = b;
            self.off[k] = at;
            self.count[k][0] = leaf;
            at += leaf;
            let mut levels = 0;
            for (l, n) in summary_words(leaf).enumerate() {
                self.sum[k][l] = at;
                self.count[k][l + 1] = n;
                at += n;
                levels += 1;
            }
            debug_assert!(levels <= MAX_LEVELS);
            self.levels[k] = levels as u8;
        }
        // SAFETY: `at` words starting at `words` are ours (caller).
        unsafe { words.write_bytes(0, at) };
        self.words = words;
        for k in 0..orders as usize {
            self.leaf[k] = words.wrapping_add(self.off[k]);
            self.sum1[k] = words.wrapping_add(self.sum[k][0]);
        }
    }

    /// Lays the bitmaps out again over `words` for `bits_of(k)` blocks per order (at least as
    /// many as now): the leaf words are copied, the summaries rebuilt from them, the hints kept.
    ///
    /// # Safety
    /// As for [`Bitmaps::init`]; the current words are still valid and do not overlap `words`.
    pub(crate) unsafe fn regrow(
        &mut self,
        words: *mut u64,
        orders: u32,
        bits_of: impl Fn(u32) -> usize,
    ) {
        let old = *self;
        // SAFETY: forwarded caller contract.
        unsafe { self.init(words, orders, bits_of) };
        self.low = old.low;
        self.nonempty = old.nonempty;
        for k in 0..orders as usize {
            let n = old.bits[k].div_ceil(32);
            debug_assert!(self.bits[k] >= old.bits[k]);
            // SAFETY: the old order has `n` leaf words, the new one at least as many; distinct
            // grants.
            unsafe {
                core::ptr::copy_nonoverlapping(old.words.add(old.off[k]), words.add(self.off[k]), n)
            };
            // Each summary level from the level below it.
            let mut below = (self.off[k], self.bits[k].div_ceil(32), FREE_MASK);
            for l in 0..self.levels[k] as usize {
                for j in 0..below.1 {
                    // SAFETY: word `j` of the level below exists.
                    if unsafe { self.word(below.0 + j) } & below.2 != 0 {
                        // SAFETY: word `j / 64` of level `l + 1` exists (one bit per word below).
                        unsafe { *self.word_mut(self.sum[k][l] + j / 64) |= 1 << (j % 64) };
                    }
                }
                below = (self.sum[k][l], below.1.div_ceil(64), u64::MAX);
            }
        }
    }

    /// The leaf word holding block `i` of order `k`, and the block's free bit in it (its
    /// allocation bit is the next one up). `None` outside the order's blocks.
    #[inline(always)]
    fn locate(&self, k: u32, i: usize) -> Option<(usize, u64)> {
        let k = k as usize;
        if k >= MAX_ORDERS || i >= self.bits[k] {
            return None;
        }
        Some((self.off[k] + i / 32, 1u64 << (2 * (i % 32))))
    }

    /// [`Bitmaps::locate`] for a block known to be in the map: a pointer to its leaf word and
    /// its free bit, with no bounds check.
    ///
    /// # Safety
    /// `k < orders` (so `k < MAX_ORDERS`) and `i < bits[k]`.
    #[inline(always)]
    unsafe fn locate_valid(&self, k: u32, i: usize) -> (*mut u64, u64) {
        debug_assert!(self.locate(k, i).is_some());
        // SAFETY: `k < MAX_ORDERS` (caller).
        let leaf = unsafe { *self.leaf.get_unchecked(k as usize) };
        (leaf.wrapping_add(i / 32), 1u64 << (2 * (i % 32)))
    }

    /// Word `w` of the grant.
    ///
    /// # Safety
    /// `w` is a word laid out by `init`: a leaf word from `locate`, or a summary word
    /// `sum[k][l] + j` with `j` below that level's length.
    #[inline(always)]
    unsafe fn word(&self, w: usize) -> u64 {
        // SAFETY: `w` lies in the grant (caller), which `init` made readable for us.
        unsafe { *self.words.add(w) }
    }

    /// A pointer to word `w` of the grant.
    ///
    /// # Safety
    /// As for [`Self::word`].
    #[inline(always)]
    unsafe fn word_mut(&mut self, w: usize) -> *mut u64 {
        // SAFETY: `w` lies in the grant (caller), so the offset stays inside it.
        unsafe { self.words.add(w) }
    }

    /// Bit `which` of block `i` of order `k` (false outside the map).
    #[inline(always)]
    pub(crate) fn test(&self, which: Bits, k: u32, i: usize) -> bool {
        match self.locate(k, i) {
            // SAFETY: `w` comes from `locate`.
            Some((w, m)) => (unsafe { self.word(w) } & (m << which as u32)) != 0,
            None => false,
        }
    }

    /// Bit `which` of block `i` of order `k`, a block in the map.
    ///
    /// # Safety
    /// As for [`Bitmaps::locate_valid`].
    #[inline(always)]
    pub(crate) unsafe fn test_valid(&self, which: Bits, k: u32, i: usize) -> bool {
        // SAFETY: forwarded; the word is in the grant.
        unsafe {
            let (p, m) = self.locate_valid(k, i);
            *p & (m << which as u32) != 0
        }
    }

    /// Sets or clears the allocation bit of block `i` of order `k`.
    ///
    /// # Safety
    /// As for [`Bitmaps::locate_valid`].
    #[inline(always)]
    pub(crate) unsafe fn put_alloc(&mut self, k: u32, i: usize, on: bool) {
        // SAFETY: forwarded: the word is in the grant, ours alone under `&mut self`.
        unsafe {
            let (p, m) = self.locate_valid(k, i);
            let m = m << 1;
            *p = if on { *p | m } else { *p & !m };
        }
    }

    /// Block `i` of order `k` joins its order's free list: sets its free bit, counts it,
    /// lowers the hint, and marks the summary when the leaf word had no free bit before.
    ///
    /// # Safety
    /// As for [`Bitmaps::locate_valid`].
    #[inline(always)]
    pub(crate) unsafe fn set_free(&mut self, k: u32, i: usize) {
        // SAFETY: forwarded: the word is in the grant, ours alone under `&mut self`.
        let before = unsafe {
            let (p, m) = self.locate_valid(k, i);
            let before = *p;
            *p = before | m;
            before
        };
        // SAFETY: forwarded.
        unsafe { self.listed(k, i, before) };
    }

    /// The rest of a block joining its list once its free bit is set (`before`: its leaf word
    /// before that): counts the order non-empty, lowers the hint, and marks the summary when
    /// the word had no free bit.
    ///
    /// # Safety
    /// `k < MAX_ORDERS`, `i < bits[k]`.
    #[inline(always)]
    unsafe fn listed(&mut self, k: u32, i: usize, before: u64) {
        let ku = k as usize;
        self.nonempty |= 1 << k;
        let leaf = i / 32;
        // SAFETY: `k < MAX_ORDERS` (caller).
        let low = unsafe { self.low.get_unchecked_mut(ku) };
        *low = (*low).min(leaf);
        if before & FREE_MASK == 0 {
            self.mark(ku, leaf);
        }
    }

    /// One level of a merge: block `i` of order `k`, on no list, has its allocation bit cleared
    /// (if set) and then, reading and writing the leaf word it shares with its buddy once:
    /// with `merge` and a free buddy, the buddy leaves its list (as [`Bitmaps::take_free`]) and
    /// true is returned (the two make one block of the next order, on no list); otherwise
    /// block `i` joins its list (as [`Bitmaps::set_free`]) and false is returned. No bounds
    /// check for the buddy: its bits are in block `i`'s word, and no bit past the order's
    /// blocks is ever set.
    ///
    /// # Safety
    /// As for [`Bitmaps::locate_valid`].
    #[inline(always)]
    pub(crate) unsafe fn free_or_merge(&mut self, k: u32, i: usize, merge: bool) -> bool {
        // SAFETY: forwarded: the word is in the grant.
        let (p, m) = unsafe { self.locate_valid(k, i) };
        // SAFETY: as above.
        let word = unsafe { *p } & !(m << 1);
        let buddy = 1u64 << (2 * ((i ^ 1) % 32));
        if merge && word & buddy != 0 {
            let after = word & !buddy;
            // SAFETY: as above; ours alone under `&mut self`.
            unsafe { *p = after };
            if after & FREE_MASK == 0 {
                self.unmark(k as usize, i / 32);
            }
            return true;
        }
        // SAFETY: as above.
        unsafe {
            *p = word | m;
            self.listed(k, i, word);
        }
        false
    }

    /// If block `i` of order `k` is free, takes it off its list (clears its free bit) and
    /// returns true; false otherwise (also outside the map). A leaf word left with no free bit
    /// clears its summary bits ([`Bitmaps::unmark`]), so the summary stays exact.
    ///
    /// # Safety
    /// `k < orders` (any `i`).
    #[inline(always)]
    pub(crate) unsafe fn take_free(&mut self, k: u32, i: usize) -> bool {
        // SAFETY: `k < MAX_ORDERS` (caller).
        if i >= unsafe { *self.bits.get_unchecked(k as usize) } {
            return false;
        }
        // SAFETY: `i` is in the map (checked); ours alone under `&mut self`.
        let after = unsafe {
            let (p, m) = self.locate_valid(k, i);
            let before = *p;
            if before & m == 0 {
                return false;
            }
            *p = before & !m;
            before & !m
        };
        if after & FREE_MASK == 0 {
            self.unmark(k as usize, i / 32);
        }
        true
    }

    /// Leaf word `w` of order `k` has just lost its last free bit: clears its level-1 bit, and
    /// climbs while that leaves the summary word zero ([`Bitmaps::unmark_above`], out of line:
    /// a level-1 word covers 64 leaf words, so it is rarely left empty); past the top, the
    /// order is empty. Returns the level-1 word over `w` as left (`None` if the order has no
    /// summary).
    #[inline(always)]
    fn unmark(&mut self, k: usize, w: usize) -> Option<u64> {
        if self.levels[k] == 0 {
            self.nonempty &= !(1 << k);
            return None;
        }
        // SAFETY: `k < MAX_ORDERS` (`levels[k]` was read); word `w / 64` of level 1 of order
        // `k` exists (one bit per leaf word, and `w` is one of those), and `sum1[k]` points at
        // that level; ours alone under `&mut self`.
        let after = unsafe {
            let p = self.sum1.get_unchecked(k).add(w / 64);
            let after = *p & !(1u64 << (w % 64));
            *p = after;
            after
        };
        if after == 0 {
            self.unmark_above(k, w / 64);
        }
        Some(after)
    }

    /// [`Bitmaps::unmark`] from level 2 up: word `w` of level 1 of order `k` has just become
    /// zero.
    #[cold]
    #[inline(never)]
    fn unmark_above(&mut self, k: usize, mut w: usize) {
        for l in 1..self.levels[k] as usize {
            let (word, bit) = (w / 64, 1u64 << (w % 64));
            // SAFETY: `word` is a word of level `l + 1` of order `k` (one bit per word of the
            // level below, and `w` is one of those); ours alone under `&mut self`.
            unsafe {
                let p = self.word_mut(self.sum[k][l] + word);
                let after = *p & !bit;
                *p = after;
                if after != 0 {
                    return;
                }
            }
            w = word;
        }
        self.nonempty &= !(1 << k);
    }

    /// Leaf word `w` of order `k` has just gained its first free bit: sets its level-1 bit, and
    /// climbs while the word it set a bit in was zero before (the summary is exact: a word that
    /// was not zero has its own bit set above already).
    #[inline(always)]
    fn mark(&mut self, k: usize, w: usize) {
        if self.levels[k] == 0 {
            return;
        }
        let bit = 1u64 << (w % 64);
        // SAFETY: `k < MAX_ORDERS` (`levels[k]` was read); word `w / 64` of level 1 of order
        // `k` exists (one bit per leaf word, and `w` is one of those; the order has a summary),
        // and `sum1[k]` points at that level; ours alone under `&mut self`.
        let before = unsafe {
            let p = self.sum1.get_unchecked(k).add(w / 64);
            let before = *p;
            *p = before | bit;
            before
        };
        debug_assert!(before & bit == 0, "a summary bit over an empty word");
        if before == 0 {
            self.mark_above(k, w / 64);
        }
    }

    /// [`Bitmaps::mark`] from level 2 up: word `w` of level 1 of order `k` has just gained its
    /// first bit (out of line: a level-1 word covers 64 leaf words, so this is rarely needed).
    #[cold]
    #[inline(never)]
    fn mark_above(&mut self, k: usize, mut w: usize) {
        for l in 1..self.levels[k] as usize {
            let (word, bit) = (w / 64, 1u64 << (w % 64));
            // SAFETY: `word` is a word of level `l + 1` of order `k` (one bit per word of the
            // level below, and `w` is one of those); ours alone under `&mut self`.
            unsafe {
                let p = self.word_mut(self.sum[k][l] + word);
                let before = *p;
                debug_assert!(before & bit == 0, "a summary bit over an empty word");
                *p = before | bit;
                if before != 0 {
                    return;
                }
            }
            w = word;
        }
    }

    /// The smallest order at or above `k` that has a free block.
    #[inline(always)]
    pub(crate) fn first_order_at_least(&self, k: u32) -> Option<u32> {
        let above = self.nonempty.checked_shr(k).unwrap_or(0);
        (above != 0).then(|| k + above.trailing_zeros())
    }

    /// The mask of orders that have a free block.
    pub(crate) fn nonempty(&self) -> u64 {
        self.nonempty
    }

    /// The index of the lowest free block of order `k`, if any (for the walk's tests; the
    /// allocation path finds and takes it in one, [`Bitmaps::take_lowest`]).
    #[cfg(test)]
    pub(crate) fn first_free(&mut self, k: u32) -> Option<usize> {
        let ku = k as usize;
        if ku >= MAX_ORDERS || self.bits[ku] == 0 {
            return None;
        }
        // SAFETY: `low[k]` is a leaf word of order `k`: 0 (the order has `bits[k] > 0` blocks,
        // so at least one word) or a word index set by `set_free` or `first_free` from an
        // existing word.
        let leaf = (unsafe { self.word(self.off[ku] + self.low[ku]) }) & FREE_MASK;
        if leaf != 0 {
            return Some(self.low[ku] * 32 + leaf.trailing_zeros() as usize / 2);
        }
        self.first_free_by_summary(ku)
    }

    /// [`Bitmaps::first_free`] when the hint's word has no free bit: the first leaf word after
    /// it with a free bit, found through the (exact) summary from the hint upward, as nothing is
    /// free below the hint: up while the summary word over the position has no bit at or after
    /// it, then down along the lowest set bits. Usually one summary word.
    #[inline(never)]
    fn first_free_by_summary(&mut self, k: usize) -> Option<usize> {
        let levels = self.levels[k] as usize;
        // Entry `e` of level `j - 1` (level 0: the leaf words) is the first candidate; its bit
        // is in level `j`.
        let (mut j, mut e) = (1usize, self.low[k] + 1);
        loop {
            if j > levels || e >= self.count[k][j - 1] {
                return None;
            }
            // SAFETY: word `e / 64` of level `j` exists (one bit per entry of level `j - 1`,
            // and `e` is one of those).
            let w = unsafe { self.word(self.sum[k][j - 1] + e / 64) } & (u64::MAX << (e % 64));
            if w != 0 {
                e = e / 64 * 64 + w.trailing_zeros() as usize;
                break;
            }
            e = e / 64 + 1;
            j += 1;
        }
        // Down: entry `e` of level `j - 1` is not zero (the summary is exact).
        while j > 1 {
            // SAFETY: word `e` of level `j - 1` exists (its bit at level `j` is set).
            let w = unsafe { self.word(self.sum[k][j - 2] + e) };
            debug_assert!(w != 0);
            e = e * 64 + w.trailing_zeros() as usize;
            j -= 1;
        }
        // SAFETY: `e` is a leaf word of order `k` (its summary bit is set).
        let leaf = unsafe { self.word(self.off[k] + e) } & FREE_MASK;
        debug_assert!(leaf != 0);
        self.low[k] = e;
        Some(e * 32 + leaf.trailing_zeros() as usize / 2)
    }

    /// Takes the lowest free block of order `k` off its list and returns its index: the
    /// allocation path's [`Bitmaps::first_free`] and [`Bitmaps::take_free`] in one, reading and
    /// writing its leaf word once. A leaf word it empties clears its level-1 summary bit, and
    /// the hint moves to the next word that bit's summary word names (every word between is
    /// empty, as the summary is exact and the emptied word was the lowest with a free bit), so
    /// the next allocation of the order finds its block in the hint's word and not through the
    /// summary.
    ///
    /// # Safety
    /// `k < orders` and order `k` has a free block (its bit in the non-empty mask is set).
    #[inline(always)]
    pub(crate) unsafe fn take_lowest(&mut self, k: u32) -> usize {
        let ku = k as usize;
        // SAFETY: `k < orders <= MAX_ORDERS` (caller).
        let leaf = unsafe { *self.leaf.get_unchecked(ku) };
        // SAFETY: as above.
        let mut w = unsafe { *self.low.get_unchecked(ku) };
        // SAFETY: `low[k]` is a leaf word of order `k` (see `first_free`).
        let mut word = unsafe { *leaf.add(w) };
        if word & FREE_MASK == 0 {
            // The order has a free block (caller), above the hint.
            w = self.first_free_by_summary(ku).unwrap_or(w) / 32;
            // SAFETY: a leaf word of order `k` (the summary's search found it).
            word = unsafe { *leaf.add(w) };
        }
        debug_assert!(word & FREE_MASK != 0, "no free block in a non-empty order");
        let bit = (word & FREE_MASK).trailing_zeros();
        let after = word & !(1u64 << bit);
        // SAFETY: as above; ours alone under `&mut self`.
        unsafe { *leaf.add(w) = after };
        if after & FREE_MASK == 0 {
            self.unmark_lowest(ku, w);
        }
        w * 32 + bit as usize / 2
    }

    /// [`Bitmaps::unmark`] for the order's lowest leaf word with a free bit, `w`, just emptied
    /// by [`Bitmaps::take_lowest`]: also moves the hint to the next leaf word with a free bit
    /// when the level-1 summary word over `w` names one (all its bits left are above `w`'s).
    #[inline(always)]
    fn unmark_lowest(&mut self, k: usize, w: usize) {
        if let Some(after) = self.unmark(k, w)
            && after != 0
        {
            self.low[k] = w / 64 * 64 + after.trailing_zeros() as usize;
        }
    }

    /// The indices of the free blocks of order `k`, lowest first.
    pub(crate) fn for_each_free(&self, k: u32, mut f: impl FnMut(usize)) {
        let k = k as usize;
        if k >= MAX_ORDERS {
            return;
        }
        for w in 0..self.bits[k].div_ceil(32) {
            // SAFETY: `w` is below the order's leaf word count.
            let mut leaf = (unsafe { self.word(self.off[k] + w) }) & FREE_MASK;
            while leaf != 0 {
                f(w * 32 + leaf.trailing_zeros() as usize / 2);
                leaf &= leaf - 1;
            }
        }
    }

    /// Number of free blocks of order `k` (counted over its leaf words).
    pub(crate) fn count_free(&self, k: u32) -> usize {
        let mut n = 0;
        self.for_each_free(k, |_| n += 1);
        n
    }
}

/// What [`Bitmaps::check_order`] found in one order's leaf words.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrderCount {
    /// Free bits set.
    pub(crate) free: usize,
    /// Allocation bits set.
    pub(crate) alloc: usize,
}

impl Bitmaps {
    /// Checks order `k`'s own structure and counts its bits: no bit beyond the order's blocks,
    /// no block both free and allocated, no two free buddies (bit pairs `2j` and `2j + 1`, which
    /// share a leaf word) unless `top` (the top order merges into nothing), a summary bit set
    /// exactly over the non-zero words below it (level 1: over the leaf words with a free bit),
    /// nothing free below the hint `low[k]`.
    pub(crate) fn check_order(&self, k: u32, top: bool) -> Result<OrderCount, Corruption> {
        let k = k as usize;
        let structure = "order bitmap";
        let leaf = self.bits[k].div_ceil(32);
        let levels = self.levels[k] as usize;
        let mut count = OrderCount::default();
        // The level-1 summary word over the leaf words read so far, as it should be.
        let mut want = 0u64;
        for w in 0..leaf {
            // SAFETY: `w` is below the order's leaf word count.
            let word = unsafe { self.word(self.off[k] + w) };
            // (A zero word breaks nothing below: skipped, most words of a sparse order are.)
            if word != 0 {
                let used = self.bits[k] - w * 32;
                if used < 32 {
                    Corruption::ensure(
                        word >> (2 * used) == 0,
                        structure,
                        k,
                        "a bit is set beyond the order's blocks",
                    )?;
                }
                let free = word & FREE_MASK;
                Corruption::ensure(
                    free & (word >> 1) == 0,
                    structure,
                    w * 32 + ((free & (word >> 1)).trailing_zeros() / 2) as usize,
                    "a block is both free and allocated",
                )?;
                if !top {
                    let pairs = free & (free >> 2) & 0x1111_1111_1111_1111;
                    Corruption::ensure(
                        pairs == 0,
                        "free lists",
                        w * 32 + (pairs.trailing_zeros() / 2) as usize,
                        "two free buddies are left unmerged",
                    )?;
                }
                Corruption::ensure(
                    w >= self.low[k] || free == 0,
                    "free list hint",
                    k,
                    "a block below the order's hint is free",
                )?;
                count.free += free.count_ones() as usize;
                count.alloc += (word & !FREE_MASK).count_ones() as usize;
                want |= u64::from(free != 0) << (w % 64);
            }
            if levels > 0 && (w % 64 == 63 || w + 1 == leaf) {
                self.check_summary_word(k, 0, w / 64, want)?;
                want = 0;
            }
        }
        // Summary levels 2 and up against the level below them.
        let mut below = (self.sum[k][0], leaf.div_ceil(64));
        for l in 1..levels {
            let n = below.1.div_ceil(64);
            for j in 0..n {
                let mut want = 0u64;
                for b in 0..64.min(below.1 - j * 64) {
                    // SAFETY: word `j * 64 + b` of the level below exists (`< below.1`).
                    let w = unsafe { self.word(below.0 + j * 64 + b) };
                    want |= u64::from(w != 0) << b;
                }
                self.check_summary_word(k, l, j, want)?;
            }
            below = (self.sum[k][l], n);
        }
        Ok(count)
    }

    /// Word `j` of summary level `l + 1` of order `k` against `want`, the bits it should have.
    fn check_summary_word(
        &self,
        k: usize,
        l: usize,
        j: usize,
        want: u64,
    ) -> Result<(), Corruption> {
        // SAFETY: callers pass a word of the level (one bit per word of the level below).
        let have = unsafe { self.word(self.sum[k][l] + j) };
        Corruption::ensure(
            have & want == want,
            "order summary",
            k,
            "a word with a free block below it has no summary bit",
        )?;
        Corruption::ensure(
            have & !want == 0,
            "order summary",
            k,
            "a summary bit is set over a word with no free block below it",
        )
    }

    /// Flips bit `which` of block `i` of order `k` without telling the lists or the summary:
    /// for the walk's planted-corruption tests.
    #[cfg(test)]
    pub(crate) fn flip(&mut self, which: Bits, k: u32, i: usize) {
        if let Some((w, m)) = self.locate(k, i) {
            // SAFETY: `w` comes from `locate`; ours alone under `&mut self`.
            unsafe { *self.word_mut(w) ^= m << which as u32 };
        }
    }

    /// Flips order `k`'s bit of the non-empty mask (a corruption, for the walk's tests).
    #[cfg(test)]
    pub(crate) fn flip_nonempty(&mut self, k: u32) {
        self.nonempty ^= 1 << k;
    }

    /// Clears the level-1 summary bit over block `i` of order `k` (a corruption, for the walk's
    /// tests); false if the order has no summary.
    #[cfg(test)]
    pub(crate) fn clear_summary(&mut self, k: u32, i: usize) -> bool {
        let k = k as usize;
        if self.levels[k] == 0 || i >= self.bits[k] {
            return false;
        }
        let w = i / 32;
        // SAFETY: word `w / 64` of level 1 exists (one bit per leaf word).
        unsafe { *self.word_mut(self.sum[k][0] + w / 64) &= !(1 << (w % 64)) };
        true
    }

    /// Sets the level-1 summary bit over the last leaf word of order `k` (a corruption when
    /// that word has no free block, for the walk's tests); false if the order has no summary.
    #[cfg(test)]
    pub(crate) fn set_last_summary_bit(&mut self, k: u32) -> bool {
        let k = k as usize;
        if self.levels[k] == 0 {
            return false;
        }
        let w = self.count[k][0] - 1;
        // SAFETY: word `w / 64` of level 1 exists (one bit per leaf word).
        unsafe { *self.word_mut(self.sum[k][0] + w / 64) |= 1 << (w % 64) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bitmaps over a vector, for `blocks` blocks of one order.
    fn maps(blocks: usize) -> (Bitmaps, Vec<u64>) {
        let n = Bitmaps::words_needed(1, |_| blocks).unwrap();
        let mut v = vec![u64::MAX; n];
        let mut b = Bitmaps::empty();
        // SAFETY: `v` holds `n` words and outlives every use of `b` in the test.
        unsafe { b.init(v.as_mut_ptr(), 1, |_| blocks) };
        (b, v)
    }

    #[test]
    fn the_summary_finds_the_lowest_free_block_and_forgets_removed_ones() {
        // (Each `first_free` below may start from the `low` hint or walk the summary: both.)
        // 40 000 blocks: 1 250 leaf words, two summary levels.
        let (mut b, _v) = maps(40_000);
        assert_eq!(b.levels[0], 2);
        assert_eq!(b.first_free(0), None);
        for i in [39_999, 7, 4_100, 64 * 32 + 3] {
            // SAFETY: a block of the one order, in the map.
            unsafe { b.set_free(0, i) };
        }
        assert_eq!(b.nonempty(), 1);
        // SAFETY: a block of the one order, in the map.
        unsafe { b.put_alloc(0, 0, true) };
        assert_eq!(b.first_free(0), Some(7));
        // SAFETY: order 0 of one.
        assert!(unsafe { b.take_free(0, 7) });
        assert_eq!(b.first_free(0), Some(64 * 32 + 3));
        // SAFETY: order 0 of one.
        assert!(unsafe { b.take_free(0, 64 * 32 + 3) });
        assert_eq!(b.first_free(0), Some(4_100));
        // SAFETY: order 0 of one.
        assert!(unsafe { b.take_free(0, 4_100) });
        assert_eq!(b.first_free(0), Some(39_999));
        let mut all = Vec::new();
        b.for_each_free(0, |i| all.push(i));
        assert_eq!(all, [39_999]);
        // SAFETY: order 0 of one.
        assert!(unsafe { b.take_free(0, 39_999) });
        assert_eq!(b.first_free(0), None);
        assert_eq!(
            b.nonempty(),
            0,
            "the last free block took the order's mask bit along"
        );
        // A bit set below the hint lowers it; one set far above is found through the summary.
        // SAFETY: a block of the one order, in the map.
        unsafe { b.set_free(0, 5) };
        assert_eq!(b.first_free(0), Some(5));
        // SAFETY: order 0 of one.
        assert!(unsafe { b.take_free(0, 5) });
        // SAFETY: a block of the one order, in the map.
        unsafe { b.set_free(0, 30_000) };
        assert_eq!(b.first_free(0), Some(30_000));
        assert_eq!(b.low[0], 30_000 / 32);
        // SAFETY: a block of the one order, in the map.
        unsafe { b.set_free(0, 64) };
        assert_eq!(b.first_free(0), Some(64));
        assert!(b.test(Bits::Alloc, 0, 0));
        assert!(!b.test(Bits::Free, 0, 0));
    }

    #[test]
    fn take_lowest_takes_blocks_in_address_order_and_keeps_the_summary_exact() {
        // 300 000 blocks: 9 375 leaf words, three summary levels; free blocks spread so that
        // emptying a word moves the hint within a level-1 word, across level-1 words, and past
        // an emptied level-2 word.
        let (mut b, _v) = maps(300_000);
        assert_eq!(b.levels[0], 3);
        let mut free = vec![0, 3, 30, 34, 37, 64 * 32, 64 * 32 + 5, 4_100 * 32, 299_999];
        for &i in free.iter().rev() {
            // SAFETY: a block of the one order, in the map.
            unsafe { b.set_free(0, i) };
        }
        // A block taken from the middle (as a merge takes a buddy) leaves the rest in order.
        // SAFETY: order 0 of one.
        assert!(unsafe { b.take_free(0, 37) });
        free.retain(|&i| i != 37);
        for &want in &free {
            assert_eq!(b.first_free(0), Some(want));
            // SAFETY: order 0 of one, which has a free block.
            assert_eq!(unsafe { b.take_lowest(0) }, want);
            assert!(!b.test(Bits::Free, 0, want));
            b.check_order(0, false)
                .expect("summary exact, nothing free below the hint");
        }
        assert_eq!(
            b.nonempty(),
            0,
            "the last block took the order's mask bit along"
        );
        // An order of one leaf word (no summary).
        let (mut b, _v) = maps(20);
        for i in [19, 3] {
            // SAFETY: a block of the one order, in the map.
            unsafe { b.set_free(0, i) };
        }
        // SAFETY: order 0 of one, which has free blocks.
        assert_eq!(unsafe { (b.take_lowest(0), b.take_lowest(0)) }, (3, 19));
        assert_eq!(b.nonempty(), 0);
    }

    #[test]
    fn a_single_word_order_needs_no_summary() {
        let (mut b, _v) = maps(20);
        assert_eq!(b.levels[0], 0);
        // SAFETY: a block of the one order, in the map.
        unsafe { b.set_free(0, 19) };
        // SAFETY: a block of the one order, in the map.
        unsafe { b.set_free(0, 3) };
        assert_eq!(b.first_free(0), Some(3));
        assert!(!b.test(Bits::Free, 0, 20), "outside the map");
    }
}
