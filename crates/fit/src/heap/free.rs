//! The heap's free blocks under one of the two mechanisms: the list (searched in list order) or
//! the index (a tree that makes the list's decisions in address order). The heap calls the same
//! operations on either; both keep their nodes inside the free blocks.
//!
//! ```text
//!   FitHeap --search/take/insert/remove/grow_chunk--> Free::List(FreeList<InBand>)
//!                                                     Free::Index(Index)
//! ```

use allocator_traits::Corruption;

use crate::config::Config;
use crate::index::Index;
use crate::list::{Chunk, FreeList, Store};
use crate::search::Search;

use super::block::{FIRST, Mem, id_of, off_of};
use super::inband::InBand;

/// The free blocks, under the mechanism the configuration asks for
/// ([`Config::uses_index`]).
#[derive(Debug)]
// The index holds its bins' table (2 KiB) in place: a `no_std` heap allocates nothing.
#[allow(clippy::large_enum_variant)]
// A tag, then either mechanism at one offset; both begin with the heap's `Mem` (`repr(C)`
// structs), so `mem()` is one address whichever variant holds it and costs no match.
#[repr(C, u8)]
pub(crate) enum Free {
    /// The free list, nodes inside the free blocks.
    List(FreeList<InBand>),
    /// The index, nodes inside the free blocks (ids their payloads' granules).
    Index(Index<Mem>),
}

impl Free {
    pub(crate) const fn new(config: Config) -> Self {
        if config.uses_index() {
            Free::Index(Index::new(&config, Mem::new()))
        } else {
            Free::List(FreeList::new(InBand::new(), config))
        }
    }

    /// The heap's memory.
    #[inline]
    pub(crate) fn mem(&self) -> &Mem {
        match self {
            Free::List(l) => &l.store().mem,
            Free::Index(i) => &i.space,
        }
    }

    /// The heap's memory, to change its tags or its end.
    #[inline]
    pub(crate) fn mem_mut(&mut self) -> &mut Mem {
        match self {
            Free::List(l) => &mut l.store_mut().mem,
            Free::Index(i) => &mut i.space,
        }
    }

    /// Number of free blocks.
    pub(crate) fn len(&self) -> usize {
        match self {
            Free::List(l) => l.store().len(),
            Free::Index(i) => i.len(),
        }
    }

    /// Carves `need` bytes `front` bytes into the free block `id`.
    #[inline]
    pub(crate) fn take(&mut self, id: usize, front: usize, need: usize, min: usize) -> Chunk {
        match self {
            Free::List(l) => l.take(id, front, need, min),
            Free::Index(i) => i.take(id_of(id), front, need, min).1,
        }
    }

    /// Returns a block (its header written), merging as configured.
    #[inline]
    pub(crate) fn insert(&mut self, chunk: Chunk) -> usize {
        match self {
            Free::List(l) => l.insert(chunk),
            Free::Index(i) => off_of(i.insert(id_of(chunk.addr), chunk.size)),
        }
    }

    /// Changes the size of free block `id` in place (its address stays).
    pub(crate) fn resize_chunk(&mut self, id: usize, size: usize) {
        match self {
            Free::List(l) => l.grow_chunk(id, size),
            Free::Index(i) => i.grow_chunk(id_of(id), size),
        }
    }

    /// Where the next next-fit search starts.
    pub(crate) fn rover(&self) -> Option<usize> {
        match self {
            Free::List(l) => l.rover(),
            Free::Index(i) => i.rover().map(off_of),
        }
    }

    /// Whether the free block at `off` is linked into the mechanism (O(1), once the mechanism's
    /// own walk has passed).
    pub(crate) fn is_listed(&self, off: usize) -> bool {
        match self {
            Free::List(l) => l.store().is_listed(off),
            Free::Index(i) => i.is_listed(id_of(off)),
        }
    }

    /// The mechanism's own walk; `each` checks every block it holds.
    pub(crate) fn check_invariants(
        &self,
        base: usize,
        mut each: impl FnMut(usize) -> Result<(), Corruption>,
    ) -> Result<(), Corruption> {
        match self {
            Free::List(l) => l.check_invariants(base, |id, _| each(id)),
            Free::Index(i) => i.check_invariants(base, |x| each(off_of(x))),
        }
    }

    /// The free blocks as the mechanism orders them: list order, or (the index) address order
    /// through the blocks.
    pub(crate) fn iter(&self) -> FreeIter<'_> {
        match self {
            Free::List(l) => FreeIter::List(l.store(), l.store().first()),
            Free::Index(i) => {
                FreeIter::Blocks(&i.space, if i.space.end == 0 { usize::MAX } else { FIRST })
            }
        }
    }
}

/// Ids are block offsets; `skip` is best fit's wilderness, which [`find`](crate::search::find)
/// considers last.
impl Search for Free {
    type Id = usize;
    #[inline]
    fn search(
        &self,
        need: usize,
        fits: Option<impl Fn(Chunk) -> bool>,
        skip: Option<usize>,
    ) -> Option<usize> {
        match (self, fits) {
            (Free::List(l), Some(f)) => l.search(|c| Some(c.addr) != skip && f(c)).id,
            (Free::List(l), None) => l.search(|c| Some(c.addr) != skip && c.size >= need).id,
            (Free::Index(i), fits) => i.search(need, fits, skip.map(id_of)).map(off_of),
        }
    }
    #[inline]
    fn chunk(&self, id: usize) -> Chunk {
        Chunk {
            addr: id,
            size: self.mem().size(id),
        }
    }
}

/// Iterator of [`Free::iter`].
#[derive(Debug)]
pub(crate) enum FreeIter<'a> {
    /// Along the list's links, from the chunk held.
    List(&'a InBand, Option<usize>),
    /// Over the blocks by address, from the offset held.
    Blocks(&'a Mem, usize),
}

impl Iterator for FreeIter<'_> {
    type Item = Chunk;
    fn next(&mut self) -> Option<Chunk> {
        match self {
            FreeIter::List(store, at) => {
                let id = (*at)?;
                *at = store.next(id);
                Some(store.chunk(id))
            }
            FreeIter::Blocks(mem, off) => {
                while *off < mem.end && *off < mem.sentinel() {
                    let h = mem.header(*off);
                    let here = *off;
                    *off += h.size();
                    if !h.used() {
                        return Some(Chunk {
                            addr: here,
                            size: h.size(),
                        });
                    }
                }
                None
            }
        }
    }
}
