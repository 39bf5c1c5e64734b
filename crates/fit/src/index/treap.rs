//! A treap over the free blocks: nodes of four 32-bit fields, ordered by address or by (size,
//! address). Where the fields live is the [`Space`]'s business: inside the free blocks of the
//! real heap (intrusive), or in an out-of-band table for an offset space.
//!
//! ```text
//!   in the heap: free block at offset o, node id = (o + W) / 16 (its payload's granule):
//!   | header | left | right | parent | aux | ...          | footer |
//!     W        u32    u32     u32      u32                   W
//!
//!   by address (aux = largest size in the subtree, in granules)     by (size, address)
//!                 [0x900 48 | max 4096]                            [(64, 0x200)]
//!                /                     \                           /            \
//!     [0x200 64 | max 64]       [0x4000 4096 | max 4096]  [(48, 0x900)]   [(4096, 0x4000)]
//! ```
//!
//! The shape is a treap: a binary search tree by the key, and a heap by a priority: the rank a
//! node carries ([`Space::carried`], 16 bits), then a tie-break ([`Treap::priority`]): by
//! address in a space that carries ranks, the address (lower first); otherwise a hash of the
//! node id (`id * 0x9E3779B1`, a bijection on 32 bits). No two nodes tie. A node joining the
//! tree carries the hash's top 16 bits. A block that takes the place of a neighbour with no node
//! between them ([`Treap::replace`]: a rest carved from a block's low end, a freed block merged
//! with the block above it) carries the neighbour's rank; by address the tie-break then compares
//! it with every other node as it did the neighbour, so it stays there without a rotation (by
//! (size, address) it rotates where the hashes break a tie of ranks). Random ranks keep the
//! expected depth logarithmic whatever order blocks come and go in (an address decides only
//! between two nodes of the same 16-bit rank). No allocation, no balance
//! field: in the heap the four fields fit the 16 bytes a 32-byte block has between header and
//! footer, so the index costs no minimum block size over the list. Ids are 32 bits (in the heap,
//! granule numbers: a heap on the index holds at most 64 GiB); sizes are counted in granules
//! ([`Space::shift`]).
//!
//! Invariants (checked by the walk): `parent` of every child names its parent and the root's is
//! `NIL`; keys ascend in order; a child's priority is below its parent's; `aux` (address order)
//! is the largest size of the node's subtree.

use super::space::Space;

/// No node.
pub(crate) const NIL: u32 = u32::MAX;

/// The tree's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// By address, each node knowing the largest size in its subtree (first and next fit).
    Addr,
    /// By (size, address) (best and worst fit).
    Size,
}

#[inline]
const fn prio(id: u32) -> u32 {
    id.wrapping_mul(0x9E37_79B1)
}

/// The rank a node joining the tree carries: its hash's top bits, so that its priority orders as
/// the hash does.
#[inline]
const fn fresh_rank(id: u32) -> u32 {
    prio(id) >> 16
}

/// How many steps [`Treap::climb`] goes up from the finger before it gives up for the root: a
/// freed block near the last change (a real program's) has its place a step or two above the
/// finger; a random one (the benchmark's) shares with the finger an ancestor most often near
/// the root, so a long climb only adds to the walk down. Measured in callgrind instructions
/// (session 15), next fit per step at 1k live blocks and per python3 event: no limit 790.9 and
/// 522.0, no finger 759.7 and 527.7, 1 step 764.2 and 521.0, 2 steps 768.3 and 519.8, 4 steps
/// 773.8 and 518.8.
const CLIMB: usize = 2;

const LEFT: usize = 0;
const RIGHT: usize = 4;
const PARENT: usize = 8;
const AUX: usize = 12;

/// Field `field` (a byte offset, 0 to 12) of node `x`: the nodes of the tree and of the bins
/// are four 32-bit fields wherever the space keeps them.
#[inline]
pub(crate) fn get<S: Space>(s: &S, x: u32, field: usize) -> u32 {
    s.field(x, field)
}

