//! The binary buddy system over offsets: an [`OffsetManager`] for a space the CPU does not own
//! (a GPU buffer, a file, a shared-memory segment), on the same blocks, bitmaps, split and merge
//! as the pointer heap [`Buddy`](crate::Buddy).
//!
//! ```text
//!   the space (never touched)
//!   base   tiled.start (base rounded up to min_block)          tiled.end      base + len
//!   |pad|  [o2 live (64 B) .][o1 free .][o0][o0][o3 free (128 B) ..........]|pad| -> grow
//!          ^ each block aligned to its own size as an offset (offset % size == 0)
//!
//!   out of band (CPU memory, this struct):
//!     words      Vec<u64>: per order, a free bit and an allocated bit per possible block, and
//!                the summary over the free bits (module `bitmap`, the pointer heap's layout)
//!     blocks     the orders over those words: take (split), put (merge), tile (crate::blocks)
//!     requested  offset -> bytes asked, one entry per live block (for exact stats)
//! ```
//!
//! * **Alignment is absolute**: a block of `min_block << k` bytes starts at an offset that is a
//!   multiple of its size, as the pointer heap's blocks sit at addresses that are. So a request
//!   of `size` bytes aligned to `align` takes the smallest order holding `max(size, align)` (a
//!   size of 0 the smallest block) and its offset is aligned by construction; the lowest free
//!   block of the smallest non-empty order at or above it is halved down (the lowest offset
//!   first, as the pointer heap). A space that does not start at a multiple of `min_block`
//!   loses the bytes up to the first one (and the tail past the last whole `min_block`); a
//!   space that is not a power of two is tiled by maximal aligned blocks.
//! * **Free by offset**: no size is given, so the order is found out of band: the one order
//!   whose allocation bit is set at that offset (the blocks starting there nest, and the blocks
//!   tile the space, so at most one has a bit), trying orders from the smallest up while the
//!   offset is a multiple of the block size: O(orders). Every other offset is an error naming
//!   it ([`FreeError::Foreign`] outside the space, [`FreeError::DoubleFree`] where a free block
//!   starts, [`FreeError::NotABlock`] elsewhere inside) and changes nothing but
//!   `Stats::bad_frees`. The freed block merges with its buddy while the buddy is free.
//! * **Grow** tiles the new tail with maximal aligned blocks, each merging with a free buddy
//!   (so after freeing everything the space is as a fresh manager's of the same length); the
//!   bitmaps are reallocated (at least doubling the range they cover) when the space outgrows
//!   them.
//! * **Footprint** (`Stats::footprint`, the end of the highest live block minus `base`) is kept
//!   as blocks are handed out, and found again only when the highest live block is freed: by
//!   stepping down over the free blocks that end the space (after merging, at most about two
//!   per order).
//!
//! ```
//! use allocator_traits::OffsetManager;
//! use buddy::offsets::BuddyOffsets;
//!
//! // A 256 MiB GPU heap, offsets from 0, 256-byte smallest blocks.
//! let mut heap = BuddyOffsets::new(0..256 << 20, 256).unwrap();
//! let a = heap.allocate(1000, 256).unwrap(); // 0: a 1 KiB block
//! let b = heap.allocate(100, 4096).unwrap(); // 4096: a 4 KiB block (aligned by its size)
//! assert_eq!((a, b, heap.held(a)), (0, 4096, Some(1024)));
//! heap.free(a).unwrap();
//! assert!(heap.free(a).is_err()); // a double free is refused, named
//! assert_eq!(heap.stats().live_blocks, 1);
//! ```
//!
//! Costs: allocation and free O(orders) (at most one split or merge per order, the lowest free
//! block found through the summary), plus one hash-map insertion or removal (the bytes asked,
//! for exact statistics). CPU memory: the bitmaps, about `len / (2 * min_block)` bytes (3.1 %
//! of the space with 16-byte blocks, 0.2 % with 256-byte ones), and about 16 bytes per live
//! block in the map. Rounding to powers of two loses up to half of each block
//! (`Stats::internal_bytes`).

mod check;

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use allocator_traits::{
    AllocError, BlockKind, Corruption, Detects, FreeError, Inspector, OffsetManager, Stats,
};
use hashbrown::HashMap;

use crate::bitmap::{Bitmaps, Bits};
use crate::blocks::Blocks;
use crate::order::{MAX_ORDERS, order_for};

/// The bitmaps of a new or grown space cover at least this many smallest blocks.
const MIN_COVER_BLOCKS: usize = 4096;

/// Why [`BuddyOffsets::new`] refused its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewError {
    /// The smallest block is not a power of two.
    MinBlock(usize),
    /// The range ends before it starts.
    Reversed {
        /// The range's start.
        start: usize,
        /// The range's end.
        end: usize,
    },
    /// The first multiple of the smallest block at or after the start overflows.
    StartTooHigh(usize),
    /// The bitmaps for the space could not be allocated (or their size overflows).
    Bitmaps {
        /// The length of the space.
        len: usize,
    },
}

