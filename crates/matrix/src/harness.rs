//! The harness's own memory, and how a peer's footprint is read.
//!
//! ```text
//!   process RSS = binary + harness heap (its own talc arena) + the peer's heap
//!                 '------ baseline, read before the replay -----'
//!   peer footprint = RSS now - baseline                (sampled during the replay)
//!   peer peak      = VmHWM - baseline                  (VmHWM reset via /proc/self/clear_refs)
//! ```
//!
//! The harness (trace, slot table, results) allocates from a talc heap over its own mapping, so
//! none of its freed memory is left in glibc's heap for the `system` peer to reuse, and nothing it
//! does during a replay lands in a peer's heap.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const HARNESS_ARENA: usize = 64 << 30;

/// The matrix binary's global allocator: talc over a lazily made `MAP_NORESERVE` mapping, behind
/// a spin lock.
pub struct HarnessAlloc {
    lock: spin::Mutex<()>,
    cell: UnsafeCell<Option<talc::TalcCell<talc::source::Claim>>>,
}

// SAFETY: `cell` is only touched with `lock` held.
unsafe impl Sync for HarnessAlloc {}

impl HarnessAlloc {
    /// An allocator that maps its arena on first use.
    pub const fn new() -> Self {
        HarnessAlloc {
            lock: spin::Mutex::new(()),
            cell: UnsafeCell::new(None),
        }
    }

    /// Runs `f` on the heap, making it first if needed; `None` if the mapping failed.
    fn with<R>(&self, f: impl FnOnce(&talc::TalcCell<talc::source::Claim>) -> R) -> Option<R> {
        let _g = self.lock.lock();
        // SAFETY: the lock is held: this is the only reference to the cell's contents.
        let cell = unsafe { &mut *self.cell.get() };
        if cell.is_none() {
            // SAFETY: an anonymous private mapping at an address the kernel picks.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    HARNESS_ARENA,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            // SAFETY: the mapping is valid for HARNESS_ARENA bytes, never unmapped, and used
            // by this heap alone.
            let claim = unsafe { talc::source::Claim::new(p.cast(), HARNESS_ARENA) };
            *cell = Some(talc::TalcCell::new(claim));
        }
        cell.as_ref().map(f)
    }
}

impl Default for HarnessAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwards to talc's `GlobalAlloc` under the lock; null when the arena could not be made.
unsafe impl GlobalAlloc for HarnessAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        self.with(|t| unsafe { t.alloc(layout) })
            .unwrap_or(core::ptr::null_mut())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        self.with(|t| unsafe { t.dealloc(ptr, layout) });
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        self.with(|t| unsafe { t.realloc(ptr, layout, new_size) })
            .unwrap_or(core::ptr::null_mut())
    }
}

/// Resident bytes of this process (`/proc/self/statm`), read without allocating.
pub fn rss() -> usize {
    let mut buf = [0u8; 128];
    let n = read_proc(c"/proc/self/statm", &mut buf);
    let text = core::str::from_utf8(&buf[..n]).unwrap_or("");
    let pages: usize = text
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> usize {
    allocator_traits::source::page_size()
}

fn read_proc(path: &core::ffi::CStr, buf: &mut [u8]) -> usize {
    // SAFETY: open/read/close on a NUL-terminated path into our own buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let mut n = 0usize;
        loop {
            let r = libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
            if n == buf.len() {
                break;
            }
        }
        libc::close(fd);
        n
    }
}

/// Resets the peak-RSS mark (`VmHWM`) to the current RSS. False if the kernel refused.
pub fn reset_peak() -> bool {
    // SAFETY: open/write/close on a NUL-terminated path.
    unsafe {
        let fd = libc::open(
            c"/proc/self/clear_refs".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, b"5".as_ptr().cast(), 1) == 1;
        libc::close(fd);
        ok
    }
}

/// The peak-RSS mark (`VmHWM` of `/proc/self/status`) in bytes.
pub fn peak_rss() -> usize {
    let mut buf = [0u8; 4096];
    let n = read_proc(c"/proc/self/status", &mut buf);
    let text = core::str::from_utf8(&buf[..n]).unwrap_or("");
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}
