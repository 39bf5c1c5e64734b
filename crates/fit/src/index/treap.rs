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
//! The shape is a treap: a binary search tree by the key, and a heap by a priority derived from
//! the node id (`id * 0x9E3779B1`, a bijection on 32 bits, so no two nodes tie), which keeps the
//! expected depth logarithmic whatever order blocks come and go in. No allocation, no balance
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
}

impl Treap {
    pub(crate) const fn new(key: Key) -> Self {
        Treap { root: NIL, key }
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

    #[inline]
    fn update<S: Space>(&self, mem: &mut S, x: u32) {
        if self.key == Key::Addr {
            let a = self.aux_of(mem, x);
            set(mem, x, AUX, a);
        }
    }

    /// The priority of `x` (a heap order: a child's is below its parent's).
    #[inline]
    pub(crate) const fn priority(x: u32) -> u32 {
        prio(x)
    }

    fn replace_child<S: Space>(&mut self, mem: &mut S, p: u32, old: u32, new: u32) {
        if p == NIL {
            self.root = new;
        } else if Self::left(mem, p) == old {
            set(mem, p, LEFT, new);
        } else {
            set(mem, p, RIGHT, new);
        }
    }

    /// Rotates `x` above its parent.
    fn rotate_up<S: Space>(&mut self, mem: &mut S, x: u32) {
        let p = Self::parent(mem, x);
        let g = Self::parent(mem, p);
        if Self::left(mem, p) == x {
            let b = Self::right(mem, x);
            set(mem, p, LEFT, b);
            if b != NIL {
                set(mem, b, PARENT, p);
            }
            set(mem, x, RIGHT, p);
        } else {
            let b = Self::left(mem, x);
            set(mem, p, RIGHT, b);
            if b != NIL {
                set(mem, b, PARENT, p);
            }
            set(mem, x, LEFT, p);
        }
        set(mem, p, PARENT, x);
        set(mem, x, PARENT, g);
        self.replace_child(mem, g, p, x);
        self.update(mem, p);
        self.update(mem, x);
    }

    /// Adds node `x` (its block's header holds its size already).
    pub(crate) fn insert<S: Space>(&mut self, mem: &mut S, x: u32) {
        set(mem, x, LEFT, NIL);
        set(mem, x, RIGHT, NIL);
        if self.root == NIL {
            self.root = x;
            set(mem, x, PARENT, NIL);
            self.update(mem, x);
            return;
        }
        let gs = Self::gsize(mem, x);
        let mut p = self.root;
        loop {
            if self.key == Key::Addr && Self::aux(mem, p) < gs {
                // `x` joins `p`'s subtree.
                set(mem, p, AUX, gs);
            }
            let go_left = self.less(mem, x, p);
            let c = if go_left {
                Self::left(mem, p)
            } else {
                Self::right(mem, p)
            };
            if c == NIL {
                set(mem, p, if go_left { LEFT } else { RIGHT }, x);
                break;
            }
            p = c;
        }
        set(mem, x, PARENT, p);
        self.update(mem, x);
        loop {
            let p = Self::parent(mem, x);
            if p == NIL || prio(x) < prio(p) {
                break;
            }
            self.rotate_up(mem, x);
        }
    }

    /// Removes node `x`.
    pub(crate) fn remove<S: Space>(&mut self, mem: &mut S, x: u32) {
        loop {
            let (l, r) = (Self::left(mem, x), Self::right(mem, x));
            if l == NIL || r == NIL {
                break;
            }
            let c = if prio(l) > prio(r) { l } else { r };
            self.rotate_up(mem, c);
        }
        let l = Self::left(mem, x);
        let child = if l != NIL { l } else { Self::right(mem, x) };
        let p = Self::parent(mem, x);
        if child != NIL {
            set(mem, child, PARENT, p);
        }
        self.replace_child(mem, p, x, child);
        self.refresh_up(mem, p);
    }

    /// Recomputes `aux` from `x` up to the root, after `x`'s size or subtree changed (stops
    /// where nothing changes: the ancestors above depend only on it).
    pub(crate) fn refresh_up<S: Space>(&self, mem: &mut S, mut x: u32) {
        if self.key != Key::Addr {
            return;
        }
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

    /// By address: the lowest node of the subtree at `x` whose size is at least `ng` granules.
    fn leftmost_fit<S: Space>(mem: &S, mut x: u32, ng: u32) -> u32 {
        if x == NIL || Self::aux(mem, x) < ng {
            return NIL;
        }
        loop {
            let l = Self::left(mem, x);
            if l != NIL && Self::aux(mem, l) >= ng {
                x = l;
            } else if Self::gsize(mem, x) >= ng {
                return x;
            } else {
                x = Self::right(mem, x);
            }
        }
    }

    /// By address: the lowest node at or above position `lo` ([`Space::pos`]) whose size is at
    /// least `ng` granules. O(depth): the walk to `lo`, then up, entering at most one subtree
    /// that holds the answer.
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
        if Self::gsize(mem, at) >= ng {
            return at;
        }
        let found = Self::leftmost_fit(mem, Self::right(mem, at), ng);
        if found != NIL {
            return found;
        }
        let mut x = at;
        loop {
            let p = Self::parent(mem, x);
            if p == NIL {
                return NIL;
            }
            if Self::left(mem, p) == x {
                if Self::gsize(mem, p) >= ng {
                    return p;
                }
                let found = Self::leftmost_fit(mem, Self::right(mem, p), ng);
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
