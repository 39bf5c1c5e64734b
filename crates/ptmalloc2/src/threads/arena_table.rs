//! The table of arenas one `Ptmalloc` runs, its shared state (`Global`, at the start of the
//! reservation), and how a thread gets an arena (`arena_get2`) and a chunk finds its own
//! (`arena_for_chunk`).
//!
//! ```text
//!  Global: arenas[0..64] (each ArenaLock<ArenaCell{core, heaps, attached}>), narenas,
//!          free_list, next_to_use (reused_arena's round robin), next_heap (thread heap windows used)
//!  arena 0: the main arena, Heaps::Main (the brk-like window); arena i > 0: Heaps::Thread
//!  arena_get2: free list -> new arena (below the limit) -> reused_arena (round robin, trylock)
//! ```
//!
//! `narenas` counts the slots handed out (`arenas[i]` for `i < narenas` may be in use; a slot
//! whose heap could not be mapped stays `Heaps::None`); `free_list.0[..free_list.1]` are arenas
//! no thread is attached to.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use allocator_traits::{Corruption, FreeError, OsPages, abort_with};
use spin::Mutex;

use super::heap_info::{
    HEAP_INFO_SIZE, HI_AR, HI_PREV, HI_SIZE, MALLOC_STATE_SIZE, ThreadHeaps, first_chunk,
};
use super::lock::{ArenaGuard, ArenaLock};
use super::reservation::{MAIN_WINDOW, THREAD_HEAPS, Window, commit, main_window};
use crate::arena::{Core, Fail, Grow, R};
use crate::chunk::*;
use crate::heap::Sys;
use crate::invariants::{check_arena, check_main, check_mappings};
use crate::mapped::Mappings;
use crate::tcache::Tc;
use crate::tunables::{HEAP_MAX_SIZE, Params, Tunables};

/// Most arenas one `Ptmalloc` runs (glibc's limit is 8 x CPUs).
pub const MAX_ARENAS: usize = 64;

/// `__get_nprocs_sched`: CPUs this thread may run on (no allocation, unlike
/// `std::thread::available_parallelism`, which may read cgroup files: this runs inside the
/// global allocator).
pub(super) fn nprocs_sched() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    2
}

pub(super) enum Heaps {
    None,
    Main(Sys<Window, OsPages>),
    Thread(ThreadHeaps),
}

impl Heaps {
    pub(super) fn maps(&mut self) -> Option<&mut Mappings<OsPages>> {
        match self {
            Heaps::None => None,
            Heaps::Main(s) => Some(&mut s.maps),
            Heaps::Thread(t) => Some(&mut t.maps),
        }
    }
}

impl Grow for Heaps {
    fn sysmalloc(&mut self, core: &mut Core, tc: Tc, nb: usize) -> R<usize> {
        match self {
            Heaps::None => Err(Fail::Oom),
            Heaps::Main(s) => s.sysmalloc(core, tc, nb),
            Heaps::Thread(t) => t.sysmalloc(core, tc, nb),
        }
    }
    fn trim(&mut self, core: &mut Core, pad: usize) -> R<()> {
        match self {
            Heaps::None => Ok(()),
            Heaps::Main(s) => s.trim(core, pad),
            Heaps::Thread(t) => t.trim(core, pad),
        }
    }
    fn mapped_mem(&self, a: usize) -> Option<Mem> {
        match self {
            Heaps::None => None,
            Heaps::Main(s) => s.mapped_mem(a),
            Heaps::Thread(t) => t.mapped_mem(a),
        }
    }
    fn set_mapped_lead(&mut self, a: usize, lead: usize) {
        match self {
            Heaps::None => {}
            Heaps::Main(s) => s.set_mapped_lead(a, lead),
            Heaps::Thread(t) => t.set_mapped_lead(a, lead),
        }
    }
}

pub(super) struct ArenaCell {
    pub(super) core: Core,
    pub(super) heaps: Heaps,
    pub(super) attached: usize,
}

