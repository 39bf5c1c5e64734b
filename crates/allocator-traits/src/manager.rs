//! The placement-policy trait.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::{AllocError, Corruption, FreeError, Inspector, Stats};

/// Where a live block lies: at an offset from the start of the manager's first (main) heap, or
/// in a separate OS mapping of its own (ptmalloc2's mmapped chunks). `fsm replay --offsets` prints
/// it (`Display`: the offset in decimal, or `MMAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// This many bytes past the start of the main heap.
    Heap(usize),
    /// In a mapping outside the main heap.
    Mapped,
}

impl Placement {
    /// Whether the block lies in the main heap.
    pub const fn is_heap(&self) -> bool {
        matches!(self, Placement::Heap(_))
    }
}

impl core::fmt::Display for Placement {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Placement::Heap(off) => write!(f, "{off}"),
            Placement::Mapped => f.write_str("MMAP"),
        }
    }
}

/// Where `ptr` lies relative to the first region `m` reports through
/// [`FreeSpaceManager::inspect`]: the default of [`FreeSpaceManager::placement`]. It walks the
/// manager's structures (O(blocks)): meant for `--offsets` and tests, not for a hot path.
pub fn first_region_placement<M: FreeSpaceManager + ?Sized>(m: &M, ptr: NonNull<u8>) -> Placement {
    #[derive(Default)]
    struct First(Option<(usize, usize)>);
    impl Inspector for First {
        fn region(&mut self, start: usize, len: usize) {
            if self.0.is_none() {
                self.0 = Some((start, len));
            }
        }
    }
    let mut first = First::default();
    m.inspect(&mut first);
    let addr = ptr.as_ptr() as usize;
    match first.0 {
        Some((start, len)) if addr >= start && addr < start.saturating_add(len.max(1)) => {
            Placement::Heap(addr - start)
        }
        _ => Placement::Mapped,
    }
}

/// Which bad frees a policy detects and reports as a [`FreeError`] (instead of corrupting itself).
///
/// The conformance kit checks every claim made here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detects {
    /// A pointer outside every region the manager manages gives [`FreeError::Foreign`].
    pub foreign: bool,
    /// Freeing a block twice (with no allocation in between) gives an error, for blocks whose
    /// layout's size is above [`double_free_above`](Self::double_free_above).
    pub double_free: bool,
    /// The double frees [`double_free`](Self::double_free) promises are those of blocks larger
    /// than this many bytes (0: every block). Every policy in this workspace says 0; a policy
    /// whose check needs a mark inside the freed block (as tcmalloc's key does) and has small
    /// blocks with no room for it would say their size here (docs/bad-frees.md).
    pub double_free_above: usize,
    /// A layout whose size or alignment does not match the block gives an error.
    pub layout_mismatch: bool,
}

impl Detects {
    /// What an offset manager that keeps its live ranges out of band reports: every bad offset
    /// (outside the space: `foreign`; inside it where no live range starts: `double_free`, of
    /// any size). A free by offset carries no size, so `layout_mismatch` does not apply.
    pub const EVERY_OFFSET: Detects = Detects {
        foreign: true,
        double_free: true,
        double_free_above: 0,
        layout_mismatch: false,
    };
}

/// A placement policy: it decides which free block serves a request and what happens to a block
/// when it is freed.
///
/// `&mut self` throughout: no locking, no `std` needed. Wrap a manager in [`crate::Locked`] to use
/// it as an `Allocator` or `GlobalAlloc`. The trait is object safe, so replay and the simulator can
/// drive a `&mut dyn FreeSpaceManager`.
///
/// # Contract
///
/// * [`allocate`](Self::allocate) returns a block whose start is aligned to `layout.align()` and
///   whose length (the slice length) is at least `layout.size()`; all of it is the caller's to use
///   until freed. Zero-size layouts are served like any other (with a block of some minimum size).
///   A layout the policy cannot serve gives an error, never a panic.
/// * [`deallocate`](Self::deallocate) takes a block back. A policy that can detect a bad pointer
///   (see [`detects`](Self::detects)) must return the error and change nothing.
/// * [`grow`](Self::grow) and [`shrink`](Self::shrink) keep the first
///   `min(old.size(), new.size())` bytes. The defaults ([`resize_by_moving`]) resize in place
///   where [`resize_in_place`](Self::resize_in_place) can, and otherwise allocate, copy and free,
///   then call [`record_moved_resize`](Self::record_moved_resize) so that the move counts as one
///   resize. A policy implements `resize_in_place` and `record_moved_resize`, and rarely needs to
///   override `grow` or `shrink` (ptmalloc2 does: it models glibc's `realloc`).
pub trait FreeSpaceManager {
    /// Allocates a block that fits `layout`.
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>;

