//! The C allocation API with glibc 2.36's semantics, over the front.
//!
//! | call | special cases (as glibc) |
//! |---|---|
//! | `malloc(n)` | `n > PTRDIFF_MAX`: NULL, `ENOMEM` |
//! | `free(p)` | `free(NULL)` does nothing; a bad pointer aborts naming it; `errno` is kept |
//! | `calloc(n, s)` | `n * s` overflows: NULL, `ENOMEM` |
//! | `realloc(p, n)` | `p` NULL: `malloc(n)`; `n` 0: frees `p`, returns NULL; refused: NULL, `ENOMEM`, `p` unchanged |
//! | `reallocarray(p, n, s)` | overflow: NULL, `ENOMEM`, `p` unchanged |
//! | `memalign(a, n)`, `aligned_alloc(a, n)` | `a <= 16`: `malloc(n)`; `a` not a power of two: rounded up; `a > SIZE_MAX/2 + 1`: NULL, `EINVAL` |
//! | `posix_memalign(out, a, n)` | `a` not a power-of-two multiple of `sizeof(void *)`: `EINVAL`; refused: `ENOMEM` (`*out` untouched) |
//! | `valloc(n)`, `pvalloc(n)` | page-aligned; `pvalloc` rounds `n` up to pages (overflow: NULL, `ENOMEM`) |
//! | `malloc_usable_size(p)` | NULL: 0; else at least what was asked |
//!
//! Every failure that returns NULL sets `errno` (`ENOMEM`, or `EINVAL` for a bad alignment).

use core::ffi::{c_int, c_void};
use core::ptr::{NonNull, null_mut};

use crate::front;

/// The alignment `malloc` guarantees (x86-64 glibc: `2 * sizeof(size_t)`).
const MALLOC_ALIGN: usize = 16;

fn set_errno(e: c_int) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// A block or NULL with `errno = ENOMEM`.
fn or_enomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// The largest size any allocation may have (glibc refuses more than `PTRDIFF_MAX`).
const MAX_SIZE: usize = isize::MAX as usize;

fn alloc(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    if size > MAX_SIZE {
        set_errno(libc::ENOMEM);
        return null_mut();
    }
    or_enomem(front::malloc(size, align, zeroed))
}

/// `malloc(3)`.
///
/// # Safety
/// None beyond C's: the block is the caller's until freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, MALLOC_ALIGN, false)
}

/// `free(3)`.
///
/// # Safety
/// `ptr` is NULL or a live block from this library (anything else aborts with a message naming
/// it where the policy's front detects it; every front built on `CHeap` does).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if let Some(p) = NonNull::new(ptr.cast::<u8>()) {
        // glibc's free keeps errno (a failed munmap inside must not show: tst-free-errno).
        // SAFETY: the calling thread's errno.
        let saved = unsafe { *libc::__errno_location() };
        // SAFETY: forwarded caller contract.
        unsafe { front::free(p) };
        set_errno(saved);
    }
}

/// `cfree`: an old name of `free`.
///
/// # Safety
/// As for [`free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { free(ptr) }
}

/// `calloc(3)`.
///
/// # Safety
/// As for [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => alloc(total, MALLOC_ALIGN, true),
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// `realloc(3)`.
///
/// # Safety
/// `ptr` is NULL or a live block from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let Some(p) = NonNull::new(ptr.cast::<u8>()) else {
        // SAFETY: realloc(NULL, n) is malloc(n).
        return unsafe { malloc(size) };
    };
    if size == 0 {
        // glibc: realloc(p, 0) frees p and returns NULL.
        // SAFETY: forwarded caller contract.
        unsafe { front::free(p) };
        return null_mut();
    }
    if size > MAX_SIZE {
        set_errno(libc::ENOMEM);
        return null_mut();
    }
    // SAFETY: forwarded caller contract.
    or_enomem(unsafe { front::realloc(p, size) })
}

/// `reallocarray(3)`.
///
/// # Safety
/// As for [`realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded caller contract.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// glibc's `_mid_memalign`: the alignment checks and rounding every aligned call shares.
fn aligned(align: usize, size: usize) -> *mut c_void {
    if align <= MALLOC_ALIGN {
        return alloc(size, MALLOC_ALIGN, false);
    }
    if align > usize::MAX / 2 + 1 {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    // Not a power of two: the next one (glibc rounds up too).
    let align = align.next_power_of_two();
    alloc(size, align, false)
}

/// `memalign(3)`.
///
/// # Safety
/// As for [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// `aligned_alloc(3)` (glibc 2.36: the same as `memalign`).
///
/// # Safety
/// As for [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// `posix_memalign(3)`.
///
/// # Safety
/// `out` is valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    let word = core::mem::size_of::<*mut c_void>();
    if !align.is_multiple_of(word) || !(align / word).is_power_of_two() {
        return libc::EINVAL;
    }
    // glibc keeps errno as it was when posix_memalign fails.
    // SAFETY: the calling thread's errno.
    let saved = unsafe { *libc::__errno_location() };
    let p = aligned(align, size);
    if p.is_null() {
        set_errno(saved);
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract makes `out` writable.
    unsafe { out.write(p) };
    0
}

fn page() -> usize {
    // SAFETY: no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}

/// `valloc(3)`.
///
/// # Safety
/// As for [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page(), size)
}

/// `pvalloc(3)`.
///
/// # Safety
/// As for [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let p = page();
    match size.checked_add(p - 1) {
        Some(s) => aligned(p, s & !(p - 1)),
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// `malloc_usable_size(3)`.
///
/// # Safety
/// `ptr` is NULL or a live block from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    match NonNull::new(ptr.cast::<u8>()) {
        // SAFETY: forwarded caller contract.
        Some(p) => unsafe { front::usable_size(p) },
        None => 0,
    }
}