/// Sets field `field` of node `x`.
#[inline]
pub(crate) fn set<S: Space>(s: &mut S, x: u32, field: usize, v: u32) {
    s.set_field(x, field, v)
}

/// The tree: its root and order (the nodes live in the heap's memory).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Treap {
    /// The root (`NIL` iff the tree is empty).
    pub(crate) root: u32,
    pub(crate) key: Key,
    /// By address: a node of the tree (or `NIL`) near the last change, where [`insert`]
    /// starts its walk (see [`climb`]): the parent of the last node removed, the last node
    /// inserted, the node whose size last changed. Only the tree's own operations set it, and
    /// each to a node it leaves in the tree; a removal moves it off the node removed.
    ///
    /// [`insert`]: Self::insert
    /// [`climb`]: Self::climb
    pub(crate) finger: u32,
}

impl Treap {
    pub(crate) const fn new(key: Key) -> Self {
        Treap {
            root: NIL,
            key,
            finger: NIL,
        }
    }

    #[inline]
    pub(crate) fn left<S: Space>(mem: &S, x: u32) -> u32 {
        get(mem, x, LEFT)
    }
    #[inline]
    pub(crate) fn right<S: Space>(mem: &S, x: u32) -> u32 {
        get(mem, x, RIGHT)
    }
    #[inline]
    pub(crate) fn parent<S: Space>(mem: &S, x: u32) -> u32 {
        get(mem, x, PARENT)
    }
    #[inline]
    pub(crate) fn aux<S: Space>(mem: &S, x: u32) -> u32 {
        get(mem, x, AUX)
    }
    /// The size of node `x`'s block in granules.
    #[inline]
    pub(crate) fn gsize<S: Space>(mem: &S, x: u32) -> u32 {
        (mem.size(x) >> mem.shift()) as u32
    }

    /// Whether `a` sorts before `b`.
    #[inline]
    pub(crate) fn less<S: Space>(&self, mem: &S, a: u32, b: u32) -> bool {
        match self.key {
            Key::Addr => mem.below(a, b),
            Key::Size => (Self::gsize(mem, a), mem.pos(a)) < (Self::gsize(mem, b), mem.pos(b)),
        }
    }

    /// What `aux` of `x` must be, from its own size and its children's `aux`.
    #[inline]
    pub(crate) fn aux_of<S: Space>(&self, mem: &S, x: u32) -> u32 {
        let mut m = Self::gsize(mem, x);
        for c in [Self::left(mem, x), Self::right(mem, x)] {
            if c != NIL {
                m = m.max(Self::aux(mem, c));
            }
        }
        m
    }

    /// The priority of node `x` (a heap order: a child's is below its parent's): the rank it
    /// carries, then a tie-break. By address in a space that carries ranks (whose ids sort as
    /// their addresses), the tie-break is the address, lower first: a node that takes the place
    /// of a neighbour with no node between them ([`replace`](Self::replace)) and its rank then
    /// compares with every other node as the neighbour did, so it needs no rotation. Otherwise
    /// the id's hash (a space that carries no rank orders by the hash alone: by addresses the
    /// tree would be a path).
    #[inline]
    pub(crate) fn priority<S: Space>(&self, mem: &S, x: u32) -> u64 {
        let tie = if self.in_place(mem) { !x } else { prio(x) };
        (mem.carried(x) as u64) << 32 | tie as u64
    }

    /// Whether a node that takes the place of a neighbour with its rank keeps the heap order
    /// ([`priority`](Self::priority)'s tie-break is the address). `_mem` only names the space's
    /// type.
    #[inline]
    fn in_place<S: Space>(&self, _mem: &S) -> bool {
        S::CARRIES_RANK && self.key == Key::Addr
    }

