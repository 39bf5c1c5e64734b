//! The bootstrap arena: memory that needs no policy.
//!
//! ```text
//!   one reservation (address space only, pages committed when touched)
//!   base ───────────────────────────────────────────── base + RESERVE
//!   |blk|blk|hdr|C blk|blk| ...  next ──>                |
//!    the library's own Rust allocations (registry descriptors, the policy's Box, CHeap's table)
//!    and C calls made before the policy is ready or from inside it (a 16-byte header in front
//!    holds their size)
//! ```
//!
//! A bump allocator: one atomic cursor, so it needs no lock (and nothing to reset after `fork`).
//! Freeing gives nothing back to the cursor; a large block's pages are returned to the OS
//! (`madvise`), so a table that grew and moved does not keep its old copies resident. A pointer
//! is a bootstrap block iff it lies in the reservation: `free` tests that first.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Address space reserved for the arena: enough for the table of live blocks of a program with
/// hundreds of millions of blocks.
const RESERVE: usize = 64 << 30;
/// Blocks at least this large give their pages back when freed.
const GIVE_BACK: usize = 64 << 10;
/// The header in front of a block handed to C: its size, so `realloc` and `malloc_usable_size`
/// can answer.
pub const HEADER: usize = 16;

/// The arena (see the module docs).
pub struct Bootstrap {
    /// Start of the reservation (0 until the first allocation reserves it).
    base: AtomicUsize,
    /// Bytes of the reservation handed out (the bump cursor).
    next: AtomicUsize,
}

impl Bootstrap {
    /// An arena that reserves its address space on first use.
    pub const fn new() -> Self {
        Bootstrap {
            base: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// The reservation's start, reserving it if nobody has (0 if the OS refused).
    fn base(&self) -> usize {
        let b = self.base.load(Ordering::Acquire);
        if b != 0 {
            return b;
        }
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                null_mut(),
                RESERVE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return 0;
        }
        match self
            .base
            .compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => p as usize,
            Err(theirs) => {
                // Another thread reserved first: give ours back.
                // SAFETY: `p` is the mapping made above, used by nobody.
                unsafe { libc::munmap(p, RESERVE) };
                theirs
            }
        }
    }

    /// Bytes handed out so far (what the library itself costs, beside the policy).
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// Whether `ptr` is a block of this arena.
    pub fn owns(&self, ptr: *const u8) -> bool {
        let b = self.base.load(Ordering::Acquire);
        let a = ptr as usize;
        b != 0 && a >= b && a < b + RESERVE
    }

    /// A block for `layout`, or null when the reservation is used up.
    fn carve(&self, layout: Layout) -> *mut u8 {
        let base = self.base();
        if base == 0 {
            return null_mut();
        }
        let need = layout.size().max(1).saturating_add(layout.align() - 1);
        let off = self.next.fetch_add(need, Ordering::Relaxed);
        if off.saturating_add(need) > RESERVE {
            return null_mut();
        }
        let at = base + off;
        let aligned = (at + layout.align() - 1) & !(layout.align() - 1);
        aligned as *mut u8
    }

    /// A block for a C call (`size` bytes aligned to `align`, at most 4 KiB, as the front's
    /// callers ask), its size recorded in front of it.
    pub fn c_alloc(&self, size: usize, align: usize) -> *mut u8 {
        let align = align.max(HEADER);
        let Some(total) = size.checked_add(align) else {
            return null_mut();
        };
        let Ok(l) = Layout::from_size_align(total, align) else {
            return null_mut();
        };
        let p = self.carve(l);
        if p.is_null() {
            return p;
        }
        // The header sits just before the block: `align >= HEADER` bytes are in front.
        let block = p.wrapping_add(align);
        // SAFETY: `block - HEADER .. block + size` lies in the carved range (fresh, ours).
        unsafe { block.sub(HEADER).cast::<usize>().write(size) };
        block
    }

    /// The size a C block was asked with.
    ///
    /// # Safety
    /// `ptr` is a block [`c_alloc`](Self::c_alloc) returned.
    pub unsafe fn c_size(&self, ptr: *const u8) -> usize {
        // SAFETY: the header written by `c_alloc` sits just before the block.
        unsafe { ptr.sub(HEADER).cast::<usize>().read() }
    }
}

// SAFETY: every block is a distinct range of the reservation (the cursor only moves forward, by
// the size plus the alignment's slack, so the aligned block fits in what was claimed), aligned
// as asked, valid for the life of the process; null when the reservation is used up. A freed
// block's memory is never handed out again (a large one's pages are dropped and read as zero if
// touched, which nothing does: it is freed).
unsafe impl GlobalAlloc for Bootstrap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.carve(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= GIVE_BACK {
            // The whole pages inside the block go back to the OS.
            let page = 4096;
            let start = (ptr as usize + page - 1) & !(page - 1);
            let end = (ptr as usize + layout.size()) & !(page - 1);
            if end > start {
                // SAFETY: the pages lie inside the freed block, which nothing uses any more.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
                };
            }
        }
    }
}
