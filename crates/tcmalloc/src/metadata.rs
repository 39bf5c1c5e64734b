//! The metadata arena: where spans, pagemap nodes and thread caches live.
//!
//! None of the allocator's own bookkeeping comes from the global allocator (so the crate can *be*
//! the global allocator). It is carved, bump-pointer style, from chunks the arena takes from the
//! same [`MemorySource`] as the heap's pages (gperftools' `MetaDataAlloc`), and never given back:
//! freed objects of a fixed type are recycled through a free list by their owner
//! (see [`crate::span::SpanAllocator`]).
//!
//! ```text
//!   source:  [ pages ........ ][ metadata chunk 64 KiB ][ pages ......... ]
//!                               |span|span|leaf node ...|..... room .....|
//!                                                        ^ next
//! ```

use core::ptr::NonNull;

use allocator_traits::MemorySource;

use crate::size_map::PAGE_SIZE;

/// Size of a chunk taken from the source when the current one is used up (bigger requests take a
/// chunk of their own size, rounded up to pages; a source that cannot give a whole chunk is asked
/// for just the block).
pub const CHUNK: usize = 64 * 1024;

/// A bump allocator over chunks from the memory source.
#[derive(Debug)]
pub struct MetaArena {
    next: *mut u8,
    room: usize,
    /// Bytes handed out (for the inspector).
    pub used: usize,
    /// Bytes taken from the source.
    pub reserved: usize,
}

// SAFETY: the arena's chunks are owned by it (and the manager owning it); moving it to another
// thread moves that ownership.
unsafe impl Send for MetaArena {}

impl MetaArena {
    /// An arena holding no chunk yet.
    pub const fn new() -> Self {
        MetaArena {
            next: core::ptr::null_mut(),
            room: 0,
            used: 0,
            reserved: 0,
        }
    }

    /// `size` bytes aligned to `align` (a power of two no larger than a page), or `None` if the
    /// source refuses a new chunk. The memory is uninitialised.
    pub fn alloc<S: MemorySource + ?Sized>(
        &mut self,
        size: usize,
        align: usize,
        source: &mut S,
    ) -> Option<NonNull<u8>> {
        debug_assert!(align.is_power_of_two() && align <= PAGE_SIZE);
        let pad = (self.next as usize).wrapping_neg() & (align - 1);
        if self.next.is_null() || pad + size > self.room {
            // A whole chunk if the source has one, else just this block (a small region).
            let want = size.max(CHUNK).checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
            let exact = size.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
            let chunk = source
                .acquire(want, PAGE_SIZE)
                .or_else(|_| source.acquire(exact, PAGE_SIZE))
                .ok()?;
            self.next = chunk.cast::<u8>().as_ptr();
            self.room = chunk.len();
            self.reserved += chunk.len();
            return self.alloc(size, align, source);
        }
        // SAFETY: `pad + size <= room`, so both offsets stay inside the current chunk.
        let p = unsafe { self.next.add(pad) };
        // SAFETY: as above.
        self.next = unsafe { p.add(size) };
        self.room -= pad + size;
        self.used += size;
        NonNull::new(p)
    }

    /// Room for one `T` (uninitialised, aligned), or `None` as [`alloc`](Self::alloc). `T` is
    /// aligned to no more than a page.
    pub fn alloc_one<T, S: MemorySource + ?Sized>(&mut self, source: &mut S) -> Option<*mut T> {
        self.alloc(
            core::mem::size_of::<T>(),
            core::mem::align_of::<T>(),
            source,
        )
        .map(|p| p.cast::<T>().as_ptr())
    }
}

impl Default for MetaArena {
    fn default() -> Self {
        Self::new()
    }
}