/// The allocator's state, placed at the start of its own reservation (never unmapped, so a
/// thread that exits after the allocator was dropped still finds the `dead` flag, and no later
/// allocator's state can take its address).
pub(super) struct Global {
    pub(super) m: Mem,
    pub(super) start: usize,
    /// `dead`: the heaps are given back (the allocator was dropped). Set by the drop and read
    /// by a thread's exit flush only under this lock, held for the whole flush and the whole
    /// release, so a flush never runs on memory the drop gave back.
    pub(super) dead: Mutex<bool>,
    pub(super) arenas: [ArenaLock<ArenaCell>; MAX_ARENAS],
    pub(super) narenas: AtomicUsize,
    pub(super) narenas_limit: AtomicUsize,
    pub(super) next_to_use: AtomicUsize,
    pub(super) free_list: Mutex<([u8; MAX_ARENAS], usize)>,
    pub(super) next_heap: AtomicUsize,
    pub(super) mp: Params,
    pub(super) main_taken: AtomicBool,
    pub(super) ncpus: usize,
}

// SAFETY: all mutable state is behind locks or atomics; the raw pointers point into the
// allocator's own reservation.
unsafe impl Sync for Global {}
// SAFETY: as above.
unsafe impl Send for Global {}

impl Global {
    /// Writes the state of a new allocator with `tunables` at `start` (a 64 MiB boundary of
    /// the reservation at `base`, see `reserve`), with the main arena over the main window.
    pub(super) fn create(
        base: *mut u8,
        start: usize,
        tunables: &Tunables,
    ) -> Option<*const Global> {
        let hdr = align_up(core::mem::size_of::<Global>(), PAGE);
        // SAFETY: `start .. start+hdr` is inside the reservation (it spans an extra 64 MiB).
        let gp = unsafe { base.add(start - base as usize) };
        // SAFETY: as above, page-aligned.
        if !unsafe { commit(gp, hdr) } {
            return None;
        }
        let m = Mem::new(base);
        let mp = Params::new(tunables);
        let g = Global {
            m,
            start,
            dead: Mutex::new(false),
            arenas: core::array::from_fn(|i| {
                ArenaLock::new(ArenaCell {
                    core: if i == 0 {
                        Core::new(Mem::empty(), mp.clone(), 0)
                    } else {
                        Core::new(m, mp.clone(), NON_MAIN_ARENA)
                    },
                    heaps: Heaps::None,
                    attached: 0,
                })
            }),
            narenas: AtomicUsize::new(1),
            narenas_limit: AtomicUsize::new(0),
            next_to_use: AtomicUsize::new(0),
            free_list: Mutex::new(([0; MAX_ARENAS], 0)),
            next_heap: AtomicUsize::new(0),
            mp,
            main_taken: AtomicBool::new(false),
            ncpus: nprocs_sched(),
        };
        let gp = gp.cast::<Global>();
        // SAFETY: committed, aligned (page), and large enough.
        unsafe { gp.write(g) };
        // SAFETY: just written.
        let g = unsafe { &*gp };
        g.arenas[0].lock().heaps = Heaps::Main(Sys::new(main_window(base, start), OsPages::new()));
        Some(gp)
    }

    pub(super) fn main_start(&self) -> usize {
        self.start + HEAP_MAX_SIZE
    }
    pub(super) fn zone(&self) -> usize {
        self.main_start() + MAIN_WINDOW
    }
    /// Whether `a` lies in the main heap's window or a thread heap's (one comparison: below
    /// the main heap it wraps to a large offset).
    #[inline(always)]
    pub(super) fn in_heaps(&self, a: usize) -> bool {
        a.wrapping_sub(self.main_start()) < MAIN_WINDOW + THREAD_HEAPS * HEAP_MAX_SIZE
    }

