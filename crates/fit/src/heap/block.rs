//! The block format: one header word per block, a footer only while the block is free
//! (Knuth's boundary tags with the previous-block-in-use bit, as in glibc).
//!
//! ```text
//!  offset 0   8                                                            end-8   end
//!  | pro- | block                     | block            | ...            | senti- |
//!  | logue| hdr | payload ...         | hdr | node | ... | footer| ...    | nel    |
//!           live: size|PREV|USED|slack  free: size|PREV     size
//!                                                 ^ list links or index node (16 bytes)
//! ```
//!
//! * Offsets are from the heap's start (16-aligned). Block headers sit at offsets `16k + 16 - W`
//!   (`W` = the word size), so every payload is 16-aligned; blocks are multiples of 16 bytes,
//!   at least [`MIN_BLOCK`].
//! * The **header** word: bit 0 `USED` (this block is live), bit 1 `PREV_USED` (the block just
//!   before is live, or there is none), bits 4.. the block size, and on 64-bit targets bits
//!   48..64 the *slack*: usable bytes minus the bytes asked for, so a free knows the requested
//!   size (and checks the layout) without a second word. `SLACK_UNKNOWN` means it did not fit.
//!   In a free block the same bits hold the rank its index node carries (`Space::carried`: a
//!   rest that takes its block's place in the tree keeps the block's rank); any value is valid.
//! * A **free** block's last word is a footer holding its size: a block whose `PREV_USED` bit is
//!   clear finds the free block before it through the word just below its header. A live block
//!   has no footer: its payload runs to the next header (usable = size - W).
//! * With the check word (`:checked`), a live block's last word holds `requested ^ key(offset)`
//!   (where the footer goes when it is free), so a free can tell a block from a stray pointer
//!   into the heap; usable = size - 2W.
//! * The **prologue** (offset 0 to the first header) belongs to no block; the **sentinel** is
//!   a header word of size 0 marked in use at `end - W`, whose `PREV_USED` bit says whether the
//!   last block is live. Growing the heap turns the old sentinel into the header of the new
//!   space.

use crate::index::Space;

/// Bytes in a word (a header, a footer, a list link).
pub(crate) const W: usize = core::mem::size_of::<usize>();
/// Block sizes and payload alignment.
pub(crate) const GRAIN: usize = 16;
/// The first block's header: the payload after it is 16-aligned.
pub(crate) const FIRST: usize = GRAIN - W;
/// The smallest block: a header, 16 bytes of list links or index node, a footer (and a
/// header, a payload word and a check word when live).
pub(crate) const MIN_BLOCK: usize = 32;
/// Header bit: this block is live.
pub(crate) const USED: usize = 1;
/// Header bit: the block just before this one is live (or this is the first block).
pub(crate) const PREV_USED: usize = 2;
const FLAGS: usize = GRAIN - 1;
#[cfg(target_pointer_width = "64")]
const SLACK_SHIFT: u32 = 48;
/// The largest block size the header can hold.
#[cfg(target_pointer_width = "64")]
pub(crate) const MAX_SIZE: usize = (1 << SLACK_SHIFT) - GRAIN;
/// The largest block size the header can hold.
#[cfg(not(target_pointer_width = "64"))]
pub(crate) const MAX_SIZE: usize = isize::MAX as usize & !FLAGS;
const SIZE_MASK: usize = MAX_SIZE;
/// Slack that did not fit in the header's top bits.
#[cfg(target_pointer_width = "64")]
pub(crate) const SLACK_UNKNOWN: usize = 0xFFFF;
const MAGIC: usize = 0x9E37_79B9_7F4A_7C15_u64 as usize;

/// `n` rounded up to a multiple of [`GRAIN`], or `None` on overflow.
pub(crate) const fn round_grain(n: usize) -> Option<usize> {
    match n.checked_add(GRAIN - 1) {
        Some(v) => Some(v & !(GRAIN - 1)),
        None => None,
    }
}

/// The size of a block holding a request of `size` bytes behind one header word (no check
/// word, no rounding of the request): at least [`MIN_BLOCK`], `None` past [`MAX_SIZE`].
#[inline]
pub(crate) const fn one_word_need(size: usize) -> Option<usize> {
    let Some(need) = round_grain(size.saturating_add(W)) else {
        return None;
    };
    if need > MAX_SIZE {
        None
    } else if need < MIN_BLOCK {
        Some(MIN_BLOCK)
    } else {
        Some(need)
    }
}

