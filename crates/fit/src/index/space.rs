//! Where the index's nodes live: the seam between the index (which free block) and the blocks
//! themselves (their sizes, their neighbours, the four fields of a node).
//!
//! ```text
//!                      Index<S: Space>  (policy: search, take, insert; treap and bins)
//!                     /                \
//!   S = heap::Mem: in band             S = offsets::Table: out of band
//!   node id = the payload's granule    node id = a slot of a Vec
//!   fields in the free block's bytes   fields in the slot
//!   neighbours by boundary tags        neighbours by prev/next links
//!   (FitHeap, real memory)             (FitOffsets, a space never touched)
//! ```
//!
//! The index only asks a space what this trait offers, so the same decisions (and the same
//! code) serve the real heap and the offset manager.

use super::treap::NIL;

/// The blocks the index works over, and where its nodes' fields are kept.
///
/// A node id names one block while it is free. [`pos`](Space::pos) orders the ids by address
/// (for the heap the id itself, which grows with the address).
pub(crate) trait Space {
    /// Field `f` (a byte offset: 0, 4, 8 or 12) of node `x`.
    fn field(&self, x: u32, f: usize) -> u32;
    /// Sets field `f` of node `x`.
    fn set_field(&mut self, x: u32, f: usize, v: u32);
    /// A key that sorts the nodes by address.
    fn pos(&self, x: u32) -> usize;
    /// Whether `a` lies below `b` by address, `NIL` (`u32::MAX`) above every node. The heap's
    /// ids sort as their addresses, so its answer is `a < b` with no lookup.
    #[inline]
    fn below(&self, a: u32, b: u32) -> bool {
        b == NIL || (a != NIL && self.pos(a) < self.pos(b))
    }
    /// The block's offset (what `Chunk::addr` and the walk report).
    fn addr(&self, x: u32) -> usize;
    /// The block's size in bytes.
    fn size(&self, x: u32) -> usize;
    /// log2 of the granule: block sizes are multiples of `1 << shift`.
    fn shift(&self) -> u32;
    /// The smallest free block (a front piece or a rest smaller than this is not kept free).
    fn min_block(&self) -> usize;
    /// Whether `x` can name a block at all (the walk asks before following a link).
    fn is_node(&self, x: u32) -> bool;
    /// The free block just below block `x`, if there is one.
    fn free_before(&self, x: u32) -> Option<u32>;
    /// The free block just above block `x`, whose size is `size` (the heap finds the neighbour
    /// at `x + size`; a table follows its link).
    fn free_after(&self, x: u32, size: usize) -> Option<u32>;
    /// The node of the block that starts `at` bytes into block `x` (`0 < at < size(x)`), just
    /// above it; `x`'s own size is left for the caller to set.
    fn split_off(&mut self, x: u32, at: usize) -> u32;
    /// Block `x` takes in `y`, the block just above it (its size is the caller's to set).
    fn absorb(&mut self, x: u32, y: u32);
    /// Marks block `x` free with `size` bytes. `prev_used`: whether the block below is live
    /// (`None`: as recorded), for a space that records it.
    fn mark_free(&mut self, x: u32, size: usize, prev_used: Option<bool>);
    /// Marks `r`, the rest carved from the high end of a free block, free with `size` bytes
    /// after a live block (the piece carved below it). The block after it already follows a
    /// free block, so a space that records that for it (the heap's `PREV_USED`) leaves it.
    #[inline]
    fn mark_rest_free(&mut self, r: u32, size: usize) {
        self.mark_free(r, size, Some(true));
    }
    /// Changes the size of the free block `x` (growing: into what it absorbed; shrinking: the
    /// bytes after it are the caller's).
    fn resize_free(&mut self, x: u32, size: usize);
    /// Whether [`carried`](Space::carried) keeps the ranks set (else it answers 0). A space
    /// that carries them numbers its nodes in address order (the address tree breaks ties of
    /// ranks by the id, so by address: see [`Treap::priority`](super::treap::Treap::priority)).
    const CARRIES_RANK: bool = false;
    /// The rank node `x` carries (16 bits), which the tree's heap order compares before its
    /// tie-break, the address or the id's hash ([`Treap`](super::treap::Treap)): a rest that
    /// takes its block's place in the tree takes its rank too, so it needs no rotation. A
    /// space with no room for it answers 0 (the order is then the hash's alone).
    #[inline]
    fn carried(&self, _x: u32) -> u32 {
        0
    }
    /// Sets the rank node `x` carries (below 2^16); a space with no room ignores it.
    #[inline]
    fn set_carried(&mut self, _x: u32, _rank: u32) {}
}