    /// `_int_new_arena`: a thread arena on a fresh heap.
    pub(super) fn new_arena(&self, i: usize) -> bool {
        let mut cell = self.arenas[i].lock();
        let mut th = ThreadHeaps {
            m: self.m,
            zone: self.zone(),
            next_heap: &self.next_heap,
            cur: 0,
            maps: Mappings::new(OsPages::new()),
        };
        let hdr = HEAP_INFO_SIZE + MALLOC_STATE_SIZE + MALLOC_ALIGNMENT;
        let Some(h) = th
            .new_heap(hdr, self.mp.top_pad)
            .or_else(|| th.new_heap(hdr, 0))
        else {
            return false;
        };
        th.set_hi(h, HI_AR, i);
        th.set_hi(h, HI_PREV, 0);
        th.cur = h;
        let mut core = Core::new(self.m, self.mp.clone(), NON_MAIN_ARENA);
        core.st.system_mem = th.hi(h, HI_SIZE);
        core.st.base = h;
        let top = first_chunk(h);
        core.st.top = top;
        // SAFETY: the heap is committed up to its size.
        unsafe { set_head(&self.m, top, (h + th.hi(h, HI_SIZE) - top) | PREV_INUSE) };
        *cell = ArenaCell {
            core,
            heaps: Heaps::Thread(th),
            attached: 1,
        };
        true
    }

    /// `arena_get2`: the arena for a thread's first allocation.
    pub(super) fn arena_get2(&self) -> usize {
        if !self.main_taken.swap(true, Ordering::AcqRel) {
            self.arenas[0].lock().attached += 1;
            return 0;
        }
        {
            let mut fl = self.free_list.lock();
            if fl.1 > 0 {
                fl.1 -= 1;
                let a = fl.0[fl.1] as usize;
                drop(fl);
                self.arenas[a].lock().attached += 1;
                return a;
            }
        }
        let mut limit = self.narenas_limit.load(Ordering::Relaxed);
        if limit == 0 {
            if self.mp.arena_max != 0 {
                limit = self.mp.arena_max;
            } else if self.narenas.load(Ordering::Relaxed) > self.mp.arena_test {
                limit = 8 * self.ncpus;
            }
            if limit != 0 {
                self.narenas_limit.store(limit, Ordering::Relaxed);
            }
        }
        loop {
            let n = self.narenas.load(Ordering::Acquire);
            if n <= limit.wrapping_sub(1) && n < MAX_ARENAS {
                if self
                    .narenas
                    .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    continue;
                }
                if self.new_arena(n) {
                    return n;
                }
                // Could not map a heap: leave the slot unused and share an arena.
            }
            break;
        }
        // reused_arena: round-robin, preferring one that is not locked.
        let n = self.narenas.load(Ordering::Acquire).min(MAX_ARENAS);
        let start = self.next_to_use.load(Ordering::Relaxed) % n;
        let mut pick = start;
        for k in 0..n {
            let i = (start + k) % n;
            if let Some(mut g) = self.arenas[i].try_lock() {
                if matches!(g.heaps, Heaps::None) {
                    continue;
                }
                g.attached += 1;
                self.next_to_use.store(i + 1, Ordering::Relaxed);
                return i;
            }
            pick = i;
        }
        let mut g = self.arenas[pick].lock();
        if matches!(g.heaps, Heaps::None) {
            drop(g);
            self.arenas[0].lock().attached += 1;
            return 0;
        }
        g.attached += 1;
        self.next_to_use.store(pick + 1, Ordering::Relaxed);
        pick
    }

    /// The invariant walk of every arena, each under its lock (see [`crate::invariants`]); the
    /// threads' tcaches are not walked (each belongs to its thread and holds chunks of any
    /// arena, which are in use as far as their arenas know).
    pub(super) fn check(&self) -> Result<(), Corruption> {
        let n = self.narenas.load(Ordering::Acquire).min(MAX_ARENAS);
        for i in 0..n {
            let cell = self.arenas[i].lock();
            match &cell.heaps {
                Heaps::None => {}
                Heaps::Main(sys) => check_main(&cell.core, sys, Tc::NONE)?,
                Heaps::Thread(th) => {
                    let (segments, system_mem) = th.segments(i)?;
                    check_arena(&cell.core, &segments, system_mem, Tc::NONE)?;
                    check_mappings(&cell.core, &th.maps)?;
                }
            }
        }
        Ok(())
    }

    /// The arena owning heap chunk `p` (`arena_for_chunk`).
    pub(super) fn arena_for_chunk(&self, p: usize) -> usize {
        // SAFETY: `p` is a chunk in our heaps; its size word and its heap's header are ours.
        unsafe {
            if size_nomask(&self.m, p) & NON_MAIN_ARENA != 0 {
                self.m.rd(p & !(HEAP_MAX_SIZE - 1)) % MAX_ARENAS
            } else {
                0
            }
        }
    }
}

