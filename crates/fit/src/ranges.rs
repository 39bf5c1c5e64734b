//! A pure manager of address ranges: the fit policies over abstract addresses, with the exact
//! semantics of OSTEP's `malloc.py` (reference: `ostep-malloc-sim.md`, section 2).
//!
//! ```text
//!   base=1000                                             base+size=1100
//!   |hdr|  block A  |  free  |hdr| block B |     free               |
//!   block map: {1000 -> 15, 1030 -> 20}     free list (list order): [(1015,15) (1050,50)]
//! ```
//!
//! The state is the **free list**, an ordered sequence of `(addr, size)` chunks (initially
//! `[(base, size)]`), and the **block map** from block address (the header's start) to block size
//! (header and size rounding included). Nothing is stored in the managed space, so the addresses
//! can name anything: OSTEP's heap at 1000, a GPU buffer, a file.
//!
//! * `malloc(req)`: round `req` up to a multiple of `align` (the size only: addresses are never
//!   aligned), add `header` (not rounded), search the list from its head in its current order
//!   (next fit: from the rover, wrapping), take the block from the chosen chunk's low end and leave
//!   the remainder **in place, at the same list index**, with no re-sort.
//! * `free(addr)`: an address not in the block map is an error and changes nothing. Otherwise the
//!   chunk is inserted by the list order (`addr`/`size-asc`/`size-desc`: appended, then the whole
//!   list stably re-sorted; `lifo`: front; `fifo`: back), then coalesced (OSTEP's `-C` is
//!   [`Coalesce::ListOrder`](crate::Coalesce::ListOrder): one pass merging list neighbours that are contiguous in ascending
//!   address order).
//!
//! # Running an OSTEP op sequence
//!
//! `malloc.py -p FIRST -l ADDRSORT -C -H 0 -A +10,+20,-0,-1 -c`:
//!
//! ```
//! use fit::ranges::{Chunk, RangeList};
//! use fit::{Config, Order, Policy};
//!
//! let cfg = Config::ostep(Policy::FirstFit, Order::AddrSort, true, 0, None);
//! let mut heap = RangeList::new(1000, 100, cfg).unwrap();
//! let mut ptr = Vec::new(); // OSTEP's p[]: successful allocations only
//!
//! let p = heap.malloc(10).unwrap(); // ptr[0] = Alloc(10) returned 1000 (searched 1 elements)
//! assert_eq!((p.addr, p.searched), (1000, 1));
//! ptr.push(p.addr);
//! let p = heap.malloc(20).unwrap(); // ptr[1] = Alloc(20) returned 1010 (searched 1 elements)
//! ptr.push(p.addr);
//! heap.free(ptr[0]).unwrap(); // Free(ptr[0]) returned 0
//! let list: Vec<Chunk> = heap.free_list().collect();
//! assert_eq!(list, [Chunk { addr: 1000, size: 10 }, Chunk { addr: 1030, size: 70 }]);
//! heap.free(ptr[1]).unwrap(); // coalesces into one chunk
//! assert_eq!(heap.free_list().collect::<Vec<_>>(), [Chunk { addr: 1000, size: 100 }]);
//! // A double free is an error (malloc.py returns -1) and changes nothing.
//! assert!(heap.free(ptr[1]).is_err());
//! // A request that fits nowhere reports how many entries were searched.
//! assert_eq!(heap.malloc(500).unwrap_err().searched, 1);
//! ```
//!
//! A simulator printing `Free List [ Size N ]: [ addr:A sz:S ]...` reads [`RangeList::free_list`]
//! (list order); `-A` mode prints [`Placement::addr`], random mode `addr + header`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use allocator_traits::{BlockKind, Corruption, Inspector};

use crate::config::Config;
pub use crate::list::Chunk;
use crate::list::{FreeList, Store};

const NIL: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    chunk: Chunk,
    prev: usize,
    next: usize,
}

/// Out-of-band storage of the free list: nodes in a `Vec`, linked by index; unlinked slots are
/// reused.
#[derive(Debug, Default, Clone)]
pub struct VecStore {
    nodes: Vec<Node>,
    spare: Vec<usize>,
    head: usize,
    tail: usize,
    len: usize,
}

