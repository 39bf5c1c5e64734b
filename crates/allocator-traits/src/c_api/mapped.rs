//! Large blocks in mappings of their own, as glibc serves requests above its mmap threshold:
//! [`CHeap`](super::CHeap) gives a request of at least its threshold a fresh anonymous mapping,
//! so no heap metadata (a neighbour's boundary tag, the heap's end) sits next to the block.
//!
//! ```text
//!   ptr = the mapping's start (page-aligned, or aligned as asked when that is more)
//!   |=========== the caller's block: the request rounded up to pages ===========|
//!   no header: CHeap's table of live blocks says the block is mapped, and how long it is
//! ```
//!
//! A program that writes just outside such a block (glibc's tst-free-errno maps fresh pages
//! over the page before and the page after it) touches no allocator state. Freeing unmaps it;
//! a failed `munmap` (the process at its limit of mappings) leaves the mapping, as glibc does.

use core::ptr::NonNull;

use crate::MemorySource;
use crate::source::OsPages;

/// Requests of this many bytes or more get a mapping of their own by default.
pub const DEFAULT_THRESHOLD: usize = 1 << 20;

/// A fresh mapping for `size` bytes aligned to `align`: the block (its length the request
/// rounded up to pages), or `None` when the OS refuses.
pub(super) fn map(size: usize, align: usize) -> Option<NonNull<[u8]>> {
    // Each grant of an `OsPages` is its own mapping; the source keeps nothing else.
    OsPages::new().acquire(size, align).ok()
}

/// Unmaps a block [`map`] (or [`remap`]) returned; `false` when `munmap` failed and the pages
/// stay mapped.
///
/// # Safety
/// `ptr..ptr + len` is such a block, not used afterwards.
pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: forwarded caller contract: the range is one grant of an `OsPages`.
    unsafe { OsPages::new().release(ptr, len) }.is_ok()
}

/// Resizes a mapped block of `len` bytes to hold `size` bytes, moving it if it must (the
/// kernel moves the pages: nothing is copied); `None` when the OS refuses (the block is then
/// unchanged) or cannot remap (not Linux).
///
/// # Safety
/// `ptr..ptr + len` is a block [`map`] returned aligned to at most a page; on success it is no
/// longer valid unless it is the block returned.
pub(super) unsafe fn remap(ptr: NonNull<u8>, len: usize, size: usize) -> Option<NonNull<[u8]>> {
    #[cfg(target_os = "linux")]
    {
        let page = crate::source::page_size();
        let new_len = crate::source::align_up(size.max(1), page)?;
        // SAFETY: `ptr..ptr + len` is a whole private anonymous mapping of ours; MAYMOVE lets
        // the kernel place the result anywhere free, so no other mapping is touched.
        let q = unsafe { libc::mremap(ptr.as_ptr().cast(), len, new_len, libc::MREMAP_MAYMOVE) };
        if q == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(core::ptr::slice_from_raw_parts_mut(q.cast::<u8>(), new_len))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len, size);
        None
    }
}

/// What is mapped now and at most, for reports ([`MallocApi::gauges`](super::MallocApi::gauges)).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gauges {
    /// Live mapped blocks.
    pub blocks: usize,
    /// Their bytes (whole pages).
    pub bytes: usize,
    /// The most `bytes` has been.
    pub peak_bytes: usize,
}

impl Gauges {
    /// A block of `len` bytes was mapped.
    pub fn add(&mut self, len: usize) {
        self.blocks += 1;
        self.bytes += len;
        self.peak_bytes = self.peak_bytes.max(self.bytes);
    }

    /// A block of `len` bytes was unmapped (or given up).
    pub fn remove(&mut self, len: usize) {
        self.blocks = self.blocks.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
    }
}
