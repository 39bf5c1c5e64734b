//! The arena lock: a mutex whose waiters sleep in the kernel, as glibc's `__libc_lock_lock`
//! (`lll_lock`) does, after a short spin (glibc's does not spin).
//!
//! ```text
//!  state: 0 free | 1 held, nobody asleep | 2 held, maybe sleepers
//!  lock:    0 -> 1 (one compare-and-swap); else up to 100 pauses watching for 0 (then 0 -> 1);
//!           else swap in 2; while it was not 0, sleep on the word while it reads 2
//!           (FUTEX_WAIT), then swap in 2 again
//!  unlock:  swap in 0; if it was 2, wake one sleeper (FUTEX_WAKE)
//! ```
//!
//! A waiter that wakes takes the lock as 2, so its own unlock wakes the next sleeper: nobody is
//! left asleep on a free lock. Two threads on two shared cores made the spin lock this replaces
//! burn the waiter's time slice while the holder was not running (remote frees: a producer and
//! a consumer taking the main arena's lock for every chunk).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

/// A lock around `T` (an arena), see the module doc.
pub(super) struct ArenaLock<T> {
    /// 0 free, 1 held, 2 held and a thread may be asleep waiting for it.
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is reached only through a guard, which exists for one holder of the lock at a
// time, or through `as_mut_ptr`, whose callers guarantee exclusion themselves.
unsafe impl<T: Send> Sync for ArenaLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for ArenaLock<T> {}

/// The lock held: `T` for the holder alone until the guard is dropped.
pub(super) struct ArenaGuard<'a, T> {
    lock: &'a ArenaLock<T>,
}

impl<T> ArenaLock<T> {
    pub(super) const fn new(data: T) -> Self {
        ArenaLock {
            state: AtomicU32::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock, sleeping while another thread holds it.
    #[inline(always)]
    pub(super) fn lock(&self) -> ArenaGuard<'_, T> {
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        ArenaGuard { lock: self }
    }

    /// A short spin for a holder that is about to leave (an arena's critical sections are a
    /// few hundred instructions), then `__lll_lock_wait`: mark the lock contended and sleep
    /// until a swap finds it free.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        for _ in 0..100 {
            core::hint::spin_loop();
            if self.state.load(Ordering::Relaxed) == 0
                && self
                    .state
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        while self.state.swap(2, Ordering::Acquire) != 0 {
            wait(&self.state, 2);
        }
    }

    /// Takes the lock if it is free.
    pub(super) fn try_lock(&self) -> Option<ArenaGuard<'_, T>> {
        self.state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ArenaGuard { lock: self })
    }

    /// The protected value, for callers that exclude every other user themselves.
    pub(super) fn as_mut_ptr(&self) -> *mut T {
        self.data.get()
    }

    /// Releases the lock whoever holds it (no guard is dropped).
    ///
    /// # Safety
    /// The lock is held by the caller without a guard (taken and forgotten), or by nobody that
    /// will use it again (the threads of a forked parent, gone in the child).
    pub(super) unsafe fn force_unlock(&self) {
        self.unlock();
    }

    #[inline(always)]
    fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            wake_one(&self.state);
        }
    }
}

impl<T> core::ops::Deref for ArenaGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock: no other reference to the data exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> core::ops::DerefMut for ArenaGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for ArenaGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// Sleeps while `word` reads `val` (returns at once if it does not, or on a spurious wake).
#[cfg(target_os = "linux")]
fn wait(word: &AtomicU32, val: u32) {
    // SAFETY: FUTEX_WAIT on a live, aligned 32-bit word, with no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one thread sleeping on `word`.
#[cfg(target_os = "linux")]
#[cold]
#[inline(never)]
fn wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned 32-bit word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn wait(word: &AtomicU32, val: u32) {
    if word.load(Ordering::Relaxed) == val {
        std::thread::yield_now();
    }
}

#[cfg(not(target_os = "linux"))]
fn wake_one(_: &AtomicU32) {}

#[cfg(test)]
mod tests {
    use super::ArenaLock;

    #[test]
    fn excludes_and_wakes_sleepers() {
        let lock = ArenaLock::new(0u64);
        let threads: u64 = if cfg!(miri) { 2 } else { 4 };
        let n: u64 = if cfg!(miri) { 50 } else { 100_000 };
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..n {
                        let mut g = lock.lock();
                        // A read and a write apart: a lost update shows as a short count.
                        let v = *g;
                        std::hint::black_box(&mut *g);
                        *g = v + 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), threads * n);
        assert_eq!(lock.state.load(core::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn try_lock_fails_while_held_and_force_unlock_frees() {
        let lock = ArenaLock::new(());
        let g = lock.lock();
        assert!(lock.try_lock().is_none());
        drop(g);
        core::mem::forget(lock.try_lock().expect("free"));
        assert!(lock.try_lock().is_none());
        // SAFETY: held by this thread through the forgotten guard.
        unsafe { lock.force_unlock() };
        assert!(lock.try_lock().is_some());
    }
}