impl VecStore {
    /// An empty list.
    pub const fn new() -> Self {
        VecStore {
            nodes: Vec::new(),
            spare: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    fn link(&mut self, id: usize, after: Option<usize>) {
        let next = match after {
            Some(a) => self.nodes[a].next,
            None => self.head,
        };
        self.nodes[id].prev = after.unwrap_or(NIL);
        self.nodes[id].next = next;
        match after {
            Some(a) => self.nodes[a].next = id,
            None => self.head = id,
        }
        if next == NIL {
            self.tail = id;
        } else {
            self.nodes[next].prev = id;
        }
    }

    /// Overwrites `id`'s prev link (for tests that plant a corruption).
    #[cfg(test)]
    pub(crate) fn set_prev(&mut self, id: usize, prev: Option<usize>) {
        self.nodes[id].prev = prev.unwrap_or(NIL);
    }

    fn detach(&mut self, id: usize) {
        let Node { prev, next, .. } = self.nodes[id];
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
    }
}

fn opt(i: usize) -> Option<usize> {
    (i != NIL).then_some(i)
}

impl Store for VecStore {
    fn len(&self) -> usize {
        self.len
    }
    fn first(&self) -> Option<usize> {
        opt(self.head)
    }
    fn last(&self) -> Option<usize> {
        opt(self.tail)
    }
    fn next(&self, id: usize) -> Option<usize> {
        opt(self.nodes[id].next)
    }
    fn prev(&self, id: usize) -> Option<usize> {
        opt(self.nodes[id].prev)
    }
    fn chunk(&self, id: usize) -> Chunk {
        self.nodes[id].chunk
    }
    fn is_node(&self, id: usize) -> bool {
        id < self.nodes.len()
    }
    fn insert_after(&mut self, after: Option<usize>, chunk: Chunk) -> usize {
        let node = Node {
            chunk,
            prev: NIL,
            next: NIL,
        };
        let id = match self.spare.pop() {
            Some(id) => {
                self.nodes[id] = node;
                id
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.link(id, after);
        self.len += 1;
        id
    }
    fn unlink(&mut self, id: usize) {
        self.detach(id);
        self.spare.push(id);
        self.len -= 1;
    }
    fn resize(&mut self, id: usize, size: usize) {
        self.nodes[id].chunk.size = size;
    }
    fn replace(&mut self, id: usize, chunk: Chunk) -> usize {
        self.nodes[id].chunk = chunk;
        id
    }
    fn move_after(&mut self, id: usize, after: Option<usize>) {
        self.detach(id);
        self.link(id, after);
    }
}

/// A block in the block map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Bytes the block occupies: the rounded request plus the header.
    pub size: usize,
    /// What the caller asked for.
    pub requested: usize,
}

/// A successful `malloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The block's address (the header's start, as `malloc.py` returns it).
    pub addr: usize,
    /// Bytes the block occupies (rounded request plus header).
    pub size: usize,
    /// Free-list entries examined.
    pub searched: usize,
}

/// Why a `malloc` failed. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (searched {searched} elements)")]
pub struct Failure {
    /// Free-list entries examined (0 for an empty list).
    pub searched: usize,
    /// What went wrong.
    pub reason: FailureReason,
}

/// What went wrong in a failed `malloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// No free chunk is large enough (`malloc.py` returns -1).
    #[error("no free chunk fits {need} bytes")]
    NoFit {
        /// The block size searched for (rounded request plus header).
        need: usize,
    },
    /// The chosen chunk's address already names a live block. This only happens with zero-size
    /// blocks; `malloc.py` fails its `addr not in map` assertion here.
    #[error("address {addr} already names a live block (a zero-size block)")]
    DuplicateAddress {
        /// The address.
        addr: usize,
    },
    /// Rounding the request or adding the header overflows.
    #[error("request of {req} bytes overflows with its header and rounding")]
    Overflow {
        /// The request.
        req: usize,
    },
}

/// Why a `free` failed. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FreeRangeError {
    /// No live block starts at this address (never allocated, or already freed; `malloc.py`
    /// returns -1).
    #[error("free of {addr}: no live block at this address")]
    Unknown {
        /// The address passed to free.
        addr: usize,
    },
}

/// A configuration the range manager cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeConfigError {
    /// `align` is 0 (`malloc.py` asserts `a == -1 or a > 0`; `1` means no rounding).
    #[error("alignment must be at least 1 (1 turns size rounding off)")]
    ZeroAlign,
    /// `base + size` overflows.
    #[error("heap of {size} bytes at {base} overflows the address space")]
    Overflow {
        /// The base address.
        base: usize,
        /// The heap size.
        size: usize,
    },
}