impl fmt::Display for NewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NewError::MinBlock(m) => {
                write!(
                    f,
                    "buddy offsets: the smallest block ({m}) is not a power of two"
                )
            }
            NewError::Reversed { start, end } => {
                write!(
                    f,
                    "buddy offsets: the range {start}..{end} ends before it starts"
                )
            }
            NewError::StartTooHigh(s) => write!(
                f,
                "buddy offsets: no multiple of the smallest block at or after {s}"
            ),
            NewError::Bitmaps { len } => write!(
                f,
                "buddy offsets: no memory for the bitmaps of a {len}-byte space"
            ),
        }
    }
}

impl core::error::Error for NewError {}

/// The binary buddy system over the offsets `base..base+len` of a space it never touches (see
/// the [module docs](self)).
pub struct BuddyOffsets {
    /// The orders and the bitmaps (shared with [`Buddy`](crate::Buddy), module `blocks`):
    /// block `i` of order `k` is free iff its free bit is set (then it is on list `k`), live as
    /// exactly that order iff its allocation bit is set; never both; no two free buddies below
    /// the top order; the blocks with a bit set tile `tiled` exactly.
    blocks: Blocks,
    /// The words `blocks.bits` points into: allocated here, read and written only through
    /// `blocks.bits` (never through the `Vec`), replaced whole when the space outgrows
    /// `cover_end` (the old words copied first).
    words: Vec<u64>,
    /// The space as given, `base..base + len`.
    range: Range<usize>,
    /// The part the blocks tile: `range` with its start rounded up and its end rounded down to
    /// multiples of the smallest block (empty if none fits: `tiled.start == tiled.end`).
    tiled: Range<usize>,
    /// The bitmaps have bits for every block ending by here: `cover_end >= tiled.end`.
    cover_end: usize,
    /// The bytes asked for each live block, by offset: a key iff a live block (an allocation
    /// bit) starts there, its value at most the block's size.
    requested: HashMap<usize, usize>,
    /// The counters: `live_*` over the live blocks (`live_requested` the map's sum), `footprint`
    /// the end of the highest live block minus `range.start` (0 if none is live).
    stats: Stats,
}

// SAFETY: the bitmaps' raw pointers point only into `words`, which the manager owns alone:
// moving it to another thread moves exclusive access along, and `&self` only reads them.
unsafe impl Send for BuddyOffsets {}
// SAFETY: as above: through `&self` the words are only read.
unsafe impl Sync for BuddyOffsets {}

