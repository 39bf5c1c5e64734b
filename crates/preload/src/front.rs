//! The policy C's calls reach: chosen once, from `FSM_POLICY`, through the registry.
//!
//! ```text
//!   state:  UNINIT ──first call or the library's constructor──> BUILDING ──> READY
//!                                                                  └──────> (unknown name:
//!                                                                            one line, exit 2)
//!   a C call ──> on this thread inside the front already?  yes ──> bootstrap arena
//!                (a call the policy itself made: glibc's TLS set-up calls calloc)
//!            ──> READY?  no, another thread BUILDING ──> wait;  no, UNINIT ──> build it
//!            ──> the front (MallocApi)
//! ```
//!
//! The front is built with the library's own Rust allocations going to the bootstrap arena (the
//! library's `#[global_allocator]`), so building it calls no `malloc`. `fork` is made safe with
//! `pthread_atfork` (see [`prepare_fork`]): with other threads alive, glibc's stdio list lock
//! and then every lock of the front are taken before, and released after, in the parent and the
//! child (where the front also forgets the threads that are not there).

use core::cell::Cell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use allocator_traits::MallocApi;

use crate::BOOTSTRAP;

/// The front, once built.
pub struct Front {
    /// The policy's full name (`best-fit:lifo`).
    pub name: String,
    /// What runs (`CHeap<best-fit>`, `tcmalloc::Tcmalloc (thread caches)`).
    pub runs_as: String,
    /// The allocator.
    pub api: registry::SharedC,
}

const UNINIT: u8 = 0;
const BUILDING: u8 = 1;
const READY: u8 = 2;

/// Where the front's construction is (see the module docs).
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The front: set once, by the thread that moved [`STATE`] to `BUILDING`.
static FRONT: OnceLock<Front> = OnceLock::new();

/// The policy when `FSM_POLICY` is not set.
pub const DEFAULT_POLICY: &str = "tcmalloc";

thread_local! {
    /// This thread is inside the front (or building it): a C call now is the policy's own (or
    /// glibc's on its behalf) and is served from the bootstrap arena. `const`, without a
    /// destructor, so reading it registers nothing and allocates nothing.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// An environment variable, read without allocating through C (`getenv`); `None` if unset or
/// not UTF-8.
fn env(name: &core::ffi::CStr) -> Option<String> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a NUL-terminated string that we
    // copy at once.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated (getenv's contract).
    let s = unsafe { core::ffi::CStr::from_ptr(p) };
    s.to_str().ok().map(str::to_string)
}

