//! Looking inside a manager: what `fsm sim` prints and what the SVG strips draw.
//!
//! A manager's [`crate::FreeSpaceManager::inspect`] walks its own structures and reports them to
//! an [`Inspector`] in this order:
//!
//! 1. `region(start, len)` for each address range it manages (a heap, a span of pages);
//! 2. `block(addr, len, kind)` for every block in each region, in ascending address order, tiling
//!    the region (live blocks, free blocks, headers, padding, the top chunk ...), where the policy
//!    can tile it;
//! 3. for each of its lists (the free list, a bin, a size class, a buddy order):
//!    `begin_list(name)`, `list_entry(addr, len)` per entry in the list's own order, `end_list()`;
//! 4. `value(name, v)` for named scalars: a next-fit rover, a top chunk address, a class's
//!    `max_length`.
//!
//! Addresses are plain integers: real addresses for heaps over memory, abstract ones for a pure
//! range manager (the OSTEP simulator's heap starts at 1000). Every method has an empty default, so
//! an inspector overrides only what it draws.

use core::fmt;

/// The state of a block in [`Inspector::block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockKind {
    /// Handed out to a caller. `requested` is what the caller asked for, when known.
    Live {
        /// Bytes the caller asked for (`0` if the manager does not know).
        requested: usize,
    },
    /// Free and available to the policy's search.
    Free,
    /// Free to the caller but held in a cache that does not coalesce (tcache, fastbins, a thread
    /// cache's list).
    Cached,
    /// The policy's own header or boundary tag in front of (or behind) a block.
    Header,
    /// Bytes lost to alignment or rounding that belong to no block.
    Padding,
    /// The wilderness: the free space at the end of a growing heap (ptmalloc's top chunk).
    Top,
    /// The manager's own metadata stored in the region (bitmaps, span tables, arena headers).
    Metadata,
}

/// Receives what a manager shows of itself. All methods default to doing nothing.
pub trait Inspector {
    /// An address range the manager manages.
    fn region(&mut self, start: usize, len: usize) {
        let _ = (start, len);
    }
    /// One block, in ascending address order within its region.
    fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
        let _ = (addr, len, kind);
    }
    /// Starts a named list (`"free list"`, `"smallbin[5] (80 B)"`, `"order 4"`).
    fn begin_list(&mut self, name: fmt::Arguments<'_>) {
        let _ = name;
    }
    /// One entry of the current list, in the list's own order.
    fn list_entry(&mut self, addr: usize, len: usize) {
        let _ = (addr, len);
    }
    /// Ends the current list.
    fn end_list(&mut self) {}
    /// A named scalar (`"rover"`, `"top"`, `"max_length[3]"`).
    fn value(&mut self, name: fmt::Arguments<'_>, value: usize) {
        let _ = (name, value);
    }
}

/// An inspector that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoInspector;

impl Inspector for NoInspector {}
