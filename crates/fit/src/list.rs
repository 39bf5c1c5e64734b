//! The one free-list mechanism both managers share: search, split, insert, coalesce.
//!
//! [`FreeList`] holds the policy state (the [`Config`], the next-fit rover, whether a size-sorted
//! list is out of order) and does every list operation through a [`Store`], which only knows how
//! to keep a doubly linked list of chunks:
//!
//! ```text
//!   FreeList<S>  search / take / insert / coalesce / rover      (policy: this module)
//!        |
//!   Store        first, next, prev, chunk, insert_after, unlink, resize, replace, move_after
//!     |-- VecStore (crate::ranges): nodes in a Vec, out of band (abstract addresses, needs alloc)
//!     '-- InBand   (crate::heap):   nodes inside the free chunks themselves (no allocation)
//! ```
//!
//! Chunk ids are `usize`s chosen by the store (a slot index, or the chunk's own offset).

use allocator_traits::Corruption;

use crate::config::{Coalesce, Config, Order, Policy};

/// A free chunk: `size` bytes at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// First address of the chunk.
    pub addr: usize,
    /// Length in bytes.
    pub size: usize,
}

impl Chunk {
    /// The first address past the chunk.
    pub const fn end(&self) -> usize {
        self.addr + self.size
    }
}

/// Storage for a doubly linked list of chunks. Ids stay valid until the chunk is unlinked or
/// replaced.
pub trait Store: Sized {
    /// Number of chunks in the list.
    fn len(&self) -> usize;
    /// Whether the list is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first chunk in list order.
    fn first(&self) -> Option<usize>;
    /// The last chunk in list order.
    fn last(&self) -> Option<usize>;
    /// The chunk after `id`.
    fn next(&self, id: usize) -> Option<usize>;
    /// The chunk before `id`.
    fn prev(&self, id: usize) -> Option<usize>;
    /// The chunk `id`.
    fn chunk(&self, id: usize) -> Chunk;
    /// Whether `id` can name a node at all (in bounds of the store's memory), so a walk over a
    /// corrupted list never reads outside it. Every id the store hands out passes.
    fn is_node(&self, id: usize) -> bool;
    /// Links `chunk` after `after` (at the front for `None`) and returns its id.
    fn insert_after(&mut self, after: Option<usize>, chunk: Chunk) -> usize;
    /// Links `chunk`, the rest of a chunk split after a block now taken, after `after`: as
    /// [`insert_after`](Self::insert_after), for a store that must know the block before the
    /// chunk is in use.
    fn insert_rest_after(&mut self, after: Option<usize>, chunk: Chunk) -> usize {
        self.insert_after(after, chunk)
    }
    /// Removes `id` from the list.
    fn unlink(&mut self, id: usize);
    /// Changes the size of `id`, keeping its address and list position.
    fn resize(&mut self, id: usize, size: usize);
    /// Replaces `id` by `chunk`, the rest of `id` after a block taken from its low end, at the
    /// same list position; returns the new id.
    fn replace(&mut self, id: usize, chunk: Chunk) -> usize;
    /// Moves `id` to just after `after` (the front for `None`), keeping its id.
    fn move_after(&mut self, id: usize, after: Option<usize>);
    /// The free chunk that ends exactly at `addr`, if any (a physical neighbour). The default
    /// walks the list; zero-size chunks are never neighbours.
    fn free_ending_at(&self, addr: usize) -> Option<usize> {
        self.ids().find(|&i| {
            let c = self.chunk(i);
            c.size > 0 && c.end() == addr
        })
    }
    /// The free chunk that starts exactly at `addr`, if any (a physical neighbour).
    fn free_starting_at(&self, addr: usize) -> Option<usize> {
        self.ids().find(|&i| {
            let c = self.chunk(i);
            c.size > 0 && c.addr == addr
        })
    }
    /// One step of a walk over the blocks by address, for sorted insertion by address:
    /// starting from the block at `at`, is there a free chunk here ([`AddrStep::Found`]), the end
    /// of the space (`Found(None)`), or another block further on ([`AddrStep::Next`])? Stores
    /// that cannot walk by address (the default) say [`AddrStep::Unknown`].
    fn addr_step(&self, at: usize) -> AddrStep {
        let _ = at;
        AddrStep::Unknown
    }
    /// The ids in list order.
    fn ids(&self) -> Ids<'_, Self> {
        Ids {
            store: self,
            at: self.first(),
        }
    }
}

