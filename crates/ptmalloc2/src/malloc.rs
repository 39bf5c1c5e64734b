//! One arena as a heap: glibc's C interface (`malloc`, `free`, `calloc`, `realloc`, `memalign`)
//! over a brk-like [`MemorySource`] plus a source for mapped chunks, and the
//! [`FreeSpaceManager`] that the rest of the workspace drives.
//!
//! ```text
//!  malloc(n)  -> tcache bin (if a chunk is cached) -> _int_malloc
//!  free(p)    -> mapped? munmap (dynamic threshold) : _int_free (tcache, fastbin, coalesce)
//!  calloc(n)  -> _int_malloc (never the tcache in 2.36), zeroed
//!  realloc    -> mapped? remap : _int_realloc (shrink in place, grow into top / free next,
//!                else malloc-copy-free)
//!  memalign   -> align <= 16 ? malloc : _int_memalign (over-allocate, free the lead and tail)
//! ```
//!
//! The first `malloc`, `calloc`, `realloc` or `free` allocates the thread's tcache (a 0x290
//! chunk) as glibc does, even with `glibc.malloc.tcache_count=0`; `memalign` does not.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use allocator_traits::{
    AllocError, BlockKind, Detects, FastStats, FreeError, FreeSpaceManager, Inspector,
    MemorySource, Placement, Stats,
};

use crate::arena::{Core, Fail, R, Realloc};
use crate::bins::*;
use crate::checks::*;
use crate::chunk::*;
use crate::heap::{NoMmap, Sys};
use crate::invariants::check_main;
use crate::mapped::Mapping;
use crate::tcache::{self, TCACHE_MAX_BINS, TCACHE_STRUCT_SIZE, Tc};
use crate::tunables::{Params, Tunables};

/// Why a C-level call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocError {
    /// No memory: glibc returns NULL (errno ENOMEM or EINVAL).
    OutOfMemory,
    /// An integrity check failed: glibc prints this message and aborts.
    Corrupted(&'static str),
    /// The pointer is in no memory of this heap (glibc would crash or abort on it).
    Foreign(usize),
}

impl fmt::Display for MallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MallocError::OutOfMemory => f.write_str("out of memory"),
            MallocError::Corrupted(m) => f.write_str(m),
            MallocError::Foreign(p) => write!(f, "pointer {p:#x} is not from this heap"),
        }
    }
}

impl std::error::Error for MallocError {}

/// glibc 2.36's allocator with one arena (the main arena, single-threaded).
///
/// `S` is the brk-like main heap (contiguous), `M` the source of mapped chunks ([`NoMmap`] keeps
/// everything in `S`). `Arena<BrkRegion, OsPages>` is the real thing; `Arena<BoxedRegion>` a
/// heap confined to one region.
pub struct Arena<S: MemorySource, M: MemorySource = NoMmap> {
    core: Core,
    sys: Sys<S, M>,
    /// The thread's tcache (`Tc::NONE` until the first malloc/free allocates it).
    tc: Tc,
    /// The tcache the inline fast paths use: `tc` while `broken` is `None`, else `Tc::NONE`
    /// (one test for both conditions).
    fast: Tc,
    tunables: Tunables,
    /// The workspace's statistics, exact, at plain adds on the tcache paths (see
    /// [`FastStats`]; its headroom is at most its exact value, which the walk checks).
    stats: FastStats,
    /// The footprint last given to `stats` (equal to its `footprint`): a slow path that does
    /// not change it does not set it again.
    footprint_seen: usize,
    broken: Option<&'static str>,
}

// SAFETY: the arena owns its memory exclusively (the raw pointers inside point into its own
// sources' grants), so it may move to another thread with its sources.
unsafe impl<S: MemorySource + Send, M: MemorySource + Send> Send for Arena<S, M> {}

impl<S: MemorySource, M: MemorySource> fmt::Debug for Arena<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("heap_start", &self.core.st.base)
            .field("top", &self.core.st.top)
            .field("top_size", &self.core.top_size())
            .field("system_mem", &self.core.st.system_mem)
            .field("tunables", &self.tunables.to_string())
            .finish_non_exhaustive()
    }
}

impl<S: MemorySource> Arena<S, NoMmap> {
    /// An arena over `main` only: requests above the mmap threshold are served from `main`.
    pub fn over(main: S, tunables: &Tunables) -> Self {
        Arena::new(main, NoMmap, tunables)
    }
}

impl<S: MemorySource, M: MemorySource> Arena<S, M> {
    /// An arena growing in `main` (which must be contiguous) and mapping big chunks from `maps`.
    pub fn new(main: S, maps: M, tunables: &Tunables) -> Self {
        Arena {
            core: Core::new(Mem::empty(), Params::new(tunables), 0),
            sys: Sys::new(main, maps),
            tc: Tc::NONE,
            fast: Tc::NONE,
            tunables: tunables.clone(),
            stats: FastStats::new(),
            footprint_seen: 0,
            broken: None,
        }
    }

    /// The arena's state, for tests that plant corruptions in it.
    #[cfg(test)]
    pub(crate) fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    /// The arena's statistics, for tests that plant corruptions in them.
    #[cfg(test)]
    pub(crate) fn stats_mut(&mut self) -> &mut FastStats {
        &mut self.stats
    }