    /// Sets the child of `p` on side `side` (`LEFT` or `RIGHT`) to `c`; `p == NIL`: the root.
    #[inline]
    fn set_child<S: Space>(&mut self, mem: &mut S, p: u32, side: usize, c: u32) {
        if p == NIL {
            self.root = c;
        } else {
            set(mem, p, side, c);
        }
    }

    /// Whether node `x`, whose size is `gs` granules, sorts before node `p` (`less` with `x`'s
    /// size read once).
    #[inline]
    fn goes_left<S: Space>(&self, mem: &S, x: u32, gs: u32, p: u32) -> bool {
        match self.key {
            Key::Addr => mem.below(x, p),
            Key::Size => (gs, mem.pos(x)) < (Self::gsize(mem, p), mem.pos(p)),
        }
    }

    /// Adds node `x` (its block's header holds its size already): down to a leaf's place by
    /// the key, then up past every ancestor of lower priority (rotations), then `aux` of the
    /// ancestors above raised to `x`'s size where below it.
    pub(crate) fn insert<S: Space>(&mut self, mem: &mut S, x: u32) {
        let by_addr = self.key == Key::Addr;
        let gs = Self::gsize(mem, x);
        // The leaf's place: `x` becomes the child of `p` on side `side`. By address, the walk
        // down starts from the finger's ancestor whose subtree holds `x`'s place: a freed block
        // is indexed just after its neighbours were taken out, a carved block's rest just after
        // the block, so that ancestor is most often the finger or a few steps above it.
        let start = if by_addr && self.finger != NIL {
            self.climb(mem, self.finger, x)
        } else {
            self.root
        };
        let (mut p, mut side) = (start, LEFT);
        if p != NIL {
            loop {
                side = if self.goes_left(mem, x, gs, p) {
                    LEFT
                } else {
                    RIGHT
                };
                let c = get(mem, p, side);
                if c == NIL {
                    break;
                }
                p = c;
            }
        }
        // Rotations (`x` has no children yet). `x`'s subtree becomes the last one rotated
        // below it, so its `aux` is that one's old `aux` or its own size.
        mem.set_carried(x, fresh_rank(x));
        let (p, side, l, r, below) = self.float(mem, x, p, side, NIL, NIL);
        let aux = gs.max(below);
        set(mem, x, LEFT, l);
        set(mem, x, RIGHT, r);
        set(mem, x, PARENT, p);
        self.set_child(mem, p, side, x);
        if by_addr {
            self.finger = x;
            set(mem, x, AUX, aux);
            // `x` joins the subtrees of its ancestors.
            Self::raise(mem, p, gs);
        }
    }

    /// Removes node `x`: down past its children of higher priority (rotations) until it has at
    /// most one, then out, its child (if any) in its place; then `aux` recomputed upwards.
    pub(crate) fn remove<S: Space>(&mut self, mem: &mut S, x: u32) {
        let by_addr = self.key == Key::Addr;
        // Every node rotated above `x` takes `x`'s old `aux`: its subtree's largest size or
        // more (its subtree lies inside `x`'s old one). `refresh_up` below corrects them from
        // the bottom up, and stops at the first that holds its subtree's largest size: the
        // ones above it then hold theirs too (their subtrees hold it, and lie inside `x`'s).
        let aux = if by_addr { Self::aux(mem, x) } else { 0 };
        let mut p = Self::parent(mem, x);
        let mut side = if p != NIL && Self::left(mem, p) == x {
            LEFT
        } else {
            RIGHT
        };
        let (mut l, mut r) = (Self::left(mem, x), Self::right(mem, x));
        while l != NIL && r != NIL {
            // The child of higher priority takes `x`'s place; `x` takes its inner subtree
            // (`x`'s own fields are never read again: only `l`, `r` and `p` say where it is).
            // (`c`'s link to `x` is written by the next rotation or the splice.)
            let (c, inner) = if self.priority(mem, l) > self.priority(mem, r) {
                (l, Self::right(mem, l))
            } else {
                (r, Self::left(mem, r))
            };
            set(mem, c, PARENT, p);
            self.set_child(mem, p, side, c);
            if by_addr {
                set(mem, c, AUX, aux);
            }
            if c == l {
                l = inner;
                side = RIGHT;
            } else {
                r = inner;
                side = LEFT;
            }
            p = c;
        }
        let child = if l != NIL { l } else { r };
        if child != NIL {
            set(mem, child, PARENT, p);
        }
        self.set_child(mem, p, side, child);
        self.refresh_up(mem, p);
    }

