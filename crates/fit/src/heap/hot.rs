//! The common path: an allocation without alignment, and a free that merges, written for the
//! index and the block format together, so that each tag word is read and written once and no
//! layer stands between the bins and the header.
//!
//! ```text
//!   allocate (a bin's root)                            free (physical coalescing)
//!   best: the first non-empty bin >= need, its root    PREV_USED clear? the block before (its
//!   unless the wilderness; first: the lowest root        footer gives it) leaves the index
//!   (suffix minima) or tree block; worst: the largest
//!   |hdr| root .............................|          next header not USED? it leaves too
//!   |hdr| carved       |hdr| rest    |footer|          |hdr| merged block ........... |footer|
//!    live, written once  free, to its bin               written once, to its bin or the tree
//! ```
//!
//! Each policy's choice is the index's own (`Index::best_in_bins` and `best_in_tree`,
//! `first_fit`, `next_fit`, `worst_fit`: what `Index::search` answers for a request without
//! alignment; best fit's wilderness last, as `search::find` has it). A block of the tree whose
//! rest takes its place there (`Index::rest_replaces`) is carved by `Index::carve_replacing`
//! with its live header written here (next fit's rover moves to the rest); any other by
//! `Index::take`.
//! Everything else (alignment, growth, the check word, OSTEP's header and rounding) goes the
//! general way: `FitHeap::find`, `Free::take`,
//! `Free::insert`. Both make the same decisions, block for block: `tests/differential.rs`
//! replays the recorded traces through this heap and through the list.

use core::ptr::NonNull;

use allocator_traits::MemorySource;

use super::FitHeap;
use super::block::{MIN_BLOCK, Mem, W, id_of, off_of, one_word_need};
use super::free::Free;
use crate::config::{Coalesce, Config, Policy};
use crate::index::Index;
use crate::index::bins::limit;
use crate::index::treap::Treap;

/// Which operations take the common path, decided once from the configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hot {
    /// Allocations with an alignment of 16 or less: the index, no rounding of the request,
    /// one header word (no check word, OSTEP's header at most a word).
    alloc: bool,
    /// Frees: the index with physical coalescing.
    free: bool,
}

impl Hot {
    /// The paths `config` allows; `overhead` is the heap's bytes per live block.
    pub(super) const fn new(config: &Config, overhead: usize) -> Self {
        let index = config.uses_index();
        Hot {
            alloc: index && config.align <= 1 && overhead == W,
            free: index && matches!(config.coalesce, Coalesce::Physical),
        }
    }
}

impl<M: MemorySource> FitHeap<M> {
    /// An allocation of `size` bytes aligned to 16 or less on the common path, its stats
    /// recorded; `None` where the path does not apply or finds nothing (the general path then
    /// decides, the same way, growing the heap if it must).
    #[inline]
    pub(super) fn allocate_hot(&mut self, size: usize) -> Option<NonNull<[u8]>> {
        if !self.hot.alloc {
            return None;
        }
        // `hot.alloc` holds only in `block_need`'s one-word setting.
        let need = one_word_need(size)?;
        let (x, root) = self.pick(need)?;
        let Free::Index(idx) = &mut self.free else {
            return None;
        };
        let off = off_of(x);
        let h = idx.space.header(off);
        let have = h.size();
        debug_assert_eq!(root, idx.is_root(x, have));
        let held = if !root {
            carve_tree_node(idx, x, have, need, size)
        } else {
            idx.pop_root(x, have);
            let back = have - need;
            if back >= MIN_BLOCK {
                // The rest after a live block; its next header's `PREV_USED` is clear already
                // (the root was free).
                let rest = off + need;
                idx.space.set_free_tags(rest, back, Some(true));
                idx.add(id_of(rest), back);
                idx.space
                    .set_live_header(off, need, need - W - size, Some(h.prev_used()));
                need
            } else {
                idx.space
                    .set_live(off, have, have - W - size, Some(h.prev_used()));
                have
            }
        };
        self.stats.alloc(size, held);
        Some(self.payload(off, held))
    }

