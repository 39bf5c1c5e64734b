//! The index: the fit policies' decisions in address order, found in O(log n) instead of by a
//! scan of the free list.
//!
//! Wilson et al. separate the *policy* (which free block serves a request) from the *mechanism*
//! (how it is found). The list ([`crate::list`]) finds a block by walking every chunk; the index
//! finds the same block through exact-size bins (the module `bins`) and a tree (the module
//! `treap`) of the free blocks:
//!
//! ```text
//!   policy      the list (address order)                 the index
//!   first fit   lowest address that fits                 tree by address, each node knowing the
//!   next fit    first fit from the rover, wrapping         largest size below it: descend to the
//!                                                          leftmost subtree that has room
//!   best fit    smallest size that fits, lowest address  tree by (size, address): the first node
//!               among equals                               at or above (need, 0)
//!   worst fit   largest size, lowest address among       the same tree: the largest size, then
//!               equals                                     the lowest address of that size
//!   (first, best and worst fit keep the blocks below 128 granules in the bins instead)
//! ```
//!
//! Every other step is the list's: a block is cut from the low end of the chosen one (or behind a
//! front piece for a larger alignment), the rest stays free; a freed block merges with its free
//! physical neighbours before it is indexed; the next-fit rover moves exactly as the list's does.
//! Where a request's alignment makes the first candidate unusable, the search goes on in the
//! policy's order (the next larger block, the next address). So in every configuration the index
//! serves (address order, physical or no coalescing) it hands out the same address as the list
//! for every request: `tests/differential.rs` replays the recorded traces and random sequences
//! through both and compares.
//!
//! The index works over a `Space` (the module `space`): where the blocks' sizes, neighbours and
//! the nodes' fields are kept. The real heap's is its memory (nodes inside the free blocks,
//! neighbours by boundary tags); the offset manager's ([`crate::offsets`]) is a table out of
//! band. One index, one set of decisions, for both.

pub(crate) mod bins;
pub(crate) mod space;
pub(crate) mod treap;

use allocator_traits::Corruption;

use crate::config::{Coalesce, Config, Policy};
use crate::list::{Chunk, split};
use crate::search::Search;
use bins::{BINS, Bins, bin_of, limit, lower};
pub(crate) use space::Space;
pub(crate) use treap::NIL;
use treap::{Key, Treap};

/// The free blocks of a space in bins and a tree (see the [module docs](self)). Blocks are named
/// by their node ids (`u32`), which the space gives.
#[derive(Debug)]
// `space` first, in a fixed place: the heap reaches its memory at one offset whichever
// mechanism it runs (see `heap::free::Free`).
#[repr(C)]
pub(crate) struct Index<S> {
    /// The blocks and where the nodes live (for the heap, its memory: its `end` moves as the
    /// heap grows and trims).
    pub(crate) space: S,
    /// Every free block not in a bin, once: by address for first and next fit, by (size,
    /// address) for best and worst fit.
    tree: Treap,
    /// First, best and worst fit: the free blocks below [`limit`], one bin per size (next fit
    /// keeps every block in the tree: it asks for the block after an address).
    bins: Bins,
    /// Whether blocks below [`limit`] go to the bins (every policy but next fit).
    exact: bool,
    policy: Policy,
    /// Freed blocks merge with their free physical neighbours (else never).
    physical: bool,
    /// Nodes in the tree and the bins.
    len: usize,
    /// For next fit: a block of the tree where the next search starts (`None`: the lowest);
    /// `None` for the other policies.
    rover: Option<u32>,
}

impl<S: Space> Index<S> {
    /// An empty index for `config` (address order; physical or no coalescing) over `space`.
    pub(crate) const fn new(config: &Config, space: S) -> Self {
        let key = match config.policy {
            Policy::FirstFit | Policy::NextFit => Key::Addr,
            Policy::BestFit | Policy::WorstFit => Key::Size,
        };
        Index {
            space,
            tree: Treap::new(key),
            bins: Bins::new(matches!(config.policy, Policy::FirstFit)),
            exact: !matches!(config.policy, Policy::NextFit),
            policy: config.policy,
            physical: matches!(config.coalesce, Coalesce::Physical),
            len: 0,
            rover: None,
        }
    }

    /// Number of free blocks.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The free block `x` as a chunk (its offset and size).
    pub(crate) fn chunk(&self, x: u32) -> Chunk {
        Chunk {
            addr: self.space.addr(x),
            size: self.space.size(x),
        }
    }

    /// The lowest free block of the tree above `x` (next fit's successor in the list).
    fn after(&self, x: u32) -> Option<u32> {
        let n = self.tree.next(&self.space, x);
        (n != NIL).then_some(n)
    }

    /// Where the next next-fit search starts (`None`: the head, or another policy).
    pub(crate) fn rover(&self) -> Option<u32> {
        if self.policy != Policy::NextFit {
            return None;
        }
        self.rover.or_else(|| {
            let f = self.tree.first(&self.space);
            (f != NIL).then_some(f)
        })
    }