impl fmt::Debug for BuddyOffsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuddyOffsets")
            .field("range", &self.range)
            .field("min_block", &self.min_block())
            .field("orders", &self.blocks.orders)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl BuddyOffsets {
    /// A manager of `range` (offsets `range.start..range.end`) in blocks of `min_block << k`
    /// bytes (`min_block` a power of two, 1 or more), each aligned to its size as an offset.
    /// The space may be empty and grow. Errors: `min_block` not a power of two, a reversed
    /// range, or no memory for the bitmaps (about `len / (2 * min_block)` bytes).
    pub fn new(range: Range<usize>, min_block: usize) -> Result<Self, NewError> {
        if !min_block.is_power_of_two() {
            return Err(NewError::MinBlock(min_block));
        }
        if range.end < range.start {
            return Err(NewError::Reversed {
                start: range.start,
                end: range.end,
            });
        }
        let start = range
            .start
            .checked_next_multiple_of(min_block)
            .ok_or(NewError::StartTooHigh(range.start))?;
        let end = (range.end & !(min_block - 1)).max(start);
        let min_shift = min_block.trailing_zeros();
        // The top block fits in the word (`min_shift + orders <= usize::BITS`).
        let orders = (MAX_ORDERS as u32).min(usize::BITS - min_shift);
        let mut blocks = Blocks::empty();
        blocks.set_origin(start, min_shift, orders);
        let mut m = BuddyOffsets {
            blocks,
            words: Vec::new(),
            tiled: start..start,
            cover_end: start,
            range: range.clone(),
            requested: HashMap::new(),
            stats: Stats::new(),
        };
        m.cover(end).ok_or(NewError::Bitmaps { len: range.len() })?;
        m.extend_to(end);
        Ok(m)
    }

    /// The smallest block in bytes.
    pub fn min_block(&self) -> usize {
        1 << self.blocks.min_shift
    }

    /// Number of orders: blocks go from `min_block` to `min_block << (orders - 1)`.
    pub fn orders(&self) -> u32 {
        self.blocks.orders
    }

    /// Number of free blocks of `order`.
    pub fn free_blocks(&self, order: u32) -> usize {
        if order < self.blocks.orders {
            self.blocks.bits.count_free(order)
        } else {
            0
        }
    }

    /// The free blocks of `order` as (offset, length), lowest offset first (the order
    /// allocation takes them).
    pub fn free_list(&self, order: u32) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        if order < self.blocks.orders {
            let size = self.blocks.size(order);
            self.blocks
                .bits
                .for_each_free(order, |i| v.push((self.blocks.addr_of(order, i), size)));
        }
        v
    }

    /// Bytes of CPU memory the bitmaps take.
    pub fn metadata_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Makes the bitmaps cover blocks up to `end` (laying them out the first time, moving
    /// them to a larger vector after): the range covered at least doubles. `None` (nothing
    /// changed) if the words cannot be allocated.
    fn cover(&mut self, end: usize) -> Option<()> {
        let first = self.words.is_empty();
        if !first && end <= self.cover_end {
            return Some(());
        }
        let origin = self.tiled.start;
        let span = (end - origin)
            .max(2usize.saturating_mul(self.cover_end - origin))
            .max(self.min_block().saturating_mul(MIN_COVER_BLOCKS));
        let cover_end = match span.checked_next_power_of_two() {
            Some(p) => origin.saturating_add(p),
            None => origin.saturating_add(span),
        }
        .max(end);
        let (orders, s) = (self.blocks.orders, self.blocks.min_shift);
        let bits_of = |k| Blocks::bits_of(origin, cover_end, s, k);
        let n = Bitmaps::words_needed(orders, bits_of)?;
        let mut words = Vec::new();
        words.try_reserve_exact(n).ok()?;
        words.resize(n, 0u64);
        // SAFETY: `words` holds the `n` words laid out for these orders and blocks, is ours
        // alone and lives in `self.words` from here on (its buffer never moves: the vector is
        // not used again but to be dropped); when regrowing, the old words are still valid (in
        // the old vector, dropped only below) and do not overlap the new ones.
        unsafe {
            if first {
                self.blocks.bits.init(words.as_mut_ptr(), orders, bits_of);
            } else {
                self.blocks.bits.regrow(words.as_mut_ptr(), orders, bits_of);
            }
        }
        self.words = words;
        self.cover_end = cover_end;
        Some(())
    }

    /// Tiles `tiled.end..end` (a multiple of the smallest block, covered by the bitmaps) with
    /// maximal aligned free blocks, merging with the free blocks that end the space.
    fn extend_to(&mut self, end: usize) {
        debug_assert!(end <= self.cover_end);
        if end <= self.tiled.end {
            return;
        }
        let start = self.tiled.end;
        self.tiled.end = end;
        // SAFETY: `start..end` are multiples of the smallest block, inside the cover
        // (`end <= cover_end`), and past every block so far (no bit set there).
        unsafe { self.blocks.free_range(start, end) };
    }

    /// The order of the live block starting at `offset`, if one does: the one order whose
    /// allocation bit is set there, tried from the smallest up while `offset` is a multiple of
    /// the order's block size.
    #[inline]
    fn live_order(&self, offset: usize) -> Option<u32> {
        if offset < self.tiled.start || offset >= self.tiled.end {
            return None;
        }
        let b = &self.blocks;
        (0..b.orders)
            .take_while(|&k| offset & (b.size(k) - 1) == 0)
            .find(|&k| b.bits.test(Bits::Alloc, k, b.index(k, offset)))
    }

    /// The error for an offset where no live block starts.
    fn bad_free(&self, offset: usize) -> FreeError {
        if !self.range.contains(&offset) {
            return FreeError::Foreign { ptr: offset };
        }
        let free_here = offset >= self.tiled.start
            && (0..self.blocks.orders)
                .take_while(|&k| offset & (self.blocks.size(k) - 1) == 0)
                .any(|k| self.blocks.state(k, offset) == Some(true));
        if free_here {
            FreeError::DoubleFree { ptr: offset }
        } else {
            FreeError::NotABlock { ptr: offset }
        }
    }

    /// The end of the highest live block minus `range.start` (0 if none): steps down from the
    /// end of the space over the free blocks that end it.
    fn high_water(&self) -> usize {
        let b = &self.blocks;
        let mut at = self.tiled.end;
        'down: while at > self.tiled.start {
            for k in 0..b.orders {
                let size = b.size(k);
                if at & (size - 1) != 0 || at - self.tiled.start < size {
                    break;
                }
                match b.state(k, at - size) {
                    Some(true) => {
                        at -= size;
                        continue 'down;
                    }
                    Some(false) => return at - self.range.start,
                    None => {}
                }
            }
            // No block ends here: the tiling is broken (the walk says so); count from here.
            return at - self.range.start;
        }
        0
    }

    /// Finds and takes a block for `size` bytes aligned to `align` and enters the size asked in
    /// the map: the block's offset and size.
    fn place(&mut self, size: usize, align: usize) -> Result<(usize, usize), AllocError> {
        let unsupported = |reason| AllocError::Unsupported {
            size,
            align,
            reason,
        };
        if !align.is_power_of_two() {
            return Err(unsupported("the alignment is not a power of two"));
        }
        let k = order_for(size, align, self.blocks.min_shift)
            .ok_or(unsupported("no power of two holds the request"))?;
        if k >= self.blocks.orders {
            return Err(unsupported("above the largest block"));
        }
        let i = self
            .blocks
            .take(k)
            .ok_or(AllocError::OutOfMemory { size, align })?;
        let offset = self.blocks.addr_of(k, i);
        self.requested.insert(offset, size);
        Ok((offset, self.blocks.size(k)))
    }

    /// The walk (module `check`).
    fn walk(&self) -> Result<(), Corruption> {
        check::walk(self)
    }
}

