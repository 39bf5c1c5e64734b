//! `Locked<M>`: any manager as an `Allocator` (for collections) and a `GlobalAlloc`.
//!
//! One lock around the manager (`ticket::TicketLock`: no thread starves on it). A bad free cannot be returned through either interface, so
//! it aborts the process with the manager's message (as glibc's `malloc_printerr` does) instead of
//! going on with a heap that may be corrupted.

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::ptr::NonNull;

use crate::{AllocError, FreeError, FreeSpaceManager, Stats};

/// A manager behind a lock no thread starves on: `allocator_api2::alloc::Allocator` and `GlobalAlloc`.
///
/// The `Allocator` front hands out slices of exactly the size asked, not the manager's whole
/// block: that API lets a caller free with any size up to the length it was given, and the
/// manager counts and checks the layout it allocated.
///
/// ```
/// # #[cfg(feature = "std")] {
/// use allocator_traits::Locked;
/// # use allocator_traits::{FreeSpaceManager, Stats, Inspector, AllocError, FreeError, Corruption};
/// # use core::{alloc::Layout, ptr::NonNull};
/// # struct Sys;
/// # impl FreeSpaceManager for Sys {
/// #   fn allocate(&mut self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
/// #     let p = unsafe { std::alloc::alloc(l) };
/// #     NonNull::new(core::ptr::slice_from_raw_parts_mut(p, l.size())).ok_or(AllocError::out_of_memory(l)) }
/// #   unsafe fn deallocate(&mut self, p: NonNull<u8>, l: Layout) -> Result<(), FreeError> {
/// #     unsafe { std::alloc::dealloc(p.as_ptr(), l) }; Ok(()) }
/// #   fn stats(&self) -> Stats { Stats::new() }
/// #   fn inspect(&self, _: &mut dyn Inspector) {}
/// #   fn check_invariants(&self) -> Result<(), Corruption> { Ok(()) }
/// # }
/// let heap = Locked::new(Sys);
/// let mut v = allocator_api2::vec::Vec::new_in(&heap);
/// v.extend_from_slice(&[1, 2, 3]);
/// assert_eq!(v.len(), 3);
/// # }
/// ```
pub struct Locked<M> {
    inner: crate::ticket::TicketLock<M>,
}

/// The guard [`Locked::lock`] gives: the manager, held until it is dropped.
pub type LockedGuard<'a, M> = crate::ticket::TicketGuard<'a, M>;

impl<M> Locked<M> {
    /// Wraps `manager`. `const`, so a `static` can hold it as the `#[global_allocator]`.
    pub const fn new(manager: M) -> Self {
        Locked {
            inner: crate::ticket::TicketLock::new(manager),
        }
    }

    /// Locks the manager for direct use (stats, inspection, the `&mut` API), waiting for it (no
    /// longer than its patience plus the turns of the waiters that ran out of theirs before).
    pub fn lock(&self) -> LockedGuard<'_, M> {
        self.inner.lock()
    }

    /// Locks the manager if no thread holds it and no waiter has run out of patience.
    pub fn try_lock(&self) -> Option<LockedGuard<'_, M>> {
        self.inner.try_lock()
    }

    /// How many threads wait past their patience, queued in ticket order (see
    /// [`TicketLock`](crate::ticket::TicketLock)): for tests and diagnostics.
    pub fn starving_waiters(&self) -> usize {
        self.inner.starving_waiters()
    }

    /// Unwraps the manager.
    pub fn into_inner(self) -> M {
        self.inner.into_inner()
    }
}

impl<M: FreeSpaceManager> Locked<M> {
    /// The manager's counters.
    pub fn stats(&self) -> Stats {
        self.inner.lock().stats()
    }
}

impl<M> fmt::Debug for Locked<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locked").finish_non_exhaustive()
    }
}

/// Aborts the process with `err`'s message on stderr: what a bad free through `Allocator` or
/// `GlobalAlloc` does, since neither can return an error. Without `std` it panics from a function
/// that cannot unwind, which aborts.
#[cold]
pub fn abort_with(err: &FreeError) -> ! {
    #[cfg(feature = "std")]
    {
        // Format into a stack buffer: the heap may be the one that is broken.
        let mut buf = StackBuf {
            bytes: [0; 256],
            len: 0,
        };
        let _ = fmt::write(&mut buf, format_args!("{err}\n"));
        // SAFETY: writing initialised bytes to fd 2; nothing is allocated.
        unsafe { libc::write(2, buf.bytes.as_ptr().cast(), buf.len) };
        std::process::abort()
    }
    #[cfg(not(feature = "std"))]
    {
        no_unwind_panic(err)
    }
}

