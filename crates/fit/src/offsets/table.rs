//! The out-of-band block table: one node per range (live or free) of an offset space, kept in a
//! `Vec` in CPU memory, never in the space itself. It is the index's [`Space`] for offsets, as the
//! heap's memory ([`Mem`](crate::heap)) is for the real heap.
//!
//! ```text
//!   the space:   [ A live 64 | B free 4096          | C live 256 | D free 1024 ]
//!   the table:   slot 0: A  prev NIL next 3  ---.
//!                slot 3: B  prev 0   next 1  <--'  link: the index's four fields (tree or bin)
//!                slot 1: C  prev 3   next 2
//!                slot 2: D  prev 1   next NIL      (last)
//!                slot 4: vacant, next vacant NIL   (a freed slot, reused first)
//! ```
//!
//! The nodes are linked in offset order (`prev`/`next`, the out-of-band boundary tags), so a
//! freed range finds its free neighbours in O(1), as boundary tags do in memory. Slots are reused
//! through a list of vacant ones. Node ids are slot numbers: they say nothing of the address, so
//! the index orders nodes by [`Space::pos`], the offset.

use alloc::vec::Vec;

use crate::index::{NIL, Space};

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing: on the vacant list (`link[0]` is the next vacant slot).
    Vacant,
    /// A free range, in the index.
    Free,
    /// A range handed out.
    Live,
}

/// One range of the space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// The index's four fields while free; `link[0]` the next vacant slot while vacant.
    pub(crate) link: [u32; 4],
    /// First offset.
    pub(crate) addr: usize,
    /// Bytes (a multiple of the granule, at least one granule).
    pub(crate) size: usize,
    /// The range just below (`NIL` for the first): `nodes[prev].addr + nodes[prev].size == addr`.
    pub(crate) prev: u32,
    /// The range just above (`NIL` for the last): `addr + size == nodes[next].addr`.
    pub(crate) next: u32,
    pub(crate) state: State,
}

/// The ranges of one space, tiling `first.addr .. last.addr + last.size`.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Every slot; the ids are indices.
    pub(crate) nodes: Vec<Node>,
    /// The first vacant slot (`NIL`: none), linked through `link[0]`.
    vacant: u32,
    /// The lowest range (`NIL` iff there is none), whose `prev` is `NIL`.
    pub(crate) first: u32,
    /// The highest range (`NIL` iff there is none), whose `next` is `NIL`.
    pub(crate) last: u32,
    /// Slots not vacant.
    pub(crate) used: usize,
    /// log2 of the granule: sizes and offsets are multiples of `1 << shift`.
    shift: u32,
}

impl Table {
    /// An empty table for ranges of `1 << shift`-byte granules.
    pub(crate) const fn new(shift: u32) -> Self {
        Table {
            nodes: Vec::new(),
            vacant: NIL,
            first: NIL,
            last: NIL,
            used: 0,
            shift,
        }
    }

    /// The granule in bytes.
    pub(crate) const fn granule(&self) -> usize {
        1 << self.shift
    }

    /// Node `x` (an id handed out by this table).
    #[inline]
    pub(crate) fn node(&self, x: u32) -> &Node {
        &self.nodes[x as usize]
    }

    #[inline]
    fn node_mut(&mut self, x: u32) -> &mut Node {
        &mut self.nodes[x as usize]
    }

    /// A slot for a new node (a vacant one first), linked between `prev` and `next`.
    fn add(&mut self, addr: usize, size: usize, prev: u32, next: u32, state: State) -> u32 {
        let node = Node {
            link: [NIL; 4],
            addr,
            size,
            prev,
            next,
            state,
        };
        let x = if self.vacant != NIL {
            let x = self.vacant;
            self.vacant = self.node(x).link[0];
            self.nodes[x as usize] = node;
            x
        } else {
            let x = u32::try_from(self.nodes.len())
                .ok()
                .filter(|&x| x != NIL)
                .expect("fewer than 2^32 - 1 ranges: the space has fewer granules");
            self.nodes.push(node);
            x
        };
        match prev {
            NIL => self.first = x,
            p => self.node_mut(p).next = x,
        }
        match next {
            NIL => self.last = x,
            n => self.node_mut(n).prev = x,
        }
        self.used += 1;
        x
    }

    /// Appends a free range of `size` bytes at the end (at `addr` for the first); returns it.
    /// Its index fields are the caller's to set (by inserting it).
    pub(crate) fn push_back(&mut self, addr: usize, size: usize) -> u32 {
        let last = self.last;
        let addr = match last {
            NIL => addr,
            l => self.node(l).addr + self.node(l).size,
        };
        self.add(addr, size, last, NIL, State::Free)
    }

