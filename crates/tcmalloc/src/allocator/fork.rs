//! `fork` while other threads allocate: every lock of one `Tcmalloc` taken before, released
//! after (in the parent), and freed outright in the child, which has only the forking thread.
//!
//! ```text
//!  before fork:  LIVE -> registry -> central[0] .. central[NUM_CLASSES-1] -> page heap -> source
//!                (the allocator's lock order: an exiting thread holds LIVE while it flushes to
//!                the central lists; the registry is never held with another; a class's
//!                central lock, then the page heap's, then the source's)
//!                not started yet: source -> LIVE (the order `init` takes them in)
//!  parent:       every one released
//!  child:        every one freed; the other threads' caches stay registered and keep their
//!                objects (their threads are gone: the objects are lost to the child, as in
//!                gperftools, whose child keeps its thread heaps too)
//! ```
//!
//! The locks are `spin::Mutex`, a test-and-set lock in this workspace (`spin`'s
//! `use_ticket_mutex` is off): `force_unlock` frees one whatever its history, so the child's
//! reset is the same call as the parent's release. (A ticket lock would need a reset of its own:
//! see `allocator_traits::ticket`.)

use core::sync::atomic::Ordering;

use allocator_traits::MemorySource;

use super::{LIVE, Shared, Tcmalloc};

impl<S: MemorySource> Tcmalloc<S> {
    /// The started shared state, if any (never starts it).
    fn started(&self) -> Option<&Shared> {
        let p = self.shared.load(Ordering::Acquire);
        // SAFETY: the shared state, once published, lives as long as `self`.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Takes every lock of the allocator (and the process's `LIVE` table), in the allocator's
    /// order, and keeps them (no guards).
    pub(super) fn fork_lock(&self) {
        // Not started: `init` holds the source, then LIVE; once started, the state never goes.
        {
            let src = self.source.lock();
            if self.started().is_none() {
                core::mem::forget(src);
                core::mem::forget(LIVE.lock());
                return;
            }
        }
        let Some(sh) = self.started() else { return };
        core::mem::forget(LIVE.lock());
        core::mem::forget(sh.registry.lock());
        for c in &sh.central {
            core::mem::forget(c.lock());
        }
        core::mem::forget(sh.heap.lock());
        core::mem::forget(self.source.lock());
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took: in the parent, or in the child (where
    /// the forking thread is the only one, so each lock is freed whatever its waiters were).
    ///
    /// # Safety
    /// This thread took the locks through `fork_lock` and uses no guard from before it.
    pub(super) unsafe fn fork_unlock(&self) {
        let sh = self.started();
        // SAFETY: each lock is held by this thread through `fork_lock` (caller's contract), and
        // no guard exists for any of them; `started` is what it was then (`init` needs the
        // source's lock, held since).
        unsafe {
            if let Some(sh) = sh {
                self.source.force_unlock();
                sh.heap.force_unlock();
                for c in sh.central.iter().rev() {
                    c.force_unlock();
                }
                sh.registry.force_unlock();
                LIVE.force_unlock();
            } else {
                LIVE.force_unlock();
                self.source.force_unlock();
            }
        }
    }
}
