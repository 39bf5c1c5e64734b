//! A thread's attachment to each `Ptmalloc` it used: its arena and its tcache, in thread-local
//! storage, and what happens when the thread exits.
//!
//! ```text
//!  TLS: slots[4] = {Global*, arena, tc}   (tc: 0 = not set up yet, usize::MAX = none)
//!  HOT: a copy of the slot used last       (no destructor, no borrow flag: one TLS load)
//!  thread exit (Tls::drop): HOT emptied, then for each slot: free every cached chunk and the
//!  tcache itself, detach from the arena (an arena with no thread goes on the free list)
//! ```

use core::cell::{Cell, RefCell};
use core::sync::atomic::Ordering;

use super::arena_table::{Global, MAX_ARENAS, fatal, free_chunk, tcx};
use crate::checks::*;
use crate::chunk::*;
use crate::tcache;

/// A thread's attachment to one `Ptmalloc`.
#[derive(Clone, Copy)]
struct Slot {
    g: *const Global,
    arena: usize,
    tc: usize,
}

const EMPTY: Slot = Slot {
    g: core::ptr::null(),
    arena: 0,
    tc: 0,
};

struct Tls {
    slots: [Slot; 4],
}

impl Drop for Tls {
    fn drop(&mut self) {
        // The fast paths must not find this thread's tcache or arena any more.
        let _ = HOT.try_with(|h| h.set(EMPTY));
        for s in self.slots {
            if !s.g.is_null() {
                // SAFETY: a Global is never unmapped; `dead` says whether its heaps may be used.
                let g = unsafe { &*s.g };
                // Held through the flush: the allocator's drop waits for it (or has finished,
                // and the flush is skipped).
                let dead = g.dead.lock();
                if !*dead {
                    thread_exit(g, s.arena, s.tc);
                }
                drop(dead);
            }
        }
    }
}

std::thread_local! {
    static TLS: RefCell<Tls> = const { RefCell::new(Tls { slots: [EMPTY; 4] }) };
    /// A copy of the slot this thread used last (`TLS` holds the original). It has no
    /// destructor and no borrow flag, so the fast paths read it with one thread-local load; it
    /// is set only while `TLS` is alive and emptied when `TLS` is destroyed.
    static HOT: Cell<Slot> = const { Cell::new(EMPTY) };
}

/// The calling thread's slot for the allocator at `gp`, if it is the one used last.
#[inline(always)]
fn hot(gp: *const Global) -> Option<Slot> {
    match HOT.try_with(Cell::get) {
        Ok(s) if s.g == gp => Some(s),
        _ => None,
    }
}

/// `tcache_thread_shutdown` and `arena_thread_freeres`.
fn thread_exit(g: &Global, arena: usize, tc: usize) {
    if tc != 0 && tc != usize::MAX {
        for i in 0..tcache::TCACHE_MAX_BINS {
            // SAFETY: our live tcache struct and its cached chunks.
            while unsafe { tcache::count(&tcx(g, tc), i) } > 0 {
                // SAFETY: as above.
                let e = match unsafe { tcache::get(&g.m, &tcx(g, tc), i) } {
                    Ok(e) => e,
                    Err(_) => fatal(tc, SHUTDOWN_UNALIGNED),
                };
                free_chunk(g, 0, mem2chunk(e));
            }
        }
        free_chunk(g, 0, mem2chunk(tc));
    }
    let mut cell = g.arenas[arena].lock();
    cell.attached = cell.attached.saturating_sub(1);
    if cell.attached == 0 && arena != 0 {
        drop(cell);
        let mut fl = g.free_list.lock();
        let n = fl.1;
        if n < MAX_ARENAS {
            fl.0[n] = arena as u8;
            fl.1 += 1;
        }
    } else if arena == 0 {
        drop(cell);
        g.main_taken.store(false, Ordering::Release);
    }
}

/// The calling thread's arena and tcache for `g`, attaching the thread if needed.
#[inline(always)]
pub(super) fn thread(g: &Global) -> (usize, usize) {
    match hot(g) {
        Some(s) => (s.arena, s.tc),
        None => thread_slow(g),
    }
}

/// [`thread`] when the slot is not the one used last: look it up (or attach
/// the thread) in `TLS` and make it the hot one.
#[cold]
#[inline(never)]
fn thread_slow(g: &Global) -> (usize, usize) {
    let gp: *const Global = g;
    let r = TLS.try_with(|t| {
        let mut t = t.borrow_mut();
        let s = match t.slots.iter().find(|s| s.g == gp) {
            Some(s) => *s,
            None => {
                let free = t.slots.iter().position(|s| s.g.is_null())?;
                let arena = g.arena_get2();
                t.slots[free] = Slot {
                    g: gp,
                    arena,
                    tc: 0,
                };
                t.slots[free]
            }
        };
        let _ = HOT.try_with(|h| h.set(s));
        Some((s.arena, s.tc))
    });
    match r {
        Ok(Some(x)) => x,
        // No thread-local storage (thread exiting) or too many allocators: main arena,
        // no tcache.
        _ => (0, usize::MAX),
    }
}

/// Records the thread's tcache `tc` for `g` (in its slot and the hot copy).
pub(super) fn set_tc(g: &Global, tc: usize) {
    let gp: *const Global = g;
    let _ = TLS.try_with(|t| {
        if let Some(s) = t.borrow_mut().slots.iter_mut().find(|s| s.g == gp) {
            s.tc = tc;
            let _ = HOT.try_with(|h| h.set(*s));
        }
    });
}

/// The calling thread's arena for `g`, if the thread is attached to one (never attaches it).
pub(super) fn attached_arena(g: &Global) -> Option<usize> {
    let gp: *const Global = g;
    TLS.try_with(|t| {
        let t = t.try_borrow().ok()?;
        t.slots.iter().find(|s| s.g == gp).map(|s| s.arena)
    })
    .ok()
    .flatten()
}
