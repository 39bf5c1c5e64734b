//! A ticket lock: threads are served in the order they asked, so none starves; and it can be
//! reset in a child after `fork`, which a ticket lock needs and `spin`'s does not offer.
//!
//! ```text
//!   next ──> 7   the ticket the next thread to ask takes
//!   serving ─> 5 the ticket being served: held iff next != serving; waiters hold 6 (and on)
//!   after fork, in the child: the waiters' tickets belong to threads that are not there, so
//!   the child (single-threaded) sets serving = next, and the lock is free
//! ```

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

/// A fair mutual-exclusion lock around a `T` (see the module docs).
pub struct TicketLock<T> {
    /// The ticket the next thread to ask gets.
    next: AtomicUsize,
    /// The ticket now served; the lock is free iff `serving == next`.
    serving: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the lock gives one thread at a time access to the value.
unsafe impl<T: Send> Sync for TicketLock<T> {}
// SAFETY: moving the lock moves the value.
unsafe impl<T: Send> Send for TicketLock<T> {}

/// Access to the value while the lock is held; dropping it lets the next ticket in.
pub struct TicketGuard<'a, T> {
    lock: &'a TicketLock<T>,
}

impl<T> TicketLock<T> {
    /// A free lock around `value`.
    pub const fn new(value: T) -> Self {
        TicketLock {
            next: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes a ticket and waits for it (yielding the processor with `std`, spinning without).
    pub fn lock(&self) -> TicketGuard<'_, T> {
        let mine = self.next.fetch_add(1, Ordering::Relaxed);
        let mut spins = 0u32;
        while self.serving.load(Ordering::Acquire) != mine {
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                relax();
            }
        }
        TicketGuard { lock: self }
    }

    /// Takes the lock if no thread holds it or waits for it.
    pub fn try_lock(&self) -> Option<TicketGuard<'_, T>> {
        let now = self.serving.load(Ordering::Acquire);
        self.next
            .compare_exchange(now, now + 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| TicketGuard { lock: self })
    }

    /// Holds the lock with no guard (for `fork`'s prepare handler): [`unlock`](Self::unlock) or
    /// [`reset`](Self::reset) ends it.
    pub fn hold(&self) {
        core::mem::forget(self.lock());
    }

    /// Lets the next ticket in after [`hold`](Self::hold).
    ///
    /// # Safety
    /// This thread holds the lock through `hold`, and nothing else will release it.
    pub unsafe fn unlock(&self) {
        self.serving.fetch_add(1, Ordering::Release);
    }

    /// Frees the lock outright, forgetting every ticket handed out: for a child after `fork`,
    /// where the threads that held or waited for it do not exist.
    ///
    /// # Safety
    /// No thread of this process holds the lock or waits for it, or will use a guard it got
    /// before (true in a child after `fork` whose forking thread held it through
    /// [`hold`](Self::hold)).
    pub unsafe fn reset(&self) {
        let n = self.next.load(Ordering::Relaxed);
        self.serving.store(n, Ordering::Release);
    }

    /// The value, through exclusive access to the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

#[cfg(feature = "std")]
fn relax() {
    std::thread::yield_now();
}

#[cfg(not(feature = "std"))]
fn relax() {
    core::hint::spin_loop();
}

impl<T> Deref for TicketGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for TicketGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for TicketGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.serving.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_frees_a_lock_whose_waiters_are_gone() {
        let l = TicketLock::new(5);
        l.hold();
        // A ticket taken by a thread that no longer exists (as after fork).
        l.next.fetch_add(1, Ordering::Relaxed);
        assert!(l.try_lock().is_none());
        // SAFETY: nothing else uses the lock.
        unsafe { l.reset() };
        assert_eq!(*l.lock(), 5);
        assert!(l.try_lock().is_some());
    }
}