/// The fit policies over abstract address ranges, with `malloc.py`'s semantics. See the
/// [module docs](self) for an OSTEP run.
#[derive(Debug, Clone)]
pub struct RangeList {
    list: FreeList<VecStore>,
    map: BTreeMap<usize, Block>,
    base: usize,
    size: usize,
}

impl RangeList {
    /// A heap of `size` bytes at `base`: the free list is `[(base, size)]`, even when `size` is 0
    /// (malloc.py starts every run with that one chunk, and `+0` on `-S 0` succeeds).
    pub fn new(base: usize, size: usize, config: Config) -> Result<Self, RangeConfigError> {
        if config.align == 0 {
            return Err(RangeConfigError::ZeroAlign);
        }
        if base.checked_add(size).is_none() {
            return Err(RangeConfigError::Overflow { base, size });
        }
        let mut store = VecStore::new();
        store.insert_after(None, Chunk { addr: base, size });
        Ok(RangeList {
            list: FreeList::new(store, config),
            map: BTreeMap::new(),
            base,
            size,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.list.config()
    }

    /// The heap's first address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The heap's size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The block size a request of `req` bytes needs: `req` rounded up to a multiple of `align`,
    /// plus the header (`None` on overflow).
    pub fn block_size(&self, req: usize) -> Option<usize> {
        let cfg = self.config();
        let a = cfg.align.max(1);
        req.checked_add((a - req % a) % a)?.checked_add(cfg.header)
    }

    /// Allocates a block for a request of `req` bytes (see the [module docs](self)).
    pub fn malloc(&mut self, req: usize) -> Result<Placement, Failure> {
        let Some(need) = self.block_size(req) else {
            return Err(Failure {
                searched: 0,
                reason: FailureReason::Overflow { req },
            });
        };
        let found = self.list.search(|c| c.size >= need);
        let searched = found.searched;
        let Some(id) = found.id else {
            return Err(Failure {
                searched,
                reason: FailureReason::NoFit { need },
            });
        };
        let addr = self.list.store().chunk(id).addr;
        if self.map.contains_key(&addr) {
            return Err(Failure {
                searched,
                reason: FailureReason::DuplicateAddress { addr },
            });
        }
        let carved = self.list.take(id, 0, need, 1);
        debug_assert_eq!(carved.size, need);
        self.map.insert(
            addr,
            Block {
                size: need,
                requested: req,
            },
        );
        Ok(Placement {
            addr,
            size: need,
            searched,
        })
    }

    /// Frees the block at `addr` (see the [module docs](self)). An address that names no live
    /// block is an error and changes nothing.
    pub fn free(&mut self, addr: usize) -> Result<(), FreeRangeError> {
        let Some(block) = self.map.remove(&addr) else {
            return Err(FreeRangeError::Unknown { addr });
        };
        self.list.insert(Chunk {
            addr,
            size: block.size,
        });
        Ok(())
    }

    /// The free list in list order.
    pub fn free_list(&self) -> impl Iterator<Item = Chunk> + '_ {
        self.list.iter()
    }

    /// Number of chunks in the free list.
    pub fn free_len(&self) -> usize {
        self.list.store().len()
    }

    /// The live blocks in address order.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, Block)> + '_ {
        self.map.iter().map(|(&a, &b)| (a, b))
    }

    /// The live block at `addr`, if any.
    pub fn block(&self, addr: usize) -> Option<Block> {
        self.map.get(&addr).copied()
    }

    /// For next fit: the chunk where the next search starts (`None` for the other policies or
    /// an empty list).
    pub fn rover(&self) -> Option<Chunk> {
        self.list.rover().map(|id| self.list.store().chunk(id))
    }

