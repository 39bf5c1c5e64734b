//! The index: the fit policies' decisions in address order, found in O(log n) instead of by a
//! scan of the free list.
//!
//! Wilson et al. separate the *policy* (which free block serves a request) from the *mechanism*
//! (how it is found). The list ([`crate::list`]) finds a block by walking every chunk; the index
//! finds the same block through a tree of the free blocks (the module `treap`), kept inside the
//! blocks:
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
//! ```
//!
//! Every other step is the list's: a block is cut from the low end of the chosen one (or behind a
//! front piece for a larger alignment), the rest stays free; a freed block merges with its free
//! physical neighbours (boundary tags) before it is indexed; the next-fit rover moves exactly as
//! the list's does. Where a request's alignment makes the first candidate unusable, the search
//! goes on in the policy's order (the next larger block, the next address). So in every
//! configuration the index serves (address order, physical or no coalescing) it hands out the
//! same address as the list for every request: `tests/differential.rs` replays the recorded traces
//! and random sequences through both and compares.

pub(crate) mod bins;
pub(crate) mod treap;

use allocator_traits::Corruption;

use crate::config::{Coalesce, Config, Policy};
use crate::heap::block::{GRAIN, Mem};
use crate::list::{Chunk, split};
use bins::{BINS, Bins, LIMIT, bin_of};
use treap::{Key, NIL, Treap, id_of, off_of};

/// The free blocks of a heap in a tree (see the [module docs](self)); ids are the blocks'
/// offsets, as for the list.
#[derive(Debug)]
pub struct Index {
    /// The heap's memory (its `end` moves as the heap grows and trims).
    pub(crate) mem: Mem,
    /// Every free block not in a bin, once: by address for first and next fit, by (size,
    /// address) for best and worst fit.
    tree: Treap,
    /// First, best and worst fit: the free blocks below [`LIMIT`] bytes, one bin per size
    /// (next fit keeps every block in the tree: it asks for the block after an address).
    bins: Bins,
    /// Whether blocks below [`LIMIT`] go to the bins (every policy but next fit).
    exact: bool,
    policy: Policy,
    /// Freed blocks merge with their free physical neighbours (else never).
    physical: bool,
    /// Nodes in the tree.
    len: usize,
    /// For next fit: a block of the tree where the next search starts (`None`: the lowest);
    /// `None` for the other policies.
    rover: Option<usize>,
}