    /// Rotates node `x`, conceptually the child of `p` on side `side` with children `l` and
    /// `r` (none of these links written yet), up past every ancestor of lower priority: each
    /// such `p` goes below `x`, taking `x`'s inner subtree, its `aux` recomputed. Returns where
    /// `x` ends (its parent, side and children, for the caller to link) and the largest old
    /// `aux` of the nodes that went below it (0 if none).
    #[inline(always)]
    fn float<S: Space>(
        &self,
        mem: &mut S,
        x: u32,
        mut p: u32,
        mut side: usize,
        mut l: u32,
        mut r: u32,
    ) -> (u32, usize, u32, u32, u32) {
        let by_addr = self.key == Key::Addr;
        let px = self.priority(mem, x);
        let mut below = 0;
        while p != NIL && self.priority(mem, p) < px {
            let g = Self::parent(mem, p);
            let inner = if side == LEFT { r } else { l };
            set(mem, p, side, inner);
            if inner != NIL {
                set(mem, inner, PARENT, p);
            }
            set(mem, p, PARENT, x);
            if side == LEFT {
                r = p;
            } else {
                l = p;
            }
            if by_addr {
                below = below.max(Self::aux(mem, p));
                let a = self.aux_of(mem, p);
                set(mem, p, AUX, a);
            }
            side = if g != NIL && Self::left(mem, g) == p {
                LEFT
            } else {
                RIGHT
            };
            p = g;
        }
        (p, side, l, r, below)
    }

    /// Node `x`'s links (left, right, parent) and carried rank, read before anything may
    /// overwrite its fields or header (see [`replace`](Self::replace)).
    #[inline]
    pub(crate) fn links<S: Space>(mem: &S, x: u32) -> [u32; 4] {
        [
            Self::left(mem, x),
            Self::right(mem, x),
            Self::parent(mem, x),
            mem.carried(x),
        ]
    }

    /// Node `new` (its block's header holds its size already) takes the place of node `old`,
    /// whose links were `links` ([`links`](Self::links), read before `new`'s header was written:
    /// in the heap a rest carved 16 bytes into `old` has its header on `old`'s fields). No node
    /// may lie between `old` and `new` in the key order, so the order holds with `new` where
    /// `old` was. `new` carries `old`'s rank, so the heap order holds too: by address in a
    /// space that carries ranks always (the tie-break is the address, and no node lies
    /// between), else but where the hashes break a tie of ranks: then `new` goes up past
    /// ancestors of lower priority or down below children of higher priority (rotations, out
    /// of line in [`replace_rotating`](Self::replace_rotating); the check that none is due
    /// and the relinking are inlined into every caller). By address `aux` is recomputed from
    /// `new` up; where no rotation was due and `grown` (`new`'s block is at least `old`'s), it
    /// is only raised ([`raise`](Self::raise)). One pass instead of a removal and an
    /// insertion.
    #[inline(always)]
    pub(crate) fn replace<S: Space>(
        &mut self,
        mem: &mut S,
        old: u32,
        links: [u32; 4],
        new: u32,
        grown: bool,
    ) {
        let [l, r, p, carried] = links;
        mem.set_carried(new, carried);
        let side = if p != NIL && Self::left(mem, p) == old {
            LEFT
        } else {
            RIGHT
        };
        for c in [l, r] {
            if c != NIL {
                set(mem, c, PARENT, new);
            }
        }
        // By address `new` compares with every other node as `old` did; by size it most often
        // does too (its rank is `old`'s; only a tie of ranks falls to the hashes).
        if self.in_place(mem) || self.heap_order_holds(mem, new, p, l, r) {
            // `old`'s links serve as they are, and only the largest sizes from `new` up change.
            debug_assert!(p == NIL || self.priority(mem, p) > self.priority(mem, new));
            set(mem, new, LEFT, l);
            set(mem, new, RIGHT, r);
            set(mem, new, PARENT, p);
            self.set_child(mem, p, side, new);
            if self.key == Key::Addr {
                let a = self.aux_of(mem, new);
                set(mem, new, AUX, a);
                if grown {
                    // The ancestors' subtrees hold `new` for a smaller `old`: only growth.
                    Self::raise(mem, p, a);
                } else {
                    self.refresh_up(mem, p);
                }
                self.finger = new;
            }
            return;
        }
        self.replace_rotating(mem, new, p, side, l, r);
    }

