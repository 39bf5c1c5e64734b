//! Exact-size bins: one bin per block size below [`limit`] (in the heap 32, 48, ... 2064 bytes;
//! over offsets 1 to 128 granules), each a pairing heap of its free blocks ordered by address, so
//! a bin's lowest block is its root.
//!
//! ```text
//!   bitmap   ..0 1 0 0 1 1..     bit b set iff bin b is not empty
//!   roots    [b=0: NIL] [b=1: 0x40] ...            a bin's root: its lowest address
//!   heads    [b=0: NIL] [b=1: 0x900] ...           the root's first child (not in the root)
//!   bin 1 (48 B):     0x40 (child NIL)             pairing heap by address:
//!                    :                             child = first child, sibling = next child,
//!                 0x900 -- 0x130 -- 0x7f0          prev = parent (first child) or left sibling
//!                  |
//!                 0xa10
//!   suffix (first fit): [b=0: 0x40] [b=1: 0x40] [b=2: 0x3000] ...   the lowest root of bins b..,
//!   so "the lowest block of size >= s" is one read; a root that changes corrects the entries at
//!   and below its bin, down to the first that another root holds.
//! ```
//!
//! Nodes use the same four 32-bit fields as the tree's nodes ([`super::treap`]):
//! child, sibling, prev, and one unused. At a large heap every node is a cache line of its own,
//! so the operations touch as few nodes as they can:
//!
//! * A freed block joins its bin with one comparison: it becomes the root (the old root its only
//!   child), or the root's first child. The root's first child is kept in `heads`, not in the
//!   root, so the root itself is not touched; the old first child is (its `prev`).
//! * Taking a bin's lowest block pairs the root's children (the two-pass pairing), amortised
//!   O(log n); the new root's first child moves to `heads`.
//! * Taking any other block (a neighbour that coalescing absorbs) puts the pairing of its children
//!   in its place, under its parent (they lie above it, so above the parent): only its parent,
//!   next sibling and children are touched, never the root. In the child-sibling binary view
//!   every ancestor's subtree only shrinks, so the bound stays the delete-min's.
//!
//! Invariants (checked by the walk): every block of bin `b` has the smallest size plus `b`
//! granules (in the heap `32 + 16 b` bytes); a node's address is above its parent's; `prev` of
//! every child and sibling names the node it hangs from (the root's first child, `heads[b]`: the
//! root); the roots have no `prev`, sibling or `child` link; `heads[b]` is `NIL` for an empty bin;
//! the bitmap bit is set iff the bin has a root; `suffix[b]` is the lower of `roots[b]` and
//! `suffix[b + 1]`, and `suffix[BINS]` is `NIL`.

use core::hint::select_unpredictable;

use super::space::Space;
use super::treap::NIL;

/// Bins: block sizes `min` to `min + 127` granules (in the heap 32 to 32 + 16 * 127 bytes).
pub(crate) const BINS: usize = 128;
const WORDS: usize = BINS / 64;

const CHILD: usize = 0;
const SIBLING: usize = 4;
const PREV: usize = 8;

/// Blocks of this size and above live in the tree (the space's smallest block plus [`BINS`]
/// granules).
#[inline]
pub(crate) fn limit<S: Space>(s: &S) -> usize {
    s.min_block() + (BINS << s.shift())
}

/// The bin of a block of `size` bytes (at least the smallest block, below [`limit`]).
#[inline]
pub(crate) fn bin_of<S: Space>(s: &S, size: usize) -> usize {
    (size - s.min_block()) >> s.shift()
}

/// The lower of two nodes by address (`NIL` is above every node).
#[inline]
pub(crate) fn lower<S: Space>(s: &S, a: u32, b: u32) -> u32 {
    if s.below(b, a) { b } else { a }
}

/// The bins, their bitmap, and (for first fit) the suffix minima of their roots.
#[derive(Debug)]
pub(crate) struct Bins {
    /// Each bin's root (its lowest block), `NIL` iff the bin is empty.
    pub(crate) roots: [u32; BINS],
    /// Bit `b` set iff `roots[b]` is not `NIL`.
    pub(crate) bitmap: [u64; WORDS],
    /// Whether `suffix` is kept (first fit).
    pub(crate) suffix_kept: bool,
    /// `suffix[b]` the lowest root (by address) of bins `b..` (`NIL` iff they are all empty):
    /// the lower of `roots[b]` and `suffix[b + 1]`; `suffix[BINS]` is `NIL`.
    pub(crate) suffix: [u32; BINS + 1],
    /// Each bin's root's first child (`NIL` if it has none, or the bin is empty): kept here, not
    /// in the root's `child` field (`NIL` while a node is a root), so that a freed block hangs
    /// itself on the root without touching the root's memory.
    pub(crate) heads: [u32; BINS],
}

use super::treap::{get, set};

