//! `Ptmalloc` as Rust allocators: `GlobalAlloc` (a `#[global_allocator]`) and allocator-api2's
//! `Allocator` (`Vec::new_in(&heap)`), both over the front's malloc, free and realloc.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use super::front::Ptmalloc;

// SAFETY: blocks are aligned as asked and valid until freed; every arena is behind its lock and
// each tcache is touched by its own thread only; a bad free aborts.
unsafe impl GlobalAlloc for Ptmalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.malloc(layout.size(), layout.align(), false)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.malloc(layout.size(), layout.align(), true)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        self.free(ptr)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Ptmalloc::realloc(self, ptr, layout, new_size)
    }
}

fn usable(p: *mut u8, size: usize) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, size))
        .ok_or(allocator_api2::alloc::AllocError)
}

// SAFETY: as for GlobalAlloc.
unsafe impl allocator_api2::alloc::Allocator for Ptmalloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        usable(
            self.malloc(layout.size(), layout.align(), false),
            layout.size(),
        )
    }
    fn allocate_zeroed(
        &self,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        usable(
            self.malloc(layout.size(), layout.align(), true),
            layout.size(),
        )
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        self.free(ptr.as_ptr())
    }
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { resize(self, ptr, old, new) }
    }
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { resize(self, ptr, old, new) }
    }
}

/// `grow` and `shrink`: realloc, unless the new layout asks for more alignment (then allocate
/// aligned, copy what both sizes hold, free).
///
/// # Safety
/// `ptr` is a live block of `heap` allocated with `old`.
unsafe fn resize(
    heap: &Ptmalloc,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
    if new.align() > old.align() {
        let n = heap.malloc(new.size(), new.align(), false);
        let b = usable(n, new.size())?;
        // SAFETY: distinct live blocks; the first `min(old, new)` bytes are the caller's.
        unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), n, old.size().min(new.size())) };
        heap.free(ptr.as_ptr());
        return Ok(b);
    }
    usable(heap.realloc(ptr.as_ptr(), old, new.size()), new.size())
}