    /// Whether a free block of `size` bytes lives in a bin (else in the tree).
    #[inline]
    fn in_bins(&self, size: usize) -> bool {
        self.exact && size < limit(&self.space)
    }

    /// Puts the free block `x` (its size set) into its bin or the tree.
    #[inline(always)]
    fn attach(&mut self, x: u32) {
        self.attach_sized(x, self.space.size(x));
    }

    /// [`attach`](Self::attach) for a block whose size, `size`, the caller knows.
    #[inline(always)]
    fn attach_sized(&mut self, x: u32, size: usize) {
        if self.in_bins(size) {
            let b = bin_of(&self.space, size);
            self.bins.insert(&mut self.space, b, x);
        } else {
            self.tree.insert(&mut self.space, x);
        }
    }

    /// Takes the free block `x` out of its bin or the tree (its size still the one it was
    /// attached with).
    #[inline(always)]
    fn detach(&mut self, x: u32) {
        self.detach_sized(x, self.space.size(x));
    }

    /// [`detach`](Self::detach) for a block of `size` bytes, the size it was attached with.
    #[inline(always)]
    fn detach_sized(&mut self, x: u32, size: usize) {
        if self.in_bins(size) {
            let b = bin_of(&self.space, size);
            self.bins.remove(&mut self.space, b, x);
        } else {
            self.tree.remove(&mut self.space, x);
        }
    }

    /// Marks block `x` free with `size` bytes and indexes it. `prev_used`: see
    /// [`Space::mark_free`].
    #[inline]
    fn link(&mut self, x: u32, size: usize, prev_used: Option<bool>) -> u32 {
        self.space.mark_free(x, size, prev_used);
        self.attach(x);
        self.len += 1;
        x
    }

    #[inline]
    fn unlink(&mut self, x: u32) {
        self.detach(x);
        self.len -= 1;
    }

    /// Changes the size of the free block `x` (its address stays).
    fn resize(&mut self, x: u32, size: usize) {
        let old = self.space.size(x);
        if self.tree.key == Key::Addr && !self.in_bins(old) && !self.in_bins(size) {
            self.space.resize_free(x, size);
            self.tree.refresh_up(&mut self.space, x);
        } else {
            self.detach(x);
            self.space.resize_free(x, size);
            self.attach(x);
        }
    }

