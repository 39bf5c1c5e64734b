//! A fixed region handed out front to back like `brk`: for `no_std` heaps over a static array.

use core::ptr::NonNull;

use super::{MemorySource, align_up, round_request};
use crate::SourceError;

/// A fixed region of memory granted front to back (contiguous, byte-granular).
///
/// ```text
///   start            start+used           start+len
///   |=== granted =====|...... room ........|
/// ```
///
/// Usable in a `static` for a `#[global_allocator]` (its constructor is `const`):
///
/// ```
/// use allocator_traits::{FixedRegion, MemorySource};
/// static mut ARENA: [u8; 4096] = [0; 4096];
/// // SAFETY: ARENA is used by this region only.
/// let mut region = unsafe { FixedRegion::from_raw_parts(&raw mut ARENA as *mut u8, 4096) };
/// let grant = region.acquire(100, 16).unwrap();
/// assert!(grant.len() >= 100);
/// assert!(region.footprint() >= 100);
/// ```
#[derive(Debug)]
pub struct FixedRegion {
    start: *mut u8,
    len: usize,
    used: usize,
}

// SAFETY: the region owns exclusive access to its memory (a promise made by the constructor's
// caller), so moving it to another thread moves that access with it.
unsafe impl Send for FixedRegion {}

impl FixedRegion {
    /// A region with no memory: every acquire fails.
    pub const fn empty() -> Self {
        FixedRegion {
            start: core::ptr::null_mut(),
            len: 0,
            used: 0,
        }
    }

    /// A region over `len` bytes at `start`.
    ///
    /// # Safety
    /// `start..start+len` must be valid for reads and writes for as long as the region and
    /// anything allocated from it live, and be used by nothing else.
    pub const unsafe fn from_raw_parts(start: *mut u8, len: usize) -> Self {
        FixedRegion {
            start,
            len,
            used: 0,
        }
    }

    /// A region over a static buffer.
    pub fn from_static(buf: &'static mut [u8]) -> Self {
        // SAFETY: a `&'static mut` is exclusive and lives forever.
        unsafe { Self::from_raw_parts(buf.as_mut_ptr(), buf.len()) }
    }

    /// Address of the first byte.
    pub fn start(&self) -> usize {
        self.start as usize
    }

    /// Pointer to the first byte (with the region's provenance).
    pub const fn start_ptr(&self) -> *mut u8 {
        self.start
    }

    /// Total bytes in the region.
    pub const fn capacity(&self) -> usize {
        self.len
    }

    /// Bytes not yet granted (ignoring alignment).
    pub const fn remaining(&self) -> usize {
        self.len - self.used
    }
}

// SAFETY: grants are disjoint sub-ranges of the region (`used` only grows past what was granted,
// and shrinks only on release of the tail), each aligned as asked, and the region is valid by the
// constructor's contract. Grants are contiguous by construction.
unsafe impl MemorySource for FixedRegion {
    fn acquire(&mut self, size: usize, align: usize) -> Result<NonNull<[u8]>, SourceError> {
        let size = round_request(size, align, 1)?;
        let here = (self.start as usize).wrapping_add(self.used);
        let exhausted = SourceError::Exhausted {
            requested: size,
            available: self.remaining(),
        };
        let aligned = align_up(here, align).ok_or(exhausted)?;
        let new_used = (aligned - self.start as usize)
            .checked_add(size)
            .filter(|&u| u <= self.len)
            .ok_or(exhausted)?;
        // Keep provenance: offset from the region's own pointer.
        // SAFETY: `aligned - start <= len` (checked above), so the offset stays in the region.
        let ptr = unsafe { self.start.add(aligned - self.start as usize) };
        self.used = new_used;
        let slice = core::ptr::slice_from_raw_parts_mut(ptr, size);
        NonNull::new(slice).ok_or(exhausted)
    }

    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        let end = self.start as usize + self.used;
        let p = ptr.as_ptr() as usize;
        if p < self.start as usize || p.checked_add(size) != Some(end) {
            return Err(SourceError::InvalidRelease { ptr: p, size });
        }
        self.used -= size;
        Ok(())
    }

    fn granularity(&self) -> usize {
        1
    }

    fn is_contiguous(&self) -> bool {
        true
    }

    fn footprint(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_contiguous_aligned_and_bounded() {
        let mut buf = [0u64; 64]; // 512 bytes, 8-aligned
        // SAFETY: `buf` outlives the region and nothing else uses it.
        let mut r = unsafe { FixedRegion::from_raw_parts(buf.as_mut_ptr().cast(), 512) };
        let a = r.acquire(3, 1).unwrap();
        assert_eq!(a.len(), 3);
        let b = r.acquire(10, 8).unwrap();
        assert_eq!(b.cast::<u8>().as_ptr() as usize % 8, 0);
        assert_eq!(b.cast::<u8>().as_ptr() as usize, r.start() + 8);
        assert_eq!(r.footprint(), 18);
        assert!(matches!(
            r.acquire(1000, 1),
            Err(SourceError::Exhausted { .. })
        ));
        assert!(matches!(
            r.acquire(1, 3),
            Err(SourceError::InvalidRequest { .. })
        ));
        assert!(matches!(
            r.acquire(usize::MAX, 1),
            Err(SourceError::InvalidRequest { .. }) | Err(SourceError::Exhausted { .. })
        ));
        // Only the tail can be released.
        // SAFETY: testing the refusal; nothing is released.
        assert!(unsafe { r.release(a.cast(), 3) }.is_err());
        // SAFETY: `b` is the tail grant and is not used afterwards.
        unsafe { r.release(b.cast(), 10) }.unwrap();
        assert_eq!(r.footprint(), 8);
        assert!(FixedRegion::empty().acquire(1, 1).is_err());
    }
}
