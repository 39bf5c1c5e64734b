//! Growth: the main heap as one contiguous brk-like region (`sysmalloc`, `systrim`), and chunks
//! of at least the mmap threshold in mappings of their own.
//!
//! ```text
//!  main source (brk-like, contiguous)                         map source (one grant per chunk)
//!  base                                     break             [prev_size=0|size|IS_MMAPPED]...
//!  |0x290 tcache|chunks ...|   top chunk    |                  [ ...                        ]
//!                 sysmalloc: break += ALIGN_UP(nb + top_pad + MINSIZE - topsize, page)
//!                 systrim:   break -= ALIGN_DOWN(topsize - MINSIZE - 1 - top_pad, page)
//! ```
//!
//! glibc's `MORECORE` is `sbrk`; here it is the main [`MemorySource`], which must be contiguous
//! (a grant that does not start at the current break is given back and counts as a failure).
//! glibc's fallback of using `mmap` as `MORECORE` when `sbrk` fails is not modelled: the heap
//! reports out of memory instead.

use core::ptr::NonNull;

use allocator_traits::{MemorySource, SourceError};

use crate::arena::{Core, Fail, Grow, R};
use crate::checks::*;
use crate::chunk::*;
use crate::mapped::{Mapping, Mappings};
use crate::tcache::Tc;

/// The memory behind the main arena: the brk-like source and the mapped chunks.
pub(crate) struct Sys<S, M: MemorySource> {
    pub main: S,
    pub maps: Mappings<M>,
    /// The current "program break": the end of the main source's grants (0 = none yet).
    pub brk_end: usize,
}

impl<S: MemorySource, M: MemorySource> Sys<S, M> {
    pub const fn new(main: S, maps: M) -> Self {
        Sys {
            main,
            maps: Mappings::new(maps),
            brk_end: 0,
        }
    }

    /// `MORECORE(size)` for `size > 0`: the start of the new bytes and how many were granted.
    fn morecore(&mut self, core: &mut Core, size: usize) -> Option<(usize, usize)> {
        let g = self.main.acquire(size, 1).ok()?;
        let ptr = g.cast::<u8>().as_ptr();
        let addr = ptr as usize;
        if self.brk_end != 0 && addr != self.brk_end {
            // Not contiguous: give it back, as if sbrk had failed.
            // SAFETY: just granted, unused.
            let _ = unsafe { self.main.release(g.cast(), g.len()) };
            return None;
        }
        if !core.m.is_set() {
            core.m = Mem::new(ptr);
        }
        self.brk_end = addr + g.len();
        Some((addr, g.len()))
    }

    /// The mmap branch of `sysmalloc`; `None` if the mapping failed.
    fn try_mmap(&mut self, core: &mut Core, nb: usize) -> Option<usize> {
        let size = align_up(nb + SIZE_SZ, PAGE);
        if size <= nb {
            return None;
        }
        let mp = self.maps.map(size)?;
        let mm = Mem::new(mp.ptr);
        let p = mp.addr;
        // SAFETY: the mapping is at least `size >= 2 words` long and ours.
        unsafe {
            set_prev_size(&mm, p, 0);
            set_head(&mm, p, mp.len | IS_MMAPPED);
        }
        core.mp.n_mmaps += 1;
        core.mp.max_n_mmaps = core.mp.max_n_mmaps.max(core.mp.n_mmaps);
        core.mp.mmapped_mem += mp.len;
        core.mp.max_mmapped_mem = core.mp.max_mmapped_mem.max(core.mp.mmapped_mem);
        Some(chunk2mem(p))
    }

    /// `munmap_chunk(p)` for the mapping at index `i`, which contains `p`.
    pub fn munmap_chunk(&mut self, core: &mut Core, p: usize, i: usize, mp: Mapping) -> R<()> {
        let mm = Mem::new(mp.ptr);
        if p < mp.addr || p - mp.addr + CHUNK_HDR_SZ > mp.len || misaligned(p) {
            return Err(MUNMAP_INVALID.into());
        }
        // SAFETY: `p`'s header is inside the mapping (checked).
        let (ps, size) = unsafe { (prev_size(&mm, p), chunksize(&mm, p)) };
        let block = p.wrapping_sub(ps);
        let total = ps.wrapping_add(size);
        let mem = chunk2mem(p);
        let off = mem & (PAGE - 1);
        if (block | total) & (PAGE - 1) != 0 || off & off.wrapping_sub(1) != 0 {
            return Err(MUNMAP_INVALID.into());
        }
        if block != mp.addr || total != mp.len {
            return Err(MUNMAP_INVALID.into());
        }
        core.mp.n_mmaps -= 1;
        core.mp.mmapped_mem -= total;
        let _ = self.maps.unmap(i);
        Ok(())
    }
}