/// The tcache at user pointer `tc` (0 = none) in the allocator's heaps.
#[inline(always)]
pub(super) fn tcx(g: &Global, tc: usize) -> Tc {
    if tc == 0 || tc == usize::MAX {
        Tc::NONE
    } else {
        Tc::new(tc, g.m)
    }
}

pub(super) fn fatal(ptr: usize, what: &'static str) -> ! {
    abort_with(&FreeError::Corrupted { ptr, what })
}

/// Whether the process runs a single thread: glibc's `SINGLE_THREAD_P`, which its own malloc
/// reads to skip the arena locks (`__libc_single_threaded`: cleared by the first
/// `pthread_create`, in the creating thread, before the new thread exists, and never set again
/// in 2.36). Without glibc, `false`: always lock.
#[inline(always)]
pub(super) fn single_threaded() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
    {
        unsafe extern "C" {
            static __libc_single_threaded: core::ffi::c_char;
        }
        // SAFETY: a byte of glibc's (2.32 and later) that only the thread creating the
        // process's second thread writes, before that thread exists.
        unsafe { core::ptr::read_volatile(&raw const __libc_single_threaded) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", not(miri))))]
    {
        false
    }
}

/// An arena held for the calling thread's exclusive use: locked, or (the process has one
/// thread, so no other thread can hold or take the lock) reached without the lock, as glibc
/// does while `SINGLE_THREAD_P`.
pub(super) enum Held<'a> {
    Locked(ArenaGuard<'a, ArenaCell>),
    Alone(&'a mut ArenaCell),
}

impl core::ops::Deref for Held<'_> {
    type Target = ArenaCell;
    fn deref(&self) -> &ArenaCell {
        match self {
            Held::Locked(g) => g,
            Held::Alone(c) => c,
        }
    }
}

impl core::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut ArenaCell {
        match self {
            Held::Locked(g) => g,
            Held::Alone(c) => c,
        }
    }
}

impl Global {
    /// Arena `i`, for the calling thread alone while it holds the result (see [`Held`]).
    #[inline(always)]
    pub(super) fn arena(&self, i: usize) -> Held<'_> {
        if single_threaded() {
            // SAFETY: the process has one thread, this one, which holds no other reference to
            // the arena (no arena operation nests another on the same arena): nobody else can
            // reach the cell until the result is dropped, and a second thread can only start
            // (taking the lock from then on) after this thread has left the allocator.
            Held::Alone(unsafe { &mut *self.arenas[i].as_mut_ptr() })
        } else {
            Held::Locked(self.arenas[i].lock())
        }
    }
}

/// Frees heap chunk `p` into its arena (after the tcache).
pub(super) fn free_chunk(g: &Global, tc: usize, p: usize) {
    let a = g.arena_for_chunk(p);
    let mut cell = g.arena(a);
    let cell = &mut *cell;
    if let Err(Fail::Corrupt(w)) = cell.core.int_free(&mut cell.heaps, tcx(g, tc), p, true) {
        fatal(chunk2mem(p), w)
    }
}
