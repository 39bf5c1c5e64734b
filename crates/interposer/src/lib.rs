//! The `LD_PRELOAD` recorder behind `fsm record`.
//!
//! ```text
//!   program ──malloc(n)──> this library ──__libc_malloc(n)──> glibc's allocator
//!                               │
//!                               └─ under a spin lock: "a TID PTR SIZE\n" into a static 1 MiB
//!                                  buffer, written with write(2) to $FSM_RECORD_OUT.PID when full
//!                                  and at exit
//! ```
//!
//! It forwards every call to glibc's own entry points (`__libc_malloc`, `__libc_free`, ...), so it
//! needs no `dlsym` and never allocates: numbers are formatted by hand into a static buffer, the
//! file is opened with `open(2)`. Lines (all numbers hexadecimal, `TID` the kernel thread id):
//!
//! ```text
//!   a TID PTR SIZE          malloc (also valloc, pvalloc)
//!   c TID PTR SIZE          calloc, SIZE the total
//!   m TID PTR ALIGN SIZE    memalign, posix_memalign, aligned_alloc
//!   r TID OLD NEW SIZE      realloc (logged while the lock is held across the call, so another
//!                           thread cannot be handed OLD before this line is written)
//!   f TID PTR               free (logged before the block is released, for the same reason)
//! ```
//!
//! With `FSM_RECORD_OUT` unset the library only forwards. After `fork` the child starts a file of
//! its own (a `pthread_atfork` handler drops the parent's buffered lines in the child).
//! `fsm record` turns the log into a trace (addresses become block IDs).
//!
//! # Features
//!
//! None.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

const BUF: usize = 1 << 20;

struct Log {
    buf: [u8; BUF],
    len: usize,
}

struct Shared(UnsafeCell<Log>);
// SAFETY: the log is only touched while LOCK is held.
unsafe impl Sync for Shared {}

static LOG: Shared = Shared(UnsafeCell::new(Log {
    buf: [0; BUF],
    len: 0,
}));
static LOCK: AtomicBool = AtomicBool::new(false);
/// -2: not yet decided; -1: recording off; otherwise the output file.
static FD: AtomicI32 = AtomicI32::new(-2);

fn lock() {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

fn unlock() {
    LOCK.store(false, Ordering::Release);
}

/// Opens `$FSM_RECORD_OUT.PID` (or decides recording is off). Called with the lock held.
fn fd() -> c_int {
    let fd = FD.load(Ordering::Relaxed);
    if fd != -2 {
        return fd;
    }
    // SAFETY: getenv with a NUL-terminated name; the result is only read.
    let prefix = unsafe { libc::getenv(c"FSM_RECORD_OUT".as_ptr()) };
    let mut fd = -1;
    if !prefix.is_null() {
        let mut path = [0u8; 4096];
        // SAFETY: `prefix` is a NUL-terminated string from the environment.
        let len = unsafe { libc::strlen(prefix) };
        if len < 4000 {
            // SAFETY: `len` bytes are readable at `prefix`; `path` has room for them.
            unsafe { core::ptr::copy_nonoverlapping(prefix.cast::<u8>(), path.as_mut_ptr(), len) };
            let mut n = len;
            path[n] = b'.';
            n += 1;
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() } as u64;
            n += decimal(&mut path[n..], pid);
            path[n] = 0;
            // SAFETY: `path` is NUL-terminated.
            fd = unsafe {
                libc::open(
                    path.as_ptr().cast(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                    0o644,
                )
            };
        }
    }
    FD.store(fd, Ordering::Relaxed);
    fd
}

fn decimal(out: &mut [u8], mut v: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = tmp.len() - i;
    out[..n].copy_from_slice(&tmp[i..]);
    n
}

fn hex(out: &mut [u8], v: u64) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut n = 1;
    while n < 16 && v >> (4 * n) != 0 {
        n += 1;
    }
    for k in 0..n {
        out[k] = DIGITS[((v >> (4 * (n - 1 - k))) & 0xf) as usize];
    }
    n
}

/// Writes the buffer out. Called with the lock held.
fn flush(log: &mut Log, fd: c_int) {
    let mut done = 0;
    while done < log.len {
        // SAFETY: `done..len` is initialised memory of the buffer.
        let w = unsafe { libc::write(fd, log.buf[done..].as_ptr().cast(), log.len - done) };
        if w <= 0 {
            break;
        }
        done += w as usize;
    }
    log.len = 0;
}