impl<S: MemorySource, M: MemorySource> Grow for Sys<S, M> {
    fn sysmalloc(&mut self, core: &mut Core, tc: Tc, nb: usize) -> R<usize> {
        if nb >= core.mp.mmap_threshold
            && core.mp.n_mmaps < core.mp.n_mmaps_max
            && let Some(mem) = self.try_mmap(core, nb)
        {
            return Ok(mem);
        }
        let old_top = core.st.top;
        let mut old_size = core.top_size();
        let old_end = old_top + old_size;
        // The main arena is contiguous: only ask for what the top lacks.
        let mut size = (nb + core.mp.top_pad + MINSIZE).saturating_sub(old_size);
        size = align_up(size, PAGE);
        if size == 0 {
            return Err(Fail::Oom);
        }
        if let Some((brk, got)) = self.morecore(core, size) {
            let size = got;
            if core.st.base == 0 {
                core.st.base = brk;
            }
            core.st.system_mem += size;
            if old_top != 0 && brk == old_end {
                // SAFETY: the top chunk is ours.
                unsafe { set_head(&core.m, old_top, (size + old_size) | PREV_INUSE) };
            } else if old_size != 0 && brk < old_end {
                return Err(BREAK_ADJUSTED.into());
            } else {
                // First growth (or someone else moved the break): align the start, then ask
                // for enough to end on a page boundary.
                if old_size != 0 {
                    core.st.system_mem += brk - old_end;
                }
                let front_misalign = chunk2mem(brk) & MALLOC_ALIGN_MASK;
                let mut correction = 0;
                let mut aligned_brk = brk;
                if front_misalign > 0 {
                    correction = MALLOC_ALIGNMENT - front_misalign;
                    aligned_brk += correction;
                }
                correction += old_size;
                let end_misalign = brk + size + correction;
                correction += align_up(end_misalign, PAGE) - end_misalign;
                let mut got2 = 0;
                if correction > 0
                    && let Some((_, g2)) = self.morecore(core, correction)
                {
                    got2 = g2;
                }
                core.st.top = aligned_brk;
                // SAFETY: `aligned_brk .. brk_end` is ours.
                unsafe {
                    set_head(
                        &core.m,
                        aligned_brk,
                        (self.brk_end - aligned_brk) | PREV_INUSE,
                    )
                };
                core.st.system_mem += got2;
                if old_size != 0 {
                    // Fence off the old top with two tiny in-use chunks and free the rest.
                    old_size = (old_size - 2 * CHUNK_HDR_SZ) & !MALLOC_ALIGN_MASK;
                    // SAFETY: the old top is ours.
                    unsafe {
                        set_head(&core.m, old_top, old_size | PREV_INUSE);
                        set_head(&core.m, old_top + old_size, CHUNK_HDR_SZ | PREV_INUSE);
                        set_head(
                            &core.m,
                            old_top + old_size + CHUNK_HDR_SZ,
                            CHUNK_HDR_SZ | PREV_INUSE,
                        );
                    }
                    if old_size >= MINSIZE {
                        // SAFETY: the old top is ours; clear its key word (see `Core::int_malloc`).
                        unsafe { core.m.wr(old_top + 24, 0) };
                        core.int_free(self, tc, old_top, true)?;
                    }
                }
            }
        }
        core.st.max_system_mem = core.st.max_system_mem.max(core.st.system_mem);
        if core.top_size() >= nb + MINSIZE {
            return Ok(core.split_top(nb));
        }
        Err(Fail::Oom)
    }

    fn mapped_mem(&self, a: usize) -> Option<Mem> {
        self.maps.find(a).map(|(_, m)| Mem::new(m.ptr))
    }

    fn set_mapped_lead(&mut self, a: usize, lead: usize) {
        self.maps.set_lead(a, lead)
    }