    /// Whether `new` as the child of `p` with children `l` and `r` keeps the heap order: its
    /// priority below `p`'s and above `l`'s and `r`'s.
    #[inline]
    fn heap_order_holds<S: Space>(&self, mem: &S, new: u32, p: u32, l: u32, r: u32) -> bool {
        let pn = self.priority(mem, new);
        (p == NIL || self.priority(mem, p) > pn)
            && (l == NIL || self.priority(mem, l) < pn)
            && (r == NIL || self.priority(mem, r) < pn)
    }

    /// [`replace`](Self::replace) where `new`, linked by nobody yet but its children (`l`
    /// and `r`), the child of `p` on side `side`, may need rotations (out of line: the common
    /// replacement needs none and stays small).
    #[inline(never)]
    fn replace_rotating<S: Space>(
        &mut self,
        mem: &mut S,
        new: u32,
        mut p: u32,
        mut side: usize,
        mut l: u32,
        mut r: u32,
    ) {
        // Up (the nodes rotated below `new` get their `aux` in `float`), else down.
        (p, side, l, r, _) = self.float(mem, new, p, side, l, r);
        let pn = self.priority(mem, new);
        let mut rotated_above = 0usize;
        set(mem, new, LEFT, l);
        set(mem, new, RIGHT, r);
        set(mem, new, PARENT, p);
        self.set_child(mem, p, side, new);
        // Down: the child of higher priority takes `new`'s place, `new` its inner subtree.
        loop {
            let (rl, rr) = (
                if l != NIL { self.priority(mem, l) } else { 0 },
                if r != NIL { self.priority(mem, r) } else { 0 },
            );
            let c = if l != NIL && rl > pn && (r == NIL || rl > rr) {
                l
            } else if r != NIL && rr > pn {
                r
            } else {
                break;
            };
            let from_left = c == l;
            let inner = if from_left {
                let inner = Self::right(mem, l);
                set(mem, new, LEFT, inner);
                set(mem, l, RIGHT, new);
                l = inner;
                inner
            } else {
                let inner = Self::left(mem, r);
                set(mem, new, RIGHT, inner);
                set(mem, r, LEFT, new);
                r = inner;
                inner
            };
            if inner != NIL {
                set(mem, inner, PARENT, new);
            }
            set(mem, c, PARENT, p);
            self.set_child(mem, p, side, c);
            set(mem, new, PARENT, c);
            side = if from_left { RIGHT } else { LEFT };
            p = c;
            rotated_above += 1;
        }
        // `aux`: `new` and the nodes rotated above it hold other subtrees than before, so
        // theirs are recomputed; above them the subtrees hold the same blocks but `new` for
        // `old`, which `refresh_up` settles (stopping where nothing changes).
        if self.key == Key::Addr {
            let mut y = new;
            for _ in 0..=rotated_above {
                let a = self.aux_of(mem, y);
                set(mem, y, AUX, a);
                y = Self::parent(mem, y);
            }
            self.refresh_up(mem, y);
            self.finger = new;
        }
    }

