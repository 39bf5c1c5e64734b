//! `Tcmalloc` as C's allocation API ([`MallocApi`]): a free needs no size, because the pagemap
//! knows every page's class (or its large span), as in gperftools.
//!
//! ```text
//!   free(p):               the fast path of `dealloc` (the layout is never read): the pagemap
//!                          leaf of p's page -> class -> object start? key? -> thread cache
//!   malloc_usable_size(p): the class's size, or the large span's bytes
//!   realloc(p, n):         gperftools' do_realloc: kept where it is if n fits the block and is
//!                          at least half of it; a small growth asks for 1.25 x the old size
//! ```
//!
//! Bad pointers abort naming the pointer, as `free` does (see the allocator's module docs and
//! docs/tcmalloc.md): a foreign pointer, an interior one (not an object start of its class, or
//! not a large block's start), a double free of a large block, and a double free of a small one
//! that is still in this thread's cache.

use core::alloc::Layout;
use core::ptr::{NonNull, null_mut};

use allocator_traits::{MallocApi, MemorySource};

use super::Tcmalloc;

/// A layout for `dealloc`, which reads none for small blocks (the pagemap's class is the truth)
/// and none for large ones (the span is).
const ANY: Layout = Layout::new::<u8>();

// SAFETY: blocks come from the allocator (aligned as asked, at least the size asked, distinct
// while live); free, realloc and usable_size find the block from the pagemap and abort on the
// bad pointers the module docs list.
unsafe impl<S: MemorySource + Send> MallocApi for Tcmalloc<S> {
    fn malloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let Ok(layout) = Layout::from_size_align(size, align) else {
            return null_mut();
        };
        let p = self.alloc_impl(layout);
        if zeroed && !p.is_null() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        p
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        self.dealloc_impl(ptr.as_ptr(), ANY)
    }

    unsafe fn realloc(&self, ptr: NonNull<u8>, size: usize) -> *mut u8 {
        let old = self.usable_size(ptr.as_ptr());
        if size <= old && size >= old / 2 {
            return ptr.as_ptr();
        }
        let mut fresh = null_mut();
        let grow_to = old + old / 4;
        if size > old && size < grow_to {
            fresh = MallocApi::malloc(self, grow_to, 16, false);
        }
        if fresh.is_null() {
            fresh = MallocApi::malloc(self, size, 16, false);
        }
        if !fresh.is_null() {
            // SAFETY: distinct live blocks; the old one has `old` usable bytes, the new one at
            // least `size`.
            unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh, old.min(size)) };
            self.dealloc_impl(ptr.as_ptr(), ANY);
        }
        fresh
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        Tcmalloc::usable_size(self, ptr.as_ptr())
    }

    fn gauges(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("threads with a cache", self.threads()),
            ("footprint", self.footprint()),
        ]
    }

    fn prepare_fork(&self) {
        self.fork_lock();
    }

    fn after_fork_parent(&self) {
        // SAFETY: the caller (the preload library) calls this after `prepare_fork`, on the
        // forking thread.
        unsafe { self.fork_unlock() }
    }

    fn after_fork_child(&self) {
        // SAFETY: as above, in the child, where the forking thread is the only one.
        unsafe { self.fork_unlock() }
    }
}
