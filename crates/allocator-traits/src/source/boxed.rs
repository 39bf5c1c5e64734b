//! A fixed region that owns its memory, taken from the global allocator: for tests, arenas of a
//! subsystem, and any heap whose lifetime is a value's lifetime.

use alloc::alloc::{alloc, dealloc};
use core::alloc::Layout;
use core::ptr::NonNull;

use super::{FixedRegion, MemorySource};
use crate::SourceError;

/// A contiguous region of `capacity` bytes owned by this value and freed when it is dropped.
///
/// Everything allocated from a manager over a `BoxedRegion` dies with the manager.
#[derive(Debug)]
pub struct BoxedRegion {
    region: FixedRegion,
    layout: Layout,
}

impl BoxedRegion {
    /// Alignment of the region's start: one page, so policies that want aligned memory get it.
    pub const ALIGN: usize = 4096;

    /// A region of `capacity` bytes (at least one), page-aligned.
    pub fn new(capacity: usize) -> Result<Self, SourceError> {
        let invalid = SourceError::InvalidRequest {
            size: capacity,
            align: Self::ALIGN,
        };
        let layout = Layout::from_size_align(capacity.max(1), Self::ALIGN).map_err(|_| invalid)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        if ptr.is_null() {
            return Err(SourceError::Exhausted {
                requested: capacity,
                available: 0,
            });
        }
        Ok(BoxedRegion {
            // SAFETY: `ptr..ptr+capacity` was just allocated for this value alone and is freed only
            // in `drop`, after the region (and the manager owning it) is done.
            region: unsafe { FixedRegion::from_raw_parts(ptr, capacity) },
            layout,
        })
    }

    /// Address of the first byte.
    pub fn start(&self) -> usize {
        self.region.start()
    }

    /// Total bytes in the region.
    pub fn capacity(&self) -> usize {
        self.region.capacity()
    }
}

// SAFETY: delegates to `FixedRegion`, whose memory this value owns.
unsafe impl MemorySource for BoxedRegion {
    fn acquire(&mut self, size: usize, align: usize) -> Result<NonNull<[u8]>, SourceError> {
        self.region.acquire(size, align)
    }
    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.region.release(ptr, size) }
    }
    fn granularity(&self) -> usize {
        1
    }
    fn is_contiguous(&self) -> bool {
        true
    }
    fn footprint(&self) -> usize {
        self.region.footprint()
    }
}

impl Drop for BoxedRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with `self.layout`; dropped once.
        unsafe { dealloc(self.region.start_ptr(), self.layout) };
    }
}
