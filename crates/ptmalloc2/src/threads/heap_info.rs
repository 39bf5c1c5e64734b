//! Thread heaps: glibc's `heap_info` and the arena.c functions that grow, chain and trim them.
//!
//! ```text
//!  heap h (64 MiB aligned: heap_for_ptr(p) = p & ~(64 MiB - 1)):
//!  [heap_info 48 B: ar_ptr prev size mprotect_size pagesize][malloc_state 2200 B][chunks .. top]
//!  later heaps of the arena:  [heap_info 48 B][chunks ... top]    prev -> the heap before
//!  a full heap ends in fenceposts: [.. | 16 B in use | 0 B]  and its old top is freed
//! ```
//!
//! `size` bytes of a heap are usable and `mprotect_size` bytes are committed
//! (`size <= mprotect_size <= 64 MiB`); an arena's `system_mem` is the sum of its heaps' `size`.

use core::sync::atomic::{AtomicUsize, Ordering};

use allocator_traits::{Corruption, OsPages};

use super::reservation::{THREAD_HEAPS, commit, decommit};
use crate::arena::{Core, Fail, Grow, R};
use crate::chunk::*;
use crate::invariants::Segment;
use crate::mapped::Mappings;
use crate::tcache::Tc;
use crate::tunables::HEAP_MAX_SIZE;

/// `HEAP_MIN_SIZE`.
pub(super) const HEAP_MIN_SIZE: usize = 32 * 1024;
/// `sizeof(heap_info)` in glibc 2.36.
pub(super) const HEAP_INFO_SIZE: usize = 48;

/// The first chunk of an arena whose first heap is `h`: after `heap_info` and `malloc_state`,
/// where the user pointer is 16-aligned.
pub(super) fn first_chunk(h: usize) -> usize {
    let top = h + HEAP_INFO_SIZE + MALLOC_STATE_SIZE;
    align_up(chunk2mem(top), MALLOC_ALIGNMENT) - CHUNK_HDR_SZ
}

/// `sizeof(struct malloc_state)` in glibc 2.36 on x86-64.
pub(super) const MALLOC_STATE_SIZE: usize = 2200;

/// A thread arena's heaps and its mapped chunks: `cur` is the heap holding the top chunk, and
/// each heap's `heap_info.prev` the one before it (0 for the arena's first heap).
pub(super) struct ThreadHeaps {
    pub(super) m: Mem,
    pub(super) zone: usize,
    pub(super) next_heap: *const AtomicUsize,
    /// The heap holding the top chunk.
    pub(super) cur: usize,
    pub(super) maps: Mappings<OsPages>,
}

// heap_info fields.
pub(super) const HI_AR: usize = 0;
pub(super) const HI_PREV: usize = 8;
pub(super) const HI_SIZE: usize = 16;
pub(super) const HI_MPROTECT: usize = 24;
pub(super) const HI_PAGESIZE: usize = 32;

impl ThreadHeaps {
    pub(super) fn hi(&self, h: usize, f: usize) -> usize {
        // SAFETY: `h` is one of our heaps; its header is committed.
        unsafe { self.m.rd(h + f) }
    }
    pub(super) fn set_hi(&self, h: usize, f: usize, v: usize) {
        // SAFETY: as above.
        unsafe { self.m.wr(h + f, v) }
    }

    /// The heaps of arena `arena`, oldest first, as segments for the invariant walk, and the
    /// bytes they make usable (the arena's `system_mem`): each `heap_info` names the arena,
    /// `size <= mprotect_size <= 64 MiB`, and the chain of `prev` links ends at the arena's
    /// first heap, whose chunks start after the `malloc_state`.
    pub(super) fn segments(&self, arena: usize) -> Result<(Vec<Segment>, usize), Corruption> {
        const S: &str = "heap_info";
        let mut heaps = Vec::new();
        let mut h = self.cur;
        while h != 0 {
            let in_zone = h >= self.zone && h < self.zone + THREAD_HEAPS * HEAP_MAX_SIZE;
            Corruption::ensure(
                in_zone && h.is_multiple_of(HEAP_MAX_SIZE) && heaps.len() < THREAD_HEAPS,
                S,
                h,
                "prev is not a thread heap of this allocator",
            )?;
            let (size, mprotect) = (self.hi(h, HI_SIZE), self.hi(h, HI_MPROTECT));
            Corruption::ensure(
                self.hi(h, HI_AR) == arena,
                S,
                h,
                "ar_ptr names another arena",
            )?;
            Corruption::ensure(
                size <= mprotect && mprotect <= HEAP_MAX_SIZE,
                S,
                h,
                "size, mprotect_size and the 64 MiB limit out of order",
            )?;
            Corruption::ensure(
                self.hi(h, HI_PAGESIZE) == PAGE,
                S,
                h,
                "pagesize is not the page",
            )?;
            heaps.push((h, size));
            h = self.hi(h, HI_PREV);
        }
        heaps.reverse();
        let mut system_mem = 0;
        let segments = heaps
            .iter()
            .enumerate()
            .map(|(k, &(h, size))| {
                system_mem += size;
                let first = if k == 0 {
                    first_chunk(h)
                } else {
                    h + HEAP_INFO_SIZE
                };
                Segment {
                    first,
                    end: h + size,
                }
            })
            .collect();
        Ok((segments, system_mem))
    }

    /// `new_heap(size, top_pad)`: a fresh 64 MiB-aligned heap with `size` bytes usable.
    pub(super) fn new_heap(&mut self, size: usize, top_pad: usize) -> Option<usize> {
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
    pub(super) fn grow_heap(&mut self, h: usize, diff: usize) -> bool {
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