    /// Marks `x` a live range of `size` bytes (its size as carved).
    #[inline]
    pub(crate) fn set_live(&mut self, x: u32, size: usize) {
        let n = self.node_mut(x);
        n.size = size;
        n.state = State::Live;
    }

    /// Marks the live range `x` free (before it goes back to the index, which merges it).
    #[inline]
    pub(crate) fn set_freed(&mut self, x: u32) {
        self.node_mut(x).state = State::Free;
    }

    /// The slots in offset order, from the first range.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = u32> + '_ {
        let mut x = self.first;
        core::iter::from_fn(move || {
            let here = x;
            (here != NIL).then(|| {
                x = self.node(here).next;
                here
            })
        })
    }

    /// The vacant slots' list, for the walk: its length, or `None` if it runs through a slot
    /// that is not vacant or is longer than the table (a cycle).
    pub(crate) fn vacant_count(&self) -> Option<usize> {
        let (mut x, mut n) = (self.vacant, 0usize);
        while x != NIL {
            let node = self.nodes.get(x as usize)?;
            if node.state != State::Vacant || n >= self.nodes.len() {
                return None;
            }
            n += 1;
            x = node.link[0];
        }
        Some(n)
    }

    /// Returns slot `x` to the vacant list (unlinked by the caller).
    fn vacate(&mut self, x: u32) {
        let vacant = self.vacant;
        let n = self.node_mut(x);
        n.state = State::Vacant;
        n.link[0] = vacant;
        self.vacant = x;
        self.used -= 1;
    }

    /// Unlinks `y` from the offset order and vacates its slot.
    fn remove(&mut self, y: u32) {
        let Node { prev, next, .. } = *self.node(y);
        match prev {
            NIL => self.first = next,
            p => self.node_mut(p).next = next,
        }
        match next {
            NIL => self.last = prev,
            n => self.node_mut(n).prev = prev,
        }
        self.vacate(y);
    }

    /// Whether `x` is a slot of the table holding a range (the walk asks before it follows a
    /// link that may be corrupt).
    #[inline]
    pub(crate) fn holds(&self, x: u32) -> bool {
        self.nodes
            .get(x as usize)
            .is_some_and(|n| n.state != State::Vacant)
    }

    /// Plants a corruption for the walk's tests: `x`'s size as given, nothing else changed.
    #[cfg(test)]
    pub(crate) fn set_size_for_test(&mut self, x: u32, size: usize) {
        self.node_mut(x).size = size;
    }

    /// Plants a corruption for the walk's tests: `x`'s `prev` link as given.
    #[cfg(test)]
    pub(crate) fn set_prev_for_test(&mut self, x: u32, prev: u32) {
        self.node_mut(x).prev = prev;
    }
}

impl Space for Table {
    #[inline]
    fn field(&self, x: u32, f: usize) -> u32 {
        self.node(x).link[f / 4]
    }
    #[inline]
    fn set_field(&mut self, x: u32, f: usize, v: u32) {
        self.node_mut(x).link[f / 4] = v;
    }
    #[inline]
    fn pos(&self, x: u32) -> usize {
        self.node(x).addr
    }
    #[inline]
    fn addr(&self, x: u32) -> usize {
        self.node(x).addr
    }
    #[inline]
    fn size(&self, x: u32) -> usize {
        self.node(x).size
    }
    #[inline]
    fn shift(&self) -> u32 {
        self.shift
    }
    #[inline]
    fn min_block(&self) -> usize {
        self.granule()
    }
    #[inline]
    fn is_node(&self, x: u32) -> bool {
        self.holds(x)
    }
    #[inline]
    fn free_before(&self, x: u32) -> Option<u32> {
        let p = self.node(x).prev;
        (p != NIL && self.node(p).state == State::Free).then_some(p)
    }
    #[inline]
    fn free_after(&self, x: u32, _size: usize) -> Option<u32> {
        let n = self.node(x).next;
        (n != NIL && self.node(n).state == State::Free).then_some(n)
    }
    #[inline]
    fn split_off(&mut self, x: u32, at: usize) -> u32 {
        let Node {
            addr, size, next, ..
        } = *self.node(x);
        self.add(addr + at, size - at, x, next, State::Free)
    }
    #[inline]
    fn absorb(&mut self, _x: u32, y: u32) {
        self.remove(y);
    }
    #[inline]
    fn mark_free(&mut self, x: u32, size: usize, _prev_used: Option<bool>) {
        let n = self.node_mut(x);
        n.size = size;
        n.state = State::Free;
    }
    #[inline]
    fn resize_free(&mut self, x: u32, size: usize) {
        self.node_mut(x).size = size;
    }
}
