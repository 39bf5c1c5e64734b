//! The choice both managers make the same way over either mechanism: which free block serves a
//! request, with best fit's wilderness rule and the front piece a larger alignment leaves.
//!
//! ```text
//!   request (need bytes, alignment)
//!     -> the mechanism's search (list or index) by the policy, never the wilderness,
//!        among blocks that hold `front(addr) + need` bytes
//!     -> else the wilderness (the free block ending the space) if it holds them
//!     -> (block, front): carve `need` bytes `front` bytes into the block
//! ```
//!
//! `FitHeap` (real memory, front pieces at least 32 bytes) and `FitOffsets` (an offset space,
//! front pieces at least one granule) call [`find`] with their own measure of the front piece.

use crate::list::Chunk;

/// A mechanism that finds free blocks by a policy: the heap's list or index, the offsets'
/// index. Ids are the mechanism's names for its free blocks.
pub(crate) trait Search {
    /// A free block's name.
    type Id: Copy;
    /// The block the policy picks for `need` bytes among those `fits` accepts (`None`: every
    /// block of `need` bytes or more), never `skip`.
    fn search(
        &self,
        need: usize,
        fits: Option<impl Fn(Chunk) -> bool>,
        skip: Option<Self::Id>,
    ) -> Option<Self::Id>;
    /// The free block `id`.
    fn chunk(&self, id: Self::Id) -> Chunk;
}

/// The free block for `need` bytes and the front piece to leave free in front of it (`front`:
/// the bytes from a block's start to where an aligned request may begin, 0 or at least the
/// smallest block, `None` if it overflows; `aligned`: whether `front` can be non-zero at all).
///
/// `wilderness` is best fit's free block that ends the space, which can grow: it serves only when
/// no other block fits (dlmalloc's rule). Without the rule a growing array is carved from the end
/// while small requests fill the rest of it, so it can never grow in place.
#[inline]
pub(crate) fn find<M: Search>(
    m: &M,
    need: usize,
    wilderness: Option<M::Id>,
    aligned: bool,
    front: impl Fn(usize) -> Option<usize>,
) -> Option<(M::Id, usize)> {
    if !aligned {
        // Every block of `need` bytes or more takes the request.
        return match m.search(need, None::<fn(Chunk) -> bool>, wilderness) {
            Some(id) => Some((id, 0)),
            None => wilderness
                .filter(|&w| m.chunk(w).size >= need)
                .map(|w| (w, 0)),
        };
    }
    let fits = |c: Chunk| {
        front(c.addr)
            .and_then(|f| f.checked_add(need))
            .is_some_and(|n| n <= c.size)
    };
    let id = match m.search(need, Some(fits), wilderness) {
        Some(id) => id,
        None => wilderness.filter(|&w| fits(m.chunk(w)))?,
    };
    Some((id, front(m.chunk(id).addr)?))
}