    /// The block the policy picks for `need` bytes among those `fits` accepts (`fits` may refuse
    /// a block of `need` bytes or more for its alignment; the search then goes on in the policy's
    /// order; `None` accepts every block of `need` bytes or more), never `skip`.
    #[inline]
    pub(crate) fn search(
        &self,
        need: usize,
        fits: Option<impl Fn(Chunk) -> bool>,
        skip: Option<u32>,
    ) -> Option<u32> {
        let Some(fits) = fits else {
            // Every candidate the policy offers first has `need` bytes or more: it is taken.
            return match self.policy {
                Policy::BestFit => self.best_fit(need, skip),
                Policy::FirstFit => self.first_fit(need).map(|(x, _)| x),
                Policy::NextFit => self.next_fit(need),
                Policy::WorstFit => self.worst_fit(need).map(|(x, _)| x),
            };
        };
        let mem = &self.space;
        let ng = u32::try_from(need >> mem.shift()).ok()?;
        let t = &self.tree;
        // The block never to pick: best fit's wilderness, the highest block, so never a bin's
        // root unless alone in its bin.
        let skip = skip.unwrap_or(NIL);
        // Every candidate the searches below offer has `need` bytes or more; `fits` may refuse
        // it for its alignment.
        let ok = |x: u32| x != skip && fits(self.chunk(x));
        // The first bin a request of `need` bytes may use (`BINS`: none).
        let from = if self.exact && need < limit(mem) {
            bin_of(mem, need.max(mem.min_block()))
        } else {
            BINS
        };
        // By address in the tree from position `lo`, below `hi`: the lowest block that fits.
        let by_address = |mut lo: usize, hi: usize| loop {
            let x = t.fit_from(mem, lo, ng);
            if x == NIL || mem.pos(x) >= hi {
                return NIL;
            }
            if ok(x) {
                return x;
            }
            lo = mem.pos(x) + 1;
        };
        // By (size, address) in the tree from the first of `ng` granules or more.
        let by_size = || {
            let mut x = t.lower_bound(mem, ng);
            while x != NIL {
                if ok(x) {
                    return x;
                }
                x = t.next(mem, x);
            }
            NIL
        };
        let found = match self.policy {
            Policy::FirstFit => {
                let lowest_bin = if from < BINS {
                    self.bins.lowest_from(from)
                } else {
                    NIL
                };
                let x = lower(mem, lowest_bin, t.lowest_fit(mem, ng, lowest_bin));
                if x != NIL && ok(x) {
                    x
                } else {
                    // The alignment refused the lowest: the lowest that fits, bin by bin.
                    let mut best = by_address(0, usize::MAX);
                    for b in from..BINS {
                        best = lower(mem, best, self.bins.lowest_accepted(mem, b, ok));
                    }
                    best
                }
            }
            Policy::NextFit => match self.rover {
                // The rover is a node of the tree (the walk checks it), so the lowest block at
                // or above it is found from it, with no walk down from the root; then, wrapping,
                // the lowest below it.
                Some(r) => {
                    let mut x = t.fit_at(mem, r, ng);
                    while x != NIL && !ok(x) {
                        x = t.fit_after(mem, x, ng);
                    }
                    if x == NIL {
                        by_address(0, mem.pos(r))
                    } else {
                        x
                    }
                }
                None => by_address(0, usize::MAX),
            },
            Policy::BestFit => {
                let mut b = from;
                let mut x = NIL;
                while let Some(bin) = self.bins.first_from(b) {
                    let root = self.bins.roots[bin];
                    x = if ok(root) {
                        root
                    } else if root == skip {
                        // The wilderness is the highest block: alone in its bin.
                        NIL
                    } else {
                        self.bins.lowest_accepted(mem, bin, ok)
                    };
                    if x != NIL {
                        break;
                    }
                    b = bin + 1;
                }
                if x == NIL { by_size() } else { x }
            }
            Policy::WorstFit => {
                // Sizes from the largest down (the tree's, then the bins'); within a size,
                // addresses up.
                let mut x = NIL;
                let mut top = t.last(mem);
                while top != NIL && Treap::gsize(mem, top) >= ng {
                    let size = Treap::gsize(mem, top);
                    let first = t.lower_bound(mem, size);
                    let mut y = first;
                    while y != NIL && Treap::gsize(mem, y) == size {
                        if ok(y) {
                            return Some(y);
                        }
                        y = t.next(mem, y);
                    }
                    top = t.prev(mem, first);
                }
                let mut b = BINS;
                while b > from {
                    let Some(bin) = self.bins.last_upto(b - 1) else {
                        break;
                    };
                    if bin < from {
                        break;
                    }
                    let root = self.bins.roots[bin];
                    x = if ok(root) {
                        root
                    } else {
                        self.bins.lowest_accepted(mem, bin, ok)
                    };
                    if x != NIL {
                        break;
                    }
                    b = bin;
                }
                x
            }
        };
        (found != NIL).then_some(found)
    }

    // The heap's common path (`heap::hot`): a request without alignment and a free, in the
    // steps `search`, `take` and `insert` take for them, with the block's tags left to the heap
    // (it knows the block format, and writes each word once).

    /// Best fit's block for `need` bytes (any block of `need` bytes or more takes it), never
    /// `skip` (the wilderness, which the caller considers last): the bins' first, else the
    /// tree's first of `need` bytes or more.
    #[inline]
    fn best_fit(&self, need: usize, skip: Option<u32>) -> Option<u32> {
        let mem = &self.space;
        if need < limit(mem) {
            let end = skip.map_or(usize::MAX, |w| mem.addr(w) + mem.size(w));
            if let Some(x) = self.best_in_bins(need, end) {
                return Some(x);
            }
        }
        self.best_in_tree(need, skip)
    }

    /// Best fit's block for `need` bytes in the tree (the blocks past the bins): the first of
    /// `need` bytes or more by (size, address), never `skip` (the wilderness).
    #[inline]
    pub(crate) fn best_in_tree(&self, need: usize, skip: Option<u32>) -> Option<u32> {
        let mem = &self.space;
        let x = self
            .tree
            .lower_bound(mem, u32::try_from(need >> mem.shift()).ok()?);
        let x = match x {
            x if x != NIL && Some(x) == skip => self.tree.next(mem, x),
            x => x,
        };
        (x != NIL).then_some(x)
    }

    /// Next fit's block for `need` bytes: the lowest with room at or after the rover, else,
    /// wrapping, the lowest below it.
    #[inline]
    pub(crate) fn next_fit(&self, need: usize) -> Option<u32> {
        let (mem, t) = (&self.space, &self.tree);
        debug_assert!(self.policy == Policy::NextFit);
        let ng = u32::try_from(need >> mem.shift()).ok()?;
        let x = match self.rover {
            // The rover is a node of the tree (the walk checks it): the search starts from it,
            // with no walk down from the root.
            Some(r) => match t.fit_at(mem, r, ng) {
                // Wrapped: from the lowest address, below the rover.
                NIL => t.lowest_fit(mem, ng, r),
                x => x,
            },
            None => t.lowest_fit(mem, ng, NIL),
        };
        (x != NIL).then_some(x)
    }

