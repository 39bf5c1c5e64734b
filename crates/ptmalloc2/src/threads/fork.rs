//! `fork` while other threads allocate: glibc's `__malloc_fork_lock_parent`,
//! `__malloc_fork_unlock_parent` and `__malloc_fork_unlock_child` for one `Ptmalloc`.
//!
//! ```text
//!  before fork (parent):  init -> dead -> free_list -> arenas[0] .. arenas[MAX_ARENAS-1]
//!                         (the order the front nests them in: dead before an arena in a thread's
//!                         exit; free_list and an arena never held together)
//!  after, in the parent:  every one released
//!  after, in the child:   one thread, the forking one: every lock freed outright; its own arena
//!                         (if it has one) has 1 thread attached, every other arena 0, and the
//!                         thread arenas go on the free list; the other threads' tcaches are lost
//!                         to the child (their chunks stay in use), as in glibc
//! ```
//!
//! The locks are a test-and-set spin lock (`spin::Mutex` in this workspace) and the arenas'
//! futex lock (`lock::ArenaLock`): releasing one with `force_unlock` frees it whatever its
//! history (the futex lock also wakes a sleeper, of which the child has none), so the child's
//! reset is the same call as the parent's release. (A ticket lock would need a reset of its own:
//! see `allocator_traits::ticket`.)

use core::sync::atomic::Ordering;

use super::arena_table::{Heaps, MAX_ARENAS};
use super::front::Ptmalloc;
use super::tls;

impl Ptmalloc {
    /// Takes every lock of the allocator, in the front's order, and keeps them (no guards).
    pub(super) fn fork_lock(&self) {
        core::mem::forget(self.init.lock());
        let Some(g) = self.get() else { return };
        core::mem::forget(g.dead.lock());
        core::mem::forget(g.free_list.lock());
        for a in &g.arenas {
            core::mem::forget(a.lock());
        }
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took (in the parent), or frees every lock
    /// (in the child, where only the forking thread exists).
    ///
    /// # Safety
    /// This thread took the locks through `fork_lock` and uses no guard from before it.
    unsafe fn fork_unlock(&self) {
        if let Some(g) = self.get() {
            // SAFETY: held by this thread through `fork_lock` (caller's contract), no guard
            // exists for any of them.
            unsafe {
                for a in g.arenas.iter().rev() {
                    a.force_unlock();
                }
                g.free_list.force_unlock();
                g.dead.force_unlock();
            }
        }
        // SAFETY: as above.
        unsafe { self.init.force_unlock() };
    }

    /// After `fork`, in the parent: releases every lock.
    ///
    /// # Safety
    /// This thread called [`fork_lock`](Self::fork_lock) before the fork.
    pub(super) unsafe fn fork_parent(&self) {
        // SAFETY: forwarded caller contract.
        unsafe { self.fork_unlock() }
    }

    /// After `fork`, in the child: frees every lock and gives every arena but the thread's own
    /// back to the free list (their threads are not in the child).
    ///
    /// # Safety
    /// The process is the child of a fork whose forking thread (this one) called
    /// [`fork_lock`](Self::fork_lock) before it.
    pub(super) unsafe fn fork_child(&self) {
        // SAFETY: forwarded caller contract (this is the only thread: nobody else holds any).
        unsafe { self.fork_unlock() };
        let Some(g) = self.get() else { return };
        let mine = tls::attached_arena(g);
        let n = g.narenas.load(Ordering::Acquire).min(MAX_ARENAS);
        let mut fl = g.free_list.lock();
        fl.1 = 0;
        for i in 0..n {
            let mut cell = g.arenas[i].lock();
            cell.attached = usize::from(mine == Some(i));
            if i != 0 && mine != Some(i) && matches!(cell.heaps, Heaps::Thread(_)) {
                let k = fl.1;
                fl.0[k] = i as u8;
                fl.1 += 1;
            }
        }
        g.main_taken.store(mine == Some(0), Ordering::Release);
    }
}