    fn trim(&mut self, core: &mut Core, pad: usize) -> R<()> {
        if core.top_size() < core.mp.trim_threshold {
            return Ok(());
        }
        // systrim(pad, av). glibc computes `top_area` as a long and compares it with the
        // size_t `pad`, so the comparison and the subtraction below are unsigned: with a top of
        // exactly MINSIZE (top_area = -1) it goes on, `extra` wraps to minus a few pages, and
        // `sbrk(-extra)` *grows* the heap (reachable with trim_threshold <= 32). Kept as is.
        let top = core.st.top;
        let top_size = core.top_size();
        let top_area = top_size.wrapping_sub(MINSIZE + 1);
        if top_area <= pad {
            return Ok(());
        }
        let extra = align_down(top_area.wrapping_sub(pad), PAGE) as isize;
        if extra == 0 {
            return Ok(());
        }
        if self.brk_end != top + top_size {
            return Ok(());
        }
        if extra < 0 {
            if let Some((_, got)) = self.morecore(core, extra.unsigned_abs()) {
                core.st.system_mem += got;
                core.st.max_system_mem = core.st.max_system_mem.max(core.st.system_mem);
                // SAFETY: the top chunk now reaches the new break.
                unsafe { set_head(&core.m, top, (top_size + got) | PREV_INUSE) };
            }
            return Ok(());
        }
        let extra = extra as usize;
        let at = self.brk_end - extra;
        let Some(ptr) = NonNull::new(core.m.ptr(at)) else {
            return Ok(());
        };
        // SAFETY: `at .. brk_end` is the unused tail of the top chunk, granted by `main`.
        if unsafe { self.main.release(ptr, extra) }.is_ok() {
            self.brk_end = at;
            core.st.system_mem -= extra;
            // SAFETY: the top chunk is ours.
            unsafe { set_head(&core.m, top, (top_size - extra) | PREV_INUSE) };
        }
        Ok(())
    }
}

/// A map source that never maps: every request of at least the mmap threshold is served from
/// the main heap instead (as glibc does when `mmap` fails). For heaps confined to one region.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMmap;

// SAFETY: grants nothing.
unsafe impl MemorySource for NoMmap {
    fn acquire(&mut self, size: usize, _align: usize) -> Result<NonNull<[u8]>, SourceError> {
        Err(SourceError::Exhausted {
            requested: size,
            available: 0,
        })
    }
    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        Err(SourceError::InvalidRelease {
            ptr: ptr.as_ptr() as usize,
            size,
        })
    }
    fn granularity(&self) -> usize {
        PAGE
    }
    fn is_contiguous(&self) -> bool {
        false
    }
    fn footprint(&self) -> usize {
        0
    }
}

/// Page-granular grants taken from Rust's global allocator, each released on its own: mapped
/// chunks for tests and Miri, where real `mmap` is not available.
#[derive(Debug, Default)]
pub struct SystemPages {
    footprint: usize,
}

impl SystemPages {
    /// A source with nothing granted.
    pub const fn new() -> Self {
        SystemPages { footprint: 0 }
    }
}

// SAFETY: every grant is a fresh allocation of the global allocator (disjoint, aligned as asked
// and at least to a page), valid until released with the same length.
unsafe impl MemorySource for SystemPages {
    fn acquire(&mut self, size: usize, align: usize) -> Result<NonNull<[u8]>, SourceError> {
        let bad = SourceError::InvalidRequest { size, align };
        if !align.is_power_of_two() {
            return Err(bad);
        }
        let len = align_up(size.max(1), PAGE);
        if len < size {
            return Err(bad);
        }
        let layout = std::alloc::Layout::from_size_align(len, align.max(PAGE)).map_err(|_| bad)?;
        // SAFETY: non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        let p = NonNull::new(p).ok_or(SourceError::Exhausted {
            requested: len,
            available: 0,
        })?;
        self.footprint += len;
        Ok(NonNull::slice_from_raw_parts(p, len))
    }
    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        let len = align_up(size.max(1), PAGE);
        let layout = std::alloc::Layout::from_size_align(len, PAGE).map_err(|_| {
            SourceError::InvalidRelease {
                ptr: ptr.as_ptr() as usize,
                size,
            }
        })?;
        // SAFETY: the caller returns a grant of ours with its length; grants are allocated with
        // at least page alignment and the heap asks for page alignment only.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        self.footprint -= len;
        Ok(())
    }
    fn granularity(&self) -> usize {
        PAGE
    }
    fn is_contiguous(&self) -> bool {
        false
    }
    fn footprint(&self) -> usize {
        self.footprint
    }
}