    /// Worst fit's block for `need` bytes: the largest (the tree's last size, at its lowest
    /// address), else the highest non-empty bin's root, if it holds `need` bytes; with whether
    /// it is a bin's root.
    #[inline]
    pub(crate) fn worst_fit(&self, need: usize) -> Option<(u32, bool)> {
        let (mem, t) = (&self.space, &self.tree);
        debug_assert!(self.policy == Policy::WorstFit);
        let ng = u32::try_from(need >> mem.shift()).ok()?;
        let top = t.last(mem);
        if top != NIL {
            let size = Treap::gsize(mem, top);
            return (size >= ng).then(|| (t.lower_bound(mem, size), false));
        }
        if need >= limit(mem) {
            return None;
        }
        let bin = self.bins.last_upto(BINS - 1)?;
        (bin >= bin_of(mem, need.max(mem.min_block()))).then(|| (self.bins.roots[bin], true))
    }

    /// Best fit's block for `need` bytes (below [`limit`]) from the bins, as
    /// [`search`](Self::search) picks it: the root of the first non-empty bin that holds it, never
    /// the block that ends at `end` (the wilderness: the highest block, so alone in its bin).
    /// `None` when no bin has one (the tree may).
    #[inline]
    pub(crate) fn best_in_bins(&self, need: usize, end: usize) -> Option<u32> {
        let mem = &self.space;
        debug_assert!(self.policy == Policy::BestFit && need < limit(mem));
        let mut b = bin_of(mem, need.max(mem.min_block()));
        loop {
            let bin = self.bins.first_from(b)?;
            let root = self.bins.roots[bin];
            if mem.addr(root) + mem.min_block() + (bin << mem.shift()) != end {
                return Some(root);
            }
            b = bin + 1;
        }
    }

    /// First fit's block for `need` bytes, as [`search`](Self::search) picks it: the lower of
    /// the bins' lowest root that holds it and the tree's lowest block that does; with whether
    /// it is the bins' (a bin's root).
    #[inline]
    pub(crate) fn first_fit(&self, need: usize) -> Option<(u32, bool)> {
        let mem = &self.space;
        debug_assert!(self.policy == Policy::FirstFit);
        let ng = u32::try_from(need >> mem.shift()).ok()?;
        let in_bins = if need < limit(mem) {
            self.bins
                .lowest_from(bin_of(mem, need.max(mem.min_block())))
        } else {
            NIL
        };
        let x = lower(mem, in_bins, self.tree.lowest_fit(mem, ng, in_bins));
        (x != NIL).then_some((x, x == in_bins))
    }

    /// Whether the free block `x` of `size` bytes is the root of its bin (the lowest block of
    /// its size), which [`pop_root`](Self::pop_root) takes; else it is a node of the tree.
    #[inline]
    pub(crate) fn is_root(&self, x: u32, size: usize) -> bool {
        self.in_bins(size) && self.bins.roots[bin_of(&self.space, size)] == x
    }

    /// Takes the root `x` of the bin of blocks of `size` bytes out of the index (its tags are
    /// the caller's to rewrite).
    #[inline]
    pub(crate) fn pop_root(&mut self, x: u32, size: usize) {
        let b = bin_of(&self.space, size);
        debug_assert_eq!(self.bins.roots[b], x);
        self.bins.pop(&mut self.space, b);
        self.len -= 1;
    }

    /// Indexes the free block `x` of `size` bytes, its tags written.
    #[inline]
    pub(crate) fn add(&mut self, x: u32, size: usize) {
        self.attach_sized(x, size);
        self.len += 1;
    }

    /// Takes the free block `x` of `size` bytes (the size it was indexed with) out of the index,
    /// for a merge into the block `into` (next fit's rover on `x` moves to it, as
    /// [`insert`](Self::insert) moves it).
    #[inline]
    pub(crate) fn drop_merged(&mut self, x: u32, size: usize, into: u32) {
        if self.rover == Some(x) {
            self.rover = Some(into);
        }
        self.detach_sized(x, size);
        self.len -= 1;
    }

    /// By address: the freed block `x`, merged up to and including its free neighbour above,
    /// `n`, a node of the tree ([`keeps_place`](Self::keeps_place) for its size), takes
    /// `n`'s place there (no node of the tree lies between them), carrying its rank: one pass
    /// instead of `n` leaving and `x` joining. `links` are `n`'s ([`Treap::links`]), read before
    /// `x`'s tags were written (its header holds the merged size). A rover on `n` moves to `x`,
    /// as [`drop_merged`](Self::drop_merged) moves it.
    #[inline]
    pub(crate) fn merged_replacing(&mut self, n: u32, links: [u32; 4], x: u32) {
        if self.rover == Some(n) {
            self.rover = Some(x);
        }
        self.tree.replace(&mut self.space, n, links, x, true);
    }

    /// Whether a free block of `size` bytes that grows keeps its node where it is (a node of
    /// the tree by address: its place is its address), so that [`regrown`](Self::regrown)
    /// only corrects the largest sizes above it; else it leaves the index first and comes back
    /// with [`add`](Self::add).
    #[inline]
    pub(crate) fn keeps_place(&self, size: usize) -> bool {
        self.tree.key == Key::Addr && !self.in_bins(size)
    }