    /// The fast paths' tcache, for tests that plant corruptions in it.
    #[cfg(test)]
    pub(crate) fn fast_mut(&mut self) -> &mut Tc {
        &mut self.fast
    }

    /// The tunables the arena was made with.
    pub fn tunables(&self) -> &Tunables {
        &self.tunables
    }

    /// The running parameters (glibc's `mp_`; the mmap threshold moves unless frozen).
    pub fn params(&self) -> &Params {
        &self.core.mp
    }

    /// Start of the main heap (glibc's initial program break), once it exists.
    pub fn heap_start(&self) -> Option<usize> {
        (self.core.st.base != 0).then_some(self.core.st.base)
    }

    /// Bytes the arena got from its main source (glibc's `system_mem`).
    pub fn system_mem(&self) -> usize {
        self.core.st.system_mem
    }

    /// The message of the integrity check that failed, if one did (the arena then refuses
    /// everything, as glibc would have aborted).
    pub fn failed_check(&self) -> Option<&'static str> {
        self.broken
    }

    #[inline(always)]
    fn in_heap(&self, a: usize) -> bool {
        a >= self.core.st.base && a < self.sys.brk_end
    }

    /// Whether `mem` can be the user pointer of a heap chunk: 16-aligned, its header inside the
    /// heap (one comparison: below the heap's start it wraps to a large offset).
    #[inline(always)]
    fn in_heap_block(&self, mem: usize) -> bool {
        let base = self.core.st.base + CHUNK_HDR_SZ;
        !misaligned(mem) && mem.wrapping_sub(base) < self.sys.brk_end.wrapping_sub(base)
    }

    /// Where the block at `ptr` lives: its offset from the start of the main heap (glibc's
    /// initial program break, so offsets compare with the real glibc's), or
    /// [`Placement::Mapped`] for a chunk in a mapping of its own. O(1); the trait's
    /// [`FreeSpaceManager::placement`] is this.
    pub fn placement(&self, ptr: NonNull<u8>) -> Placement {
        let a = ptr.as_ptr() as usize;
        if self.in_heap(a) {
            Placement::Heap(a - self.core.st.base)
        } else {
            Placement::Mapped
        }
    }

    /// `malloc_usable_size(ptr)` of a live block, `None` for a pointer not from this heap.
    pub fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        let p = mem2chunk(ptr.as_ptr() as usize);
        if self.in_heap(p) && p + CHUNK_HDR_SZ <= self.sys.brk_end {
            return Some(self.core.csize(p).saturating_sub(SIZE_SZ));
        }
        let (_, mp) = self.sys.maps.find(p)?;
        let mm = Mem::new(mp.ptr);
        // SAFETY: `p` is inside the mapping and chunk headers are at least 16 bytes before its end.
        Some(unsafe { chunksize(&mm, p) }.saturating_sub(CHUNK_HDR_SZ))
    }

    fn held(&self, mem: usize) -> usize {
        let p = mem2chunk(mem);
        if self.in_heap(p) {
            self.core.csize(p)
        } else {
            self.sys.maps.find(p).map_or(0, |(_, m)| m.len)
        }
    }

    fn fail<T>(&mut self, f: Fail) -> Result<T, MallocError> {
        match f {
            Fail::Oom => Err(MallocError::OutOfMemory),
            Fail::Corrupt(m) => {
                if !leaves_heap_consistent(m) {
                    self.break_with(m);
                }
                Err(MallocError::Corrupted(m))
            }
        }
    }

    /// A failed check that leaves the heap inconsistent: the arena refuses everything from now
    /// on (glibc would have aborted), and the fast paths stop.
    fn break_with(&mut self, m: &'static str) {
        self.broken = Some(m);
        self.fast = Tc::NONE;
    }

    fn check_broken(&self) -> Result<(), MallocError> {
        match self.broken {
            Some(m) => Err(MallocError::Corrupted(m)),
            None => Ok(()),
        }
    }

    /// Records the footprint: what glibc's heap is, the program break's extent (`system_mem`)
    /// plus the mapped chunks' whole pages (`mmapped_mem`). The model's own bookkeeping (the
    /// tables of mapped chunks) is not counted: glibc has none.
    #[inline(always)]
    fn footprint(&mut self) {
        let f = self.core.st.system_mem + self.core.mp.mmapped_mem;
        if f != self.footprint_seen {
            self.footprint_seen = f;
            self.stats.set_footprint(f);
        }
    }

    /// `MAYBE_INIT_TCACHE()`: the thread's tcache is allocated by its first malloc/free.
    fn maybe_init_tcache(&mut self) -> R<()> {
        if !self.tc.is_some() {
            match self
                .core
                .int_malloc(&mut self.sys, Tc::NONE, TCACHE_STRUCT_SIZE)
            {
                Ok((mem, _)) => {
                    // In the heap, or (mmap threshold below 0x290) in a mapping of its own.
                    let m = if self.in_heap(mem) {
                        Some(self.core.m)
                    } else {
                        self.mapping_of(mem).map(|mp| Mem::new(mp.ptr))
                    };
                    if let Some(m) = m {
                        // SAFETY: a fresh chunk of at least 0x290 bytes.
                        unsafe { m.fill(mem, 0, TCACHE_STRUCT_SIZE) };
                        self.tc = Tc::new(mem, m);
                        if self.broken.is_none() {
                            self.fast = self.tc;
                        }
                    }
                }
                Err(Fail::Oom) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn tc(&self) -> Tc {
        self.tc
    }

    fn perturb(&mut self, mem: usize, bytes: usize) {
        let b = self.core.mp.perturb;
        if b != 0 {
            self.fill(mem, b ^ 0xff, bytes);
        }
    }

    /// Fills user bytes wherever the chunk lives.
    fn fill(&mut self, mem: usize, byte: u8, len: usize) {
        if self.in_heap(mem) {
            // SAFETY: `mem .. mem+len` is a live chunk's user bytes in the heap.
            unsafe { self.core.m.fill(mem, byte, len) };
        } else if let Some((_, mp)) = self.sys.maps.find(mem) {
            // SAFETY: as above, inside the chunk's mapping.
            unsafe { Mem::new(mp.ptr).fill(mem, byte, len) };
        }
    }

    fn raw_malloc(&mut self, bytes: usize) -> R<usize> {
        let nb = checked_request2size(bytes).ok_or(Fail::Oom)?;
        let tc_idx = tcache::csize2tidx(nb);
        self.maybe_init_tcache()?;
        let tc = self.tc();
        // SAFETY: `tc` is the live tcache struct in the heap.
        if tc.is_some()
            && tc_idx < self.core.mp.tcache_bins
            // SAFETY: `tc` is the live tcache struct in the heap.
            && unsafe { tcache::count(&tc, tc_idx) } > 0
        {
            // SAFETY: as above; the bin is not empty.
            return unsafe { tcache::get(&self.core.m, &tc, tc_idx) }.map_err(Fail::from);
        }
        let (mem, perturb) = self.core.int_malloc(&mut self.sys, tc, bytes)?;
        if perturb {
            self.perturb(mem, bytes);
        }
        Ok(mem)
    }

    fn raw_free(&mut self, mem: usize) -> Result<(), FreeError> {
        let bad = |what| FreeError::Corrupted { ptr: mem, what };
        let p = mem2chunk(mem);
        if mem >= self.core.st.base + CHUNK_HDR_SZ
            && mem < self.sys.brk_end
            && self.core.st.base != 0
        {
            if misaligned(p) {
                return Err(bad(FREE_INVALID_POINTER));
            }
            // SAFETY: `p`'s header is inside the heap.
            if unsafe { is_mmapped(&self.core.m, p) } {
                return Err(bad(MUNMAP_INVALID));
            }
            self.maybe_init_tcache().map_err(|f| match f {
                Fail::Corrupt(w) => bad(w),
                Fail::Oom => bad(FREE_INVALID_POINTER),
            })?;
            let tc = self.tc();
            return self
                .core
                .int_free(&mut self.sys, tc, p, false)
                .map_err(|f| match f {
                    Fail::Corrupt(w) => bad(w),
                    Fail::Oom => bad(FREE_INVALID_POINTER),
                });
        }
        let Some((i, mp)) = self.sys.maps.find(p) else {
            // A mapped chunk freed before is gone with its mapping (glibc would `munmap` again).
            if self.sys.maps.was_freed(mem) {
                return Err(FreeError::DoubleFree { ptr: mem });
            }
            return Err(FreeError::Foreign { ptr: mem });
        };
        if p < mp.addr || p - mp.addr + CHUNK_HDR_SZ > mp.len {
            return Err(bad(MUNMAP_INVALID));
        }
        let mm = Mem::new(mp.ptr);
        // SAFETY: the header is inside the mapping (checked).
        let nomask = unsafe { size_nomask(&mm, p) };
        if nomask & IS_MMAPPED == 0 {
            return Err(bad(MUNMAP_INVALID));
        }
        self.core.mp.raise_dynamic_threshold(nomask);
        self.sys
            .munmap_chunk(&mut self.core, p, i, mp)
            .map_err(|f| match f {
                Fail::Corrupt(w) => bad(w),
                Fail::Oom => bad(MUNMAP_INVALID),
            })
    }

    fn raw_calloc(&mut self, bytes: usize) -> R<usize> {
        checked_request2size(bytes).ok_or(Fail::Oom)?;
        self.maybe_init_tcache()?;
        let tc = self.tc();
        let (mem, _) = self.core.int_malloc(&mut self.sys, tc, bytes)?;
        if self.in_heap(mem) {
            let csz = self.core.csize(mem2chunk(mem));
            // SAFETY: the chunk's user bytes (including the next chunk's prev_size word, which
            // belongs to an in-use chunk) are ours.
            unsafe { self.core.m.fill(mem, 0, csz - SIZE_SZ) };
        } else {
            self.fill(mem, 0, bytes);
        }
        Ok(mem)
    }

    fn raw_memalign(&mut self, alignment: usize, bytes: usize) -> R<usize> {
        if alignment <= MALLOC_ALIGNMENT {
            return self.raw_malloc(bytes);
        }
        let mut alignment = alignment.max(MINSIZE);
        if alignment > usize::MAX / 2 + 1 {
            return Err(Fail::Oom);
        }
        if !alignment.is_power_of_two() {
            let mut a = MALLOC_ALIGNMENT * 2;
            while a < alignment {
                a <<= 1;
            }
            alignment = a;
        }
        self.int_memalign(alignment, bytes)
    }

    /// `_int_memalign(av, alignment, bytes)`.
    fn int_memalign(&mut self, alignment: usize, bytes: usize) -> R<usize> {
        let tc = self.tc();
        self.core.int_memalign(&mut self.sys, tc, alignment, bytes)
    }

    /// `__libc_realloc` for a non-null pointer and a non-zero size.
    fn raw_realloc(&mut self, mem: usize, bytes: usize) -> Result<usize, MallocError> {
        let p = mem2chunk(mem);
        if self.core.st.base != 0
            && mem >= self.core.st.base + CHUNK_HDR_SZ
            && mem < self.sys.brk_end
        {
            if let Err(f) = self.maybe_init_tcache() {
                return self.fail(f);
            }
            let oldsize = self.core.csize(p);
            if p > oldsize.wrapping_neg() || misaligned(p) {
                return self.fail(Fail::Corrupt(REALLOC_POINTER));
            }
            let Some(nb) = checked_request2size(bytes) else {
                return Err(MallocError::OutOfMemory);
            };
            // SAFETY: the header is in the heap.
            if unsafe { is_mmapped(&self.core.m, p) } {
                return self.fail(Fail::Corrupt(MREMAP_INVALID));
            }
            let tc = self.tc();
            match self.core.int_realloc(&mut self.sys, tc, p, oldsize, nb) {
                Ok(Realloc::InPlace(m)) => Ok(m),
                Ok(Realloc::Moved(newmem)) => {
                    self.copy_to(mem, newmem, oldsize - SIZE_SZ);
                    match self.core.int_free(&mut self.sys, tc, p, true) {
                        Ok(()) => Ok(newmem),
                        Err(f) => self.fail(f),
                    }
                }
                Err(f) => self.fail(f),
            }
        } else if let Some((i, mp)) = self.sys.maps.find(p) {
            let mm = Mem::new(mp.ptr);
            if p < mp.addr || p - mp.addr + CHUNK_HDR_SZ > mp.len {
                return self.fail(Fail::Corrupt(REALLOC_POINTER));
            }
            // SAFETY: the header is inside the mapping.
            let (ps, oldsize) = unsafe { (prev_size(&mm, p), chunksize(&mm, p)) };
            if p > oldsize.wrapping_neg() || misaligned(p) {
                return self.fail(Fail::Corrupt(REALLOC_POINTER));
            }
            let Some(nb) = checked_request2size(bytes) else {
                return Err(MallocError::OutOfMemory);
            };
            // mremap_chunk: same page count -> stays; else move to a mapping of the new size.
            let block = p.wrapping_sub(ps);
            let total = ps.wrapping_add(oldsize);
            let off = mem & (PAGE - 1);
            if (block | total) & (PAGE - 1) != 0
                || off & off.wrapping_sub(1) != 0
                || block != mp.addr
                || total != mp.len
            {
                return self.fail(Fail::Corrupt(MREMAP_INVALID));
            }
            let new_size = align_up(nb + ps + SIZE_SZ, PAGE);
            if new_size == total {
                return Ok(mem);
            }
            if let Some(nm) = self.sys.maps.map(new_size) {
                // SAFETY: copies the old mapping's bytes that fit into the new one (what
                // mremap keeps), then writes the new header; both mappings are ours.
                unsafe {
                    core::ptr::copy_nonoverlapping(mp.ptr, nm.ptr, total.min(nm.len));
                    let nmm = Mem::new(nm.ptr);
                    set_head(&nmm, nm.addr + ps, (nm.len - ps) | IS_MMAPPED);
                }
                // The table shifted: find the old mapping again and drop it.
                if let Some((j, _)) = self.sys.maps.find(mp.addr) {
                    let _ = self.sys.maps.unmap(j);
                }
                let _ = i;
                self.sys.maps.set_lead(nm.addr, ps);
                let mp_ = &mut self.core.mp;
                mp_.mmapped_mem = mp_.mmapped_mem + nm.len - total;
                mp_.max_mmapped_mem = mp_.max_mmapped_mem.max(mp_.mmapped_mem);
                return Ok(chunk2mem(nm.addr + ps));
            }
            if oldsize - SIZE_SZ >= nb {
                return Ok(mem);
            }
            let newmem = match self.raw_malloc(bytes) {
                Ok(m) => m,
                Err(f) => return self.fail(f),
            };
            self.copy_to(mem, newmem, oldsize - CHUNK_HDR_SZ);
            if let Some((j, mp)) = self.sys.maps.find(p)
                && let Err(f) = self.sys.munmap_chunk(&mut self.core, p, j, mp)
            {
                return self.fail(f);
            }
            Ok(newmem)
        } else {
            Err(MallocError::Foreign(mem))
        }
    }

    fn mapping_of(&self, a: usize) -> Option<Mapping> {
        self.sys.maps.find(a).map(|(_, m)| m)
    }

    /// Copies `len` bytes between two live, distinct chunks wherever they live.
    fn copy_to(&mut self, from: usize, to: usize, len: usize) {
        let src = if self.in_heap(from) {
            self.core.m.ptr(from)
        } else {
            match self.mapping_of(from) {
                Some(m) => Mem::new(m.ptr).ptr(from),
                None => return,
            }
        };
        let dst = if self.in_heap(to) {
            self.core.m.ptr(to)
        } else {
            match self.mapping_of(to) {
                Some(m) => Mem::new(m.ptr).ptr(to),
                None => return,
            }
        };
        // SAFETY: both ranges are user bytes of distinct live chunks with at least `len` bytes.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
    }

    fn to_ptr(&self, mem: usize) -> NonNull<u8> {
        let p = if self.in_heap(mem) {
            self.core.m.ptr(mem)
        } else {
            match self.mapping_of(mem) {
                Some(m) => Mem::new(m.ptr).ptr(mem),
                None => core::ptr::null_mut(),
            }
        };
        NonNull::new(p).unwrap_or(NonNull::dangling())
    }

    /// Counts the outcome of an allocation of `requested` bytes: the block's pointer and its
    /// usable size (what `malloc_usable_size` says), or the error.
    fn done_alloc(
        &mut self,
        r: R<usize>,
        requested: usize,
    ) -> Result<(NonNull<u8>, usize), MallocError> {
        let mem = match r {
            Ok(mem) => mem,
            Err(f) => {
                self.stats.record_failure();
                return self.fail(f);
            }
        };
        let p = mem2chunk(mem);
        let (held, usable, ptr) = if self.in_heap(mem) {
            let c = self.core.csize(p);
            (c, c - SIZE_SZ, self.core.m.ptr(mem))
        } else if let Some((_, mp)) = self.sys.maps.find(p) {
            let mm = Mem::new(mp.ptr);
            // SAFETY: a fresh mapped chunk's header is inside its mapping.
            let c = unsafe { chunksize(&mm, p) };
            (mp.len, c - CHUNK_HDR_SZ, mm.ptr(mem))
        } else {
            (0, 0, core::ptr::null_mut())
        };
        if held >= requested {
            self.stats.alloc(requested, held);
        } else {
            self.stats.record_alloc(requested, held);
        }
        self.footprint();
        Ok((NonNull::new(ptr).unwrap_or(NonNull::dangling()), usable))
    }

    /// `malloc(bytes)`.
    #[inline]
    pub fn malloc(&mut self, bytes: usize) -> Result<NonNull<u8>, MallocError> {
        // The common case first: a cached chunk of the request's tcache bin (what `raw_malloc`
        // would do once the tcache exists). Anything else takes the full path.
        match self.tcache_take(bytes) {
            Some((p, _)) => Ok(p),
            None => self.malloc_slow(bytes).map(|b| b.0),
        }
    }

    /// `malloc`'s tcache hit: the newest chunk of the request's tcache bin, taken and counted,
    /// with its chunk size; `None` (nothing changed) when the full path must run: no tcache,
    /// an empty bin, a request too large for it, a broken arena, or an entry that is not a
    /// heap chunk (the full path reports or serves it). A footprint cannot change here.
    #[inline(always)]
    fn tcache_take(&mut self, bytes: usize) -> Option<(NonNull<u8>, usize)> {
        let tc = self.fast;
        if !tc.is_some() {
            return None;
        }
        let nb = checked_request2size(bytes)?;
        let i = tcache::csize2tidx(nb);
        if i >= self.core.mp.tcache_bins {
            return None;
        }
        // SAFETY: `tc` is the live tcache struct and `i` one of its bins.
        let e = unsafe {
            if tcache::count(&tc, i) == 0 {
                return None;
            }
            tcache::entry(&tc, i)
        };
        if !self.in_heap_block(e) {
            return None;
        }
        // SAFETY: the bin is not empty and its first entry is a chunk of the heap.
        unsafe { tcache::pop(&self.core.m, &tc, i, e) };
        // A chunk holds more than its request (`nb >= bytes + SIZE_SZ`).
        self.stats.alloc(bytes, nb);
        // SAFETY: a pointer into the heap is not null.
        Some((unsafe { NonNull::new_unchecked(self.core.m.ptr(e)) }, nb))
    }

    #[inline(never)]
    fn malloc_slow(&mut self, bytes: usize) -> Result<(NonNull<u8>, usize), MallocError> {
        self.check_broken()?;
        let r = self.raw_malloc(bytes);
        self.done_alloc(r, bytes)
    }

    /// `calloc(1, bytes)`: zeroed memory; never served from the tcache (glibc 2.36).
    pub fn calloc(&mut self, bytes: usize) -> Result<NonNull<u8>, MallocError> {
        self.check_broken()?;
        let r = self.raw_calloc(bytes);
        self.done_alloc(r, bytes).map(|b| b.0)
    }

    /// `memalign(alignment, bytes)`.
    pub fn memalign(&mut self, alignment: usize, bytes: usize) -> Result<NonNull<u8>, MallocError> {
        self.memalign_block(alignment, bytes).map(|b| b.0)
    }

    fn memalign_block(
        &mut self,
        alignment: usize,
        bytes: usize,
    ) -> Result<(NonNull<u8>, usize), MallocError> {
        self.check_broken()?;
        let r = self.raw_memalign(alignment, bytes);
        self.done_alloc(r, bytes)
    }

    /// `free(ptr)`. Live-byte statistics count the block's usable size as its request (C's
    /// `free` has no size; use [`free_sized`](Self::free_sized) when the size is known).
    ///
    /// # Safety
    /// `ptr` is a live block of this arena, or a pointer glibc would diagnose (a double free, a
    /// pointer outside the heap); an arbitrary pointer into the heap can corrupt it, as in C.
    pub unsafe fn free(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        // A misaligned pointer is refused before its "header" is read.
        let req = if misaligned(ptr.as_ptr() as usize) {
            0
        } else {
            self.usable_size(ptr).unwrap_or(0)
        };
        // SAFETY: forwarded.
        unsafe { self.free_counted::<false>(ptr, req) }
    }

    /// `free(ptr)` of a block allocated for `requested` bytes (for the statistics only: the
    /// size its allocation was counted with, or 0; see [`FastStats::free`]).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline]
    pub unsafe fn free_sized(
        &mut self,
        ptr: NonNull<u8>,
        requested: usize,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        unsafe { self.free_counted::<true>(ptr, requested) }
    }

    /// `free(ptr)`, counted as a block of `requested` bytes: exactly what its allocation counted
    /// (or 0) when `EXACT` (plain subtractions), else at most the usable size (saturating,
    /// [`Stats::record_free`]: C's `free` does not know the request).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(always)]
    unsafe fn free_counted<const EXACT: bool>(
        &mut self,
        ptr: NonNull<u8>,
        requested: usize,
    ) -> Result<(), FreeError> {
        let mem = ptr.as_ptr() as usize;
        // The common case first: a heap chunk that `int_free` would put in the tcache (the
        // footprint cannot change then).
        let p = mem2chunk(mem);
        if self.fast.is_some()
            && self.in_heap_block(mem)
            && let Some(size) = self.core.tcache_free_fast(self.fast, p, self.sys.brk_end)
        {
            self.count_free(EXACT, requested, size);
            return Ok(());
        }
        self.free_slow(mem, requested, EXACT)
    }

    /// Counts the free of a live block of `held` bytes: see [`Self::free_counted`].
    #[inline(always)]
    fn count_free(&mut self, exact: bool, requested: usize, held: usize) {
        if exact {
            self.stats.free(requested, held);
        } else {
            self.stats.record_free(requested, held);
        }
    }

    #[inline(never)]
    fn free_slow(&mut self, mem: usize, requested: usize, exact: bool) -> Result<(), FreeError> {
        if let Some(what) = self.broken {
            self.stats.record_bad_free();
            return Err(FreeError::Corrupted { ptr: mem, what });
        }
        let held = if misaligned(mem) { 0 } else { self.held(mem) };
        match self.raw_free(mem) {
            Ok(()) => {
                self.count_free(exact, requested, held);
                self.footprint();
                Ok(())
            }
            Err(e) => {
                if let FreeError::Corrupted { what, .. } = e
                    && !leaves_heap_consistent(what)
                {
                    self.break_with(what);
                }
                self.stats.record_bad_free();
                Err(e)
            }
        }
    }

    /// `realloc(ptr, bytes)`: `Ok(None)` when `bytes == 0` freed the block (glibc 2.36 frees).
    ///
    /// # Safety
    /// As for [`free`](Self::free) when `ptr` is `Some`.
    pub unsafe fn realloc(
        &mut self,
        ptr: Option<NonNull<u8>>,
        bytes: usize,
    ) -> Result<Option<NonNull<u8>>, MallocError> {
        // SAFETY: forwarded.
        unsafe { self.realloc_sized(ptr, 0, bytes) }
    }

    /// `realloc` of a block allocated for `old_requested` bytes (for the statistics only).
    ///
    /// # Safety
    /// As for [`free`](Self::free) when `ptr` is `Some`.
    pub unsafe fn realloc_sized(
        &mut self,
        ptr: Option<NonNull<u8>>,
        old_requested: usize,
        bytes: usize,
    ) -> Result<Option<NonNull<u8>>, MallocError> {
        self.check_broken()?;
        let Some(ptr) = ptr else {
            return self.malloc(bytes).map(Some);
        };
        if bytes == 0 {
            // SAFETY: forwarded.
            return match unsafe { self.free_sized(ptr, old_requested) } {
                Ok(()) => Ok(None),
                Err(FreeError::Corrupted { what, .. }) => Err(MallocError::Corrupted(what)),
                Err(e) => Err(MallocError::Foreign(e.ptr())),
            };
        }
        let mem = ptr.as_ptr() as usize;
        let old_held = self.held(mem);
        match self.raw_realloc(mem, bytes) {
            Ok(newmem) => {
                let held = self.held(newmem);
                self.stats
                    .record_resize(old_requested, old_held, bytes, held, newmem == mem);
                self.footprint();
                Ok(Some(self.to_ptr(newmem)))
            }
            Err(e) => {
                // Out of memory is a request the heap could not serve; anything else refused
                // the block itself, as a bad free would.
                if e == MallocError::OutOfMemory {
                    self.stats.record_failure();
                } else {
                    self.stats.record_bad_free();
                }
                Err(e)
            }
        }
    }

    /// Every tcache bin's count and the fastbin and bin lists, for the simulator: see
    /// [`FreeSpaceManager::inspect`].
    fn lists(&self, out: &mut dyn Inspector) {
        let c = &self.core;
        let tc = self.tc();
        if tc.is_some() {
            for i in 0..TCACHE_MAX_BINS {
                // SAFETY: the live tcache struct and its cached chunks.
                unsafe {
                    if tcache::count(&tc, i) == 0 {
                        continue;
                    }
                    out.begin_list(format_args!("tcache[{i}] ({} B)", 32 + 16 * i));
                    let mut e = tcache::entry(&tc, i);
                    let mut n = 0;
                    while e != 0 && n < 65536 {
                        // Entries are shown where `inspect` shows the chunk: at its size word.
                        out.list_entry(mem2chunk(e) + SIZE_SZ, 32 + 16 * i);
                        e = c.m.rd(e);
                        n += 1;
                    }
                    out.end_list();
                }
            }
        }
        for i in 0..NFASTBINS {
            let mut p = c.st.fastbins[i];
            if p == 0 {
                continue;
            }
            out.begin_list(format_args!("fastbin[{i}] ({} B)", 32 + 16 * i));
            let mut n = 0;
            while p != 0 && n < 1 << 20 {
                out.list_entry(p + SIZE_SZ, c.csize(p));
                // SAFETY: a fastbin chunk's fd word.
                p = unsafe { c.m.rd(p + 16) };
                n += 1;
            }
            out.end_list();
        }
        for i in 1..NBINS - 1 {
            if c.fd(i) == i {
                continue;
            }
            if i == UNSORTED {
                out.begin_list(format_args!("unsorted"));
            } else if i < NSMALLBINS {
                out.begin_list(format_args!("smallbin[{i}] ({} B)", i * 16));
            } else {
                out.begin_list(format_args!(
                    "largebin[{i}] ({}..{} B)",
                    bin_min_size(i),
                    bin_min_size(i + 1).wrapping_sub(1)
                ));
            }
            let mut p = c.fd(i);
            let mut n = 0;
            while p != i && n < 1 << 20 {
                out.list_entry(p + SIZE_SZ, c.csize(p));
                p = c.fd(p);
                n += 1;
            }
            out.end_list();
        }
    }
}

impl<S: MemorySource, M: MemorySource> FreeSpaceManager for Arena<S, M> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() <= MALLOC_ALIGNMENT
            && let Some((p, nb)) = self.tcache_take(layout.size())
        {
            return Ok(NonNull::slice_from_raw_parts(p, nb - SIZE_SZ));
        }
        self.allocate_slow(layout)
    }

    /// glibc's `calloc` (never from the tcache, as in 2.36) for alignments up to 16; above,
    /// `memalign` and zeroing (C has no aligned calloc).
    fn allocate_zeroed(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > MALLOC_ALIGNMENT {
            let block = self.allocate(layout)?;
            // SAFETY: the block is ours, live, and at least `layout.size()` bytes long.
            unsafe { block.cast::<u8>().as_ptr().write_bytes(0, layout.size()) };
            return Ok(block);
        }
        let r = self.check_broken().and_then(|()| {
            let r = self.raw_calloc(layout.size());
            self.done_alloc(r, layout.size())
        });
        self.block(r, layout)
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.free_sized(ptr, layout.size()) }
    }

    fn placement(&self, ptr: NonNull<u8>) -> Placement {
        Arena::placement(self, ptr)
    }

    /// glibc has no in-place resize apart from `realloc` (which `grow` and `shrink` model); this
    /// only checks the block, as the trait asks, so that the allocate-copy-free fallback of
    /// over-aligned resizes never reads from a pointer that is not ours.
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        _old: Layout,
        _new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match self.usable_size(ptr) {
            Some(_) => Err(AllocError::NotInPlace),
            None => {
                self.stats.record_bad_free();
                Err(AllocError::InvalidBlock(FreeError::Foreign {
                    ptr: ptr.as_ptr() as usize,
                }))
            }
        }
    }

    unsafe fn grow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.resize(ptr, old, new) }
    }

    unsafe fn shrink(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.resize(ptr, old, new) }
    }

    fn stats(&self) -> Stats {
        self.stats.get()
    }

    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }

    /// The walk of the `invariants` module: the chunk chain from the heap's start to the top, the
    /// tcache, fastbins, unsorted, small and large bins and the binmap against it, and the
    /// mapped chunks.
    fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
        check_main(&self.core, &self.sys, self.tc)?;
        let fast = if self.broken.is_none() { self.tc.at } else { 0 };
        allocator_traits::Corruption::ensure(
            self.fast.at == fast,
            "arena",
            self.fast.at,
            "the fast paths' tcache is not the tcache of an arena whose checks passed",
        )?;
        self.stats.check_headroom()
    }

    fn inspect(&self, out: &mut dyn Inspector) {
        let c = &self.core;
        if c.st.base != 0 {
            out.region(c.st.base, self.sys.brk_end - c.st.base);
            let mut cached = std::collections::HashSet::new();
            let tc = self.tc();
            if tc.is_some() {
                for i in 0..TCACHE_MAX_BINS {
                    // SAFETY: the live tcache struct and its cached chunks.
                    let mut e = unsafe { tcache::entry(&tc, i) };
                    while e != 0 && cached.insert(mem2chunk(e)) {
                        // SAFETY: as above.
                        e = unsafe { c.m.rd(e) };
                    }
                }
            }
            for i in 0..NFASTBINS {
                let mut p = c.st.fastbins[i];
                while p != 0 && cached.insert(p) {
                    // SAFETY: a fastbin chunk's fd word.
                    p = unsafe { c.m.rd(p + 16) };
                }
            }
            // A chunk is shown from its size word to the next chunk's size word: its
            // `prev_size` word belongs to the previous chunk's user data while that chunk is in
            // use, and the last word of its own user data is the next chunk's `prev_size`.
            let first = align_up(c.st.base, MALLOC_ALIGNMENT);
            out.block(c.st.base, first + SIZE_SZ - c.st.base, BlockKind::Padding);
            let mut p = first;
            while p < c.st.top {
                let size = c.csize(p);
                if size == 0 || p + size > c.st.top {
                    break;
                }
                let kind = if tc.is_some() && p == mem2chunk(tc.at) {
                    BlockKind::Metadata
                } else if cached.contains(&p) {
                    BlockKind::Cached
                // SAFETY: `p + size` is a chunk header at or below top.
                } else if unsafe { inuse_bit_at_offset(&c.m, p, size) } {
                    BlockKind::Live { requested: 0 }
                } else {
                    BlockKind::Free
                };
                out.block(p + SIZE_SZ, size, kind);
                p += size;
            }
            let top_end = c.st.top + c.top_size();
            out.block(c.st.top + SIZE_SZ, c.top_size() - SIZE_SZ, BlockKind::Top);
            if self.sys.brk_end > top_end {
                out.block(top_end, self.sys.brk_end - top_end, BlockKind::Padding);
            }
        } else {
            // No memory yet (the heap grows on the first allocation): an empty region.
            out.region(0, 0);
        }
        for m in self.sys.maps.iter() {
            out.region(m.addr, m.len);
            out.block(m.addr, m.len, BlockKind::Live { requested: 0 });
        }
        self.lists(out);
        // Chunk addresses as the blocks above show them: from the size word (glibc's chunk
        // pointer + 8), so a list entry, the top and the blocks name one chunk by one address.
        let shown = |p: usize| if p == 0 { 0 } else { p + SIZE_SZ };
        out.value(format_args!("top"), shown(c.st.top));
        out.value(format_args!("top_size"), c.top_size());
        out.value(format_args!("last_remainder"), shown(c.st.last_remainder));
        out.value(format_args!("system_mem"), c.st.system_mem);
        out.value(format_args!("mmap_threshold"), c.mp.mmap_threshold);
        out.value(format_args!("trim_threshold"), c.mp.trim_threshold);
        out.value(format_args!("n_mmaps"), c.mp.n_mmaps);
        out.value(
            format_args!("have_fastchunks"),
            c.st.have_fastchunks as usize,
        );
    }

    fn detects(&self) -> Detects {
        Detects {
            foreign: true,
            double_free: true,
            double_free_above: 0,
            layout_mismatch: false,
        }
    }
}

