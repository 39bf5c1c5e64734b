//! Memory sources: where a manager gets its bytes, and the count of what it got (the footprint).
//!
//! ```text
//!   contiguous (FixedRegion, BoxedRegion, BrkRegion)      page-granular (OsPages)
//!   base                      end        limit            [map A]   [map B]      [map C]
//!   |== granted ==============|..........|                 each grant its own mapping,
//!   grants extend the end like brk; only                   released one by one
//!   the tail can be released
//! ```
//!
//! A contiguous source returns each grant at the end of the previous one (rounded up to the
//! alignment asked, the gap counting in the footprint), so a heap can extend its last block or top
//! chunk. Every source counts the bytes it has out: [`MemorySource::footprint`].

mod fixed;
pub use fixed::FixedRegion;

#[cfg(feature = "alloc")]
mod boxed;
#[cfg(feature = "alloc")]
pub use boxed::BoxedRegion;

#[cfg(all(feature = "std", unix))]
mod os;
#[cfg(all(feature = "std", unix))]
pub use os::{BrkRegion, OsPages, page_size};

use core::ptr::NonNull;

use crate::SourceError;

/// A supplier of raw memory.
///
/// # Safety
/// An implementation guarantees that each grant returned by [`acquire`](Self::acquire) is valid
/// for reads and writes for its whole length, aligned as asked, does not overlap any other grant
/// not yet released, and stays valid until released (or until the source is dropped). If
/// [`is_contiguous`](Self::is_contiguous) is true, each grant starts at the end of the previous
/// grant rounded up to the alignment asked.
pub unsafe trait MemorySource {
    /// Grants at least `size` bytes aligned to `align` (a power of two). The returned slice's length
    /// is `size` rounded up to [`granularity`](Self::granularity).
    fn acquire(&mut self, size: usize, align: usize) -> Result<NonNull<[u8]>, SourceError>;

    /// Gives back `size` bytes at `ptr`. A contiguous source accepts only a tail of what it has
    /// granted (like a negative `sbrk`); a mapping source accepts a whole earlier grant.
    ///
    /// # Safety
    /// The range must have been granted by this source and must not be used afterwards.
    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError>;

    /// The unit grants are rounded to (1 for a byte-granular region, the page size for OS memory).
    fn granularity(&self) -> usize;

    /// Whether grants extend one contiguous range.
    fn is_contiguous(&self) -> bool;

    /// Bytes granted and not released, alignment gaps included, less what is decommitted.
    fn footprint(&self) -> usize;

    /// Tells the source that the `size` bytes at `ptr` (page-aligned, a whole number of pages,
    /// inside one grant) hold nothing the caller needs any more, though the caller keeps the
    /// range: a source that can hand the memory back to the operating system without unmapping
    /// it (`madvise(MADV_DONTNEED)`) does so, stops counting it in its
    /// [`footprint`](Self::footprint), and returns `true`; the range then reads as zeros or as
    /// anything until written. The default does nothing and returns `false` (the memory stays
    /// committed and counted).
    ///
    /// # Safety
    /// The range lies inside a grant of this source and is not decommitted already; its
    /// contents are not used until written again after [`recommit`](Self::recommit).
    unsafe fn decommit(&mut self, ptr: NonNull<u8>, size: usize) -> bool {
        let _ = (ptr, size);
        false
    }

    /// Tells the source that a range [`decommit`](Self::decommit) gave back is about to be
    /// used again: it counts in the footprint again (the operating system brings the pages back
    /// on first touch). The default does nothing.
    ///
    /// # Safety
    /// The range (or a page-aligned part of it) was decommitted by this source and not
    /// recommitted since.
    unsafe fn recommit(&mut self, ptr: NonNull<u8>, size: usize) {
        let _ = (ptr, size);
    }
}

/// `madvise(MADV_DONTNEED)` over a range of our own mapping: `true` if the kernel took it.
///
/// # Safety
/// The range is page-aligned, inside a private anonymous mapping of the caller's, and its
/// contents are not needed.
#[cfg(all(feature = "std", unix))]
pub(crate) unsafe fn dont_need(ptr: NonNull<u8>, size: usize) -> bool {
    // SAFETY: the caller's contract.
    unsafe { libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_DONTNEED) == 0 }
}

/// `value` rounded up to a multiple of `to` (a power of two), or `None` on overflow.
#[inline]
pub const fn align_up(value: usize, to: usize) -> Option<usize> {
    match value.checked_add(to - 1) {
        Some(v) => Some(v & !(to - 1)),
        None => None,
    }
}

/// Validates a request and rounds `size` up to `granularity` (both powers of two are checked).
pub(crate) fn round_request(
    size: usize,
    align: usize,
    granularity: usize,
) -> Result<usize, SourceError> {
    let invalid = SourceError::InvalidRequest { size, align };
    if !align.is_power_of_two() || !granularity.is_power_of_two() || size > isize::MAX as usize {
        return Err(invalid);
    }
    align_up(size, granularity).ok_or(invalid)
}