/// Writes `msg` and a newline to stderr, allocating nothing through C.
pub fn say(msg: &str) {
    let line = format!("{msg}\n");
    // SAFETY: writing our own buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// Builds the front from `FSM_POLICY` (and `FSM_TUNABLES`); an unknown name stops the program
/// with one line naming the valid ones.
fn build() -> Front {
    let name = env(c"FSM_POLICY").unwrap_or_else(|| DEFAULT_POLICY.to_string());
    let cfg = registry::Config {
        tunables: env(c"FSM_TUNABLES"),
        ..registry::Config::default()
    };
    match registry::lookup(&name).and_then(|spec| spec.c_api(&cfg)) {
        Ok((runs_as, api)) => Front { name, runs_as, api },
        Err(e) => {
            say(&format!("libfsm_malloc: FSM_POLICY: {e}"));
            // SAFETY: ends the process at once, as the user asked for a policy that is not.
            unsafe { libc::_exit(2) }
        }
    }
}

thread_local! {
    /// This thread's `fork` took the front's locks (its prepare handler ran with other threads
    /// alive), and what [`INSIDE`] was before: the parent and child handlers undo exactly that.
    static FORKING: Cell<Option<bool>> = const { Cell::new(None) };
}

/// glibc's stdio list lock (a recursive lock, exported since 2.2.5), and whether the process has
/// ever had a second thread (2.32).
#[cfg(target_env = "gnu")]
mod glibc {
    unsafe extern "C" {
        pub fn _IO_list_lock();
        pub fn _IO_list_unlock();
        pub fn _IO_list_resetlock();
        pub static __libc_single_threaded: core::ffi::c_char;
    }
}

/// Whether the process has one thread (glibc's `SINGLE_THREAD_P`, which its `fork` reads too).
fn single_threaded() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: a byte glibc writes only while the process has one thread (when it starts
        // the second).
        unsafe { core::ptr::read_volatile(&raw const glibc::__libc_single_threaded) != 0 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// `fork`'s prepare handler: with other threads alive, takes glibc's stdio list lock and then
/// every lock of the front, and sends this thread's allocations to the bootstrap arena until
/// the fork is over. In a process with one thread it does nothing, as glibc's own malloc does
/// not: a `fork` from a signal handler that interrupted `malloc` must not wait for the lock the
/// interrupted call holds (glibc's tst-mallocfork2).
///
/// The stdio lock comes first because glibc takes it after the prepare handlers and before
/// its own malloc locks, and a thread in `getline` holds a `FILE` lock while it allocates: a
/// front locked before `_IO_list_lock` deadlocks with `fflush(NULL)` (glibc bug 19431,
/// tst-malloc-fork-deadlock). The lock is recursive: glibc's own `_IO_list_lock` in `fork`
/// then goes through.
extern "C" fn prepare_fork() {
    let Some(f) = FRONT.get() else { return };
    if single_threaded() {
        return;
    }
    let was = INSIDE.with(|i| i.replace(true));
    FORKING.with(|s| s.set(Some(was)));
    // SAFETY: glibc's recursive stdio list lock; released (or reset, in the child) after the
    // fork by the handlers below.
    #[cfg(target_env = "gnu")]
    unsafe {
        glibc::_IO_list_lock()
    };
    f.api.prepare_fork();
}

extern "C" fn after_fork_parent() {
    let Some(was) = FORKING.with(|s| s.take()) else {
        return;
    };
    if let Some(f) = FRONT.get() {
        f.api.after_fork_parent();
    }
    // SAFETY: taken by this thread in `prepare_fork`.
    #[cfg(target_env = "gnu")]
    unsafe {
        glibc::_IO_list_unlock()
    };
    INSIDE.with(|i| i.set(was));
}

extern "C" fn after_fork_child() {
    let Some(was) = FORKING.with(|s| s.take()) else {
        return;
    };
    if let Some(f) = FRONT.get() {
        f.api.after_fork_child();
    }
    // SAFETY: the child has one thread, this one; glibc's `fork` reset the lock already when
    // it saw other threads, and resetting it again is harmless.
    #[cfg(target_env = "gnu")]
    unsafe {
        glibc::_IO_list_resetlock()
    };
    INSIDE.with(|i| i.set(was));
}

/// Builds the front if nobody has; waits if another thread is building it.
#[cold]
fn init() {
    if STATE
        .compare_exchange(UNINIT, BUILDING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        INSIDE.with(|i| i.set(true));
        let f = build();
        let _ = FRONT.set(f);
        // SAFETY: registers three `extern "C"` functions that live as long as the process.
        unsafe {
            libc::pthread_atfork(
                Some(prepare_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
        INSIDE.with(|i| i.set(false));
        STATE.store(READY, Ordering::Release);
        return;
    }
    while STATE.load(Ordering::Acquire) != READY {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// The front, building it if needed; `None` when this thread is inside it already (the caller
/// then uses the bootstrap arena).
#[inline]
fn front() -> Option<&'static Front> {
    if INSIDE.with(Cell::get) {
        return None;
    }
    if let Some(f) = FRONT.get() {
        return Some(f);
    }
    init();
    FRONT.get()
}

/// The front if it is built (for reports at exit: never builds it).
pub fn built() -> Option<&'static Front> {
    FRONT.get()
}

/// Runs `f` on the front with [`INSIDE`] set, or `fallback` when this thread is inside it.
#[inline]
fn call<R>(f: impl FnOnce(&dyn MallocApi) -> R, fallback: impl FnOnce() -> R) -> R {
    match front() {
        Some(front) => {
            INSIDE.with(|i| i.set(true));
            let r = f(&*front.api);
            INSIDE.with(|i| i.set(false));
            r
        }
        None => fallback(),
    }
}

/// `malloc`-family allocation through the front (or the bootstrap arena from inside it).
pub fn malloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    call(
        |api| api.malloc(size, align, zeroed),
        // Fresh bootstrap memory reads as zero: `zeroed` holds without writing.
        || BOOTSTRAP.c_alloc(size, align),
    )
}

/// `free` of a non-null pointer.
///
/// # Safety
/// `ptr` came from this library's `malloc` family (else the front aborts naming it).
pub unsafe fn free(ptr: NonNull<u8>) {
    if BOOTSTRAP.owns(ptr.as_ptr()) {
        return; // bootstrap blocks are never reused
    }
    call(
        // SAFETY: forwarded caller contract.
        |api| unsafe { api.free(ptr) },
        || {
            // From inside the front, a block of the front: leave it (it is not the policy's to
            // take back while the policy is mid-call). Never happens for blocks the policy made.
        },
    )
}

/// `realloc` of a non-null pointer to `size > 0` bytes.
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(ptr: NonNull<u8>, size: usize) -> *mut u8 {
    if BOOTSTRAP.owns(ptr.as_ptr()) {
        // A bootstrap block moves into the policy (or to a new bootstrap block from inside it).
        // SAFETY: `ptr` is a C block of the arena.
        let old = unsafe { BOOTSTRAP.c_size(ptr.as_ptr()) };
        let q = malloc(size, 16, false);
        if !q.is_null() {
            // SAFETY: distinct live blocks; `min(old, size)` bytes are in both.
            unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), q, old.min(size)) };
        }
        return q;
    }
    call(
        // SAFETY: forwarded caller contract.
        |api| unsafe { api.realloc(ptr, size) },
        core::ptr::null_mut,
    )
}

/// `malloc_usable_size` of a non-null pointer.
///
/// # Safety
/// As for [`free`].
pub unsafe fn usable_size(ptr: NonNull<u8>) -> usize {
    if BOOTSTRAP.owns(ptr.as_ptr()) {
        // SAFETY: a C block of the arena.
        return unsafe { BOOTSTRAP.c_size(ptr.as_ptr()) };
    }
    call(
        // SAFETY: forwarded caller contract.
        |api| unsafe { api.usable_size(ptr) },
        || 0,
    )
}

/// Builds the front at load (the library's constructor), so an unknown `FSM_POLICY` stops the
/// program before it runs.
pub fn at_load() {
    let _ = front();
}
