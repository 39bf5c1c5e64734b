//! The `LD_PRELOAD` recorder behind `fsm record`.
//!
//! ```text
//!   program ──malloc(n)──> this library ──__libc_malloc(n)──> glibc's allocator
//!                               │
//!                               └─ under a spin lock: "a TID PTR SIZE\n" copied straight into
//!                                  the log file $FSM_RECORD_OUT.PID, mapped shared:
//!
//!   file  [ line line line ... line | 0 0 0 0 0 0 0 ... 0 ]
//!          0                        pos                   file_len
//!                       [ ...... window (1 MiB, mapped) ...... ]
//!                       woff                                   woff + WINDOW
//! ```
//!
//! Every line is in the file (the kernel's page cache) the moment the call that made it
//! returns: nothing is buffered in the process. So a recording survives the program's end
//! however it ends: SIGSEGV, SIGABRT, SIGKILL (which no handler sees) or `exec` (which replaces
//! the process image with no warning through glibc's internal `execve`) lose at most the one line
//! a thread was in the middle of writing. The file grows a window at a time (`fallocate`, so a
//! full disk stops the recording instead of raising SIGBUS), zeros beyond `pos`; at exit it is
//! cut to `pos`, and a reader ignores trailing zeros and a last line cut short.
//!
//! It forwards every call to glibc's own entry points (`__libc_malloc`, `__libc_free`, ...), so it
//! needs no `dlsym` and never allocates: numbers are formatted by hand on the stack, the file is
//! opened with `open(2)` and mapped with `mmap(2)`. Lines (numbers hexadecimal, `TID` the kernel
//! thread id):
//!
//! ```text
//!   a TID PTR SIZE          malloc (also valloc, pvalloc)
//!   c TID PTR SIZE          calloc, SIZE the total
//!   m TID PTR ALIGN SIZE    memalign, posix_memalign, aligned_alloc
//!   r TID OLD NEW SIZE      realloc (logged while the lock is held across the call, so another
//!                           thread cannot be handed OLD before this line is written)
//!   f TID PTR               free (logged before the block is released, for the same reason)
//!   x TID                   the process exec'd: a new program starts, every earlier block is gone
//! ```
//!
//! With `FSM_RECORD_OUT` unset the library only forwards. After `exec` the new image (same pid,
//! same file name) finds the file there, continues after its last whole line and writes `x`
//! first. After `fork` the child starts a file of its own (a `pthread_atfork` handler drops the
//! parent's mapping in the child). `fsm record` turns the log into a trace (addresses become
//! block IDs).
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

/// Bytes of the file mapped at a time (a multiple of the page size).
const WINDOW: u64 = 1 << 20;
/// The longest line: a letter, a space, four numbers of up to 16 digits with their spaces and
/// the newline come to 70.
const LINE: usize = 128;

/// Where the log stands. Touched only while `LOCK` is held.
struct Log {
    /// The file's length: `pos <= file_len`, and every byte in `pos..file_len` is zero.
    file_len: u64,
    /// The end of the last line written: bytes `0..pos` are whole lines (except a line a thread
    /// killed by `exec` or a signal was writing).
    pos: u64,
    /// The file offset `map` shows, a multiple of `WINDOW`: `woff <= pos <= woff + WINDOW`
    /// whenever `map` is not null.
    woff: u64,
    /// The window `woff..woff + WINDOW` of the file, mapped shared; null before the first line.
    map: *mut u8,
}

struct Shared(UnsafeCell<Log>);
// SAFETY: the log is only touched while LOCK is held.
unsafe impl Sync for Shared {}

static LOG: Shared = Shared(UnsafeCell::new(Log {
    file_len: 0,
    pos: 0,
    woff: 0,
    map: core::ptr::null_mut(),
}));
static LOCK: AtomicBool = AtomicBool::new(false);
/// -2: not yet decided; -1: recording off (or stopped: the disk is full); otherwise the file.
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
            // No O_TRUNC: a file already there is this process's own, written before it exec'd.
            // SAFETY: `path` is NUL-terminated.
            fd = unsafe {
                libc::open(
                    path.as_ptr().cast(),
                    libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
                    0o644,
                )
            };
        }
    }
    FD.store(fd, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the lock is held, so this is the only reference to the log.
        let log = unsafe { &mut *LOG.0.get() };
        resume(log, fd);
    }
    // `resume` may have stopped the recording (no room for the file).
    FD.load(Ordering::Relaxed)
}

