//! `Ptmalloc`, the front: glibc's `__libc_malloc`, `__libc_free`, `__libc_realloc` over the
//! arena table, with the thread's tcache first.
//!
//! ```text
//!  malloc: thread's tcache (no lock) -> lock the thread's arena -> _int_malloc
//!          (on failure: the main arena, or another arena: arena_get_retry)
//!  free:   mapped? munmap : thread's tcache (no lock) -> lock the chunk's arena -> _int_free
//! ```

use core::alloc::Layout;
use core::sync::atomic::{AtomicPtr, Ordering};

use allocator_traits::{Corruption, OsPages};
use spin::Mutex;

use super::arena_table::{Global, Heaps, MAX_ARENAS, fatal, free_chunk, tcx};
use super::reservation::{RESERVE, reserve};
use super::tls;
use crate::arena::{Core, Fail, Grow, R, Realloc};
use crate::checks::*;
use crate::chunk::*;
use crate::mapped::Mappings;
use crate::tcache::{self, TCACHE_STRUCT_SIZE, Tc};
use crate::tunables::{HEAP_MAX_SIZE, Tunables};

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
    /// Held while the state is created (once).
    pub(super) init: Mutex<()>,
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

    /// The invariant walk of every arena (each under its lock, so it may run while other
    /// threads allocate): the checks of [`FreeSpaceManager::check_invariants`] for `Arena`,
    /// over each arena's heaps (a thread arena's chain of `heap_info` heaps included), without
    /// the threads' tcaches.
    ///
    /// [`FreeSpaceManager::check_invariants`]: allocator_traits::FreeSpaceManager::check_invariants
    pub fn check_invariants(&self) -> Result<(), Corruption> {
        self.get().map_or(Ok(()), Global::check)
    }

    /// The state, if the first allocation created it.
    #[inline(always)]
    pub(super) fn get(&self) -> Option<&Global> {
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
        let (base, start) = reserve()?;
        let gp = Global::create(base, start, &self.tunables)?;
        self.global.store(gp.cast_mut(), Ordering::Release);
        // SAFETY: just written, never unmapped.
        Some(unsafe { &*gp })
    }

    /// `MAYBE_INIT_TCACHE`. (`tc`: 0 = not set up yet, `usize::MAX` = none, see [`live`].)
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
            let mut guard = g.arena(arena);
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
        tls::set_tc(g, tc);
        if tc == usize::MAX { 0 } else { tc }
    }

    #[inline(always)]
    pub(super) fn malloc(&self, bytes: usize, align: usize, zero: bool) -> *mut u8 {
        let Some(g) = self.global() else {
            return core::ptr::null_mut();
        };
        let Some(nb) = checked_request2size(bytes) else {
            return core::ptr::null_mut();
        };
        let (arena, tc0) = tls::thread(g);
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
        let mut r = attempt(g, arena, tc, bytes, align);
        if r == Err(Fail::Oom) {
            r = retry(g, arena, tc, bytes, align);
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
    pub(super) fn free(&self, ptr: *mut u8) {
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
        let (arena, tc0) = tls::thread(g);
        let tc = if live(tc0) {
            tc0
        } else {
            self.tcache(g, arena, tc0)
        };
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

    pub(super) fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
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
        let (arena, tc0) = tls::thread(g);
        let tc = self.tcache(g, arena, tc0);
        let a = g.arena_for_chunk(p);
        let mut cell = g.arena(a);
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

/// Whether a thread's tcache word `tc` names a live tcache (neither 0, not set up yet, nor
/// `usize::MAX`, none): one comparison.
#[inline(always)]
fn live(tc: usize) -> bool {
    tc.wrapping_sub(1) < usize::MAX - 1
}

/// `_int_malloc` / `_int_memalign` in arena `a`, held (inlined into `malloc_arena`: a closure
/// called twice was compiled out of line, a call and a prologue more on every arena malloc).
#[inline(always)]
fn attempt(g: &Global, a: usize, tc: usize, bytes: usize, align: usize) -> R<usize> {
    let mut cell = g.arena(a);
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
}

/// `arena_get_retry`: the thread's arena `arena` is out of memory; try the main arena (or,
/// from the main arena, arena 1).
#[cold]
#[inline(never)]
fn retry(g: &Global, arena: usize, tc: usize, bytes: usize, align: usize) -> R<usize> {
    if arena != 0 {
        attempt(g, 0, tc, bytes, align)
    } else if g.narenas.load(Ordering::Relaxed) > 1 {
        attempt(g, 1, tc, bytes, align)
    } else {
        Err(Fail::Oom)
    }
}

impl Drop for Ptmalloc {
    fn drop(&mut self) {
        if let Some(g) = self.get() {
            // No caller can use `self` any more; exiting threads flush their tcaches under
            // `dead`'s lock, so wait for any flush under way and keep later ones out.
            let mut dead = g.dead.lock();
            *dead = true;
            // Unmap the arenas' mapped chunks (dropping their records), then give back the
            // heaps' memory; the header window (the state) stays mapped so that late thread
            // exits see `dead`.
            for a in &g.arenas {
                let heaps = core::mem::replace(&mut a.lock().heaps, Heaps::None);
                drop(heaps);
            }
            // SAFETY: nothing of this allocator is used after drop: callers are gone (`&mut
            // self`) and thread exits check `dead` under the lock we hold.
            unsafe { libc::munmap(g.m.ptr(g.main_start()).cast(), RESERVE - HEAP_MAX_SIZE) };
            drop(dead);
        }
    }
}