/// The first child of `x` (`NIL` for a root: see [`Bins::first_child`]).
#[inline]
pub(crate) fn child<S: Space>(mem: &S, x: u32) -> u32 {
    get(mem, x, CHILD)
}
/// The next sibling of `x`.
#[inline]
pub(crate) fn sibling<S: Space>(mem: &S, x: u32) -> u32 {
    get(mem, x, SIBLING)
}
/// The parent of `x` if it is a first child, else its left sibling.
#[inline]
pub(crate) fn prev<S: Space>(mem: &S, x: u32) -> u32 {
    get(mem, x, PREV)
}

/// Makes the higher of two roots the first child of the lower; returns the lower. Neither's
/// `prev` or sibling is set for the result.
///
/// Without a branch on the nodes' links: at a large heap `lo`'s child link is a miss, and a
/// branch on it that the predictor gets wrong is found out only when the miss returns (best
/// fit's mispredictions per step at 100 000 live blocks: 2.89 with the branches, 2.37 without;
/// docs/fit.md, "The steady state"). Where `lo` has no child, the write meant for the old first
/// child's `prev` goes to `hi`'s, which the next write sets. `a` and `b` are nodes (not `NIL`).
#[inline]
fn meld<S: Space>(mem: &mut S, a: u32, b: u32) -> u32 {
    let a_lower = mem.below(a, b);
    let lo = select_unpredictable(a_lower, a, b);
    let hi = select_unpredictable(a_lower, b, a);
    let c = child(mem, lo);
    set(mem, hi, SIBLING, c);
    set(mem, select_unpredictable(c == NIL, hi, c), PREV, hi);
    set(mem, hi, PREV, lo);
    set(mem, lo, CHILD, hi);
    lo
}

/// The two-pass pairing of the sibling list starting at `first`: one heap.
fn pair_up<S: Space>(mem: &mut S, first: u32) -> u32 {
    if first == NIL {
        return NIL;
    }
    // Left to right, meld pairs, stacking the results through their sibling field.
    let (mut stack, mut x) = (NIL, first);
    while x != NIL {
        let y = sibling(mem, x);
        let (m, next) = if y == NIL {
            (x, NIL)
        } else {
            let next = sibling(mem, y);
            (meld(mem, x, y), next)
        };
        set(mem, m, SIBLING, stack);
        stack = m;
        x = next;
    }
    // Right to left, meld each into the result.
    let mut root = stack;
    let mut x = sibling(mem, root);
    while x != NIL {
        let next = sibling(mem, x);
        root = meld(mem, root, x);
        x = next;
    }
    set(mem, root, SIBLING, NIL);
    set(mem, root, PREV, NIL);
    root
}

impl Bins {
    pub(crate) const fn new(suffix: bool) -> Self {
        Bins {
            roots: [NIL; BINS],
            bitmap: [0; WORDS],
            suffix_kept: suffix,
            suffix: [NIL; BINS + 1],
            heads: [NIL; BINS],
        }
    }

    /// Sets bin `b`'s root and what depends on it.
    #[inline]
    fn set_root<S: Space>(&mut self, mem: &S, b: usize, root: u32) {
        let old = self.roots[b];
        self.roots[b] = root;
        if root == NIL {
            self.bitmap[b / 64] &= !(1 << (b % 64));
        } else {
            self.bitmap[b / 64] |= 1 << (b % 64);
        }
        if self.suffix_kept {
            // Only the entries at and below `b` cover bin `b`, and they change from the top
            // down to the first that another root holds (it holds all below too).
            if mem.below(root, old) {
                // Lower: it is the lowest of every entry that held a higher root.
                for i in (0..=b).rev() {
                    if !mem.below(root, self.suffix[i]) {
                        break;
                    }
                    self.suffix[i] = root;
                }
            } else {
                // Higher (or gone): the entries `old` held are computed again.
                let mut m = self.suffix[b + 1];
                for i in (0..=b).rev() {
                    if self.suffix[i] != old {
                        break;
                    }
                    m = lower(mem, self.roots[i], m);
                    self.suffix[i] = m;
                }
            }
        }
    }

    /// Adds node `x` to bin `b`.
    #[inline(always)]
    pub(crate) fn insert<S: Space>(&mut self, mem: &mut S, b: usize, x: u32) {
        set(mem, x, CHILD, NIL);
        let r = self.roots[b];
        if r == NIL {
            set(mem, x, SIBLING, NIL);
            set(mem, x, PREV, NIL);
            self.heads[b] = NIL;
            self.set_root(mem, b, x);
        } else if mem.below(r, x) {
            // The root's first child, in front of the old one (the root itself untouched).
            let c = self.heads[b];
            set(mem, x, SIBLING, c);
            set(mem, x, PREV, r);
            if c != NIL {
                set(mem, c, PREV, x);
            }
            self.heads[b] = x;
        } else {
            // The new root (its `child` already NIL); the old one its only child, taking its
            // children list from `heads`.
            set(mem, r, CHILD, self.heads[b]);
            set(mem, r, SIBLING, NIL);
            set(mem, r, PREV, x);
            set(mem, x, SIBLING, NIL);
            set(mem, x, PREV, NIL);
            self.heads[b] = r;
            self.set_root(mem, b, x);
        }
    }

