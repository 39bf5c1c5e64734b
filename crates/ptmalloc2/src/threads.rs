//! `Ptmalloc`: glibc's multi-threaded front. Each thread has its own tcache and is attached to
//! an arena; the main arena grows like `brk`, thread arenas live on 64 MiB-aligned heaps that
//! start with a `heap_info` header and are chained when one is full.
//!
//! ```text
//!  one address-space reservation (PROT_NONE until used), 64 MiB aligned:
//!  | header window: this allocator's state | main heap (brk-like) ......... | heap | heap | ...
//!                                                                            ^ 64 MiB each
//!  thread heap:  [heap_info 48 B][malloc_state 2200 B][chunks ... top]     (first heap of an arena)
//!                [heap_info 48 B][chunks ... top]                          (later heaps, ->prev)
//!
//!  malloc: thread's tcache (no lock) -> lock the thread's arena -> _int_malloc
//!          (on failure: the main arena, or another arena: arena_get_retry)
//!  free:   mapped? munmap : thread's tcache (no lock) -> lock the chunk's arena (NON_MAIN_ARENA ?
//!          heap_info(chunk & ~(64 MiB - 1)).ar_ptr : main) -> _int_free
//!  thread exit: free every cached chunk and the tcache itself, detach from the arena (an arena
//!          with no thread goes on the free list, reused first by new threads)
//! ```
//!
//! Arena choice for a new thread (`arena_get2`): the free list first; else a new arena while
//! fewer than the limit exist (`arena_max`, or unlimited until `arena_test` arenas exist and
//! then 8 x CPUs; at most 64 here); else the next arena round-robin that is not locked.
//!
//! Differences from glibc (documented in `docs/ptmalloc2.md`): each arena keeps its own copy of
//! the parameters (so the dynamic mmap threshold moves per arena), a deleted thread heap's window
//! is not reused, a realloc of a mapped chunk allocates, copies and frees (no
//! `mremap`), and the main heap is a window of the reservation rather than the real `brk`.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use allocator_traits::{FreeError, MemorySource, OsPages, SourceError, abort_with};
use spin::Mutex;

use crate::arena::{Core, Fail, Grow, R, Realloc};
use crate::checks::*;
use crate::chunk::*;
use crate::heap::{Mappings, Sys};
use crate::tcache::Tc;
use crate::tcache::{self, TCACHE_STRUCT_SIZE};
use crate::tunables::{HEAP_MAX_SIZE, Params, Tunables};

/// Most arenas one `Ptmalloc` runs (glibc's limit is 8 x CPUs).
pub const MAX_ARENAS: usize = 64;
/// `HEAP_MIN_SIZE`.
pub const HEAP_MIN_SIZE: usize = 32 * 1024;
/// `sizeof(heap_info)` in glibc 2.36.
pub const HEAP_INFO_SIZE: usize = 48;
/// `sizeof(struct malloc_state)` in glibc 2.36 on x86-64.
pub const MALLOC_STATE_SIZE: usize = 2200;
const MAIN_WINDOW: usize = 16 << 30;
const THREAD_HEAPS: usize = 256;
const RESERVE: usize = HEAP_MAX_SIZE + MAIN_WINDOW + THREAD_HEAPS * HEAP_MAX_SIZE;