/// One step of [`Store::addr_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrStep {
    /// The first free chunk at or after the address (`None`: there is none).
    Found(Option<usize>),
    /// The block at the address is in use; the next block starts here.
    Next(usize),
    /// The store cannot walk by address.
    Unknown,
}

/// Iterator over a store's ids in list order.
#[derive(Debug)]
pub struct Ids<'a, S> {
    store: &'a S,
    at: Option<usize>,
}

impl<S: Store> Iterator for Ids<'_, S> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let id = self.at?;
        self.at = self.store.next(id);
        Some(id)
    }
}

/// The result of a search: the chunk chosen (if any) and how many list entries were examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The chosen chunk's id.
    pub id: Option<usize>,
    /// List entries examined (OSTEP's "searched K elements").
    pub searched: usize,
}

/// A free list under a policy: the shared mechanism of [`crate::ranges::RangeList`] and
/// [`crate::FitHeap`].
#[derive(Debug, Clone)]
// `store` first, in a fixed place (see `Index`).
#[repr(C)]
pub struct FreeList<S> {
    /// The chunks, linked: `first` is `None` iff `len` is 0; following `next` from `first` visits
    /// `len` chunks and ends at `last`; `prev(next(c)) == c` for every chunk but the last.
    store: S,
    config: Config,
    /// For next fit: a chunk of the list (`None`: the head); `None` for the other policies.
    rover: Option<usize>,
    /// A size-sorted list had a size changed in place (split, merge, growth) and is maybe out of
    /// order; the next insertion sorts the whole list. When false, a sorted order holds between
    /// every two neighbours (address order: ascending, non-empty chunks disjoint).
    dirty: bool,
}