impl Index {
    /// An empty index for `config` (address order; physical or no coalescing).
    pub(crate) const fn new(config: &Config) -> Self {
        let key = match config.policy {
            Policy::FirstFit | Policy::NextFit => Key::Addr,
            Policy::BestFit | Policy::WorstFit => Key::Size,
        };
        Index {
            mem: Mem::new(),
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

    fn chunk(&self, off: usize) -> Chunk {
        Chunk {
            addr: off,
            size: self.mem.size(off),
        }
    }

    /// The lowest free block above `off` (next fit's successor in the list).
    fn after(&self, off: usize) -> Option<usize> {
        let n = self.tree.next(&self.mem, id_of(off));
        (n != NIL).then(|| off_of(n))
    }

    /// Where the next next-fit search starts (`None`: the head, or another policy).
    pub(crate) fn rover(&self) -> Option<usize> {
        if self.policy != Policy::NextFit {
            return None;
        }
        self.rover.or_else(|| {
            let f = self.tree.first(&self.mem);
            (f != NIL).then(|| off_of(f))
        })
    }

    /// Whether a free block of `size` bytes lives in a bin (else in the tree).
    #[inline]
    fn in_bins(&self, size: usize) -> bool {
        self.exact && size < LIMIT
    }

    /// Puts the free block at `off` (its header written) into its bin or the tree.
    #[inline]
    fn attach(&mut self, off: usize) {
        let size = self.mem.size(off);
        if self.in_bins(size) {
            self.bins.insert(&mut self.mem, bin_of(size), id_of(off));
        } else {
            self.tree.insert(&mut self.mem, id_of(off));
        }
    }

    /// Takes the free block at `off` out of its bin or the tree (its header still holds the size
    /// it was attached with).
    #[inline]
    fn detach(&mut self, off: usize) {
        let size = self.mem.size(off);
        if self.in_bins(size) {
            self.bins.remove(&mut self.mem, bin_of(size), id_of(off));
        } else {
            self.tree.remove(&mut self.mem, id_of(off));
        }
    }

    /// Marks `chunk` free and indexes it. `prev_used`: see [`Mem::set_free`].
    #[inline]
    fn link(&mut self, chunk: Chunk, prev_used: Option<bool>) -> usize {
        self.mem.set_free(chunk.addr, chunk.size, prev_used);
        self.attach(chunk.addr);
        self.len += 1;
        chunk.addr
    }

    #[inline]
    fn unlink(&mut self, off: usize) {
        self.detach(off);
        self.len -= 1;
    }

    /// Changes the size of the free block at `off` (its address stays).
    fn resize(&mut self, off: usize, size: usize) {
        let old = self.mem.size(off);
        if self.tree.key == Key::Addr && !self.in_bins(old) && !self.in_bins(size) {
            self.mem.resize_free(off, size);
            self.tree.refresh_up(&mut self.mem, id_of(off));
        } else {
            self.detach(off);
            self.mem.resize_free(off, size);
            self.attach(off);
        }
    }

    /// The block the policy picks for `need` bytes among those `fits` accepts (`fits` may refuse
    /// a block of `need` bytes or more for its alignment; the search then goes on in the policy's
    /// order; `None` accepts every block of `need` bytes or more), never `skip`.
    pub(crate) fn search(
        &self,
        need: usize,
        fits: Option<impl Fn(Chunk) -> bool>,
        skip: Option<usize>,
    ) -> Option<usize> {
        let ng = u32::try_from(need / GRAIN).ok()?;
        let mem = &self.mem;
        let t = &self.tree;
        // The block never to pick: best fit's wilderness, the highest block, so never a bin's
        // root unless alone in its bin.
        let skip = skip.map_or(NIL, id_of);
        // Every candidate the searches below offer has `need` bytes or more: without `fits`,
        // the first one is taken.
        let ok = |x: u32| x != skip && fits.as_ref().is_none_or(|f| f(self.chunk(off_of(x))));
        // The first bin a request of `need` bytes may use (`BINS`: none).
        let from = if self.exact && need < LIMIT {
            bin_of(need.max(crate::heap::block::MIN_BLOCK))
        } else {
            BINS
        };
        // By address in the tree from `lo`, below `hi`: the lowest block that fits.
        let by_address = |mut lo: u32, hi: u32| loop {
            let x = t.fit_from(mem, lo, ng);
            if x == NIL || x >= hi {
                return NIL;
            }
            if ok(x) {
                return x;
            }
            lo = x + 1;
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
                let (lowest_bin, tree) = (
                    if from < BINS {
                        self.bins.lowest_from(from)
                    } else {
                        NIL
                    },
                    t.fit_from(mem, 0, ng),
                );
                let x = lowest_bin.min(tree);
                if x != NIL && ok(x) {
                    x
                } else {
                    // The alignment refused the lowest: the lowest that fits, bin by bin.
                    let mut best = by_address(0, NIL);
                    for b in from..BINS {
                        best = best.min(self.bins.lowest_accepted(mem, b, ok));
                    }
                    best
                }
            }
            Policy::NextFit => {
                let r = self.rover.map_or(0, id_of);
                match by_address(r, NIL) {
                    NIL => by_address(0, r),
                    x => x,
                }
            }
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
                            return Some(off_of(y));
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
        (found != NIL).then(|| off_of(found))
    }

    /// Carves `need` bytes starting `front` bytes into the free block at `id`, exactly as
    /// [`FreeList::take`](crate::list::FreeList::take) does (the rover included).
    pub(crate) fn take(&mut self, id: usize, front: usize, need: usize, min_chunk: usize) -> Chunk {
        let (carved, rest) = split(self.chunk(id), front, need, min_chunk);
        let back = rest.size;
        let next_fit = self.policy == Policy::NextFit;
        if front > 0 {
            self.resize(id, front);
            let after = if back > 0 {
                Some(self.link(rest, Some(true)))
            } else {
                self.after(id)
            };
            if next_fit {
                self.rover = after;
            }
        } else if back > 0 {
            self.unlink(id);
            let new = self.link(rest, Some(true));
            if next_fit || self.rover == Some(id) {
                self.rover = Some(new);
            }
        } else {
            if next_fit {
                self.rover = Some(id);
            }
            self.remove(id);
        }
        carved
    }

    /// Takes the free block at `id` out of the index; a rover on it moves to the next block.
    pub(crate) fn remove(&mut self, id: usize) {
        if self.rover == Some(id) {
            self.rover = self.after(id);
        }
        self.unlink(id);
    }

    /// Grows the free block at `id` to `size` in place.
    pub(crate) fn grow_chunk(&mut self, id: usize, size: usize) {
        self.resize(id, size);
    }

    /// Returns a block to the index: merged with its free physical neighbours first (if
    /// coalescing), as [`FreeList::insert`](crate::list::FreeList::insert) does. The header at
    /// `chunk.addr` must be written (its `PREV_USED` bit right). Returns the merged block.
    pub(crate) fn insert(&mut self, chunk: Chunk) -> usize {
        let mut chunk = chunk;
        let mut rover_merged = false;
        if self.physical && chunk.size > 0 {
            if let Some(p) = self.mem.free_before(chunk.addr) {
                let size = self.mem.size(p);
                rover_merged |= self.rover == Some(p);
                self.rover = self.rover.filter(|&r| r != p);
                self.unlink(p);
                chunk = Chunk {
                    addr: p,
                    size: size + chunk.size,
                };
            }
            if let Some(n) = self.mem.free_at(chunk.end()) {
                rover_merged |= self.rover == Some(n);
                self.rover = self.rover.filter(|&r| r != n);
                chunk.size += self.mem.size(n);
                self.unlink(n);
            }
        }
        let id = self.link(chunk, None);
        if rover_merged {
            self.rover = Some(id);
        }
        id
    }

    /// Whether the free block at `off` is a node of the tree: its parent links to it (or it is
    /// the root). O(1); meaningful once the tree itself has been checked.
    pub(crate) fn is_listed(&self, off: usize) -> bool {
        let x = id_of(off);
        let size = self.mem.size(off);
        if self.in_bins(size) {
            let p = bins::prev(&self.mem, x);
            return match p {
                NIL => self.bins.roots[bin_of(size)] == x,
                p => {
                    self.node_in_heap(p)
                        && (bins::child(&self.mem, p) == x || bins::sibling(&self.mem, p) == x)
                }
            };
        }
        match Treap::parent(&self.mem, x) {
            NIL => self.tree.root == x,
            p => {
                self.node_in_heap(p)
                    && (Treap::left(&self.mem, p) == x || Treap::right(&self.mem, p) == x)
            }
        }
    }

    /// Whether node `x`'s block and fields lie inside the heap (checked before a link that may
    /// be corrupt is followed).
    fn node_in_heap(&self, x: u32) -> bool {
        x != NIL && x > 0 && (x as usize) * GRAIN + GRAIN <= self.mem.sentinel()
    }

    /// Checks the tree: links (each child's `parent` names its parent; the root's is `NIL`), the
    /// key order, the heap order of priorities, `aux`, the count, and that the rover is a node;
    /// `each` checks every block for the owner (a free block of the heap). Every link is checked
    /// to lie inside the heap before it is followed; O(nodes).
    pub(crate) fn check_invariants(
        &self,
        base: usize,
        mut each: impl FnMut(usize) -> Result<(), Corruption>,
    ) -> Result<(), Corruption> {
        const S: &str = "index";
        let mem = &self.mem;
        let t = &self.tree;
        let at = |x: u32| base.wrapping_add(off_of(x));
        let root = t.root;
        let in_bins = self.bins.bitmap.iter().any(|&w| w != 0);
        Corruption::ensure(
            (root == NIL && !in_bins) == (self.len == 0),
            S,
            base,
            "the tree and the bins are empty iff the count is 0",
        )?;
        // Steps down a child link after checking it.
        let down = |p: u32, c: u32| -> Result<(), Corruption> {
            Corruption::ensure(
                self.node_in_heap(c),
                S,
                at(p),
                "a link points outside the heap",
            )?;
            Corruption::ensure(
                Treap::parent(mem, c) == p,
                S,
                at(c),
                "parent link is not the node above",
            )?;
            Corruption::ensure(
                Treap::priority(c) < Treap::priority(p),
                S,
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
        let mut rover_listed = false;
        let mut x = NIL;
        if root != NIL {
            Corruption::ensure(
                self.node_in_heap(root),
                S,
                base,
                "the root lies outside the heap",
            )?;
            Corruption::ensure(
                Treap::parent(mem, root) == NIL,
                S,
                at(root),
                "the root has a parent",
            )?;
            x = leftmost(root)?;
        }
        while x != NIL {
            count += 1;
            Corruption::ensure(
                count <= self.len,
                S,
                at(x),
                "more nodes than the count says (a cycle?)",
            )?;
            each(off_of(x))?;
            if prev != NIL {
                Corruption::ensure(t.less(mem, prev, x), S, at(x), "out of the key order")?;
            }
            let r = Treap::right(mem, x);
            if r != NIL {
                down(x, r)?;
            }
            if t.key == Key::Addr {
                let ok = Treap::aux(mem, x) == t.aux_of(mem, x);
                Corruption::ensure(ok, S, at(x), "aux is not the largest size of the subtree")?;
            }
            rover_listed |= self.rover == Some(off_of(x));
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
            S,
            base,
            "fewer nodes than the count says",
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

impl Index {
    /// The bins' part of the walk: per bin, the bitmap bit and the tournament entry agree with
    /// the root, every node has the bin's size, lies above its parent and is linked back by its
    /// `prev`; `each` checks every block. At most `budget` nodes are visited (more: a cycle).
    /// Returns the number of nodes.
    fn check_bins(
        &self,
        base: usize,
        each: &mut impl FnMut(usize) -> Result<(), Corruption>,
        budget: usize,
    ) -> Result<usize, Corruption> {
        const S: &str = "bins";
        let mem = &self.mem;
        let bins = &self.bins;
        let at = |x: u32| base.wrapping_add(off_of(x));
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
                S,
                b,
                "next fit keeps every block in the tree",
            )?;
            if bins.tournament_kept {
                Corruption::ensure(
                    bins.tournament[BINS + b] == root,
                    "tournament",
                    b,
                    "leaf is not the bin's root",
                )?;
            }
            if root == NIL {
                continue;
            }
            Corruption::ensure(
                self.node_in_heap(root),
                S,
                b,
                "the root lies outside the heap",
            )?;
            let root_links = bins::prev(mem, root) == NIL && bins::sibling(mem, root) == NIL;
            Corruption::ensure(
                root_links,
                S,
                at(root),
                "a root with a prev or sibling link",
            )?;
            // Preorder, each link checked before it is followed.
            let (mut x, mut parent) = (root, NIL);
            'walk: loop {
                count += 1;
                Corruption::ensure(
                    count <= budget,
                    S,
                    at(x),
                    "more nodes than the count says (a cycle?)",
                )?;
                let size = mem.size(off_of(x));
                Corruption::ensure(
                    (crate::heap::block::MIN_BLOCK..LIMIT).contains(&size) && bin_of(size) == b,
                    S,
                    at(x),
                    "a block of another size in the bin",
                )?;
                each(off_of(x))?;
                Corruption::ensure(
                    parent == NIL || x > parent,
                    S,
                    at(x),
                    "below its parent (heap order)",
                )?;
                let c = bins::child(mem, x);
                if c != NIL {
                    Corruption::ensure(
                        self.node_in_heap(c),
                        S,
                        at(x),
                        "a link points outside the heap",
                    )?;
                    Corruption::ensure(
                        bins::prev(mem, c) == x,
                        S,
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
                            S,
                            at(x),
                            "a link points outside the heap",
                        )?;
                        Corruption::ensure(
                            bins::prev(mem, s) == x,
                            S,
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
                    parent = bins::parent_of(mem, x);
                }
            }
        }
        if bins.tournament_kept {
            for i in 1..BINS {
                let m = bins.tournament[2 * i].min(bins.tournament[2 * i + 1]);
                Corruption::ensure(
                    bins.tournament[i] == m,
                    "tournament",
                    i,
                    "entry is not the lowest root below it",
                )?;
            }
        }
        Ok(count)
    }
}

/// Ways for the walk's tests to plant a corruption.
#[cfg(test)]
impl Index {
    pub(crate) fn unlink_for_test(&mut self, off: usize) {
        self.unlink(off);
    }
    pub(crate) fn link_for_test(&mut self, chunk: Chunk) {
        self.tree.insert(&mut self.mem, id_of(chunk.addr));
        self.len += 1;
    }
    pub(crate) fn set_root_for_test(&mut self, root: u32) {
        self.tree.root = root;
    }
    pub(crate) fn set_rover_for_test(&mut self, off: usize) {
        self.rover = Some(off);
    }
    /// Makes the first child of the first non-empty bin's root the root, without relinking.
    pub(crate) fn swap_bin_root_for_test(&mut self) {
        let b = self.bins.first_from(0).unwrap();
        let r = self.bins.roots[b];
        let c = bins::child(&self.mem, r);
        assert_ne!(c, NIL, "a bin with two blocks");
        self.bins.roots[b] = c;
    }
    pub(crate) fn flip_bitmap_for_test(&mut self, b: usize) {
        self.bins.bitmap[b / 64] ^= 1 << (b % 64);
    }
    pub(crate) fn spoil_tournament_for_test(&mut self) {
        self.bins.tournament[1] = 0;
    }
    /// Swaps the root's children (keeping their parent links): the key order breaks.
    pub(crate) fn swap_children_for_test(&mut self) {
        let r = self.tree.root;
        let (l, rt) = (Treap::left(&self.mem, r), Treap::right(&self.mem, r));
        let at = r as usize * GRAIN;
        self.mem.set_u32_at(at, rt);
        self.mem.set_u32_at(at + 4, l);
    }
}