/// `__get_nprocs_sched`: CPUs this thread may run on (no allocation, unlike
/// `std::thread::available_parallelism`, which may read cgroup files: this runs inside the
/// global allocator).
fn nprocs_sched() -> usize {
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

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Commits `len` bytes at `p` read-write.
///
/// # Safety
/// `p .. p+len` is inside the reservation and page-aligned.
unsafe fn commit(p: *mut u8, len: usize) -> bool {
    // SAFETY: by the caller.
    unsafe { libc::mprotect(p.cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Gives `len` bytes at `p` back to the OS (they read as zero when used again).
///
/// # Safety
/// As for [`commit`]; nothing in the range is used any more.
unsafe fn decommit(p: *mut u8, len: usize) {
    // SAFETY: by the caller.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// The main heap: a brk-like window of the reservation.
struct Window {
    base: *mut u8,
    len: usize,
    used: usize,
    committed: usize,
}

// SAFETY: grants are ascending, disjoint sub-ranges of the window, committed before they are
// returned; only the tail is released.
unsafe impl MemorySource for Window {
    fn acquire(&mut self, size: usize, _align: usize) -> Result<NonNull<[u8]>, SourceError> {
        let end = self
            .used
            .checked_add(size)
            .filter(|&e| e <= self.len)
            .ok_or(SourceError::Exhausted {
                requested: size,
                available: self.len - self.used,
            })?;
        let want = align_up(end, PAGE);
        if want > self.committed {
            // SAFETY: `committed .. want` is inside the window, page-aligned.
            if !unsafe { commit(self.base.add(self.committed), want - self.committed) } {
                return Err(SourceError::Os {
                    call: "mprotect",
                    errno: errno(),
                });
            }
            self.committed = want;
        }
        // SAFETY: `used <= len`: inside the window.
        let p = unsafe { self.base.add(self.used) };
        self.used = end;
        NonNull::new(core::ptr::slice_from_raw_parts_mut(p, size)).ok_or(SourceError::Exhausted {
            requested: size,
            available: 0,
        })
    }
    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        let p = ptr.as_ptr() as usize;
        if p + size != self.base as usize + self.used {
            return Err(SourceError::InvalidRelease { ptr: p, size });
        }
        self.used -= size;
        let keep = align_up(self.used, PAGE);
        if keep < self.committed {
            // SAFETY: `keep .. committed` is inside the window and no longer granted. The pages
            // stay read-write (glibc's trimmed brk pages are gone; ours read as zero).
            unsafe { decommit(self.base.add(keep), self.committed - keep) };
        }
        Ok(())
    }
    fn granularity(&self) -> usize {
        1
    }
    fn is_contiguous(&self) -> bool {
        true
    }
    fn footprint(&self) -> usize {
        self.used
    }
}

/// A thread arena's heaps and its mapped chunks.
struct ThreadHeaps {
    m: Mem,
    zone: usize,
    next_heap: *const AtomicUsize,
    /// The heap holding the top chunk.
    cur: usize,
    maps: Mappings<OsPages>,
}

// heap_info fields.
const HI_AR: usize = 0;
const HI_PREV: usize = 8;
const HI_SIZE: usize = 16;
const HI_MPROTECT: usize = 24;
const HI_PAGESIZE: usize = 32;

impl ThreadHeaps {
    fn hi(&self, h: usize, f: usize) -> usize {
        // SAFETY: `h` is one of our heaps; its header is committed.
        unsafe { self.m.rd(h + f) }
    }
    fn set_hi(&self, h: usize, f: usize, v: usize) {
        // SAFETY: as above.
        unsafe { self.m.wr(h + f, v) }
    }

    /// `new_heap(size, top_pad)`: a fresh 64 MiB-aligned heap with `size` bytes usable.
    fn new_heap(&mut self, size: usize, top_pad: usize) -> Option<usize> {
        let size = if size + top_pad < HEAP_MIN_SIZE {
            HEAP_MIN_SIZE
        } else if size + top_pad <= HEAP_MAX_SIZE {
            size + top_pad
        } else if size <= HEAP_MAX_SIZE {
            HEAP_MAX_SIZE
        } else {
            return None;
        };
        let size = align_up(size, PAGE);
        // SAFETY: the counter lives in the allocator's state, which outlives its arenas.
        let i = unsafe { &*self.next_heap }.fetch_add(1, Ordering::Relaxed);
        if i >= THREAD_HEAPS {
            return None;
        }
        let h = self.zone + i * HEAP_MAX_SIZE;
        // SAFETY: the heap's window is ours, page-aligned.
        if !unsafe { commit(self.m.ptr(h), size) } {
            return None;
        }
        self.set_hi(h, HI_SIZE, size);
        self.set_hi(h, HI_MPROTECT, size);
        self.set_hi(h, HI_PAGESIZE, PAGE);
        Some(h)
    }

    /// `grow_heap(h, diff)`.
    fn grow_heap(&mut self, h: usize, diff: usize) -> bool {
        let diff = align_up(diff, PAGE);
        let new_size = self.hi(h, HI_SIZE) + diff;
        if new_size > HEAP_MAX_SIZE {
            return false;
        }
        let mp = self.hi(h, HI_MPROTECT);
        if new_size > mp {
            // SAFETY: inside the heap's window, page-aligned.
            if !unsafe { commit(self.m.ptr(h + mp), new_size - mp) } {
                return false;
            }
            self.set_hi(h, HI_MPROTECT, new_size);
        }
        self.set_hi(h, HI_SIZE, new_size);
        true
    }
}

impl Grow for ThreadHeaps {
    fn sysmalloc(&mut self, core: &mut Core, tc: Tc, nb: usize) -> R<usize> {
        let try_mmap = |this: &mut Self, core: &mut Core| -> Option<usize> {
            let size = align_up(nb + SIZE_SZ, PAGE);
            if size <= nb {
                return None;
            }
            let mp = this.maps.map(size)?;
            let mm = Mem::new(mp.ptr);
            // SAFETY: the fresh mapping holds the header.
            unsafe {
                set_prev_size(&mm, mp.addr, 0);
                set_head(&mm, mp.addr, mp.len | IS_MMAPPED);
            }
            core.mp.n_mmaps += 1;
            core.mp.max_n_mmaps = core.mp.max_n_mmaps.max(core.mp.n_mmaps);
            core.mp.mmapped_mem += mp.len;
            core.mp.max_mmapped_mem = core.mp.max_mmapped_mem.max(core.mp.mmapped_mem);
            Some(chunk2mem(mp.addr))
        };
        let mut tried_mmap = false;
        if nb >= core.mp.mmap_threshold && core.mp.n_mmaps < core.mp.n_mmaps_max {
            tried_mmap = true;
            if let Some(mem) = try_mmap(self, core) {
                return Ok(mem);
            }
        }
        let old_top = core.st.top;
        let old_size = core.top_size();
        let old_heap = old_top & !(HEAP_MAX_SIZE - 1);
        let old_heap_size = self.hi(old_heap, HI_SIZE);
        if MINSIZE + nb > old_size && self.grow_heap(old_heap, MINSIZE + nb - old_size) {
            core.st.system_mem += self.hi(old_heap, HI_SIZE) - old_heap_size;
            // SAFETY: the top chunk is ours and now reaches the heap's new end.
            unsafe {
                set_head(
                    &core.m,
                    old_top,
                    (old_heap + self.hi(old_heap, HI_SIZE) - old_top) | PREV_INUSE,
                )
            };
        } else if let Some(h) = self.new_heap(nb + MINSIZE + HEAP_INFO_SIZE, core.mp.top_pad) {
            self.set_hi(h, HI_AR, self.hi(old_heap, HI_AR));
            self.set_hi(h, HI_PREV, old_heap);
            self.cur = h;
            core.st.system_mem += self.hi(h, HI_SIZE);
            core.st.top = h + HEAP_INFO_SIZE;
            let m = core.m;
            // SAFETY: the new heap and the old top are ours.
            unsafe {
                set_head(
                    &m,
                    core.st.top,
                    (self.hi(h, HI_SIZE) - HEAP_INFO_SIZE) | PREV_INUSE,
                );
                // Fence off the old top.
                let os = (old_size - MINSIZE) & !MALLOC_ALIGN_MASK;
                set_head(&m, old_top + os + CHUNK_HDR_SZ, PREV_INUSE);
                if os >= MINSIZE {
                    set_head(&m, old_top + os, CHUNK_HDR_SZ | PREV_INUSE);
                    set_foot(&m, old_top + os, CHUNK_HDR_SZ);
                    set_head(&m, old_top, os | PREV_INUSE | NON_MAIN_ARENA);
                    // The old top is ours; clear its key word (see `Core::int_malloc`).
                    core.m.wr(old_top + 24, 0);
                    core.int_free(self, tc, old_top, true)?;
                } else {
                    set_head(&m, old_top, (os + CHUNK_HDR_SZ) | PREV_INUSE);
                    set_foot(&m, old_top, os + CHUNK_HDR_SZ);
                }
            }
        } else if !tried_mmap && let Some(mem) = try_mmap(self, core) {
            return Ok(mem);
        }
        core.st.max_system_mem = core.st.max_system_mem.max(core.st.system_mem);
        if core.top_size() >= nb + MINSIZE {
            return Ok(core.split_top(nb));
        }
        Err(Fail::Oom)
    }

    fn trim(&mut self, core: &mut Core, pad: usize) -> R<()> {
        // heap_trim: can the top's heap go away completely? (Its window is given back to the
        // OS and never reused, so each arena's heaps keep ascending addresses.)
        let m = core.m;
        let mut h = core.st.top & !(HEAP_MAX_SIZE - 1);
        while core.st.top == h + HEAP_INFO_SIZE {
            let prev = self.hi(h, HI_PREV);
            if prev == 0 {
                break;
            }
            let prev_heap_size = self.hi(prev, HI_SIZE);
            let mut p = prev + prev_heap_size - (MINSIZE - 2 * SIZE_SZ);
            let misalign = p & MALLOC_ALIGN_MASK;
            p -= misalign;
            // SAFETY: the fenceposts at the end of the previous heap are ours.
            unsafe {
                if size_nomask(&m, p) != PREV_INUSE {
                    break; // glibc asserts: must be the fencepost
                }
                p -= prev_size(&m, p);
                let mut new_size = chunksize(&m, p) + (MINSIZE - 2 * SIZE_SZ) + misalign;
                let free_before = !prev_inuse(&m, p);
                if free_before {
                    new_size += prev_size(&m, p);
                }
                if new_size + (HEAP_MAX_SIZE - prev_heap_size) < pad + MINSIZE + PAGE {
                    break;
                }
                core.st.system_mem -= self.hi(h, HI_SIZE);
                let len = self.hi(h, HI_MPROTECT);
                decommit(m.ptr(h), len);
                libc::mprotect(m.ptr(h).cast(), len, libc::PROT_NONE);
                h = prev;
                self.cur = prev;
                if free_before {
                    p -= prev_size(&m, p);
                    core.unlink(p)?;
                }
                core.st.top = p;
                set_head(&m, p, new_size | PREV_INUSE);
            }
        }
        // Then shrink the top's heap.
        let top = core.st.top;
        let top_size = core.top_size();
        if top_size < core.mp.trim_threshold {
            return Ok(());
        }
        let top_area = top_size as isize - MINSIZE as isize - 1;
        if top_area < 0 || top_area as usize <= pad {
            return Ok(());
        }
        let extra = align_down(top_area as usize - pad, PAGE);
        if extra == 0 {
            return Ok(());
        }
        let size = self.hi(h, HI_SIZE);
        if size < extra + HEAP_INFO_SIZE {
            return Ok(());
        }
        // SAFETY: the tail of the top chunk, inside the heap, is no longer used.
        unsafe { decommit(core.m.ptr(h + size - extra), extra) };
        self.set_hi(h, HI_SIZE, size - extra);
        core.st.system_mem -= extra;
        // SAFETY: the top chunk is ours.
        unsafe { set_head(&core.m, top, (top_size - extra) | PREV_INUSE) };
        Ok(())
    }

    fn mapped_mem(&self, a: usize) -> Option<Mem> {
        self.maps.find(a).map(|(_, m)| Mem::new(m.ptr))
    }

    fn set_mapped_lead(&mut self, a: usize, lead: usize) {
        self.maps.set_lead(a, lead)
    }
}

enum Heaps {
    None,
    Main(Sys<Window, OsPages>),
    Thread(ThreadHeaps),
}

impl Heaps {
    fn maps(&mut self) -> Option<&mut Mappings<OsPages>> {
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

struct ArenaCell {
    core: Core,
    heaps: Heaps,
    attached: usize,
}

/// The allocator's state, placed at the start of its own reservation (never unmapped, so a
/// thread that exits after the allocator was dropped still finds the `dead` flag).
struct Global {
    m: Mem,
    start: usize,
    dead: AtomicBool,
    arenas: [Mutex<ArenaCell>; MAX_ARENAS],
    narenas: AtomicUsize,
    narenas_limit: AtomicUsize,
    next_to_use: AtomicUsize,
    free_list: Mutex<([u8; MAX_ARENAS], usize)>,
    next_heap: AtomicUsize,
    mp: Params,
    main_taken: AtomicBool,
    ncpus: usize,
}

// SAFETY: all mutable state is behind locks or atomics; the raw pointers point into the
// allocator's own reservation.
unsafe impl Sync for Global {}
// SAFETY: as above.
unsafe impl Send for Global {}

impl Global {
    fn main_start(&self) -> usize {
        self.start + HEAP_MAX_SIZE
    }
    fn zone(&self) -> usize {
        self.main_start() + MAIN_WINDOW
    }
    fn in_heaps(&self, a: usize) -> bool {
        a >= self.main_start() && a < self.zone() + THREAD_HEAPS * HEAP_MAX_SIZE
    }

    /// `_int_new_arena`: a thread arena on a fresh heap.
    fn new_arena(&self, i: usize) -> bool {
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
        let mut top = h + HEAP_INFO_SIZE + MALLOC_STATE_SIZE;
        let mis = chunk2mem(top) & MALLOC_ALIGN_MASK;
        if mis > 0 {
            top += MALLOC_ALIGNMENT - mis;
        }
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
    fn arena_get2(&self) -> usize {
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

    /// The arena owning heap chunk `p` (`arena_for_chunk`).
    fn arena_for_chunk(&self, p: usize) -> usize {
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
fn tcx(g: &Global, tc: usize) -> Tc {
    if tc == 0 || tc == usize::MAX {
        Tc::NONE
    } else {
        Tc { at: tc, mem: g.m }
    }
}

fn fatal(ptr: usize, what: &'static str) -> ! {
    abort_with(&FreeError::Corrupted { ptr, what })
}

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
                // SAFETY: a Global is never unmapped; `dead` says whether it may be used.
                let g = unsafe { &*s.g };
                if !g.dead.load(Ordering::Acquire) {
                    thread_exit(g, s.arena, s.tc);
                }
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

/// Frees heap chunk `p` into its arena (after the tcache).
fn free_chunk(g: &Global, tc: usize, p: usize) {
    let a = g.arena_for_chunk(p);
    let mut cell = g.arenas[a].lock();
    let cell = &mut *cell;
    if let Err(Fail::Corrupt(w)) = cell.core.int_free(&mut cell.heaps, tcx(g, tc), p, true) {
        fatal(chunk2mem(p), w)
    }
}

/// glibc 2.36's allocator with arenas per thread: an allocator-api2 `Allocator` and a
/// `GlobalAlloc`. A bad free aborts with glibc's message.
///
/// ```
/// # if cfg!(miri) { return; } // real mmap/mprotect
/// use ptmalloc2::Ptmalloc;
/// use allocator_api2::vec::Vec;
/// let heap = Ptmalloc::new();
/// let mut v = Vec::new_in(&heap);
/// v.extend(0..1000u32);
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// ```
pub struct Ptmalloc {
    tunables: Tunables,
    global: AtomicPtr<Global>,
    init: Mutex<()>,
}

impl Default for Ptmalloc {
    fn default() -> Self {
        Ptmalloc::new()
    }
}

impl core::fmt::Debug for Ptmalloc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ptmalloc")
            .field("tunables", &self.tunables.to_string())
            .finish_non_exhaustive()
    }
}

impl Ptmalloc {
    /// An allocator with glibc's default tunables (usable in a `static`).
    pub const fn new() -> Self {
        Ptmalloc::with_tunables(Tunables::new())
    }

    /// An allocator with the given tunables.
    pub const fn with_tunables(tunables: Tunables) -> Self {
        Ptmalloc {
            tunables,
            global: AtomicPtr::new(core::ptr::null_mut()),
            init: Mutex::new(()),
        }
    }

    /// Number of arenas created so far.
    pub fn arenas(&self) -> usize {
        self.get().map_or(0, |g| g.narenas.load(Ordering::Relaxed))
    }

    /// Bytes arena `i` holds from the system (glibc's `system_mem`), if it exists.
    pub fn arena_system_mem(&self, i: usize) -> Option<usize> {
        let g = self.get()?;
        let cell = g.arenas.get(i)?.lock();
        (!matches!(cell.heaps, Heaps::None)).then_some(cell.core.st.system_mem)
    }

    #[inline(always)]
    fn get(&self) -> Option<&Global> {
        let p = self.global.load(Ordering::Acquire);
        // SAFETY: a published Global stays valid (never unmapped).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    #[inline(always)]
    fn global(&self) -> Option<&Global> {
        if let Some(g) = self.get() {
            return Some(g);
        }
        self.init_global()
    }

    /// Reserves the address space and writes the state (once; kept out of line: the state is
    /// large and would make every caller's stack frame large).
    #[cold]
    #[inline(never)]
    fn init_global(&self) -> Option<&Global> {
        let _guard = self.init.lock();
        if let Some(g) = self.get() {
            return Some(g);
        }
        let len = RESERVE + HEAP_MAX_SIZE;
        // SAFETY: a fresh PROT_NONE reservation touches nothing else.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let base = p.cast::<u8>();
        let start = align_up(base as usize, HEAP_MAX_SIZE);
        let hdr = align_up(core::mem::size_of::<Global>(), PAGE);
        // SAFETY: `start .. start+hdr` is inside the reservation (it spans an extra 64 MiB).
        let gp = unsafe { base.add(start - base as usize) };
        // SAFETY: as above, page-aligned.
        if !unsafe { commit(gp, hdr) } {
            return None;
        }
        let m = Mem::new(base);
        let mp = Params::new(&self.tunables);
        let main_start = start + HEAP_MAX_SIZE;
        let win = Window {
            // SAFETY: inside the reservation.
            base: unsafe { base.add(main_start - base as usize) },
            len: MAIN_WINDOW,
            used: 0,
            committed: 0,
        };
        let g = Global {
            m,
            start,
            dead: AtomicBool::new(false),
            arenas: core::array::from_fn(|i| {
                Mutex::new(if i == 0 {
                    ArenaCell {
                        core: Core::new(Mem::empty(), mp.clone(), 0),
                        heaps: Heaps::None,
                        attached: 0,
                    }
                } else {
                    ArenaCell {
                        core: Core::new(m, mp.clone(), NON_MAIN_ARENA),
                        heaps: Heaps::None,
                        attached: 0,
                    }
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
        g.arenas[0].lock().heaps = Heaps::Main(Sys::new(win, OsPages::new()));
        self.global.store(gp, Ordering::Release);
        Some(g)
    }

    /// The calling thread's arena and tcache for `g`, attaching the thread if needed.
    #[inline(always)]
    fn thread(&self, g: &Global) -> (usize, usize) {
        match hot(g) {
            Some(s) => (s.arena, s.tc),
            None => self.thread_slow(g),
        }
    }

    /// [`thread`](Self::thread) when the slot is not the one used last: look it up (or attach
    /// the thread) in `TLS` and make it the hot one.
    #[cold]
    #[inline(never)]
    fn thread_slow(&self, g: &Global) -> (usize, usize) {
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

    fn set_tc(&self, g: &Global, tc: usize) {
        let gp: *const Global = g;
        let _ = TLS.try_with(|t| {
            if let Some(s) = t.borrow_mut().slots.iter_mut().find(|s| s.g == gp) {
                s.tc = tc;
                let _ = HOT.try_with(|h| h.set(*s));
            }
        });
    }

    /// `MAYBE_INIT_TCACHE`.
    #[inline(always)]
    fn tcache(&self, g: &Global, arena: usize, tc: usize) -> usize {
        if tc != 0 {
            return if tc == usize::MAX { 0 } else { tc };
        }
        self.tcache_init(g, arena)
    }

    /// `tcache_init`: the thread's first malloc or free allocates its tcache.
    #[cold]
    #[inline(never)]
    fn tcache_init(&self, g: &Global, arena: usize) -> usize {
        let r = {
            let mut guard = g.arenas[arena].lock();
            let cell = &mut *guard;
            cell.core
                .int_malloc(&mut cell.heaps, Tc::NONE, TCACHE_STRUCT_SIZE)
        };
        let tc = match r {
            Ok((mem, _)) if g.in_heaps(mem) => {
                // SAFETY: a fresh 0x290 chunk in our heaps.
                unsafe { g.m.fill(mem, 0, TCACHE_STRUCT_SIZE) };
                mem
            }
            Ok(_) => usize::MAX,
            Err(Fail::Oom) => return 0,
            Err(Fail::Corrupt(w)) => fatal(0, w),
        };
        self.set_tc(g, tc);
        if tc == usize::MAX { 0 } else { tc }
    }

    #[inline(always)]
    fn malloc(&self, bytes: usize, align: usize, zero: bool) -> *mut u8 {
        let Some(g) = self.global() else {
            return core::ptr::null_mut();
        };
        let Some(nb) = checked_request2size(bytes) else {
            return core::ptr::null_mut();
        };
        let (arena, tc0) = self.thread(g);
        // malloc and calloc set up the thread's tcache (calloc never takes from it); memalign
        // (alignment above 16) does not, in glibc 2.36.
        let tc = if align <= MALLOC_ALIGNMENT {
            self.tcache(g, arena, tc0)
        } else if tc0 == usize::MAX {
            0
        } else {
            tc0
        };
        let tc_idx = tcache::csize2tidx(nb);
        // SAFETY: our thread's live tcache struct.
        if align <= MALLOC_ALIGNMENT
            && !zero
            && tc != 0
            && tc_idx < g.mp.tcache_bins
            // SAFETY: our thread's live tcache struct.
            && unsafe { tcache::count(&tcx(g, tc), tc_idx) } > 0
        {
            // SAFETY: as above; the bin is not empty.
            match unsafe { tcache::get(&g.m, &tcx(g, tc), tc_idx) } {
                Ok(e) => return g.m.ptr(e),
                Err(w) => fatal(0, w),
            }
        }
        self.malloc_arena(g, arena, tc, bytes, align, zero)
    }

    /// The part of `malloc` that locks an arena: `_int_malloc` / `_int_memalign`, with
    /// `arena_get_retry` when the thread's arena is out of memory.
    #[inline(never)]
    fn malloc_arena(
        &self,
        g: &Global,
        arena: usize,
        tc: usize,
        bytes: usize,
        align: usize,
        zero: bool,
    ) -> *mut u8 {
        let attempt = |a: usize| -> R<usize> {
            let mut cell = g.arenas[a].lock();
            let cell = &mut *cell;
            if matches!(cell.heaps, Heaps::None) {
                return Err(Fail::Oom);
            }
            if align <= MALLOC_ALIGNMENT {
                cell.core
                    .int_malloc(&mut cell.heaps, tcx(g, tc), bytes)
                    .map(|r| r.0)
            } else {
                cell.core
                    .int_memalign(&mut cell.heaps, tcx(g, tc), align, bytes)
            }
        };
        let mut r = attempt(arena);
        if r == Err(Fail::Oom) {
            // arena_get_retry
            r = if arena != 0 {
                attempt(0)
            } else if g.narenas.load(Ordering::Relaxed) > 1 {
                attempt(1)
            } else {
                r
            };
        }
        let mem = match r {
            Ok(m) => m,
            Err(Fail::Oom) => return core::ptr::null_mut(),
            Err(Fail::Corrupt(w)) => fatal(0, w),
        };
        let (ptr, mm) = if g.in_heaps(mem) {
            (g.m.ptr(mem), g.m)
        } else {
            match self.mapped(g, mem2chunk(mem)) {
                Some(m) => (m.ptr(mem), m),
                None => return core::ptr::null_mut(),
            }
        };
        if zero {
            // SAFETY: the chunk's user bytes are ours.
            unsafe { mm.fill(mem, 0, bytes) };
        }
        ptr
    }

    /// The accessor of the mapped chunk containing `p` (searching every arena's mappings).
    fn mapped(&self, g: &Global, p: usize) -> Option<Mem> {
        let n = g.narenas.load(Ordering::Acquire).min(MAX_ARENAS);
        (0..n).find_map(|i| g.arenas[i].lock().heaps.mapped_mem(p))
    }

    /// `free` of a pointer outside the heaps: a mapped chunk (find its arena's record, munmap
    /// with the dynamic threshold), else abort.
    #[inline(never)]
    fn free_mapped(&self, g: &Global, mem: usize, p: usize) {
        // A mapped chunk: find its arena's record, munmap (with the dynamic threshold).
        let n = g.narenas.load(Ordering::Acquire).min(MAX_ARENAS);
        for i in 0..n {
            let mut cell = g.arenas[i].lock();
            let cell = &mut *cell;
            let Some(maps) = cell.heaps.maps() else {
                continue;
            };
            let Some((j, mp)) = maps.find(p) else {
                continue;
            };
            let mm = Mem::new(mp.ptr);
            if p - mp.addr + CHUNK_HDR_SZ > mp.len {
                fatal(mem, MUNMAP_INVALID);
            }
            // SAFETY: the header is inside the mapping.
            let nomask = unsafe { size_nomask(&mm, p) };
            cell.core.mp.raise_dynamic_threshold(nomask);
            let sys_unmap = |maps: &mut Mappings<OsPages>, core: &mut Core| -> R<()> {
                // SAFETY: as above.
                let (ps, size) = unsafe { (prev_size(&mm, p), chunksize(&mm, p)) };
                if p.wrapping_sub(ps) != mp.addr || ps.wrapping_add(size) != mp.len {
                    return Err(MUNMAP_INVALID.into());
                }
                core.mp.n_mmaps -= 1;
                core.mp.mmapped_mem -= mp.len;
                let _ = maps.unmap(j);
                Ok(())
            };
            let maps = match &mut cell.heaps {
                Heaps::Main(s) => &mut s.maps,
                Heaps::Thread(t) => &mut t.maps,
                Heaps::None => continue,
            };
            if let Err(Fail::Corrupt(w)) = sys_unmap(maps, &mut cell.core) {
                fatal(mem, w);
            }
            return;
        }
        fatal(mem, FREE_INVALID_POINTER);
    }

    #[inline(always)]
    fn free(&self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        let mem = ptr as usize;
        let Some(g) = self.get() else {
            fatal(mem, FREE_INVALID_POINTER)
        };
        let p = mem2chunk(mem);
        if !g.in_heaps(p) {
            return self.free_mapped(g, mem, p);
        }
        let (arena, tc0) = self.thread(g);
        let tc = self.tcache(g, arena, tc0);
        // SAFETY: `p` is inside our heaps; its size word is committed memory of a chunk.
        let size = unsafe { chunksize(&g.m, p) };
        if p > size.wrapping_neg() || misaligned(p) {
            fatal(mem, FREE_INVALID_POINTER);
        }
        if size < MINSIZE || size & MALLOC_ALIGN_MASK != 0 {
            fatal(mem, FREE_INVALID_SIZE);
        }
        if tc != 0 && tcache::csize2tidx(size) < g.mp.tcache_bins {
            // SAFETY: our thread's tcache; `p` is a chunk of `size` in our heaps.
            match unsafe { tcache::free_to_cache(&g.m, &tcx(g, tc), p, size, g.mp.tcache_count) } {
                Ok(true) => return,
                Ok(false) => {}
                Err(w) => fatal(mem, w),
            }
        }
        free_chunk(g, 0, p);
    }

    fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        let mem = ptr as usize;
        let p = mem2chunk(mem);
        let Some(g) = self.get() else {
            fatal(mem, REALLOC_POINTER)
        };
        if old.align() > MALLOC_ALIGNMENT || !g.in_heaps(p) || new_size == 0 {
            let n = self.malloc(new_size, old.align(), false);
            if !n.is_null() {
                // SAFETY: both blocks are live and distinct; `old.size()` bytes are ours.
                unsafe { core::ptr::copy_nonoverlapping(ptr, n, old.size().min(new_size)) };
                self.free(ptr);
            }
            return n;
        }
        let Some(nb) = checked_request2size(new_size) else {
            return core::ptr::null_mut();
        };
        let (arena, tc0) = self.thread(g);
        let tc = self.tcache(g, arena, tc0);
        let a = g.arena_for_chunk(p);
        let mut cell = g.arenas[a].lock();
        let cell = &mut *cell;
        let oldsize = cell.core.csize(p);
        if p > oldsize.wrapping_neg() || misaligned(p) {
            fatal(mem, REALLOC_POINTER);
        }
        match cell
            .core
            .int_realloc(&mut cell.heaps, tcx(g, tc), p, oldsize, nb)
        {
            Ok(Realloc::InPlace(m)) => g.m.ptr(m),
            Ok(Realloc::Moved(newmem)) => {
                let dst = if g.in_heaps(newmem) {
                    g.m.ptr(newmem)
                } else {
                    match cell.heaps.mapped_mem(newmem) {
                        Some(mm) => mm.ptr(newmem),
                        None => fatal(mem, REALLOC_POINTER),
                    }
                };
                // SAFETY: distinct live chunks; the old one has `oldsize - 8` user bytes.
                unsafe { core::ptr::copy_nonoverlapping(ptr, dst, oldsize - SIZE_SZ) };
                if let Err(Fail::Corrupt(w)) =
                    cell.core.int_free(&mut cell.heaps, tcx(g, tc), p, true)
                {
                    fatal(mem, w);
                }
                dst
            }
            Err(Fail::Oom) => core::ptr::null_mut(),
            Err(Fail::Corrupt(w)) => fatal(mem, w),
        }
    }
}

impl Drop for Ptmalloc {
    fn drop(&mut self) {
        if let Some(g) = self.get() {
            g.dead.store(true, Ordering::Release);
            // Unmap the arenas' mapped chunks (dropping their records), then give back the
            // heaps' memory; the header window (the state) stays mapped so that late thread
            // exits see `dead`.
            for a in &g.arenas {
                let heaps = core::mem::replace(&mut a.lock().heaps, Heaps::None);
                drop(heaps);
            }
            // SAFETY: nothing of this allocator is used after drop.
            unsafe { libc::munmap(g.m.ptr(g.main_start()).cast(), RESERVE - HEAP_MAX_SIZE) };
        }
    }
}

// SAFETY: blocks are aligned as asked and valid until freed; every arena is behind its lock and
// each tcache is touched by its own thread only; a bad free aborts.
unsafe impl GlobalAlloc for Ptmalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.malloc(layout.size(), layout.align(), false)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.malloc(layout.size(), layout.align(), true)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        self.free(ptr)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Ptmalloc::realloc(self, ptr, layout, new_size)
    }
}

fn usable(p: *mut u8, size: usize) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, size))
        .ok_or(allocator_api2::alloc::AllocError)
}

// SAFETY: as for GlobalAlloc.
unsafe impl allocator_api2::alloc::Allocator for Ptmalloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        usable(
            self.malloc(layout.size(), layout.align(), false),
            layout.size(),
        )
    }
    fn allocate_zeroed(
        &self,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        usable(
            self.malloc(layout.size(), layout.align(), true),
            layout.size(),
        )
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        self.free(ptr.as_ptr())
    }
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if new.align() > old.align() {
            let n = self.malloc(new.size(), new.align(), false);
            let b = usable(n, new.size())?;
            // SAFETY: distinct live blocks; `old.size()` bytes are the caller's.
            unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), n, old.size()) };
            self.free(ptr.as_ptr());
            return Ok(b);
        }
        usable(
            Ptmalloc::realloc(self, ptr.as_ptr(), old, new.size()),
            new.size(),
        )
    }
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if new.align() > old.align() {
            let n = self.malloc(new.size(), new.align(), false);
            let b = usable(n, new.size())?;
            // SAFETY: distinct live blocks; `new.size()` bytes are kept.
            unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), n, new.size()) };
            self.free(ptr.as_ptr());
            return Ok(b);
        }
        usable(
            Ptmalloc::realloc(self, ptr.as_ptr(), old, new.size()),
            new.size(),
        )
    }
}