impl<S: MemorySource, M: MemorySource> Arena<S, M> {
    /// `allocate` past the tcache: `malloc`'s full path, or `memalign`.
    #[inline(never)]
    fn allocate_slow(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let r = if layout.align() <= MALLOC_ALIGNMENT {
            self.malloc_slow(layout.size())
        } else {
            self.memalign_block(layout.align(), layout.size())
        };
        self.block(r, layout)
    }

    /// The allocator interface's answer for a C-level allocation made for `layout`.
    fn block(
        &self,
        r: Result<(NonNull<u8>, usize), MallocError>,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match r {
            Ok((p, usable)) => Ok(NonNull::slice_from_raw_parts(p, usable)),
            Err(MallocError::Corrupted(what)) => {
                Err(AllocError::InvalidBlock(FreeError::Corrupted {
                    ptr: 0,
                    what,
                }))
            }
            Err(_) => Err(AllocError::out_of_memory(layout)),
        }
    }

    /// `realloc` through the allocator interface: glibc's realloc (of any chunk, memaligned ones
    /// too) where the new alignment is at most 16, allocate-copy-free otherwise. A new size of
    /// 0 is a resize to the smallest block, not C's `realloc(p, 0)` (which frees).
    unsafe fn resize(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 || new.align() > MALLOC_ALIGNMENT {
            // SAFETY: forwarded caller contract.
            return unsafe { allocator_traits::resize_by_moving(self, ptr, old, new) };
        }
        // SAFETY: forwarded caller contract.
        match unsafe { self.realloc_sized(Some(ptr), old.size(), new.size()) } {
            Ok(Some(p)) => {
                let usable = self.usable_size(p).unwrap_or(new.size());
                Ok(NonNull::slice_from_raw_parts(p, usable))
            }
            Ok(None) => Err(AllocError::out_of_memory(new)),
            Err(MallocError::Corrupted(what)) => {
                Err(AllocError::InvalidBlock(FreeError::Corrupted {
                    ptr: ptr.as_ptr() as usize,
                    what,
                }))
            }
            Err(MallocError::Foreign(p)) => {
                Err(AllocError::InvalidBlock(FreeError::Foreign { ptr: p }))
            }
            Err(MallocError::OutOfMemory) => Err(AllocError::out_of_memory(new)),
        }
    }
}