    /// The free block the policy picks for `need` bytes (no alignment), with whether it is a
    /// bin's root ([`Index::is_root`], known here without asking), or `None` (the heap must
    /// grow; or not the index).
    #[inline]
    fn pick(&self, need: usize) -> Option<(u32, bool)> {
        let Free::Index(idx) = &self.free else {
            return None;
        };
        let mem = &idx.space;
        match self.config.policy {
            Policy::BestFit => {
                if mem.end == 0 {
                    return None;
                }
                let end = mem.sentinel();
                if need < limit(mem)
                    && let Some(x) = idx.best_in_bins(need, end)
                {
                    return Some((x, true));
                }
                // Past the bins, or nothing in them but the wilderness: the tree, never the
                // wilderness, which serves last (`search::find`'s rule).
                let wild = mem.free_before(end).map(id_of);
                if let Some(x) = idx.best_in_tree(need, wild) {
                    return Some((x, false));
                }
                let w = wild?;
                let size = mem.size(off_of(w));
                (size >= need).then(|| (w, idx.is_root(w, size)))
            }
            Policy::FirstFit => idx.first_fit(need),
            Policy::NextFit => idx.next_fit(need).map(|x| (x, false)),
            Policy::WorstFit => idx.worst_fit(need),
        }
    }

    /// Returns the live block at `off` of `size` bytes to the free blocks: merged with its free
    /// neighbours (as `Index::insert` merges), tagged once, indexed; then the heap's end may go
    /// back to the source.
    pub(super) fn release(&mut self, off: usize, size: usize) {
        let Free::Index(idx) = &mut self.free else {
            return self.release_general(off, size);
        };
        if !self.hot.free {
            return self.release_general(off, size);
        }
        let h = idx.space.header(off);
        let (mut start, mut total, mut keeps_place) = (off, size, false);
        if !h.prev_used() {
            // The free block before (physical coalescing: its own `PREV_USED` is set).
            let psize = idx.space.word(off - W);
            start = off - psize;
            total += psize;
            // This block's header free first: a second free of it is a double free, though
            // the header now lies inside the merged block.
            idx.space.mark_free_header(off);
            keeps_place = idx.keeps_place(psize);
            if !keeps_place {
                idx.drop_merged(id_of(start), psize, id_of(start));
            }
        }
        let next = off + size;
        let nh = idx.space.header(next);
        // The free block after, if it is a node of the tree by address that the merged block
        // replaces there: its links, read before the merged block's tags are written.
        let mut replaced = None;
        if !nh.used() {
            // The free block after (never the sentinel, which is marked used); the block after
            // it has its `PREV_USED` clear already.
            if idx.keeps_place(nh.size()) && !keeps_place {
                replaced = Some((id_of(next), Treap::links(&idx.space, id_of(next))));
            } else {
                idx.drop_merged(id_of(next), nh.size(), id_of(start));
            }
            total += nh.size();
        } else {
            idx.space.clear_prev_used(next);
        }
        // A block that keeps its place in the tree keeps its header's rank (and its
        // `PREV_USED`, which is set: the block before it is live).
        let prev_used = if keeps_place { None } else { Some(true) };
        idx.space.set_free_tags(start, total, prev_used);
        if keeps_place {
            idx.regrown(id_of(start));
        } else if let Some((n, links)) = replaced {
            idx.merged_replacing(n, links, id_of(start));
        } else {
            idx.add(id_of(start), total);
        }
        self.trim_sized(start, total);
    }
}

/// [`FitHeap::allocate_hot`]'s carve of `need` bytes for a request of `size` from the low end of
/// `x`, a node of the tree of `have` bytes; returns the bytes held.
#[inline(always)]
fn carve_tree_node(idx: &mut Index<Mem>, x: u32, have: usize, need: usize, size: usize) -> usize {
    let off = off_of(x);
    let back = have - need;
    if back >= MIN_BLOCK && idx.rest_replaces(x, have, back) {
        // The rest takes the block's place there, its tags written once.
        idx.carve_replacing(x, need, back);
        idx.space.set_live_header(off, need, need - W - size, None);
        need
    } else {
        // The general carve (next fit's rover moves there); one header word, so the usable
        // bytes are the block less a word.
        let held = idx.take(x, 0, need, MIN_BLOCK).1.size;
        idx.space.set_live(off, held, held - W - size, None);
        held
    }
}
