//! The address-space reservation that holds one `Ptmalloc`: its state, the main heap and the
//! thread heaps, `PROT_NONE` until used.
//!
//! ```text
//!  start (64 MiB aligned)
//!  | state window (64 MiB) | main heap window (16 GiB, brk-like) | 256 thread heap windows |
//!    Global, committed       Window: grants ascend from the start    64 MiB each (heap_info)
//!    page by page            and are committed on demand
//! ```
//!
//! `commit` makes pages read-write (`mprotect`), `decommit` gives their contents back
//! (`madvise(MADV_DONTNEED)`: they read as zero when used again).

use core::ptr::NonNull;

use allocator_traits::{MemorySource, SourceError};

use crate::chunk::{PAGE, align_up};
use crate::tunables::HEAP_MAX_SIZE;

/// Bytes of the main heap's window.
pub(super) const MAIN_WINDOW: usize = 16 << 30;
/// Thread heaps one reservation holds.
pub(super) const THREAD_HEAPS: usize = 256;
/// Bytes reserved after the state window: the main heap's window and the thread heaps'.
pub(super) const RESERVE: usize = HEAP_MAX_SIZE + MAIN_WINDOW + THREAD_HEAPS * HEAP_MAX_SIZE;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Commits `len` bytes at `p` read-write.
///
/// # Safety
/// `p .. p+len` is inside the reservation and page-aligned.
pub(super) unsafe fn commit(p: *mut u8, len: usize) -> bool {
    // SAFETY: by the caller.
    unsafe { libc::mprotect(p.cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Gives `len` bytes at `p` back to the OS (they read as zero when used again).
///
/// # Safety
/// As for [`commit`]; nothing in the range is used any more.
pub(super) unsafe fn decommit(p: *mut u8, len: usize) {
    // SAFETY: by the caller.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// The main heap: a brk-like window of the reservation.
pub(super) struct Window {
    pub(super) base: *mut u8,
    pub(super) len: usize,
    pub(super) used: usize,
    pub(super) committed: usize,
}

// SAFETY: grants are ascending, disjoint sub-ranges of the window, committed before they are
// returned; only the tail is released.
unsafe impl MemorySource for Window {
    fn acquire(&mut self, size: usize, _align: usize) -> Result<NonNull<[u8]>, SourceError> {
        let end = self
            .used
            .checked_add(size)
            .filter(|&e| e <= self.len)
            .ok_or(SourceError::Exhausted {
                requested: size,
                available: self.len - self.used,
            })?;
        let want = align_up(end, PAGE);
        if want > self.committed {
            // SAFETY: `committed .. want` is inside the window, page-aligned.
            if !unsafe { commit(self.base.add(self.committed), want - self.committed) } {
                return Err(SourceError::Os {
                    call: "mprotect",
                    errno: errno(),
                });
            }
            self.committed = want;
        }
        // SAFETY: `used <= len`: inside the window.
        let p = unsafe { self.base.add(self.used) };
        self.used = end;
        NonNull::new(core::ptr::slice_from_raw_parts_mut(p, size)).ok_or(SourceError::Exhausted {
            requested: size,
            available: 0,
        })
    }
    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        let p = ptr.as_ptr() as usize;
        if p + size != self.base as usize + self.used {
            return Err(SourceError::InvalidRelease { ptr: p, size });
        }
        self.used -= size;
        let keep = align_up(self.used, PAGE);
        if keep < self.committed {
            // SAFETY: `keep .. committed` is inside the window and no longer granted. The pages
            // stay read-write (glibc's trimmed brk pages are gone; ours read as zero).
            unsafe { decommit(self.base.add(keep), self.committed - keep) };
        }
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

/// Reserves the whole address space of one allocator, `PROT_NONE`: returns the mapping's base
/// pointer (whose provenance reaches all of it) and `start`, the first 64 MiB boundary in it,
/// where the state window begins (`start + HEAP_MAX_SIZE + RESERVE` is still inside).
pub(super) fn reserve() -> Option<(*mut u8, usize)> {
    let len = RESERVE + HEAP_MAX_SIZE;
    // SAFETY: a fresh PROT_NONE reservation touches nothing else.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let base = p.cast::<u8>();
    Some((base, align_up(base as usize, HEAP_MAX_SIZE)))
}

/// The main heap's window of the reservation at `base` whose state window starts at `start`.
pub(super) fn main_window(base: *mut u8, start: usize) -> Window {
    let main_start = start + HEAP_MAX_SIZE;
    Window {
        // SAFETY: inside the reservation (see `reserve`).
        base: unsafe { base.add(main_start - base as usize) },
        len: MAIN_WINDOW,
        used: 0,
        committed: 0,
    }
}