    /// Walks the free list (links, order, rover: [`FreeList::check_invariants`]) and the block
    /// map: every free chunk lies inside the heap, every block's size is what its request needs,
    /// and the non-empty free chunks and blocks tile the heap (no overlap, no gap; zero-size
    /// ones take no room and may lie anywhere inside it). O(chunks + blocks)
    /// plus a sort of the free chunks; for tests and debugging.
    pub fn check_invariants(&self) -> Result<(), Corruption> {
        let end = self.base + self.size;
        self.list.check_invariants(0, |_, c| {
            let inside = c.addr >= self.base && c.addr <= end && c.size <= end - c.addr;
            Corruption::ensure(inside, "free list", c.addr, "chunk outside the heap")
        })?;
        // The non-empty free chunks and blocks tile the heap; zero-size ones (malloc.py allows
        // them) take no room and may lie anywhere inside it, even inside a free chunk.
        let mut free: Vec<Chunk> = self.list.iter().filter(|c| c.size > 0).collect();
        free.sort_by_key(|c| c.addr);
        let mut free = free.into_iter().peekable();
        let mut blocks = self.map.iter().peekable();
        let mut at = self.base;
        loop {
            let (addr, size, what) = match (free.peek(), blocks.peek()) {
                (_, Some(&(&a, b))) if b.size == 0 => {
                    blocks.next();
                    let inside =
                        a >= self.base && a <= end && self.block_size(b.requested) == Some(0);
                    Corruption::ensure(
                        inside,
                        "block map",
                        a,
                        "zero-size block outside the heap or not of a zero request",
                    )?;
                    continue;
                }
                (Some(f), Some(&(&a, _))) if f.addr <= a => (f.addr, f.size, "free list"),
                (Some(f), None) => (f.addr, f.size, "free list"),
                (_, Some(&(&a, b))) => {
                    let need = self.block_size(b.requested);
                    Corruption::ensure(
                        need == Some(b.size),
                        "block map",
                        a,
                        "block size is not what its request needs",
                    )?;
                    (a, b.size, "block map")
                }
                (None, None) => break,
            };
            if what == "free list" {
                free.next();
            } else {
                blocks.next();
            }
            Corruption::ensure(
                addr == at,
                what,
                addr,
                "overlaps or leaves a gap after the range before it",
            )?;
            at = addr + size;
        }
        Corruption::ensure(
            at == end,
            "block map",
            at,
            "the ranges do not reach the end of the heap",
        )
    }

    /// Shows the heap: the region, its blocks in address order (headers, live bytes, rounding,
    /// free chunks), the free list in list order, and the rover for next fit.
    pub fn inspect(&self, out: &mut dyn Inspector) {
        out.region(self.base, self.size);
        let header = self.config().header;
        let mut free: Vec<Chunk> = self.list.iter().collect();
        free.sort_by_key(|c| c.addr);
        let mut free = free.into_iter().peekable();
        let mut live = self.map.iter().peekable();
        loop {
            let take_free = match (free.peek(), live.peek()) {
                (Some(f), Some(&(&a, _))) => f.addr <= a,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_free {
                if let Some(f) = free.next() {
                    out.block(f.addr, f.size, BlockKind::Free);
                }
            } else if let Some((&a, b)) = live.next() {
                let h = header.min(b.size);
                if h > 0 {
                    out.block(a, h, BlockKind::Header);
                }
                let req = b.requested.min(b.size - h);
                out.block(a + h, req, BlockKind::Live { requested: req });
                if b.size - h > req {
                    out.block(a + h + req, b.size - h - req, BlockKind::Padding);
                }
            }
        }
        out.begin_list(format_args!("free list"));
        for c in self.list.iter() {
            out.list_entry(c.addr, c.size);
        }
        out.end_list();
        if let Some(r) = self.rover() {
            out.value(format_args!("rover"), r.addr);
        }
    }
}

/// Planted corruptions of the block map: each breaks one invariant of the walk.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Order, Policy};

    fn sim() -> RangeList {
        let cfg = Config::ostep(Policy::BestFit, Order::AddrSort, true, 0, None);
        let mut r = RangeList::new(1000, 100, cfg).unwrap();
        r.malloc(10).unwrap();
        r.malloc(20).unwrap();
        r.check_invariants().unwrap();
        r
    }

    #[test]
    fn overlapping_blocks() {
        let mut r = sim();
        r.map.insert(
            1005,
            Block {
                size: 10,
                requested: 10,
            },
        );
        let c = r.check_invariants().unwrap_err();
        assert_eq!(
            c.problem,
            "overlaps or leaves a gap after the range before it"
        );
    }

    #[test]
    fn a_block_whose_size_is_not_its_request() {
        let mut r = sim();
        r.map.insert(
            1000,
            Block {
                size: 10,
                requested: 12,
            },
        );
        let c = r.check_invariants().unwrap_err();
        assert_eq!(c.problem, "block size is not what its request needs");
    }

    #[test]
    fn a_lost_range() {
        let mut r = sim();
        r.free(1010).unwrap();
        let id = r.list.store().last().unwrap();
        r.list.store_mut().resize(id, 60);
        let c = r.check_invariants().unwrap_err();
        assert_eq!(c.problem, "the ranges do not reach the end of the heap");
    }
}
