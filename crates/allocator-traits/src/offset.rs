//! Offset managers: the placement policies over a space the CPU does not own (a GPU buffer, a
//! file, a shared-memory segment), handing out offsets instead of pointers.
//!
//! ```text
//!   the managed space: never read or written by the manager
//!   base                                                                   base + len
//!   | range 16 B |  free  | range 4 KiB |        free         | range 300 B |  free  | -> grow
//!   ^ allocate(16, 16)      ^ allocate(4096, 256)                ^ free(offset)
//!
//!   the manager's own structures (out of band, in CPU memory): one node per range and per free
//!   range, the index over the free ones, a map from each live offset to its node
//! ```
//!
//! An [`OffsetManager`] is the [`FreeSpaceManager`](crate::FreeSpaceManager) of such a space:
//! [`allocate`](OffsetManager::allocate) returns the offset of `size` bytes aligned to `align`
//! inside `base..base+len`; [`free`](OffsetManager::free) takes the offset back (no size: the
//! manager knows it); [`grow`](OffsetManager::grow) makes the space longer (a file extended, a
//! buffer reallocated by its owner). Since nothing is stored in the space, every bad free can be
//! told from a good one, and the offsets' alignment is absolute (`offset % align == 0`).
//!
//! The vocabulary is the pointer managers': [`Stats`] (with `footprint` = the bytes from `base`
//! to the end of the highest live range: how much of the space the policy needs, the measure that
//! fragmentation #4 compares across policies), [`Inspector`] (offsets instead of addresses),
//! [`Corruption`] for the invariant walk, [`Detects`] for the bad frees it reports (each one a
//! [`FreeError`] naming the offset). With the `conformance` feature, `offset_suite!` runs the
//! kit's offset profile against a manager.

use core::ops::Range;

use crate::{AllocError, Corruption, Detects, FreeError, Inspector, Stats};

/// A placement policy over the offsets of a space it never touches (see the
/// [module docs](self)).
///
/// # Contract
///
/// * [`allocate`](Self::allocate) returns an offset `o` with `o % align == 0` and
///   `base <= o`, `o + size <= base + len`, overlapping no live range; `align` must be a power
///   of two (else a clean [`AllocError::Unsupported`]); a request that cannot be placed is an
///   error, never a panic. A size of 0 is served like any other (with the smallest range).
/// * [`free`](Self::free) takes back a live range by its offset. A bad offset that
///   [`detects`](Self::detects) claims to catch is an error naming it, and changes nothing but
///   `Stats::bad_frees`.
/// * Metadata is out of band: a manager reads and writes nothing of the space itself.
pub trait OffsetManager {
    /// Places `size` bytes aligned to `align` (a power of two) and returns their offset.
    fn allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError>;

    /// Frees the live range that starts at `offset`.
    fn free(&mut self, offset: usize) -> Result<(), FreeError>;

    /// Makes the space `additional` bytes longer at its end (the new bytes are free). An error
    /// (the length would overflow, or pass what the manager can address) changes nothing.
    fn grow(&mut self, additional: usize) -> Result<(), AllocError>;

    /// The managed space, `base..base + len`.
    fn range(&self) -> Range<usize>;

    /// The bytes the live range at `offset` holds (its request rounded up to the manager's
    /// granule, plus any remainder too small to keep free), or `None` if no live range starts
    /// there.
    fn held(&self, offset: usize) -> Option<usize>;

    /// The counters: `live_*` over the live ranges, `footprint` the bytes from `base` to the end
    /// of the highest live range.
    fn stats(&self) -> Stats;

    /// Shows the manager's structures: `region(base, len)`, the ranges and free ranges tiling it
    /// in offset order, its lists, named values (as [`crate::FreeSpaceManager::inspect`], with
    /// offsets for addresses).
    fn inspect(&self, out: &mut dyn Inspector);

    /// The invariant walk over every structure of the manager (the conformance kit runs it after
    /// every operation).
    fn check_invariants(&self) -> Result<(), Corruption>;

    /// The bad frees the manager reports. For an offset manager, `foreign` is an offset outside
    /// the space and `double_free` any offset inside it where no live range starts (freed
    /// already, never handed out, or inside a range); `layout_mismatch` does not apply (a free
    /// carries no size).
    fn detects(&self) -> Detects;
}

/// A boxed manager (`Box<dyn OffsetManager>`, what the registry builds) is a manager.
#[cfg(feature = "alloc")]
impl<M: OffsetManager + ?Sized> OffsetManager for alloc::boxed::Box<M> {
    fn allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        (**self).allocate(size, align)
    }
    fn free(&mut self, offset: usize) -> Result<(), FreeError> {
        (**self).free(offset)
    }
    fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
        (**self).grow(additional)
    }
    fn range(&self) -> Range<usize> {
        (**self).range()
    }
    fn held(&self, offset: usize) -> Option<usize> {
        (**self).held(offset)
    }
    fn stats(&self) -> Stats {
        (**self).stats()
    }
    fn inspect(&self, out: &mut dyn Inspector) {
        (**self).inspect(out)
    }
    fn check_invariants(&self) -> Result<(), Corruption> {
        (**self).check_invariants()
    }
    fn detects(&self) -> Detects {
        (**self).detects()
    }
}

/// The largest request that still succeeds on `m` now, in bytes (alignment `align`), found by
/// allocating and freeing (a binary search between 0 and the space's length): the measure of
/// what fragmentation leaves usable. The manager's state is as before apart from its counters and
/// any state a search moves (a next-fit rover).
pub fn largest_request<M: OffsetManager + ?Sized>(m: &mut M, align: usize) -> usize {
    let (mut lo, mut hi) = (0usize, m.range().len());
    let fits = |m: &mut M, size: usize| match m.allocate(size, align) {
        Ok(o) => {
            // An offset just handed out frees cleanly.
            let _ = m.free(o);
            true
        }
        Err(_) => false,
    };
    if !fits(m, 0) {
        return 0;
    }
    // Invariant: `lo` fits, `hi + 1` does not (or is past the space).
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(m, mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}