    /// The free block `x`, which [`keeps_place`](Self::keeps_place), has grown (its tags
    /// written).
    #[inline]
    pub(crate) fn regrown(&mut self, x: u32) {
        self.tree.grown(&mut self.space, x);
    }

    /// Carves `need` bytes starting `front` bytes into the free block `x`, exactly as
    /// [`FreeList::take`](crate::list::FreeList::take) does (the rover included). Returns the
    /// carved block's node (its state and size are the caller's to set) and its range.
    pub(crate) fn take(
        &mut self,
        x: u32,
        front: usize,
        need: usize,
        min_chunk: usize,
    ) -> (u32, Chunk) {
        let (carved, rest) = split(self.chunk(x), front, need, min_chunk);
        let back = rest.size;
        let next_fit = self.policy == Policy::NextFit;
        if front > 0 {
            let c = self.space.split_off(x, front);
            let r = (back > 0).then(|| self.space.split_off(c, carved.size));
            self.resize(x, front);
            let after = match r {
                Some(r) => Some(self.link(r, back, Some(true))),
                None => self.after(x),
            };
            if next_fit {
                self.rover = after;
            }
            (c, carved)
        } else if back > 0 {
            if self.rest_replaces(x, carved.size + back, back) {
                self.carve_replacing(x, carved.size, back);
            } else {
                self.unlink(x);
                let r = self.space.split_off(x, carved.size);
                let r = self.link(r, back, Some(true));
                self.rover_to_rest(x, r);
            }
            (x, carved)
        } else {
            if next_fit {
                self.rover = Some(x);
            }
            self.remove(x);
            (x, carved)
        }
    }

    /// Takes the free block `x` out of the index; a rover on it moves to the next block.
    pub(crate) fn remove(&mut self, x: u32) {
        if self.rover == Some(x) {
            self.rover = self.after(x);
        }
        self.unlink(x);
    }

    /// Grows the free block `x` to `size` in place.
    pub(crate) fn grow_chunk(&mut self, x: u32, size: usize) {
        self.resize(x, size);
    }

    /// Returns block `x` of `size` bytes to the index: merged with its free physical neighbours
    /// first (if coalescing), as [`FreeList::insert`](crate::list::FreeList::insert) does. The
    /// space must know `x` (for the heap: its header written, its `PREV_USED` bit right). Returns
    /// the merged block.
    pub(crate) fn insert(&mut self, x: u32, size: usize) -> u32 {
        let (mut x, mut size) = (x, size);
        let mut rover_merged = false;
        if self.physical && size > 0 {
            if let Some(p) = self.space.free_before(x) {
                let psize = self.space.size(p);
                if self.tree.key == Key::Addr && !self.in_bins(psize) {
                    return self.merge_into_tree_node(p, psize, x, size);
                }
                rover_merged |= self.rover == Some(p);
                self.rover = self.rover.filter(|&r| r != p);
                self.unlink(p);
                self.space.absorb(p, x);
                (x, size) = (p, psize + size);
            }
            if let Some(n) = self.space.free_after(x, size) {
                let nsize = self.space.size(n);
                if self.keeps_place(nsize) {
                    // `x` (merged with a block of a bin below, or with none) takes `n`'s place.
                    let links = Treap::links(&self.space, n);
                    self.space.absorb(x, n);
                    self.space.mark_free(x, size + nsize, None);
                    self.merged_replacing(n, links, x);
                    if rover_merged {
                        self.rover = Some(x);
                    }
                    return x;
                }
                rover_merged |= self.rover == Some(n);
                self.rover = self.rover.filter(|&r| r != n);
                size += self.space.size(n);
                self.unlink(n);
                self.space.absorb(x, n);
            }
        }
        let x = self.link(x, size, None);
        if rover_merged {
            self.rover = Some(x);
        }
        x
    }

    /// Whether the rest of `back` bytes of the tree's block `x`, carved from its low end, sorts
    /// where `x` does: by address always (no block lies between them); by (size, address)
    /// when the block before `x` sorts before the rest (as when the largest block, best fit's
    /// wilderness or worst fit's choice, stays the largest). The rest after another block
    /// compares by address as `x` does.
    #[inline]
    fn rest_keeps_place(&self, x: u32, back: usize) -> bool {
        if self.tree.key == Key::Addr {
            return true;
        }
        let mem = &self.space;
        let p = self.tree.prev(mem, x);
        if p == NIL {
            return true;
        }
        let (ps, rs) = (Treap::gsize(mem, p), (back >> mem.shift()) as u32);
        ps < rs || (ps == rs && mem.below(p, x))
    }