    /// Allocates a block that fits `layout` with its first `layout.size()` bytes zeroed: C's
    /// `calloc`. The default allocates and writes the zeros; a policy whose `calloc` takes another
    /// path overrides it (ptmalloc2 bypasses the tcache and skips zeroing fresh top memory, as
    /// glibc does).
    fn allocate_zeroed(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(layout)?;
        // SAFETY: the block is ours, live, and at least `layout.size()` bytes long.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(0, layout.size()) };
        Ok(block)
    }

    /// Frees the block at `ptr`, allocated with `layout`.
    ///
    /// # Safety
    /// Unless the policy claims detection of the corresponding mistake in
    /// [`detects`](Self::detects), `ptr` must be a live block from this manager and `layout` the
    /// layout it was allocated (or last resized) with. The caller must not use the block after a
    /// successful free.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError>;

    /// Changes the block's size to `new.size()` without moving it, if the policy can; otherwise
    /// returns [`AllocError::NotInPlace`] and changes nothing.
    ///
    /// A policy that detects bad pointers (see [`detects`](Self::detects)) checks `ptr` and `old`
    /// *first* and returns [`AllocError::InvalidBlock`] for a bad block: [`resize_by_moving`]
    /// relies on it before it copies from `ptr`. `new.align()` may exceed `old.align()`: the
    /// policy then succeeds only if the block's address satisfies it, and refuses otherwise.
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate): `ptr` is a live block allocated with `old`.
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let _ = (ptr, old, new);
        Err(AllocError::NotInPlace)
    }

    /// Grows the block to `new` (`new.size() >= old.size()`), in place where possible.
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate). On success the old pointer is no longer valid
    /// unless it equals the returned one.
    unsafe fn grow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract is the same as ours.
        unsafe { resize_by_moving(self, ptr, old, new) }
    }

    /// Shrinks the block to `new` (`new.size() <= old.size()`), in place where possible.
    ///
    /// # Safety
    /// As for [`grow`](Self::grow).
    unsafe fn shrink(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract is the same as ours.
        unsafe { resize_by_moving(self, ptr, old, new) }
    }

    /// The counters the matrix and `fsm` read.
    fn stats(&self) -> Stats;

    /// Recounts the move [`resize_by_moving`] just made (one successful
    /// [`allocate`](Self::allocate) of the new block, then one successful
    /// [`deallocate`](Self::deallocate) of the old) as one moved resize.
    ///
    /// A policy that keeps [`Stats`] forwards to [`Stats::record_moved_resize`]. The default does
    /// nothing, so the move stays counted as an allocation and a free (the conformance kit
    /// reports that as a stats error).
    fn record_moved_resize(&mut self) {}

    /// Shows the manager's structures to `out` (see [`Inspector`] for the order of calls).
    fn inspect(&self, out: &mut dyn Inspector);

    /// Which bad frees this policy detects.
    fn detects(&self) -> Detects {
        Detects::default()
    }

    /// Where the live block at `ptr` lies: its offset from the start of the manager's main heap,
    /// or [`Placement::Mapped`] for a block in a separate mapping. The default
    /// ([`first_region_placement`]) measures from the first region [`inspect`](Self::inspect)
    /// reports; a policy overrides it where its main heap starts elsewhere (ptmalloc2 measures
    /// from glibc's heap start, so the offsets compare with the real glibc's) or to answer in
    /// O(1).
    fn placement(&self, ptr: NonNull<u8>) -> Placement {
        first_region_placement(self, ptr)
    }

    /// Walks every structure the manager keeps (free lists, bins, bitmaps, boundary tags, span
    /// tables, caches) and checks the invariants that relate them, as glibc's
    /// `do_check_malloc_state` and talc's `scan_for_errors` do: the first one that does not hold
    /// is returned. It reads only the manager's own metadata (never a live block's bytes), costs
    /// O(size of the structures), and is meant for tests and debugging: the conformance kit runs
    /// it after every operation of its sequences.
    fn check_invariants(&self) -> Result<(), Corruption>;
}