/// The check word's key for the block at `off`.
pub(crate) const fn key(off: usize) -> usize {
    off.rotate_left(17) ^ MAGIC
}

/// A decoded header word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header(pub(crate) usize);

impl Header {
    /// The block size (0 for the sentinel).
    #[inline]
    pub(crate) const fn size(self) -> usize {
        self.0 & SIZE_MASK
    }
    /// Whether the block is live.
    #[inline]
    pub(crate) const fn used(self) -> bool {
        self.0 & USED != 0
    }
    /// Whether the block before is live (or there is none).
    #[inline]
    pub(crate) const fn prev_used(self) -> bool {
        self.0 & PREV_USED != 0
    }
    /// Usable bytes minus requested bytes of a live block, if the header knows it.
    #[inline]
    pub(crate) const fn slack(self) -> Option<usize> {
        #[cfg(target_pointer_width = "64")]
        {
            let s = self.0 >> SLACK_SHIFT;
            if s == SLACK_UNKNOWN { None } else { Some(s) }
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            None
        }
    }
    /// The bits the header word has beyond size and flags: a live block's slack, a free
    /// block's carried rank; zero for the sentinel.
    #[inline]
    pub(crate) const fn high_bits(self) -> usize {
        self.0 & !(SIZE_MASK | FLAGS)
    }
}

/// The header's slack bits for `slack` (the unknown marker when it does not fit).
#[inline]
const fn slack_bits(slack: usize) -> usize {
    #[cfg(target_pointer_width = "64")]
    {
        let s = if slack < SLACK_UNKNOWN {
            slack
        } else {
            SLACK_UNKNOWN
        };
        s << SLACK_SHIFT
    }
    #[cfg(not(target_pointer_width = "64"))]
    {
        let _ = slack;
        0
    }
}

/// The heap's memory: `base..base+end`, granted by the source, read and written by word.
///
/// `base` is null iff `end` is 0 (nothing granted yet); otherwise `base` is 16-aligned, `end`
/// a multiple of 16, and the words at `FIRST` up to `end - W` are block headers, payloads,
/// footers and the sentinel as the module docs draw them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mem {
    pub(crate) base: *mut u8,
    pub(crate) end: usize,
}

impl Mem {
    pub(crate) const fn new() -> Self {
        Mem {
            base: core::ptr::null_mut(),
            end: 0,
        }
    }

    /// The sentinel's offset (the end of the last block).
    #[inline]
    pub(crate) const fn sentinel(&self) -> usize {
        self.end - W
    }

    /// Whether a word at `off` lies inside the heap and is word-aligned (the walk asks before
    /// it follows a link that may be corrupt).
    #[inline]
    pub(crate) fn holds_word(&self, off: usize) -> bool {
        off.is_multiple_of(W) && off.checked_add(W).is_some_and(|e| e <= self.end)
    }

    /// Reads the word at `off` (inside the heap, word-aligned, written by the heap).
    #[inline]
    pub(crate) fn word(&self, off: usize) -> usize {
        debug_assert!(
            self.holds_word(off),
            "word at {off} outside 0..{}",
            self.end
        );
        // SAFETY: `off + W <= end` and `off` is a multiple of the word size (callers pass
        // offsets of headers, footers, links and check words, which are inside the heap);
        // `base..base+end` is memory granted by the source, valid for reads, and `base` is
        // 16-aligned, so the read is in bounds and aligned.
        unsafe { self.base.add(off).cast::<usize>().read() }
    }

    /// Writes the word at `off` (inside the heap, word-aligned).
    #[inline]
    pub(crate) fn set_word(&mut self, off: usize, v: usize) {
        debug_assert!(
            self.holds_word(off),
            "word at {off} outside 0..{}",
            self.end
        );
        // SAFETY: as in `word`; the heap owns these bytes (a header, footer, link or check word,
        // never a live payload).
        unsafe { self.base.add(off).cast::<usize>().write(v) }
    }

