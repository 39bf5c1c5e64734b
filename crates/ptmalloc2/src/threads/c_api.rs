//! `Ptmalloc` as C's allocation API ([`MallocApi`]): glibc's `free`, `realloc` and
//! `malloc_usable_size` need no size, because every chunk carries its own in its header.
//!
//! ```text
//!   user pointer mem ─> chunk p = mem - 16:  [prev_size][size | A M P][mem: user bytes ...]
//!   heap chunk:   usable = chunksize - 8 (the next chunk's prev_size word is the user's too)
//!                 if the next chunk's P bit says it is in use, else 0 (glibc's musable)
//!   mapped chunk: usable = chunksize - 16
//! ```
//!
//! What a bad pointer does is what glibc 2.36 does (the front's checks are glibc's): a pointer
//! outside the heaps that is no mapped chunk aborts ("free(): invalid pointer"); a double free
//! of a chunk in the thread's tcache aborts ("free(): double free detected in tcache 2"); in a
//! heap, a pointer whose size word is not a chunk size aborts ("free(): invalid size"), and the
//! other frees of a free chunk abort where glibc's checks catch them (fasttop, !prev, ...). An
//! interior pointer whose preceding word happens to read as a plausible size is taken for a
//! chunk, as glibc takes it: docs/preload.md says so.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use allocator_traits::MallocApi;

use super::arena_table::{Heaps, MAX_ARENAS, fatal};
use super::front::Ptmalloc;
use crate::checks::{FREE_INVALID_SIZE, REALLOC_POINTER};
use crate::chunk::*;

/// `malloc_usable_size` of a pointer that is no chunk (glibc reads whatever is there).
const USABLE_INVALID_POINTER: &str = "malloc_usable_size(): invalid pointer";

impl Ptmalloc {
    /// `malloc_usable_size(mem)`: the bytes of the chunk at `mem` the caller may use (glibc's
    /// `musable`: 0 for a heap chunk that is free). Aborts naming `mem` when it is no chunk the
    /// front can see (outside the heaps and no mapped chunk, or a size word that is no size).
    pub fn usable_size(&self, mem: *mut u8) -> usize {
        let mem = mem as usize;
        let p = mem2chunk(mem);
        let Some(g) = self.get() else {
            fatal(mem, USABLE_INVALID_POINTER)
        };
        if !g.in_heaps(p) {
            return self.mapped_usable(mem);
        }
        if misaligned(p) {
            fatal(mem, USABLE_INVALID_POINTER);
        }
        // SAFETY: `p` is inside the heaps, 16-aligned; its size word is committed memory of a
        // chunk (or of the caller's block, for a bad pointer into a heap).
        let (size, mapped) = unsafe { (chunksize(&g.m, p), is_mmapped(&g.m, p)) };
        if size < MINSIZE || size & MALLOC_ALIGN_MASK != 0 || mapped || !g.in_heaps(p + size) {
            fatal(mem, FREE_INVALID_SIZE);
        }
        // SAFETY: the next chunk's header is at `p + size`, inside the heaps (checked).
        if unsafe { inuse_bit_at_offset(&g.m, p, size) } {
            size - SIZE_SZ
        } else {
            0
        }
    }

    /// [`usable_size`](Self::usable_size) of a pointer outside the heaps: a mapped chunk of
    /// some arena, or an abort naming it.
    fn mapped_usable(&self, mem: usize) -> usize {
        let p = mem2chunk(mem);
        let Some(g) = self.get() else {
            fatal(mem, USABLE_INVALID_POINTER)
        };
        let n = g.narenas.load(Ordering::Acquire).min(MAX_ARENAS);
        for i in 0..n {
            let mut cell = g.arenas[i].lock();
            let Some(maps) = cell.heaps.maps() else {
                continue;
            };
            let Some((_, mp)) = maps.find(p) else {
                continue;
            };
            if p - mp.addr != mp.lead || mp.len - mp.lead < MINSIZE {
                break;
            }
            let mm = Mem::new(mp.ptr);
            // SAFETY: the chunk's header is inside its mapping (`p = addr + lead`).
            return unsafe { chunksize(&mm, p) } - CHUNK_HDR_SZ;
        }
        fatal(mem, USABLE_INVALID_POINTER)
    }

    /// The front's gauges: arenas, and the bytes they hold from the system.
    fn arena_gauges(&self) -> Vec<(&'static str, usize)> {
        let Some(g) = self.get() else {
            return Vec::new();
        };
        let n = g.narenas.load(Ordering::Acquire).min(MAX_ARENAS);
        let (mut system, mut mapped) = (0, 0);
        for i in 0..n {
            let cell = g.arenas[i].lock();
            if !matches!(cell.heaps, Heaps::None) {
                system += cell.core.st.system_mem;
                mapped += cell.core.mp.mmapped_mem;
            }
        }
        vec![
            ("arenas", n),
            ("heap bytes (system_mem)", system),
            ("mapped bytes", mapped),
        ]
    }
}

// SAFETY: the front's malloc gives chunks aligned as asked, of at least the size asked, distinct
// while live (glibc's algorithm over per-arena locks and per-thread tcaches); free, realloc and
// usable_size read the chunk's own header and abort on the bad pointers the module docs list.
unsafe impl MallocApi for Ptmalloc {
    fn malloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        Ptmalloc::malloc(self, size, align, zeroed)
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        Ptmalloc::free(self, ptr.as_ptr())
    }

    unsafe fn realloc(&self, ptr: NonNull<u8>, size: usize) -> *mut u8 {
        // glibc's realloc keeps no alignment beyond malloc's, and copies what the old chunk
        // holds: its usable size stands for the size it was asked with.
        let usable = self.usable_size(ptr.as_ptr());
        if usable == 0 {
            // A heap chunk its neighbour says is free: glibc would resize it anyway.
            fatal(ptr.as_ptr() as usize, REALLOC_POINTER);
        }
        match Layout::from_size_align(usable, MALLOC_ALIGNMENT) {
            Ok(old) => Ptmalloc::realloc(self, ptr.as_ptr(), old, size),
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        Ptmalloc::usable_size(self, ptr.as_ptr())
    }

    fn gauges(&self) -> Vec<(&'static str, usize)> {
        self.arena_gauges()
    }

    fn prepare_fork(&self) {
        self.fork_lock();
    }

    fn after_fork_parent(&self) {
        // SAFETY: the preload library calls this after `prepare_fork`, on the forking thread.
        unsafe { self.fork_parent() }
    }

    fn after_fork_child(&self) {
        // SAFETY: as above, in the child, where the forking thread is the only one.
        unsafe { self.fork_child() }
    }
}