/// Resize in place if the manager can, otherwise allocate a new block, copy, free the old one and
/// count the whole as one moved resize ([`FreeSpaceManager::record_moved_resize`]). This is what
/// the default [`FreeSpaceManager::grow`] and [`FreeSpaceManager::shrink`] do.
///
/// `resize_in_place` is always asked first, also when `new` is more aligned than `old`: it
/// validates the block (for a policy that detects bad pointers) before anything is read from it.
///
/// # Safety
/// `ptr` is a live block of `m` allocated with `old` (or the manager detects otherwise).
pub unsafe fn resize_by_moving<M: FreeSpaceManager + ?Sized>(
    m: &mut M,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    // SAFETY: forwarded caller contract; `old.size()` bytes of a live block are readable.
    unsafe { resize_keeping(m, ptr, old, new, old.size()) }
}

/// [`resize_by_moving`] that keeps the first `min(kept, new.size())` bytes when it moves the
/// block, not just `min(old.size(), new.size())`: for a caller that was told the block is
/// `kept` bytes long (C's `malloc_usable_size`, the length of the slice
/// [`allocate`](FreeSpaceManager::allocate) returned) and may have written all of them.
///
/// # Safety
/// As for [`resize_by_moving`], and the block at `ptr` is at least `kept` bytes long (`kept` is
/// at most the length its allocation or last resize returned).
pub unsafe fn resize_keeping<M: FreeSpaceManager + ?Sized>(
    m: &mut M,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    kept: usize,
) -> Result<NonNull<[u8]>, AllocError> {
    // SAFETY: forwarded caller contract.
    match unsafe { m.resize_in_place(ptr, old, new) } {
        Err(AllocError::NotInPlace) => {}
        other => return other,
    }
    let fresh = m.allocate(new)?;
    let keep = kept.min(new.size());
    // SAFETY: `ptr` is live with at least `kept` bytes (the caller's contract; `resize_in_place`
    // checked the block where the policy can), `fresh` has at least `new.size()`; distinct live
    // blocks do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr().cast::<u8>(), keep) };
    // SAFETY: forwarded caller contract.
    if let Err(e) = unsafe { m.deallocate(ptr, old) } {
        // The old block was not ours: undo the allocation and report, leaving things as they were.
        // SAFETY: `fresh` was just allocated with `new` and is not used elsewhere.
        let _ = unsafe { m.deallocate(fresh.cast(), new) };
        return Err(AllocError::InvalidBlock(e));
    }
    m.record_moved_resize();
    Ok(fresh)
}

/// A manager behind a pointer forwards every call (the pointer types below).
macro_rules! forward_manager {
    ($(#[$attr:meta])* $ptr:ty) => {
        $(#[$attr])*
        impl<M: FreeSpaceManager + ?Sized> FreeSpaceManager for $ptr {
            fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                (**self).allocate(layout)
            }
            fn allocate_zeroed(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                (**self).allocate_zeroed(layout)
            }
            unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).deallocate(ptr, layout) }
            }
            unsafe fn resize_in_place(
                &mut self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).resize_in_place(ptr, old, new) }
            }
            unsafe fn grow(
                &mut self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).grow(ptr, old, new) }
            }
            unsafe fn shrink(
                &mut self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).shrink(ptr, old, new) }
            }
            fn stats(&self) -> Stats {
                (**self).stats()
            }
            fn record_moved_resize(&mut self) {
                (**self).record_moved_resize()
            }
            fn inspect(&self, out: &mut dyn Inspector) {
                (**self).inspect(out)
            }
            fn detects(&self) -> Detects {
                (**self).detects()
            }
            fn placement(&self, ptr: NonNull<u8>) -> Placement {
                (**self).placement(ptr)
            }
            fn check_invariants(&self) -> Result<(), Corruption> {
                (**self).check_invariants()
            }
        }
    };
}

forward_manager!(&mut M);
forward_manager!(
    /// A boxed manager (`Box<dyn FreeSpaceManager + Send>`, say) is a manager, so it can be
    /// wrapped in [`crate::Locked`] like any other.
    #[cfg(feature = "alloc")]
    alloc::boxed::Box<M>
);
