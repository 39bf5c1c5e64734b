//! The pagemap: a radix tree from page number to span and size class, so `free` finds a pointer's
//! class (and span) from the pointer alone.
//!
//! 48-bit addresses with 8 KiB pages leave 35 bits of page number, split 8 / 9 / 9 / 9:
//!
//! ```text
//!   page number:  [ root 8 | node 9 | node 9 | leaf 9 ]
//!
//!   root (inline, 256 slots) --> node (512) --> node (512) --> leaf (512 x { span*, entry })
//!
//!   entry (u32) of a page:  [ 0 ... | index in its class span : 8 | 0 0 0 0 0 | class : 8 ]
//!                                    bit 13                                      bit 0
//!   = index * PAGE_SIZE + class: for an address a on the page,
//!     entry + (a % PAGE_SIZE) = (a's offset from its span's start) + class
//! ```
//!
//! Small nodes (4 KiB; a leaf 6 KiB) keep the metadata of a small heap small (a 64 KiB region
//! still has room for pages). The free path of `Tcmalloc` reads a page's entry with one load
//! through a leaf it keeps per thread ([`Leaf::entries_biased`]): the class and, added to the
//! address's offset in its page, the offset in the span that the object-start test wants
//! ([`crate::thread_cache::FreeList::is_object_start`]). The central lists and `Core` walk the
//! tree.
//!
//! Nodes are created (zeroed, from the metadata arena) when the page heap grows over new pages
//! ([`PageMap::ensure`]) and never freed, so a reader needs no lock: all slots are atomics, nodes
//! are published with compare-and-swap and read with acquire loads. Entries are written by the
//! page heap only (under its lock in the concurrent allocator). Every page of a span in use by a
//! size class maps to it with its class; a large span and a free span are guaranteed at their
//! first and last page only (what coalescing and `free` need); other entries may be stale.

use core::ptr::null_mut;
#[cfg(not(loom))]
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use allocator_traits::MemorySource;

use crate::metadata::MetaArena;
use crate::span::Span;

#[cfg(not(loom))]
const ROOT_BITS: usize = 8;
#[cfg(not(loom))]
const NODE_BITS: usize = 9;
#[cfg(not(loom))]
const LEAF_BITS: usize = 9;
// The loom model runs the same code over a tiny tree (256 pages).
#[cfg(loom)]
const ROOT_BITS: usize = 2;
#[cfg(loom)]
const NODE_BITS: usize = 2;
#[cfg(loom)]
const LEAF_BITS: usize = 2;
/// Page numbers this map covers: `1 << PAGE_BITS` (48-bit addresses).
pub const PAGE_BITS: usize = ROOT_BITS + 2 * NODE_BITS + LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const NODE_LEN: usize = 1 << NODE_BITS;
const ROOT_LEN: usize = 1 << ROOT_BITS;
/// The class bits of an [`entry`](PageMap::entry) (and of a leaf's packed entry).
pub const CLASS_MASK: usize = 0xff;
/// Where a leaf's packed entry keeps the page's index in its span: `index << INDEX_SHIFT`, so
/// the packed entry is `index * PAGE_SIZE + class` (see the module docs).
const INDEX_SHIFT: u32 = crate::size_map::PAGE_SHIFT as u32;

/// An interior node: 512 children (nodes or leaves).
pub struct Node {
    children: [AtomicPtr<u8>; NODE_LEN],
}

/// A leaf: span pointers and class entries of 512 pages.
pub struct Leaf {
    spans: [AtomicPtr<Span>; LEAF_LEN],
    /// The page's packed entry, `index << INDEX_SHIFT | class`: its size class (0 for a page of
    /// no class span) and its index in its class span (0 for a page of no class span). One word,
    /// so a reader sees a page's class and index as written together.
    entries: [AtomicU32; LEAF_LEN],
}

/// The three-level radix tree.
pub struct PageMap {
    root: [AtomicPtr<u8>; ROOT_LEN],
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
fn split(page: usize) -> [usize; 4] {
    [
        page >> (2 * NODE_BITS + LEAF_BITS),
        (page >> (NODE_BITS + LEAF_BITS)) & (NODE_LEN - 1),
        (page >> LEAF_BITS) & (NODE_LEN - 1),
        page & (LEAF_LEN - 1),
    ]
}

impl Leaf {
    /// The packed entry of `page` (a page this leaf covers): `index * PAGE_SIZE + class`.
    #[inline(always)]
    fn packed(&self, page: usize) -> usize {
        self.entries[page & (LEAF_LEN - 1)].load(Ordering::Relaxed) as usize
    }

    /// The size class of `page` (a page this leaf covers): as [`PageMap::class`].
    #[inline(always)]
    pub fn class(&self, page: usize) -> usize {
        self.packed(page) & CLASS_MASK
    }

    /// The index of `page` (a page this leaf covers) in its class span.
    #[inline(always)]
    pub fn index(&self, page: usize) -> usize {
        self.packed(page) >> INDEX_SHIFT
    }

    /// The packed entries, biased so that the entry of any page this leaf covers is
    /// `entries_biased(..).wrapping_add(page)`, for the free path (no masking of the page
    /// number). `number` is this leaf's [`PageMap::leaf_number`]. Only pages of this leaf may be
    /// read through it: others are out of the leaf's bounds.
    #[inline]
    pub fn entries_biased(&self, number: usize) -> *const AtomicU32 {
        self.entries
            .as_ptr()
            .wrapping_sub(number.wrapping_mul(LEAF_LEN))
    }