impl<S: Store> FreeList<S> {
    /// An empty list over `store`.
    pub const fn new(store: S, config: Config) -> Self {
        FreeList {
            store,
            config,
            rover: None,
            dirty: false,
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The underlying store.
    pub const fn store(&self) -> &S {
        &self.store
    }

    /// The underlying store, mutably (for the owner's own bookkeeping; the list's invariants are
    /// the caller's to keep).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The chunk where the next next-fit search starts (`None`: the head of the list).
    pub fn rover(&self) -> Option<usize> {
        if self.config.policy == Policy::NextFit {
            self.rover.or(self.store.first())
        } else {
            None
        }
    }

    /// Searches for a chunk `fits` accepts, by the policy, from the head (or the rover).
    /// Best and worst fit compare chunk sizes; ties go to the earliest in list order.
    pub fn search(&self, mut fits: impl FnMut(Chunk) -> bool) -> Found {
        let len = self.store.len();
        match self.config.policy {
            Policy::FirstFit => {
                let mut searched = 0;
                for id in self.store.ids() {
                    searched += 1;
                    if fits(self.store.chunk(id)) {
                        return Found {
                            id: Some(id),
                            searched,
                        };
                    }
                }
                Found { id: None, searched }
            }
            Policy::NextFit => {
                let mut at = self.rover.or(self.store.first());
                let mut searched = 0;
                while let Some(id) = at {
                    if searched == len {
                        break;
                    }
                    searched += 1;
                    if fits(self.store.chunk(id)) {
                        return Found {
                            id: Some(id),
                            searched,
                        };
                    }
                    at = self.store.next(id).or(self.store.first());
                }
                Found { id: None, searched }
            }
            Policy::BestFit | Policy::WorstFit => {
                let best = self.config.policy == Policy::BestFit;
                let mut chosen: Option<(usize, usize)> = None;
                for id in self.store.ids() {
                    let c = self.store.chunk(id);
                    if !fits(c) {
                        continue;
                    }
                    let better = match chosen {
                        None => true,
                        Some((_, s)) if best => c.size < s,
                        Some((_, s)) => c.size > s,
                    };
                    if better {
                        chosen = Some((id, c.size));
                    }
                }
                Found {
                    id: chosen.map(|(id, _)| id),
                    searched: len,
                }
            }
        }
    }

    /// Carves `need` bytes starting `front` bytes into chunk `id` (from its low end when `front`
    /// is 0) and returns the carved range. The piece before (if `front > 0`) keeps the chunk's
    /// list position; the piece after takes it when there is no front piece (OSTEP's in-place
    /// split), or goes just after the front piece. Nothing is re-sorted. A piece after smaller than
    /// `min_chunk` is not kept as a chunk: it is added to the carved range.
    ///
    /// The caller guarantees `front + need <= size` and `front == 0 || front >= min_chunk`.
    pub fn take(&mut self, id: usize, front: usize, need: usize, min_chunk: usize) -> Chunk {
        let (carved, rest) = split(self.store.chunk(id), front, need, min_chunk);
        let back = rest.size;
        let next_fit = self.config.policy == Policy::NextFit;
        if front > 0 {
            self.store.resize(id, front);
            self.mark_resized(id);
            let after = if back > 0 {
                let r = self.store.insert_rest_after(Some(id), rest);
                self.mark_resized(r);
                Some(r)
            } else {
                self.store.next(id)
            };
            if next_fit {
                self.rover = after;
            }
        } else if back > 0 {
            let new = self.store.replace(id, rest);
            if next_fit || self.rover == Some(id) {
                self.rover = Some(new);
            }
            self.mark_resized(new);
        } else {
            if next_fit {
                self.rover = Some(id);
            }
            self.remove(id);
        }
        carved
    }

    /// Unlinks `id`; a rover on it moves to the next chunk (or the head).
    pub fn remove(&mut self, id: usize) {
        if self.rover == Some(id) {
            self.rover = self.store.next(id);
        }
        self.store.unlink(id);
    }

    /// Grows chunk `id` to `size` in place (its address stays).
    pub fn grow_chunk(&mut self, id: usize, size: usize) {
        self.store.resize(id, size);
        self.mark_resized(id);
    }

    /// Chunk `id` changed in place (or was linked outside the sorted insertion): if the list is
    /// sorted and `id` is now out of place among its neighbours, the next insertion re-sorts.
    fn mark_resized(&mut self, id: usize) {
        let order = self.config.order;
        if !order.is_sorted() || self.dirty {
            return;
        }
        let c = self.store.chunk(id);
        let before = self
            .store
            .prev(id)
            .is_some_and(|p| less(order, c, self.store.chunk(p)));
        let after = self
            .store
            .next(id)
            .is_some_and(|n| less(order, self.store.chunk(n), c));
        self.dirty = before || after;
    }

    /// Returns a chunk to the list: physical coalescing first (if configured), then insertion by
    /// the list order, then OSTEP's list-order pass (if configured). Returns the id of the chunk
    /// that now holds `chunk`'s bytes.
    pub fn insert(&mut self, chunk: Chunk) -> usize {
        let mut chunk = chunk;
        let mut rover_merged = false;
        if self.config.coalesce == Coalesce::Physical && chunk.size > 0 {
            if let Some(p) = self.store.free_ending_at(chunk.addr) {
                let pc = self.store.chunk(p);
                rover_merged |= self.rover == Some(p);
                self.rover = self.rover.filter(|&r| r != p);
                self.store.unlink(p);
                chunk = Chunk {
                    addr: pc.addr,
                    size: pc.size + chunk.size,
                };
            }
            if let Some(n) = self.store.free_starting_at(chunk.end()) {
                let nc = self.store.chunk(n);
                rover_merged |= self.rover == Some(n);
                self.rover = self.rover.filter(|&r| r != n);
                self.store.unlink(n);
                chunk.size += nc.size;
            }
        }
        let mut id = self.insert_ordered(chunk);
        if rover_merged {
            self.rover = Some(id);
        }
        if self.config.coalesce == Coalesce::ListOrder {
            id = self.list_order_pass(id);
        }
        id
    }

    fn insert_ordered(&mut self, chunk: Chunk) -> usize {
        let order = self.config.order;
        match order {
            Order::InsertFront => self.store.insert_after(None, chunk),
            Order::InsertBack => {
                let last = self.store.last();
                self.store.insert_after(last, chunk)
            }
            Order::AddrSort | Order::SizeAsc | Order::SizeDesc => {
                if self.dirty {
                    // Append, then stably sort the whole list (what malloc.py does every time;
                    // when the list is known to be sorted the walk below gives the same result).
                    let last = self.store.last();
                    let id = self.store.insert_after(last, chunk);
                    self.sort();
                    self.dirty = false;
                    id
                } else {
                    let after = self.sorted_position(chunk);
                    self.store.insert_after(after, chunk)
                }
            }
        }
    }

    /// Where `chunk` goes in the sorted (not dirty) list: after the last chunk whose key is not
    /// greater (a stable sort puts a new chunk after its equals). Walks from both ends of the list
    /// at once and, for address order, also over the blocks physically after `chunk` (where the
    /// store can), so the cost is the shortest of the three walks.
    fn sorted_position(&self, chunk: Chunk) -> Option<usize> {
        let order = self.config.order;
        let mut phys = if order == Order::AddrSort && chunk.size > 0 {
            Some(chunk.end())
        } else {
            None
        };
        let (mut front, mut back) = (self.store.first(), self.store.last());
        let mut after_front = None;
        loop {
            // From the head: stop at the first chunk greater than `chunk`.
            match front {
                Some(e) if !less(order, chunk, self.store.chunk(e)) => {
                    after_front = Some(e);
                    front = self.store.next(e);
                }
                _ => return after_front,
            }
            // From the tail: stop at the last chunk not greater than `chunk`.
            match back {
                Some(e) if less(order, chunk, self.store.chunk(e)) => back = self.store.prev(e),
                _ => return back,
            }
            // By address: the first free chunk above `chunk` follows it in the list.
            if let Some(at) = phys {
                match self.store.addr_step(at) {
                    AddrStep::Found(Some(n)) => return self.store.prev(n),
                    AddrStep::Found(None) => return self.store.last(),
                    AddrStep::Next(next) => phys = Some(next),
                    AddrStep::Unknown => phys = None,
                }
            }
        }
    }

    /// Stable insertion sort of the whole list by the list order's key.
    fn sort(&mut self) {
        let order = self.config.order;
        let Some(first) = self.store.first() else {
            return;
        };
        let mut sorted_tail = first;
        let mut at = self.store.next(first);
        while let Some(c) = at {
            let next = self.store.next(c);
            let cc = self.store.chunk(c);
            if !less(order, cc, self.store.chunk(sorted_tail)) {
                sorted_tail = c;
            } else {
                // Goes after the last chunk of the sorted prefix whose key is not greater; the
                // walk stops before `sorted_tail` since `c` is less than it.
                let mut after = None;
                let mut e = self.store.first();
                while let Some(x) = e {
                    if less(order, cc, self.store.chunk(x)) {
                        break;
                    }
                    after = Some(x);
                    e = self.store.next(x);
                }
                self.store.move_after(c, after);
            }
            at = next;
        }
    }

    /// OSTEP's coalescing pass over the whole list. Returns the id now holding `keep`'s bytes.
    fn list_order_pass(&mut self, keep: usize) -> usize {
        let mut keep = keep;
        let mut at = self.store.first();
        while let Some(cur) = at {
            while let Some(n) = self.store.next(cur) {
                let (c, nc) = (self.store.chunk(cur), self.store.chunk(n));
                if nc.addr != c.end() {
                    break;
                }
                if self.rover == Some(n) {
                    self.rover = Some(cur);
                }
                if keep == n {
                    keep = cur;
                }
                self.store.unlink(n);
                self.store.resize(cur, c.size + nc.size);
                self.mark_resized(cur);
            }
            at = self.store.next(cur);
        }
        keep
    }

    /// Checks the invariants on the fields: the links (see `store`), the list order (unless
    /// `dirty`), that OSTEP's list-order coalescing under address order (full coalescing) left
    /// no two list neighbours contiguous (under the other orders an allocation that uses up a
    /// chunk can make its list neighbours contiguous until the next free's pass), and
    /// that the rover is a chunk of the list; `each` checks every chunk for the owner (that it is
    /// a free block of the heap, inside the range). `base` is added to chunk addresses in the
    /// report. Never follows an id the store says cannot be a node; O(chunks).
    pub fn check_invariants(
        &self,
        base: usize,
        mut each: impl FnMut(usize, Chunk) -> Result<(), Corruption>,
    ) -> Result<(), Corruption> {
        const S: &str = "free list";
        let store = &self.store;
        let len = store.len();
        Corruption::ensure(
            store.first().is_none() == (len == 0),
            S,
            base,
            "head is empty iff the length is 0",
        )?;
        let (mut prev, mut at, mut count) = (None, store.first(), 0usize);
        let mut rover_listed = false;
        while let Some(id) = at {
            Corruption::ensure(
                store.is_node(id),
                S,
                base.wrapping_add(id),
                "a link points outside the heap",
            )?;
            let c = store.chunk(id);
            let addr = base.wrapping_add(c.addr);
            count += 1;
            Corruption::ensure(
                count <= len,
                S,
                addr,
                "more chunks linked than the length says (a cycle?)",
            )?;
            Corruption::ensure(
                store.prev(id) == prev,
                S,
                addr,
                "prev link is not the chunk before",
            )?;
            each(id, c)?;
            if let Some(p) = prev {
                let pc = store.chunk(p);
                if self.config.order.is_sorted() && !self.dirty {
                    // Address order also keeps non-empty chunks apart (zero-size chunks, which
                    // only the range manager has, may share an address).
                    let in_order = !less(self.config.order, c, pc)
                        && (self.config.order != Order::AddrSort
                            || pc.size == 0
                            || c.size == 0
                            || pc.end() <= c.addr);
                    Corruption::ensure(in_order, S, addr, "out of the list order")?;
                }
                if self.config.coalesce == Coalesce::ListOrder
                    && self.config.order == Order::AddrSort
                {
                    let apart = pc.end() != c.addr;
                    Corruption::ensure(
                        apart,
                        S,
                        addr,
                        "contiguous with the chunk before it in the list, not merged",
                    )?;
                }
            }
            rover_listed |= self.rover == Some(id);
            prev = Some(id);
            at = store.next(id);
        }
        Corruption::ensure(
            count == len,
            S,
            base,
            "fewer chunks linked than the length says",
        )?;
        Corruption::ensure(
            store.last() == prev,
            S,
            base,
            "tail is not the last chunk linked",
        )?;
        let rover_ok = match self.rover {
            None => true,
            Some(_) => self.config.policy == Policy::NextFit && rover_listed,
        };
        Corruption::ensure(
            rover_ok,
            "rover",
            base,
            "the rover is not a chunk of the list",
        )
    }

    /// The chunks in list order.
    pub fn iter(&self) -> impl Iterator<Item = Chunk> + '_ {
        self.store.ids().map(|id| self.store.chunk(id))
    }
}

/// Splits chunk `c` for [`FreeList::take`] (and the index's): the carved range `need` bytes at
/// `front`, and the rest after it, which is empty (added to the carved range) when smaller than
/// `min_chunk`.
#[inline]
pub(crate) fn split(c: Chunk, front: usize, need: usize, min_chunk: usize) -> (Chunk, Chunk) {
    let mut need = need;
    let mut back = c.size - front - need;
    if back < min_chunk.max(1) {
        need += back;
        back = 0;
    }
    let carved = Chunk {
        addr: c.addr + front,
        size: need,
    };
    let rest = Chunk {
        addr: carved.end(),
        size: back,
    };
    (carved, rest)
}

/// Whether `a` sorts strictly before `b` in `order` (only meaningful for sorted orders).
fn less(order: Order, a: Chunk, b: Chunk) -> bool {
    match order {
        Order::AddrSort => a.addr < b.addr,
        Order::SizeAsc => a.size < b.size,
        Order::SizeDesc => a.size > b.size,
        Order::InsertFront | Order::InsertBack => false,
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::ranges::VecStore;

    fn list(cfg: Config, chunks: &[(usize, usize)]) -> FreeList<VecStore> {
        let mut l = FreeList::new(VecStore::new(), cfg);
        for &(addr, size) in chunks {
            l.insert(Chunk { addr, size });
        }
        l
    }

    fn problem(l: &FreeList<VecStore>) -> &'static str {
        l.check_invariants(0, |_, _| Ok(()))
            .expect_err("the walk must report it")
            .problem
    }

    #[test]
    fn a_rover_that_is_not_listed() {
        let cfg = Config::next_fit().with_coalesce(Coalesce::Off);
        let mut l = list(cfg, &[(0, 10), (20, 10), (40, 10)]);
        let found = l.search(|c| c.size >= 4);
        l.take(found.id.unwrap(), 0, 4, 1);
        l.check_invariants(0, |_, _| Ok(())).unwrap();
        assert!(l.rover().is_some());
        l.rover = Some(77);
        assert_eq!(problem(&l), "the rover is not a chunk of the list");
    }

    #[test]
    fn a_prev_link_that_is_not_the_chunk_before() {
        let cfg = Config::first_fit().with_coalesce(Coalesce::Off);
        let mut l = list(cfg, &[(0, 10), (20, 10), (40, 10)]);
        let third = l.store.last().unwrap();
        l.store.set_prev(third, l.store.first());
        assert_eq!(problem(&l), "prev link is not the chunk before");
    }

    #[test]
    fn list_neighbours_left_contiguous_under_list_coalescing() {
        let cfg = Config::first_fit().with_coalesce(Coalesce::ListOrder);
        let mut l = list(cfg, &[(0, 10), (40, 10)]);
        l.check_invariants(0, |_, _| Ok(())).unwrap();
        // Resize the first so it reaches the second without the pass merging them.
        let first = l.store.first().unwrap();
        l.store.resize(first, 40);
        assert_eq!(
            problem(&l),
            "contiguous with the chunk before it in the list, not merged"
        );
    }
}