    /// Whether the rest of `back` bytes carved from the low end of the free block `x` of
    /// `size` bytes, a node of the tree, takes `x`'s place there
    /// ([`carve_replacing`](Self::carve_replacing)): both sizes past the bins, and the rest
    /// sorts where `x` does ([`rest_keeps_place`](Self::rest_keeps_place)).
    #[inline]
    pub(crate) fn rest_replaces(&self, x: u32, size: usize, back: usize) -> bool {
        !self.in_bins(size) && !self.in_bins(back) && self.rest_keeps_place(x, back)
    }

    /// Carves `carved` bytes from the low end of the block `x` of the tree where
    /// [`rest_replaces`](Self::rest_replaces): its rest, `back` bytes, marked free, takes `x`'s
    /// place in the tree instead of `x` leaving it and the rest joining it; next fit's rover (or
    /// a rover on `x`) moves to it. Returns the rest's node. The carved piece's tags are the
    /// caller's.
    #[inline(never)]
    pub(crate) fn carve_replacing(&mut self, x: u32, carved: usize, back: usize) -> u32 {
        // `x`'s links first: the rest's header may lie on `x`'s fields.
        let links = Treap::links(&self.space, x);
        let r = self.space.split_off(x, carved);
        self.space.mark_rest_free(r, back);
        self.tree.replace(&mut self.space, x, links, r, false);
        self.rover_to_rest(x, r);
        r
    }

    /// `x` was carved and `r` is its rest: next fit's rover moves to it, as does any rover on
    /// `x` (the list's `take` does the same).
    #[inline]
    fn rover_to_rest(&mut self, x: u32, r: u32) {
        if self.policy == Policy::NextFit || self.rover == Some(x) {
            self.rover = Some(r);
        }
    }

    /// By address, for a freed block `x` of `size` bytes whose free neighbour below, `p` of
    /// `psize` bytes, lives in the tree ([`insert`](Self::insert)): `p` stays in the tree (its
    /// place is the same) and grows by `x` and the free neighbour above, if any. Returns `p`.
    #[inline(never)]
    fn merge_into_tree_node(&mut self, p: u32, psize: usize, x: u32, size: usize) -> u32 {
        self.space.absorb(p, x);
        let mut size = psize + size;
        let mut rover_merged = false;
        if let Some(n) = self.space.free_after(p, size) {
            rover_merged = self.rover == Some(n);
            self.rover = self.rover.filter(|&r| r != n);
            size += self.space.size(n);
            self.unlink(n);
            self.space.absorb(p, n);
        }
        self.space.mark_free(p, size, None);
        self.tree.grown(&mut self.space, p);
        if rover_merged {
            self.rover = Some(p);
        }
        p
    }

    /// Whether the free block `x` is a node of the tree or a bin: its parent links to it (or it
    /// is a root). O(1); meaningful once the tree itself has been checked.
    pub(crate) fn is_listed(&self, x: u32) -> bool {
        let mem = &self.space;
        let size = mem.size(x);
        if self.in_bins(size) {
            let p = bins::prev(mem, x);
            return match p {
                NIL => self.bins.roots[bin_of(mem, size)] == x,
                p => self.node_in_heap(p) && self.bins.links_to(mem, bin_of(mem, size), p, x),
            };
        }
        match Treap::parent(mem, x) {
            NIL => self.tree.root == x,
            p => self.node_in_heap(p) && (Treap::left(mem, p) == x || Treap::right(mem, p) == x),
        }
    }

    /// Whether node `x` names a block of the space (checked before a link that may be corrupt
    /// is followed).
    fn node_in_heap(&self, x: u32) -> bool {
        x != NIL && self.space.is_node(x)
    }