    /// By address: the lowest ancestor of `h` (or `h`) whose subtree holds the place of key
    /// `x` (not in the tree): the walk down from it to `x`'s place is the walk from the root.
    /// A node's subtree holds the keys between its nearest ancestor it lies right of and its
    /// nearest ancestor it lies left of; on `x`'s side of `h` only one bound can fail, so the
    /// climb goes up until that bound is passed, at most [`CLIMB`] steps; past them it answers
    /// the root. O(1).
    fn climb<S: Space>(&self, mem: &S, h: u32, x: u32) -> u32 {
        let below = mem.below(x, h);
        let mut a = h;
        for _ in 0..CLIMB {
            let q = Self::parent(mem, a);
            if q == NIL {
                return a;
            }
            // `q` bounds `a`'s subtree below if `a` is its right child, above if its left.
            let right_of_q = Self::left(mem, q) != a;
            if right_of_q == below && mem.below(x, q) != below {
                return a;
            }
            a = q;
        }
        self.root
    }

    /// By address: the subtree of `a` (or `NIL`) and of each ancestor now holds a block of `g`
    /// granules where none was larger: their `aux` grow to `g` where below it, and stay from
    /// the first that is not (those above are larger still). Unlike
    /// [`refresh_up`](Self::refresh_up) it reads no sibling: at a large heap a sibling is a
    /// cache line the step touches for nothing else.
    #[inline]
    fn raise<S: Space>(mem: &mut S, mut a: u32, g: u32) {
        while a != NIL && Self::aux(mem, a) < g {
            set(mem, a, AUX, g);
            a = Self::parent(mem, a);
        }
    }

    /// By address: the block of node `x` has grown (its subtree otherwise the same): `aux`
    /// raised from `x` up ([`raise`](Self::raise)).
    pub(crate) fn grown<S: Space>(&mut self, mem: &mut S, x: u32) {
        if self.key != Key::Addr {
            return;
        }
        self.finger = x;
        let g = Self::gsize(mem, x);
        Self::raise(mem, x, g);
    }

    /// Recomputes `aux` from `x` up to the root, after `x`'s size or subtree changed (stops
    /// where nothing changes: the ancestors above depend only on it).
    pub(crate) fn refresh_up<S: Space>(&mut self, mem: &mut S, mut x: u32) {
        if self.key != Key::Addr {
            return;
        }
        self.finger = x;
        while x != NIL {
            let a = self.aux_of(mem, x);
            if a == Self::aux(mem, x) {
                break;
            }
            set(mem, x, AUX, a);
            x = Self::parent(mem, x);
        }
    }

    /// The first node in order.
    pub(crate) fn first<S: Space>(&self, mem: &S) -> u32 {
        let mut x = self.root;
        if x == NIL {
            return NIL;
        }
        loop {
            let l = Self::left(mem, x);
            if l == NIL {
                return x;
            }
            x = l;
        }
    }

    /// The last node in order.
    pub(crate) fn last<S: Space>(&self, mem: &S) -> u32 {
        let mut x = self.root;
        if x == NIL {
            return NIL;
        }
        loop {
            let r = Self::right(mem, x);
            if r == NIL {
                return x;
            }
            x = r;
        }
    }

    /// The node after `x` in order.
    pub(crate) fn next<S: Space>(&self, mem: &S, mut x: u32) -> u32 {
        let r = Self::right(mem, x);
        if r != NIL {
            x = r;
            loop {
                let l = Self::left(mem, x);
                if l == NIL {
                    return x;
                }
                x = l;
            }
        }
        loop {
            let p = Self::parent(mem, x);
            if p == NIL || Self::left(mem, p) == x {
                return p;
            }
            x = p;
        }
    }