    /// The packed entry read through [`entries_biased`](Self::entries_biased): `index *
    /// PAGE_SIZE + class` (0 for a page of no class span).
    ///
    /// # Safety
    /// `biased` is `leaf.entries_biased(n)` of a live leaf whose number is `n`, and `page` is a
    /// page that leaf covers (`page >> LEAF_BITS == n`).
    #[inline(always)]
    pub unsafe fn packed_entry(biased: *const AtomicU32, page: usize) -> usize {
        // SAFETY: `biased + page` is the leaf's entry of `page`, in bounds (caller).
        unsafe { (*biased.wrapping_add(page)).load(Ordering::Relaxed) as usize }
    }
}

impl PageMap {
    /// An empty map.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        PageMap {
            root: [const { AtomicPtr::new(null_mut()) }; ROOT_LEN],
            node_bytes: AtomicUsize::new(0),
        }
    }

    /// An empty map (loom's atomics cannot be made in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        PageMap {
            root: core::array::from_fn(|_| AtomicPtr::new(null_mut())),
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
        let [a, b, c, l] = split(page);
        let n1 = self.root[a].load(Ordering::Acquire).cast::<Node>();
        if n1.is_null() {
            return None;
        }
        // SAFETY: published nodes are valid, zero-initialised before publication, never freed.
        let n2 = unsafe { (*n1).children[b].load(Ordering::Acquire) }.cast::<Node>();
        if n2.is_null() {
            return None;
        }
        // SAFETY: as above.
        let leaf = unsafe { (*n2).children[c].load(Ordering::Acquire) }.cast::<Leaf>();
        if leaf.is_null() {
            return None;
        }
        // SAFETY: as above.
        Some((unsafe { &*leaf }, l))
    }

    /// The leaf covering `page`, if it exists. Leaves are never freed or moved, so a caller may
    /// keep it for every later lookup of a page with the same [`leaf_number`](Self::leaf_number)
    /// (the concurrent free's per-thread leaf cache).
    #[inline]
    pub fn leaf_for(&self, page: usize) -> Option<&Leaf> {
        self.leaf(page).map(|(l, _)| l)
    }

    /// Which leaf covers `page`: pages with the same number share a leaf.
    #[inline(always)]
    pub const fn leaf_number(page: usize) -> usize {
        page >> LEAF_BITS
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
            Some((leaf, _)) => leaf.class(page),
            None => 0,
        }
    }

    /// The class entry of `page`: `class | index << 8`, `index` being the page's place in its
    /// class span (0 for a page of no class span, or not ours). With it a free checks that a
    /// pointer is an object start from the pointer alone.
    #[inline(always)]
    pub fn entry(&self, page: usize) -> usize {
        match self.leaf(page) {
            Some((leaf, _)) => {
                let e = leaf.packed(page);
                (e & CLASS_MASK) | (e >> INDEX_SHIFT) << 8
            }
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

    /// Records `class` for `page`, the `index`-th page of its span (`class < 256`, `index <
    /// 256`: a class span has at most 255 pages).
    #[inline]
    pub fn set_class(&self, page: usize, class: usize, index: usize) {
        if let Some((leaf, i)) = self.leaf(page) {
            let e = (index as u8 as u32) << INDEX_SHIFT | class as u8 as u32;
            leaf.entries[i].store(e, Ordering::Relaxed);
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
            let [a, b, c, _] = split(page);
            let Some(n1) = self.child(&self.root[a], false, arena, source) else {
                return false;
            };
            // SAFETY: `n1` is a published node.
            let slot = unsafe { &(*n1.cast::<Node>()).children[b] };
            let Some(n2) = self.child(slot, false, arena, source) else {
                return false;
            };
            // SAFETY: `n2` is a published node.
            let slot = unsafe { &(*n2.cast::<Node>()).children[c] };
            if self.child(slot, true, arena, source).is_none() {
                return false;
            }
            // Next leaf boundary.
            page = ((page >> LEAF_BITS) + 1) << LEAF_BITS;
        }
        true
    }

    /// The node in `slot`, creating an empty one (a leaf if `leaf`) if there is none.
    fn child<S: MemorySource + ?Sized>(
        &self,
        slot: &AtomicPtr<u8>,
        leaf: bool,
        arena: &mut MetaArena,
        source: &mut S,
    ) -> Option<*mut u8> {
        let cur = slot.load(Ordering::Acquire);
        if !cur.is_null() {
            return Some(cur);
        }
        let size = if leaf {
            core::mem::size_of::<Leaf>()
        } else {
            core::mem::size_of::<Node>()
        };
        let p = arena
            .alloc(size, core::mem::align_of::<Leaf>(), source)?
            .as_ptr();
        // SAFETY: a fresh, exclusive block big enough and aligned for the node; every atomic is
        // initialised in place before the node is published.
        unsafe {
            if leaf {
                let l = p.cast::<Leaf>();
                for i in 0..LEAF_LEN {
                    core::ptr::addr_of_mut!((*l).spans[i]).write(AtomicPtr::new(null_mut()));
                    core::ptr::addr_of_mut!((*l).entries[i]).write(AtomicU32::new(0));
                }
            } else {
                let n = p.cast::<Node>();
                for i in 0..NODE_LEN {
                    core::ptr::addr_of_mut!((*n).children[i]).write(AtomicPtr::new(null_mut()));
                }
            }
        }
        self.node_bytes.fetch_add(size, Ordering::Relaxed);
        Some(
            match slot.compare_exchange(null_mut(), p, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => p,
                // Another thread published first; ours stays unused in the arena.
                Err(winner) => winner,
            },
        )
    }
}

impl Default for PageMap {
    fn default() -> Self {
        Self::new()
    }
}