    /// Checks the tree: links (each child's `parent` names its parent; the root's is `NIL`), the
    /// key order, the heap order of priorities, `aux`, the count, and that the rover is a node;
    /// `each` checks every block for the owner (a free block of the heap). Every link is checked
    /// to lie inside the heap before it is followed; O(nodes).
    pub(crate) fn check_invariants(
        &self,
        base: usize,
        mut each: impl FnMut(u32) -> Result<(), Corruption>,
    ) -> Result<(), Corruption> {
        const TREE: &str = "index";
        let mem = &self.space;
        let t = &self.tree;
        let at = |x: u32| base.wrapping_add(mem.addr(x));
        let root = t.root;
        let in_bins = self.bins.bitmap.iter().any(|&w| w != 0);
        Corruption::ensure(
            (root == NIL && !in_bins) == (self.len == 0),
            TREE,
            base,
            "the tree and the bins are empty iff the count is 0",
        )?;
        // Steps down a child link after checking it.
        let down = |p: u32, c: u32| -> Result<(), Corruption> {
            Corruption::ensure(
                self.node_in_heap(c),
                TREE,
                at(p),
                "a link points outside the heap",
            )?;
            Corruption::ensure(
                Treap::parent(mem, c) == p,
                TREE,
                at(c),
                "parent link is not the node above",
            )?;
            Corruption::ensure(
                self.tree.priority(mem, c) < self.tree.priority(mem, p),
                TREE,
                at(c),
                "priority above its parent's (heap order)",
            )
        };
        let leftmost = |mut x: u32| -> Result<u32, Corruption> {
            loop {
                let l = Treap::left(mem, x);
                if l == NIL {
                    return Ok(x);
                }
                down(x, l)?;
                x = l;
            }
        };
        let (mut count, mut prev) = (0usize, NIL);
        let (mut rover_listed, mut finger_listed) = (false, t.finger == NIL);
        let mut x = NIL;
        if root != NIL {
            Corruption::ensure(
                self.node_in_heap(root),
                TREE,
                base,
                "the root lies outside the heap",
            )?;
            Corruption::ensure(
                Treap::parent(mem, root) == NIL,
                TREE,
                at(root),
                "the root has a parent",
            )?;
            x = leftmost(root)?;
        }
        while x != NIL {
            count += 1;
            Corruption::ensure(
                count <= self.len,
                TREE,
                at(x),
                "more nodes than the count says (a cycle?)",
            )?;
            each(x)?;
            if prev != NIL {
                Corruption::ensure(t.less(mem, prev, x), TREE, at(x), "out of the key order")?;
            }
            let r = Treap::right(mem, x);
            if r != NIL {
                down(x, r)?;
            }
            if t.key == Key::Addr {
                let ok = Treap::aux(mem, x) == t.aux_of(mem, x);
                Corruption::ensure(
                    ok,
                    TREE,
                    at(x),
                    "aux is not the largest size of the subtree",
                )?;
            }
            rover_listed |= self.rover == Some(x);
            finger_listed |= t.finger == x;
            prev = x;
            if r != NIL {
                x = leftmost(r)?;
            } else {
                // Up to the first ancestor this subtree is on the left of.
                loop {
                    let p = Treap::parent(mem, x);
                    if p == NIL || Treap::left(mem, p) == x {
                        x = p;
                        break;
                    }
                    x = p;
                }
            }
        }
        let count = count + self.check_bins(base, &mut each, self.len - count)?;
        Corruption::ensure(
            count == self.len,
            TREE,
            base,
            "fewer nodes than the count says",
        )?;
        // The tree's inserts start from its finger: a node that left the tree would send them
        // into a free block's stale fields.
        Corruption::ensure(
            finger_listed,
            TREE,
            base,
            "the finger is not a node of the tree",
        )?;
        let rover_ok = match self.rover {
            None => true,
            Some(_) => self.policy == Policy::NextFit && rover_listed,
        };
        Corruption::ensure(
            rover_ok,
            "rover",
            base,
            "the rover is not a block of the index",
        )
    }
}

impl<S: Space> Index<S> {
    /// The bins' part of the walk: per bin, the bitmap bit and the suffix minimum agree with
    /// the root, every node has the bin's size, lies above its parent and is linked back by its
    /// `prev`; `each` checks every block. At most `budget` nodes are visited (more: a cycle).
    /// Returns the number of nodes.
    fn check_bins(
        &self,
        base: usize,
        each: &mut impl FnMut(u32) -> Result<(), Corruption>,
        budget: usize,
    ) -> Result<usize, Corruption> {
        const BIN: &str = "bins";
        let mem = &self.space;
        let bins = &self.bins;
        let at = |x: u32| base.wrapping_add(mem.addr(x));
        let mut count = 0usize;
        for b in 0..BINS {
            let root = bins.roots[b];
            let bit = bins.bitmap[b / 64] >> (b % 64) & 1 == 1;
            Corruption::ensure(
                bit == (root != NIL),
                "bin bitmap",
                b,
                "bit set iff the bin is not empty",
            )?;
            Corruption::ensure(
                self.exact || root == NIL,
                BIN,
                b,
                "next fit keeps every block in the tree",
            )?;
            if bins.suffix_kept {
                Corruption::ensure(
                    bins.suffix[b] == lower(mem, root, bins.suffix[b + 1]),
                    "bin suffix",
                    b,
                    "not the lowest root of the bins from here up",
                )?;
            }
            if root == NIL {
                Corruption::ensure(
                    bins.heads[b] == NIL,
                    BIN,
                    b,
                    "an empty bin with a first child",
                )?;
                continue;
            }
            Corruption::ensure(
                self.node_in_heap(root),
                BIN,
                b,
                "the root lies outside the heap",
            )?;
            let root_links = bins::prev(mem, root) == NIL && bins::sibling(mem, root) == NIL;
            Corruption::ensure(
                root_links,
                BIN,
                at(root),
                "a root with a prev or sibling link",
            )?;
            // A root's first child is `heads[b]`, not its `child` field.
            Corruption::ensure(
                bins::child(mem, root) == NIL,
                BIN,
                at(root),
                "a root with a child link",
            )?;
            // Preorder, each link checked before it is followed.
            let (mut x, mut parent) = (root, NIL);
            'walk: loop {
                count += 1;
                Corruption::ensure(
                    count <= budget,
                    BIN,
                    at(x),
                    "more nodes than the count says (a cycle?)",
                )?;
                let size = mem.size(x);
                Corruption::ensure(
                    (mem.min_block()..limit(mem)).contains(&size) && bin_of(mem, size) == b,
                    BIN,
                    at(x),
                    "a block of another size in the bin",
                )?;
                each(x)?;
                Corruption::ensure(
                    parent == NIL || mem.pos(x) > mem.pos(parent),
                    BIN,
                    at(x),
                    "below its parent (heap order)",
                )?;
                let c = bins.first_child(mem, b, x);
                if c != NIL {
                    Corruption::ensure(
                        self.node_in_heap(c),
                        BIN,
                        at(x),
                        "a link points outside the heap",
                    )?;
                    Corruption::ensure(
                        bins::prev(mem, c) == x,
                        BIN,
                        at(c),
                        "prev link is not the node above",
                    )?;
                    parent = x;
                    x = c;
                    continue;
                }
                loop {
                    let s = bins::sibling(mem, x);
                    if s != NIL {
                        Corruption::ensure(
                            self.node_in_heap(s),
                            BIN,
                            at(x),
                            "a link points outside the heap",
                        )?;
                        Corruption::ensure(
                            bins::prev(mem, s) == x,
                            BIN,
                            at(s),
                            "prev link is not the sibling before",
                        )?;
                        x = s;
                        break;
                    }
                    if parent == NIL {
                        break 'walk;
                    }
                    x = parent;
                    parent = bins.parent_of(mem, b, x);
                }
            }
        }
        if bins.suffix_kept {
            Corruption::ensure(
                bins.suffix[BINS] == NIL,
                "bin suffix",
                BINS,
                "the entry past the last bin is not empty",
            )?;
        }
        Ok(count)
    }
}

