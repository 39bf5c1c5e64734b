//! The pagemap: a radix tree from page number to span and size class, so `free` finds a pointer's
//! class (and span) from the pointer alone.
//!
//! 48-bit addresses with 8 KiB pages leave 35 bits of page number, split 12 / 12 / 11:
//!
//! ```text
//!   page number:  [ root 12 bits | mid 12 bits | leaf 11 bits ]
//!
//!   root (inline, 4096 slots) --> mid node (4096 slots) --> leaf (2048 x { span*, class })
//! ```
//!
//! Nodes are created (zeroed, from the metadata arena) when the page heap grows over new pages
//! ([`PageMap::ensure`]) and never freed, so a reader needs no lock: all slots are atomics, nodes
//! are published with release stores and read with acquire loads. Entries are written by the page
//! heap only (under its lock in the concurrent allocator). Every page of a span in use by a size
//! class maps to it with its class; a large span and a free span are guaranteed at their first and
//! last page only (what coalescing and `free` need); other entries may be stale.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use allocator_traits::MemorySource;

use crate::metadata::MetaArena;
use crate::span::Span;

const ROOT_BITS: usize = 12;
const MID_BITS: usize = 12;
const LEAF_BITS: usize = 11;
/// Page numbers this map covers: `1 << PAGE_BITS` (48-bit addresses).
pub const PAGE_BITS: usize = ROOT_BITS + MID_BITS + LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const MID_LEN: usize = 1 << MID_BITS;
const ROOT_LEN: usize = 1 << ROOT_BITS;

/// A leaf: span pointers and class bytes of `2^11` pages.
pub struct Leaf {
    spans: [AtomicPtr<Span>; LEAF_LEN],
    classes: [AtomicU8; LEAF_LEN],
}

/// A middle node: leaves of `2^12 * 2^11` pages.
pub struct Mid {
    leaves: [AtomicPtr<Leaf>; MID_LEN],
}

/// The three-level radix tree.
pub struct PageMap {
    root: [AtomicPtr<Mid>; ROOT_LEN],
    node_bytes: AtomicUsize,
}

impl core::fmt::Debug for PageMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageMap")
            .field("node_bytes", &self.node_bytes())
            .finish_non_exhaustive()
    }
}

#[inline]
fn split(page: usize) -> (usize, usize, usize) {
    (
        page >> (MID_BITS + LEAF_BITS),
        (page >> LEAF_BITS) & (MID_LEN - 1),
        page & (LEAF_LEN - 1),
    )
}

impl PageMap {
    /// An empty map.
    pub const fn new() -> Self {
        PageMap {
            root: [const { AtomicPtr::new(null_mut()) }; ROOT_LEN],
            node_bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes of nodes taken from the metadata arena.
    pub fn node_bytes(&self) -> usize {
        self.node_bytes.load(Ordering::Relaxed)
    }

    #[inline]
    fn leaf(&self, page: usize) -> Option<(&Leaf, usize)> {
        if page >> PAGE_BITS != 0 {
            return None;
        }
        let (r, m, l) = split(page);
        let mid = self.root[r].load(Ordering::Acquire);
        if mid.is_null() {
            return None;
        }
        // SAFETY: published nodes are valid, zero-initialised before publication, never freed.
        let leaf = unsafe { (*mid).leaves[m].load(Ordering::Acquire) };
        if leaf.is_null() {
            return None;
        }
        // SAFETY: as above.
        Some((unsafe { &*leaf }, l))
    }

    /// The span recorded for `page`, or null.
    #[inline]
    pub fn get(&self, page: usize) -> *mut Span {
        match self.leaf(page) {
            Some((leaf, i)) => leaf.spans[i].load(Ordering::Acquire),
            None => null_mut(),
        }
    }

    /// The size class recorded for `page` (0: none, a large object, or not ours).
    #[inline]
    pub fn class(&self, page: usize) -> usize {
        match self.leaf(page) {
            Some((leaf, i)) => leaf.classes[i].load(Ordering::Relaxed) as usize,
            None => 0,
        }
    }

    /// Records `span` for `page`. A page outside [`ensure`](Self::ensure)d ranges is ignored.
    #[inline]
    pub fn set(&self, page: usize, span: *mut Span) {
        if let Some((leaf, i)) = self.leaf(page) {
            leaf.spans[i].store(span, Ordering::Release);
        }
    }

    /// Records `class` for `page`.
    #[inline]
    pub fn set_class(&self, page: usize, class: usize) {
        if let Some((leaf, i)) = self.leaf(page) {
            leaf.classes[i].store(class as u8, Ordering::Relaxed);
        }
    }

    /// Makes sure nodes exist for pages `start..start+n`; `false` if the arena cannot grow or the
    /// pages lie beyond the map's reach.
    ///
    /// Safe to call from several threads: a node is published with a compare-and-swap, and the
    /// loser of a race leaves its node unused in the arena.
    pub fn ensure<S: MemorySource + ?Sized>(
        &self,
        start: usize,
        n: usize,
        arena: &mut MetaArena,
        source: &mut S,
    ) -> bool {
        let Some(end) = start.checked_add(n) else {
            return false;
        };
        if n == 0 || (end - 1) >> PAGE_BITS != 0 {
            return n == 0;
        }
        let mut page = start;
        while page < end {
            let (r, m, _) = split(page);
            let mut mid = self.root[r].load(Ordering::Acquire);
            if mid.is_null() {
                let Some(p) = arena.alloc(
                    core::mem::size_of::<Mid>(),
                    core::mem::align_of::<Mid>(),
                    source,
                ) else {
                    return false;
                };
                // SAFETY: a fresh, exclusive block of the right size; all-zero is a valid `Mid`
                // (null atomics).
                unsafe { p.as_ptr().write_bytes(0, core::mem::size_of::<Mid>()) };
                let fresh = p.cast::<Mid>().as_ptr();
                self.node_bytes
                    .fetch_add(core::mem::size_of::<Mid>(), Ordering::Relaxed);
                mid = match self.root[r].compare_exchange(
                    null_mut(),
                    fresh,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => fresh,
                    Err(winner) => winner,
                };
            }
            // SAFETY: `mid` is a published node.
            let slot = unsafe { &(*mid).leaves[m] };
            if slot.load(Ordering::Acquire).is_null() {
                let Some(p) = arena.alloc(
                    core::mem::size_of::<Leaf>(),
                    core::mem::align_of::<Leaf>(),
                    source,
                ) else {
                    return false;
                };
                // SAFETY: as for the middle node; all-zero is a valid `Leaf`.
                unsafe { p.as_ptr().write_bytes(0, core::mem::size_of::<Leaf>()) };
                self.node_bytes
                    .fetch_add(core::mem::size_of::<Leaf>(), Ordering::Relaxed);
                let _ = slot.compare_exchange(
                    null_mut(),
                    p.cast::<Leaf>().as_ptr(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            // Next leaf boundary.
            page = ((page >> LEAF_BITS) + 1) << LEAF_BITS;
        }
        true
    }
}

impl Default for PageMap {
    fn default() -> Self {
        Self::new()
    }
}
