//! A lock that no thread starves on, which stays fast when threads outnumber the processors,
//! and which a child resets after `fork`.
//!
//! ```text
//!   locked    true while a thread holds the lock
//!   fast path starving == 0 and locked false -> true (a thread that is running takes it: no
//!             hand-over to a waiter that may not be running, the convoy a plain ticket lock has
//!             when threads outnumber cores: 4 threads on 2 busy cores, ~70 µs per hand-over)
//!   a waiter  spins, then yields; past its patience (PATIENCE yields) it is starving: it takes
//!             a ticket (next), and while starving > 0 no other thread takes the lock by the
//!             fast path; the starving waiter whose ticket is served takes it when it is free,
//!             then lets the next ticket in. So every waiter gets the lock within its patience
//!             plus the turns of the starving waiters ahead of it (Go's mutex "starvation mode")
//!   after fork, in the child: the tickets and the starving count belong to threads that are not
//!             there, so the child (single-threaded) frees the lock outright
//! ```

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Yields (after the first spins) a waiter makes before it queues as starving.
const PATIENCE: u32 = 256;
/// Spins before a waiter starts to yield the processor.
const SPINS: u32 = 64;

/// A mutual-exclusion lock around a `T` that no thread starves on (see the module docs).
pub struct TicketLock<T> {
    /// A thread holds the lock iff this is `true`.
    locked: AtomicBool,
    /// Waiters past their patience that have not taken the lock yet: while it is above 0, the
    /// lock goes only to the starving waiter whose ticket is served.
    starving: AtomicUsize,
    /// The ticket the next starving waiter takes.
    next: AtomicUsize,
    /// The starving waiter's ticket now allowed to take the lock (`serving <= next`; equal iff
    /// no starving waiter is queued).
    serving: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the lock gives one thread at a time access to the value.
unsafe impl<T: Send> Sync for TicketLock<T> {}
// SAFETY: moving the lock moves the value.
unsafe impl<T: Send> Send for TicketLock<T> {}

/// Access to the value while the lock is held; dropping it releases the lock.
pub struct TicketGuard<'a, T> {
    lock: &'a TicketLock<T>,
}

impl<T> TicketLock<T> {
    /// A free lock around `value`.
    pub const fn new(value: T) -> Self {
        TicketLock {
            locked: AtomicBool::new(false),
            starving: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock if it is free and no starving waiter is queued. (A strong exchange: a free
    /// lock is never refused spuriously, so `try_lock` fails only when the lock is busy; on x86
    /// it is the same instruction as the weak one.)
    #[inline]
    fn take(&self) -> bool {
        self.starving.load(Ordering::Relaxed) == 0
            && self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Waits for the lock: the fast path, else spinning and yielding, else the starving queue.
    #[inline]
    pub fn lock(&self) -> TicketGuard<'_, T> {
        if !self.take() {
            self.lock_slow();
        }
        TicketGuard { lock: self }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        for _ in 0..SPINS {
            core::hint::spin_loop();
            if !self.locked.load(Ordering::Relaxed) && self.take() {
                return;
            }
        }
        for _ in 0..PATIENCE {
            relax();
            if !self.locked.load(Ordering::Relaxed) && self.take() {
                return;
            }
        }
        // Starving: queue, and keep the fast path closed until served.
        self.starving.fetch_add(1, Ordering::AcqRel);
        let mine = self.next.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        loop {
            if self.serving.load(Ordering::Acquire) == mine
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            spins += 1;
            if spins < SPINS {
                core::hint::spin_loop();
            } else {
                relax();
            }
        }
        self.serving.fetch_add(1, Ordering::Release);
        self.starving.fetch_sub(1, Ordering::Release);
    }

    /// How many waiters have run out of patience and queued for a ticket: while it is above
    /// zero no thread takes the lock by the fast path. (A reading for tests and diagnostics: it
    /// may change as soon as it is read.)
    pub fn starving_waiters(&self) -> usize {
        self.starving.load(Ordering::Acquire)
    }

    /// Takes the lock if it is free and no starving waiter is queued.
    pub fn try_lock(&self) -> Option<TicketGuard<'_, T>> {
        self.take().then_some(TicketGuard { lock: self })
    }

    /// Holds the lock with no guard (for `fork`'s prepare handler): [`unlock`](Self::unlock) or
    /// [`reset`](Self::reset) ends it.
    pub fn hold(&self) {
        core::mem::forget(self.lock());
    }

    /// Releases the lock after [`hold`](Self::hold).
    ///
    /// # Safety
    /// This thread holds the lock through `hold`, and nothing else will release it.
    pub unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Frees the lock outright, forgetting every waiter and ticket: for a child after `fork`,
    /// where the threads that held or waited for it do not exist.
    ///
    /// # Safety
    /// No thread of this process holds the lock or waits for it, or will use a guard it got
    /// before (true in a child after `fork` whose forking thread held it through
    /// [`hold`](Self::hold)).
    pub unsafe fn reset(&self) {
        let n = self.next.load(Ordering::Relaxed);
        self.serving.store(n, Ordering::Relaxed);
        self.starving.store(0, Ordering::Relaxed);
        self.locked.store(false, Ordering::Release);
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
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_frees_a_lock_whose_waiters_are_gone() {
        let l = TicketLock::new(5);
        l.hold();
        // A starving waiter that no longer exists (as after fork): its ticket and count stay.
        l.starving.fetch_add(1, Ordering::Relaxed);
        l.next.fetch_add(1, Ordering::Relaxed);
        assert!(l.try_lock().is_none());
        // SAFETY: nothing else uses the lock.
        unsafe { l.reset() };
        assert_eq!(*l.lock(), 5);
        assert!(l.try_lock().is_some());
    }

    #[test]
    fn a_starving_waiter_closes_the_fast_path_until_it_is_served() {
        let l = TicketLock::new(0u32);
        l.starving.fetch_add(1, Ordering::Relaxed);
        let t = l.next.fetch_add(1, Ordering::Relaxed);
        // The lock is free, but a starving waiter is queued: no one else takes it.
        assert!(l.try_lock().is_none());
        assert_eq!(t, l.serving.load(Ordering::Relaxed));
        l.serving.fetch_add(1, Ordering::Relaxed);
        l.starving.fetch_sub(1, Ordering::Relaxed);
        assert!(l.try_lock().is_some());
    }

    /// A waiter that runs out of patience queues as starving, and then the lock is its own: the
    /// holder releases it and cannot take it back by the fast path. (Without the queue the
    /// waiter never shows as starving and the test fails at its deadline.)
    #[cfg(all(feature = "std", not(miri)))]
    #[test]
    fn a_waiter_past_its_patience_gets_the_lock_before_the_holder_retakes_it() {
        use std::sync::Arc;
        let l = Arc::new(TicketLock::new(0u32));
        let (taken, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let g = l.lock();
        let waiter = {
            let (l, taken, release) = (l.clone(), taken.clone(), release.clone());
            std::thread::spawn(move || {
                let mut g = l.lock();
                *g += 1;
                taken.store(true, Ordering::Release);
                while !release.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while l.starving.load(Ordering::Acquire) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the waiter never queued as starving"
            );
            std::thread::yield_now();
        }
        drop(g);
        // The waiter holds it, or is starving and about to: either way not ours.
        assert!(l.try_lock().is_none());
        while !taken.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        release.store(true, Ordering::Release);
        waiter.join().unwrap();
        assert_eq!(*l.lock(), 1);
        assert_eq!(l.starving.load(Ordering::Relaxed), 0);
    }
}