impl<S: Space> Search for Index<S> {
    type Id = u32;
    #[inline]
    fn search(
        &self,
        need: usize,
        fits: Option<impl Fn(Chunk) -> bool>,
        skip: Option<u32>,
    ) -> Option<u32> {
        Index::search(self, need, fits, skip)
    }
    #[inline]
    fn chunk(&self, x: u32) -> Chunk {
        Index::chunk(self, x)
    }
}

/// Ways for the walk's tests to plant a corruption.
#[cfg(test)]
impl<S: Space> Index<S> {
    pub(crate) fn unlink_for_test(&mut self, x: u32) {
        self.unlink(x);
    }
    /// Puts `x` into the tree whatever its size.
    pub(crate) fn link_for_test(&mut self, x: u32) {
        self.tree.insert(&mut self.space, x);
        self.len += 1;
    }
    pub(crate) fn set_root_for_test(&mut self, root: u32) {
        self.tree.root = root;
    }
    pub(crate) fn set_finger_for_test(&mut self, x: u32) {
        self.tree.finger = x;
    }
    pub(crate) fn set_rover_for_test(&mut self, x: u32) {
        self.rover = Some(x);
    }
    /// Makes the first child of the first non-empty bin's root the root, without relinking.
    pub(crate) fn swap_bin_root_for_test(&mut self) {
        let b = self.bins.first_from(0).unwrap();
        let c = self.bins.heads[b];
        assert_ne!(c, NIL, "a bin with two blocks");
        self.bins.roots[b] = c;
    }
    /// Gives the empty bin `b` a first child (`x`) in `heads`.
    pub(crate) fn head_of_empty_bin_for_test(&mut self, b: usize, x: u32) {
        assert_eq!(self.bins.roots[b], NIL, "an empty bin");
        self.bins.heads[b] = x;
    }
    /// Writes the first non-empty bin's root's first child into the root's own `child` field.
    pub(crate) fn child_in_bin_root_for_test(&mut self) {
        let b = self.bins.first_from(0).unwrap();
        let (r, c) = (self.bins.roots[b], self.bins.heads[b]);
        assert_ne!(c, NIL, "a bin with two blocks");
        self.space.set_field(r, 0, c);
    }
    pub(crate) fn flip_bitmap_for_test(&mut self, b: usize) {
        self.bins.bitmap[b / 64] ^= 1 << (b % 64);
    }
    /// Sets the bins' suffix entry `b` to node `x`.
    pub(crate) fn spoil_suffix_for_test(&mut self, b: usize, x: u32) {
        self.bins.suffix[b] = x;
    }
    /// Swaps the root's children (keeping their parent links): the key order breaks.
    pub(crate) fn swap_children_for_test(&mut self) {
        let r = self.tree.root;
        let (l, rt) = (Treap::left(&self.space, r), Treap::right(&self.space, r));
        self.space.set_field(r, 0, rt);
        self.space.set_field(r, 4, l);
    }
}