    /// Reads the 32-bit field at `off` (4-aligned, inside the heap): index nodes.
    #[inline]
    pub(crate) fn u32_at(&self, off: usize) -> u32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.end);
        // SAFETY: in bounds and aligned as asserted (index nodes lie in free blocks' first
        // bytes after the header); the field was written by the index.
        unsafe { self.base.add(off).cast::<u32>().read() }
    }

    /// Writes the 32-bit field at `off` (4-aligned, inside a free block).
    #[inline]
    pub(crate) fn set_u32_at(&mut self, off: usize, v: u32) {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.end);
        // SAFETY: as in `u32_at`; the bytes belong to a free block's node.
        unsafe { self.base.add(off).cast::<u32>().write(v) }
    }

    /// The header of the block at `off`.
    #[inline]
    pub(crate) fn header(&self, off: usize) -> Header {
        Header(self.word(off))
    }

    /// The size of the block at `off`.
    #[inline]
    pub(crate) fn size(&self, off: usize) -> usize {
        self.header(off).size()
    }

    /// Marks `off..off+size` a free block: size in the header, a footer, and the next block's
    /// `PREV_USED` bit cleared (the next header must be written already). `prev_used`: whether
    /// the block before is live; `None` keeps the bit of the header at `off`, which must then be
    /// a header already (of this block, of a block it absorbed, or the old sentinel).
    #[inline]
    pub(crate) fn set_free(&mut self, off: usize, size: usize, prev_used: Option<bool>) {
        self.set_free_tags(off, size, prev_used);
        self.clear_prev_used(off + size);
    }

    /// Clears the `PREV_USED` bit of the header at `off`: the block before it is free now.
    #[inline]
    pub(crate) fn clear_prev_used(&mut self, off: usize) {
        let n = self.word(off);
        self.set_word(off, n & !PREV_USED);
    }

    /// A free block's header and footer only: for a free block that shrinks, whose old bytes
    /// after it the caller is about to turn into a block (not yet a header to update).
    /// `prev_used: None` keeps the header's bit and its carried rank (a free block that stays
    /// where it is in the index); otherwise the rank is 0 until the index sets one.
    #[inline]
    pub(crate) fn set_free_tags(&mut self, off: usize, size: usize, prev_used: Option<bool>) {
        let keep = match prev_used {
            Some(true) => PREV_USED,
            Some(false) => 0,
            None => self.word(off) & (PREV_USED | !(SIZE_MASK | FLAGS)),
        };
        self.set_word(off, size | keep);
        self.set_word(off + size - W, size);
    }

    /// Changes the size of the free block at `off`: growing, the next block's `PREV_USED` bit is
    /// cleared (it is a header); shrinking, the bytes after it are the caller's to turn into a
    /// block, so only the tags are written.
    #[inline]
    pub(crate) fn resize_free(&mut self, off: usize, size: usize) {
        if size < self.size(off) {
            self.set_free_tags(off, size, None);
        } else {
            self.set_free(off, size, None);
        }
    }

    /// Marks `off..off+size` a live block with `slack` bytes unused at its end, and the next
    /// block's `PREV_USED` bit set (the next header must be written already). `prev_used`: the
    /// block before is live (`None`: keep the bit the header at `off` has).
    #[inline]
    pub(crate) fn set_live(
        &mut self,
        off: usize,
        size: usize,
        slack: usize,
        prev_used: Option<bool>,
    ) {
        self.set_live_header(off, size, slack, prev_used);
        let next = off + size;
        let n = self.word(next);
        self.set_word(next, n | PREV_USED);
    }

    /// [`set_live`](Self::set_live)'s header alone: for a block whose next header the caller
    /// writes itself (the free rest cut from the block's end, marked after a live block).
    #[inline]
    pub(crate) fn set_live_header(
        &mut self,
        off: usize,
        size: usize,
        slack: usize,
        prev_used: Option<bool>,
    ) {
        let prev = match prev_used {
            Some(true) => PREV_USED,
            Some(false) => 0,
            None => self.word(off) & PREV_USED,
        };
        self.set_word(off, size | USED | prev | slack_bits(slack));
    }

    /// Clears the `USED` bit (and the slack) of the header at `off`: the first step of a free, so
    /// that a second free of the block sees it free even after it merges into a neighbour.
    #[inline]
    pub(crate) fn mark_free_header(&mut self, off: usize) {
        let h = self.header(off);
        self.set_word(off, h.size() | (h.0 & PREV_USED));
    }

    /// A header for a block about to be inserted at a position that held no header (the rest
    /// of a live block that shrank, the space after a block that grew): free, after a live
    /// block. Written before anything reads it.
    #[inline]
    pub(crate) fn set_fresh_header(&mut self, off: usize, size: usize) {
        self.set_word(off, size | PREV_USED);
    }

    /// Writes the sentinel at `end - W`: in use, size 0, `PREV_USED` as given.
    pub(crate) fn set_sentinel(&mut self, prev_used: bool) {
        let s = self.sentinel();
        self.set_word(s, USED | if prev_used { PREV_USED } else { 0 });
    }

    /// The free block that ends at `off` (the block at `off` has its `PREV_USED` bit clear):
    /// its offset.
    #[inline]
    pub(crate) fn free_before(&self, off: usize) -> Option<usize> {
        if off <= FIRST || self.header(off).prev_used() {
            return None;
        }
        Some(off - self.word(off - W))
    }

    /// The block at `off` if it is free (never the sentinel).
    #[inline]
    pub(crate) fn free_at(&self, off: usize) -> Option<usize> {
        (off < self.sentinel() && !self.header(off).used()).then_some(off)
    }
}