    /// Removes bin `b`'s root, its lowest block: the pairing of the root's children takes its
    /// place, and the new root's children list moves to `heads` (the new root is in cache:
    /// just paired).
    #[inline]
    pub(crate) fn pop<S: Space>(&mut self, mem: &mut S, b: usize) {
        let sub = pair_up(mem, self.heads[b]);
        self.heads[b] = if sub == NIL {
            NIL
        } else {
            let c = child(mem, sub);
            set(mem, sub, CHILD, NIL);
            c
        };
        self.set_root(mem, b, sub);
    }

    /// Removes node `x` from bin `b`.
    pub(crate) fn remove<S: Space>(&mut self, mem: &mut S, b: usize, x: u32) {
        let r = self.roots[b];
        if x == r {
            return self.pop(mem, b);
        }
        let sub = pair_up(mem, child(mem, x));
        // Any other node: the pairing of its children takes its place in its parent's list
        // (they lie above `x`, so above its parent). The root, its other children and `x`'s
        // siblings stay untouched.
        let p = prev(mem, x);
        let s = sibling(mem, x);
        let next = if sub == NIL {
            s
        } else {
            set(mem, sub, SIBLING, s);
            set(mem, sub, PREV, p);
            sub
        };
        if p == r {
            // The root has no sibling: `x` is its first child.
            self.heads[b] = next;
        } else if child(mem, p) == x {
            set(mem, p, CHILD, next);
        } else {
            set(mem, p, SIBLING, next);
        }
        if s != NIL {
            set(mem, s, PREV, if sub == NIL { p } else { sub });
        }
    }

    /// The first child of node `x` of bin `b` (a root's is kept in `heads`).
    #[inline]
    pub(crate) fn first_child<S: Space>(&self, mem: &S, b: usize, x: u32) -> u32 {
        if x == self.roots[b] {
            self.heads[b]
        } else {
            child(mem, x)
        }
    }

    /// Whether node `p`, which the `prev` of node `x` of bin `b` names, links to `x`: as its
    /// first child or as its next sibling.
    pub(crate) fn links_to<S: Space>(&self, mem: &S, b: usize, p: u32, x: u32) -> bool {
        self.first_child(mem, b, p) == x || (p != self.roots[b] && sibling(mem, p) == x)
    }

    /// The parent of node `x` of bin `b` (walking left along its siblings); `NIL` for the root.
    pub(crate) fn parent_of<S: Space>(&self, mem: &S, b: usize, mut x: u32) -> u32 {
        loop {
            let p = prev(mem, x);
            if p == NIL || self.first_child(mem, b, p) == x {
                return p;
            }
            x = p;
        }
    }

    /// The first non-empty bin at or above `b`.
    #[inline]
    pub(crate) fn first_from(&self, b: usize) -> Option<usize> {
        let mut w = b / 64;
        if w >= WORDS {
            return None;
        }
        let mut bits = self.bitmap[w] & (!0u64 << (b % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            if w == WORDS {
                return None;
            }
            bits = self.bitmap[w];
        }
    }

    /// The last non-empty bin at or below `b`.
    #[inline]
    pub(crate) fn last_upto(&self, b: usize) -> Option<usize> {
        let mut w = b / 64;
        let mut bits = self.bitmap[w] & (!0u64 >> (63 - b % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + 63 - bits.leading_zeros() as usize);
            }
            if w == 0 {
                return None;
            }
            w -= 1;
            bits = self.bitmap[w];
        }
    }

    /// The lowest root among bins `b..` (first fit; needs the suffix minima), `b <= BINS`.
    #[inline]
    pub(crate) fn lowest_from(&self, b: usize) -> u32 {
        debug_assert!(self.suffix_kept);
        self.suffix[b]
    }

    /// The lowest node of bin `b` that `ok` accepts: a walk over the whole bin (for requests whose
    /// alignment the root cannot serve).
    pub(crate) fn lowest_accepted<S: Space>(
        &self,
        mem: &S,
        b: usize,
        ok: impl Fn(u32) -> bool,
    ) -> u32 {
        let mut best = NIL;
        self.for_each(mem, b, |x, _| {
            if mem.below(x, best) && ok(x) {
                best = x;
            }
        });
        best
    }

    /// Visits every node of bin `b` with its parent (`NIL` for the root), in preorder.
    pub(crate) fn for_each<S: Space>(&self, mem: &S, b: usize, mut f: impl FnMut(u32, u32)) {
        let root = self.roots[b];
        if root == NIL {
            return;
        }
        let (mut x, mut parent) = (root, NIL);
        loop {
            f(x, parent);
            let c = self.first_child(mem, b, x);
            if c != NIL {
                parent = x;
                x = c;
                continue;
            }
            // Next sibling, climbing to the parent while there is none.
            loop {
                let s = sibling(mem, x);
                if s != NIL {
                    x = s;
                    break;
                }
                if parent == NIL {
                    return;
                }
                x = parent;
                parent = self.parent_of(mem, b, x);
            }
        }
    }
}