/// Appends one line `OP TID N1 N2 ...` (numbers in hex). Called with the lock held.
fn line(op: u8, nums: &[u64]) {
    let fd = fd();
    if fd < 0 {
        return;
    }
    // SAFETY: the lock is held, so this is the only reference to the log.
    let log = unsafe { &mut *LOG.0.get() };
    if log.len + 128 > BUF {
        flush(log, fd);
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
    let b = &mut log.buf;
    let mut n = log.len;
    b[n] = op;
    n += 1;
    b[n] = b' ';
    n += 1;
    n += hex(&mut b[n..], tid);
    for &v in nums {
        b[n] = b' ';
        n += 1;
        n += hex(&mut b[n..], v);
    }
    b[n] = b'\n';
    log.len = n + 1;
}

fn record(op: u8, nums: &[u64]) {
    lock();
    line(op, nums);
    unlock();
}

extern "C" fn at_fork_child() {
    // The child inherits the parent's buffer and lock state; start afresh (the lock cannot be
    // held: fork happens on a thread that is not inside this library).
    LOCK.store(false, Ordering::Relaxed);
    // SAFETY: only this thread exists in the child right after fork.
    let log = unsafe { &mut *LOG.0.get() };
    log.len = 0;
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
    }
    FD.store(-2, Ordering::Relaxed);
}

extern "C" fn init() {
    // SAFETY: registering a handler with no preconditions.
    unsafe { libc::pthread_atfork(None, None, Some(at_fork_child)) };
}

extern "C" fn fini() {
    lock();
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the lock is held.
        flush(unsafe { &mut *LOG.0.get() }, fd);
    }
    unlock();
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;

/// `malloc`, recorded.
///
/// # Safety
/// As C's `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's call.
    let p = unsafe { __libc_malloc(size) };
    if !p.is_null() {
        record(b'a', &[p as u64, size as u64]);
    }
    p
}

/// `calloc`, recorded with the total size.
///
/// # Safety
/// As C's `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's call.
    let p = unsafe { __libc_calloc(n, size) };
    if !p.is_null() {
        record(b'c', &[p as u64, n.saturating_mul(size) as u64]);
    }
    p
}

/// `realloc`, recorded (the lock is held across the call; see the module docs).
///
/// # Safety
/// As C's `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    lock();
    // SAFETY: forwarding the caller's call; glibc's realloc does not call back into this library.
    let p = unsafe { __libc_realloc(ptr, size) };
    if !p.is_null() || size == 0 {
        line(b'r', &[ptr as u64, p as u64, size as u64]);
    }
    unlock();
    p
}

/// `free`, recorded before the block is released.
///
/// # Safety
/// As C's `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if !ptr.is_null() {
        record(b'f', &[ptr as u64]);
    }
    // SAFETY: forwarding the caller's call.
    unsafe { __libc_free(ptr) }
}

/// `cfree` (an old alias of free).
///
/// # Safety
/// As C's `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: same contract.
    unsafe { free(ptr) }
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    // SAFETY: __libc_memalign accepts any alignment (rounding it up to a power of two).
    let p = unsafe { __libc_memalign(align, size) };
    if !p.is_null() {
        record(b'm', &[p as u64, align as u64, size as u64]);
    }
    p
}

/// `memalign`, recorded.
///
/// # Safety
/// As C's `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// `aligned_alloc`, recorded.
///
/// # Safety
/// As C's `aligned_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// `posix_memalign`, recorded.
///
/// # Safety
/// As C's `posix_memalign`: `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    let p = aligned(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable pointer.
    unsafe { *out = p };
    0
}

/// `valloc`, recorded as an allocation aligned to the page.
///
/// # Safety
/// As C's `valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(4096, size)
}

/// `pvalloc`, recorded as an allocation of whole pages aligned to the page.
///
/// # Safety
/// As C's `pvalloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    aligned(4096, size.div_ceil(4096).max(1) * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_by_hand() {
        let mut b = [0u8; 32];
        let n = hex(&mut b, 0x4a40040);
        assert_eq!(&b[..n], b"4a40040");
        let n = hex(&mut b, 0);
        assert_eq!(&b[..n], b"0");
        let n = hex(&mut b, u64::MAX);
        assert_eq!(&b[..n], b"ffffffffffffffff");
        let n = decimal(&mut b, 12345);
        assert_eq!(&b[..n], b"12345");
    }
}