#[cfg(not(feature = "std"))]
extern "C" fn no_unwind_panic(err: &FreeError) -> ! {
    // A panic cannot leave an `extern "C"` function: the runtime aborts.
    panic!("{err}")
}

#[cfg(feature = "std")]
struct StackBuf {
    bytes: [u8; 256],
    len: usize,
}

#[cfg(feature = "std")]
impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn api_error(e: AllocError) -> allocator_api2::alloc::AllocError {
    if let AllocError::InvalidBlock(f) = e {
        abort_with(&f)
    }
    allocator_api2::alloc::AllocError
}

/// The block as the `Allocator` API hands it out: exactly `size` bytes long, never the manager's
/// whole block. The API lets a caller free or resize a block with any size up to the length it
/// was handed (hashbrown does: it sizes its table by the length), while a manager counts and
/// checks the layout it allocated: handing out the size asked keeps the two the same.
fn exact(block: NonNull<[u8]>, size: usize) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(block.cast::<u8>(), size)
}

// SAFETY: blocks come from the manager, which guarantees size and alignment and keeps them valid
// until freed (the slice handed out is the size asked, within the block); the lock serialises all
// access; a bad free aborts rather than corrupting state.
unsafe impl<M: FreeSpaceManager> allocator_api2::alloc::Allocator for Locked<M> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let block = self.inner.lock().allocate(layout).map_err(api_error)?;
        Ok(exact(block, layout.size()))
    }

    fn allocate_zeroed(
        &self,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let block = self
            .inner
            .lock()
            .allocate_zeroed(layout)
            .map_err(api_error)?;
        Ok(exact(block, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the Allocator contract makes `ptr` a block of ours allocated with `layout`.
        if let Err(e) = unsafe { self.inner.lock().deallocate(ptr, layout) } {
            abort_with(&e)
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: forwarded Allocator contract.
        let block = unsafe { self.inner.lock().grow(ptr, old, new) }.map_err(api_error)?;
        Ok(exact(block, new.size()))
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: forwarded Allocator contract.
        let block = unsafe { self.inner.lock().grow(ptr, old, new) }.map_err(api_error)?;
        // SAFETY: the block is ours and at least `new.size() >= old.size()` bytes long.
        unsafe {
            block
                .cast::<u8>()
                .as_ptr()
                .add(old.size())
                .write_bytes(0, new.size() - old.size())
        };
        Ok(exact(block, new.size()))
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: forwarded Allocator contract.
        let block = unsafe { self.inner.lock().shrink(ptr, old, new) }.map_err(api_error)?;
        Ok(exact(block, new.size()))
    }
}

// SAFETY: as for the `Allocator` impl; null is returned for every refused request, and a bad free
// aborts.
unsafe impl<M: FreeSpaceManager> GlobalAlloc for Locked<M> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.inner.lock().allocate(layout) {
            Ok(p) => p.as_ptr().cast(),
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.inner.lock().allocate_zeroed(layout) {
            Ok(p) => p.as_ptr().cast(),
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(ptr) = NonNull::new(ptr) else {
            abort_with(&FreeError::NotABlock { ptr: 0 })
        };
        // SAFETY: the GlobalAlloc contract makes `ptr` a block of ours allocated with `layout`.
        if let Err(e) = unsafe { self.inner.lock().deallocate(ptr, layout) } {
            abort_with(&e)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (Some(p), Ok(new)) = (
            NonNull::new(ptr),
            Layout::from_size_align(new_size, layout.align()),
        ) else {
            return core::ptr::null_mut();
        };
        let mut m = self.inner.lock();
        // SAFETY: the GlobalAlloc contract makes `p` a block of ours allocated with `layout`.
        let r = unsafe {
            if new_size >= layout.size() {
                m.grow(p, layout, new)
            } else {
                m.shrink(p, layout, new)
            }
        };
        match r {
            Ok(b) => b.as_ptr().cast(),
            Err(AllocError::InvalidBlock(e)) => abort_with(&e),
            Err(_) => core::ptr::null_mut(),
        }
    }
}