impl OffsetManager for BuddyOffsets {
    fn allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        let placed = self.place(size, align);
        self.stats.record_placement(placed, size, self.range.start)
    }

    fn free(&mut self, offset: usize) -> Result<(), FreeError> {
        let Some(k) = self.live_order(offset) else {
            self.stats.record_bad_free();
            return Err(self.bad_free(offset));
        };
        let held = self.blocks.size(k);
        let i = self.blocks.index(k, offset);
        // SAFETY: `k < orders` and block `i` of order `k` is in the map (its allocation bit was
        // just read, so it is live); the caller gives it up.
        unsafe { self.blocks.release(k, i) };
        // A live block has its entry (the walk checks it); 0 would only hide a broken map.
        let asked = self.requested.remove(&offset).unwrap_or(0);
        self.stats.record_free(asked, held);
        if offset + held - self.range.start == self.stats.footprint {
            let top = self.high_water();
            self.stats.set_footprint(top);
        }
        Ok(())
    }

    fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
        let refuse = |reason| AllocError::Unsupported {
            size: additional,
            align: 1,
            reason,
        };
        let end = self
            .range
            .end
            .checked_add(additional)
            .ok_or(refuse("the space's end would overflow"))?;
        let tiled_end = (end & !(self.min_block() - 1)).max(self.tiled.start);
        self.cover(tiled_end)
            .ok_or(refuse("no memory for the bitmaps of the grown space"))?;
        self.range.end = end;
        self.extend_to(tiled_end);
        Ok(())
    }

    fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    fn held(&self, offset: usize) -> Option<usize> {
        self.live_order(offset).map(|k| self.blocks.size(k))
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    /// The space, its blocks in offset order (`Padding` for the ends no whole smallest block
    /// fits in), and one list per order that fits in the space, `order k (N B)`, lowest offset
    /// first (the order allocation takes them).
    fn inspect(&self, out: &mut dyn Inspector) {
        let b = &self.blocks;
        let (r, t) = (&self.range, &self.tiled);
        out.region(r.start, r.len());
        let front = t.start.min(r.end);
        if front > r.start {
            out.block(r.start, front - r.start, BlockKind::Padding);
        }
        let mut at = t.start;
        while at < t.end {
            match b.block_starting_at(at, t.end) {
                Some((k, free)) => {
                    let kind = if free {
                        BlockKind::Free
                    } else {
                        BlockKind::Live {
                            requested: self.requested.get(&at).copied().unwrap_or(0),
                        }
                    };
                    out.block(at, b.size(k), kind);
                    at += b.size(k);
                }
                None => {
                    // Only on a broken tiling (the walk reports it).
                    out.block(at, self.min_block(), BlockKind::Padding);
                    at += self.min_block();
                }
            }
        }
        if r.end > t.end.max(front) {
            let tail = t.end.max(front);
            out.block(tail, r.end - tail, BlockKind::Padding);
        }
        let len = t.len();
        for k in (0..b.orders).take_while(|&k| k == 0 || b.size(k) <= len) {
            out.begin_list(format_args!("order {k} ({} B)", b.size(k)));
            b.bits
                .for_each_free(k, |i| out.list_entry(b.addr_of(k, i), b.size(k)));
            out.end_list();
        }
        out.value(format_args!("min block"), self.min_block());
        out.value(format_args!("orders"), b.orders as usize);
        out.value(format_args!("metadata bytes"), self.metadata_bytes());
    }

    fn check_invariants(&self) -> Result<(), Corruption> {
        self.walk()
    }

    /// Every bad offset: outside the space (`Foreign`), or inside it where no live block starts
    /// (`DoubleFree` where a free block starts, `NotABlock` elsewhere).
    fn detects(&self) -> Detects {
        Detects::EVERY_OFFSET
    }
}