/// Sets `pos` after the last whole line already in the file (left by this process's image
/// before `exec`) and zeroes a line cut short after it; writes `x` if there was anything.
fn resume(log: &mut Log, fd: c_int) {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten by fstat.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable.
    let size = if unsafe { libc::fstat(fd, &mut st) } == 0 {
        st.st_size.max(0) as u64
    } else {
        0
    };
    *log = Log {
        file_len: size,
        pos: 0,
        woff: 0,
        map: core::ptr::null_mut(),
    };
    // The last newline, read backwards a block at a time.
    let mut block = [0u8; 4096];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        // SAFETY: `block` has room for `n <= 4096` bytes.
        let got = unsafe { libc::pread(fd, block.as_mut_ptr().cast(), n, start as libc::off_t) };
        if got != n as isize {
            break;
        }
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            log.pos = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    // A line cut short lies within LINE bytes after the last newline: zero it.
    let tail = (size - log.pos).min(LINE as u64) as usize;
    if tail > 0 {
        let zeros = [0u8; LINE];
        // SAFETY: `zeros` holds `tail <= LINE` readable bytes.
        unsafe { libc::pwrite(fd, zeros.as_ptr().cast(), tail, log.pos as libc::off_t) };
    }
    if log.pos > 0 {
        put(log, fd, b'x', &[]);
    }
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

/// Grows the file to `len` bytes of zeros, reserving the disk blocks so a write into the mapping
/// cannot meet a full disk (which would be SIGBUS); false if there is no room.
fn extend(fd: c_int, from: u64, len: u64) -> bool {
    // SAFETY: fallocate on our own descriptor.
    let r = unsafe { libc::fallocate(fd, 0, from as libc::off_t, (len - from) as libc::off_t) };
    if r == 0 {
        return true;
    }
    // SAFETY: reading this thread's errno.
    let err = unsafe { *libc::__errno_location() };
    // A file system without fallocate: a sparse file (a full disk would then raise SIGBUS).
    // SAFETY: ftruncate on our own descriptor.
    err != libc::ENOSPC && unsafe { libc::ftruncate(fd, len as libc::off_t) } == 0
}

/// Maps the window holding `log.pos`, growing the file to its end. False (and recording
/// stops) if the file cannot grow or be mapped.
fn window(log: &mut Log, fd: c_int) -> bool {
    let woff = log.pos / WINDOW * WINDOW;
    if log.file_len < woff + WINDOW {
        if !extend(fd, log.file_len, woff + WINDOW) {
            return false;
        }
        log.file_len = woff + WINDOW;
    }
    if !log.map.is_null() && log.woff == woff {
        return true;
    }
    if !log.map.is_null() {
        // SAFETY: unmapping our own window.
        unsafe { libc::munmap(log.map.cast(), WINDOW as usize) };
        log.map = core::ptr::null_mut();
    }
    // SAFETY: mapping `WINDOW` bytes of our file at a page-aligned offset inside its length.
    let map = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            WINDOW as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            woff as libc::off_t,
        )
    };
    if map == libc::MAP_FAILED {
        return false;
    }
    log.map = map.cast();
    log.woff = woff;
    true
}

/// Formats `OP TID N1 N2 ...` (numbers in hex) and copies it into the file. Called with the lock
/// held.
fn put(log: &mut Log, fd: c_int, op: u8, nums: &[u64]) {
    let mut b = [0u8; LINE];
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
    b[0] = op;
    b[1] = b' ';
    let mut n = 2 + hex(&mut b[2..], tid);
    for &v in nums {
        b[n] = b' ';
        n += 1;
        n += hex(&mut b[n..], v);
    }
    b[n] = b'\n';
    n += 1;
    let mut done = 0;
    while done < n {
        if (log.map.is_null() || log.pos == log.woff + WINDOW) && !window(log, fd) {
            stop(log, fd);
            return;
        }
        let room = (log.woff + WINDOW - log.pos) as usize;
        let k = room.min(n - done);
        // SAFETY: `pos - woff + k <= WINDOW`: the bytes are inside the mapped window, and the
        // window lies inside the file (`file_len >= woff + WINDOW`), so the write cannot fault.
        unsafe {
            core::ptr::copy_nonoverlapping(
                b[done..].as_ptr(),
                log.map.add((log.pos - log.woff) as usize),
                k,
            )
        };
        log.pos += k as u64;
        done += k;
    }
}

/// Ends the recording (the file could not grow): what is in the file stays.
fn stop(log: &mut Log, fd: c_int) {
    if !log.map.is_null() {
        // SAFETY: unmapping our own window.
        unsafe { libc::munmap(log.map.cast(), WINDOW as usize) };
        log.map = core::ptr::null_mut();
    }
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
    FD.store(-1, Ordering::Relaxed);
}

/// Appends one line `OP TID N1 N2 ...`. Called with the lock held.
fn line(op: u8, nums: &[u64]) {
    let fd = fd();
    if fd < 0 {
        return;
    }
    // SAFETY: the lock is held, so this is the only reference to the log.
    put(unsafe { &mut *LOG.0.get() }, fd, op, nums);
}

fn record(op: u8, nums: &[u64]) {
    lock();
    line(op, nums);
    unlock();
}

extern "C" fn at_fork_child() {
    // The child inherits the parent's lock state and its mapping of the parent's file; it drops
    // both (the lock cannot be held by this thread: fork happens on a thread that is not inside
    // this library; a thread that held it does not exist in the child) and opens its own file
    // at its first call.
    LOCK.store(false, Ordering::Relaxed);
    // SAFETY: only this thread exists in the child right after fork.
    let log = unsafe { &mut *LOG.0.get() };
    if !log.map.is_null() {
        // SAFETY: unmapping the child's own copy of the mapping; the parent's stays.
        unsafe { libc::munmap(log.map.cast(), WINDOW as usize) };
    }
    *log = Log {
        file_len: 0,
        pos: 0,
        woff: 0,
        map: core::ptr::null_mut(),
    };
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

/// At exit: the file is cut to its lines. A line written after this (another library's
/// destructor) grows it again (`file_len` says it is short), so nothing written is lost.
extern "C" fn fini() {
    lock();
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the lock is held.
        let log = unsafe { &mut *LOG.0.get() };
        // SAFETY: ftruncate on our own descriptor; the mapping beyond `pos` is not written
        // again before `window` grows the file back.
        if unsafe { libc::ftruncate(fd, log.pos as libc::off_t) } == 0 {
            log.file_len = log.pos;
            if !log.map.is_null() {
                // SAFETY: unmapping our own window (it now reaches past the file's end).
                unsafe { libc::munmap(log.map.cast(), WINDOW as usize) };
                log.map = core::ptr::null_mut();
            }
        }
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