/// The block offset of index node `id` (the node's fields are the 16 bytes at the payload's
/// granule, `id * 16`, just after the header).
#[inline]
pub(crate) const fn off_of(id: u32) -> usize {
    id as usize * GRAIN - W
}

/// The index node id of the block at `off`: its payload's granule number.
#[inline]
pub(crate) const fn id_of(off: usize) -> u32 {
    ((off + W) / GRAIN) as u32
}

/// The heap's memory as the index's [`Space`]: nodes inside the free blocks (four 32-bit fields
/// after the header), ids the payloads' granule numbers (so they sort by address), neighbours by
/// the boundary tags.
impl Space for Mem {
    #[inline]
    fn field(&self, x: u32, f: usize) -> u32 {
        self.u32_at(x as usize * GRAIN + f)
    }
    #[inline]
    fn set_field(&mut self, x: u32, f: usize, v: u32) {
        self.set_u32_at(x as usize * GRAIN + f, v)
    }
    #[inline]
    fn pos(&self, x: u32) -> usize {
        x as usize
    }
    #[inline]
    fn below(&self, a: u32, b: u32) -> bool {
        // Ids are granule numbers, and `NIL` is the largest.
        a < b
    }
    #[inline]
    fn addr(&self, x: u32) -> usize {
        off_of(x)
    }
    #[inline]
    fn size(&self, x: u32) -> usize {
        Mem::size(self, off_of(x))
    }
    #[inline]
    fn shift(&self) -> u32 {
        GRAIN.trailing_zeros()
    }
    #[inline]
    fn min_block(&self) -> usize {
        MIN_BLOCK
    }
    #[inline]
    fn is_node(&self, x: u32) -> bool {
        x > 0
            && (x as usize)
                .checked_mul(GRAIN)
                .and_then(|o| o.checked_add(GRAIN))
                .is_some_and(|e| self.end >= W && e <= self.sentinel())
    }
    #[inline]
    fn free_before(&self, x: u32) -> Option<u32> {
        Mem::free_before(self, off_of(x)).map(id_of)
    }
    #[inline]
    fn free_after(&self, x: u32, size: usize) -> Option<u32> {
        self.free_at(off_of(x) + size).map(id_of)
    }
    #[inline]
    fn split_off(&mut self, x: u32, at: usize) -> u32 {
        // The block's tags are written by whoever marks it (free or live).
        id_of(off_of(x) + at)
    }
    #[inline]
    fn absorb(&mut self, _x: u32, _y: u32) {
        // The merged block's tags are written when it is marked free.
    }
    #[inline]
    fn mark_free(&mut self, x: u32, size: usize, prev_used: Option<bool>) {
        self.set_free(off_of(x), size, prev_used)
    }
    #[inline]
    fn mark_rest_free(&mut self, r: u32, size: usize) {
        // The next header's `PREV_USED` is clear already: the block it followed was free.
        self.set_free_tags(off_of(r), size, Some(true));
    }
    #[inline]
    fn resize_free(&mut self, x: u32, size: usize) {
        Mem::resize_free(self, off_of(x), size)
    }
    #[cfg(target_pointer_width = "64")]
    const CARRIES_RANK: bool = true;
    #[cfg(target_pointer_width = "64")]
    #[inline]
    fn carried(&self, x: u32) -> u32 {
        (self.word(off_of(x)) >> SLACK_SHIFT) as u32
    }
    #[cfg(target_pointer_width = "64")]
    #[inline]
    fn set_carried(&mut self, x: u32, rank: u32) {
        let off = off_of(x);
        let h = self.word(off) & (SIZE_MASK | FLAGS);
        self.set_word(off, h | (rank as usize) << SLACK_SHIFT);
    }
}