    /// The node before `x` in order.
    pub(crate) fn prev<S: Space>(&self, mem: &S, mut x: u32) -> u32 {
        let l = Self::left(mem, x);
        if l != NIL {
            x = l;
            loop {
                let r = Self::right(mem, x);
                if r == NIL {
                    return x;
                }
                x = r;
            }
        }
        loop {
            let p = Self::parent(mem, x);
            if p == NIL || Self::right(mem, p) == x {
                return p;
            }
            x = p;
        }
    }

    /// By address: the lowest node of the subtree at `x` whose size is at least `ng` granules
    /// if it lies below node `bound` (`NIL`: no bound), else `NIL`; the walk down ends where it
    /// reaches the bound.
    #[inline]
    fn leftmost_fit<S: Space>(mem: &S, mut x: u32, ng: u32, bound: u32) -> u32 {
        if x == NIL || Self::aux(mem, x) < ng {
            return NIL;
        }
        loop {
            let l = Self::left(mem, x);
            if l != NIL && Self::aux(mem, l) >= ng {
                x = l;
            } else if !mem.below(x, bound) {
                // The answer is `x` or right of it: not below the bound.
                return NIL;
            } else if Self::gsize(mem, x) >= ng {
                return x;
            } else {
                x = Self::right(mem, x);
            }
        }
    }

    /// By address: the lowest node whose size is at least `ng` granules (first fit) if it lies
    /// below node `bound` (`NIL`: no bound), else `NIL`. O(depth): one walk down by the
    /// largest-size fields.
    #[inline]
    pub(crate) fn lowest_fit<S: Space>(&self, mem: &S, ng: u32, bound: u32) -> u32 {
        Self::leftmost_fit(mem, self.root, ng, bound)
    }

    /// By address: the lowest node at or above position `lo` ([`Space::pos`]) whose size is at
    /// least `ng` granules. O(depth): the walk to `lo`, then [`fit_at`](Self::fit_at).
    pub(crate) fn fit_from<S: Space>(&self, mem: &S, lo: usize, ng: u32) -> u32 {
        // The lowest node at or above `lo`.
        let (mut x, mut at) = (self.root, NIL);
        while x != NIL {
            if mem.pos(x) >= lo {
                at = x;
                x = Self::left(mem, x);
            } else {
                x = Self::right(mem, x);
            }
        }
        if at == NIL {
            return NIL;
        }
        self.fit_at(mem, at, ng)
    }

    /// By address: the lowest node at or after node `at` in order whose size is at least `ng`
    /// granules (no walk down from the root to `at`).
    #[inline]
    pub(crate) fn fit_at<S: Space>(&self, mem: &S, at: u32, ng: u32) -> u32 {
        if Self::gsize(mem, at) >= ng {
            return at;
        }
        self.fit_after(mem, at, ng)
    }

    /// By address: the lowest node after node `x` in order whose size is at least `ng`
    /// granules. O(depth): the subtree right of `x`, then up, entering at most one subtree that
    /// holds the answer.
    pub(crate) fn fit_after<S: Space>(&self, mem: &S, mut x: u32, ng: u32) -> u32 {
        debug_assert_eq!(self.key, Key::Addr);
        let found = Self::leftmost_fit(mem, Self::right(mem, x), ng, NIL);
        if found != NIL {
            return found;
        }
        loop {
            let p = Self::parent(mem, x);
            if p == NIL {
                return NIL;
            }
            if Self::left(mem, p) == x {
                if Self::gsize(mem, p) >= ng {
                    return p;
                }
                let found = Self::leftmost_fit(mem, Self::right(mem, p), ng, NIL);
                if found != NIL {
                    return found;
                }
            }
            x = p;
        }
    }

    /// By (size, address): the first node whose size is at least `ng` granules.
    pub(crate) fn lower_bound<S: Space>(&self, mem: &S, ng: u32) -> u32 {
        let (mut x, mut at) = (self.root, NIL);
        while x != NIL {
            if Self::gsize(mem, x) >= ng {
                at = x;
                x = Self::left(mem, x);
            } else {
                x = Self::right(mem, x);
            }
        }
        at
    }
}
