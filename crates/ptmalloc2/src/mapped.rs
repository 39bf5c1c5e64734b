//! Mapped chunks: requests of at least the mmap threshold get a mapping of their own, recorded
//! in a table sorted by address; the chunks freed since are remembered so that a second free of
//! one is reported as a double free (glibc would `munmap` memory that is gone).
//!
//! ```text
//!  mapping:  addr                addr+lead                                   addr+len
//!            [ lead (memalign) ][ prev_size=lead | size=len-lead | M | user ... ]
//!  live:     [Mapping{addr, ptr, len, lead}] ...  sorted by addr, disjoint
//!  freed:    [user pointer] ...                   sorted; an entry goes when a new mapping
//!                                                 covers its address (it may be live again)
//! ```
//!
//! Both tables live in memory from the map source itself, so the heap never needs the global
//! allocator (it may be one).

use core::ptr::NonNull;

use allocator_traits::{MemorySource, SourceError};

use crate::chunk::{PAGE, chunk2mem};

/// One mapped chunk's grant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mapping {
    /// Address of the first byte.
    pub addr: usize,
    /// The grant's pointer (its provenance reaches the whole grant).
    pub ptr: *mut u8,
    /// Length in bytes.
    pub len: usize,
    /// Where the chunk starts in the mapping: its `prev_size` (0, or the lead `memalign` cut
    /// off): the chunk's header is at `addr + lead`, and `lead + chunksize == len`.
    pub lead: usize,
}

/// A sorted array of `T` in a grant of a map source (`len <= cap`; `bytes` is the grant's
/// length, 0 while there is none).
struct Table<T> {
    at: *mut T,
    cap: usize,
    bytes: usize,
    len: usize,
}

impl<T: Copy> Table<T> {
    const fn new() -> Self {
        Table {
            at: core::ptr::null_mut(),
            cap: 0,
            bytes: 0,
            len: 0,
        }
    }

    fn entries(&self) -> &[T] {
        if self.at.is_null() {
            &[]
        } else {
            // SAFETY: `at` holds `len` initialised entries.
            unsafe { core::slice::from_raw_parts(self.at, self.len) }
        }
    }

    /// Puts `v` at index `i` (`i <= len`); `false` if the table cannot grow.
    fn insert<M: MemorySource>(&mut self, src: &mut M, i: usize, v: T) -> bool {
        if self.len == self.cap && !self.grow(src) {
            return false;
        }
        // SAFETY: room for one more entry; the shift stays inside the table.
        unsafe {
            core::ptr::copy(self.at.add(i), self.at.add(i + 1), self.len - i);
            self.at.add(i).write(v);
        }
        self.len += 1;
        true
    }

    /// Removes the entry at index `i < len`.
    fn remove(&mut self, i: usize) {
        // SAFETY: `i < len`; the shift stays inside the table.
        unsafe { core::ptr::copy(self.at.add(i + 1), self.at.add(i), self.len - i - 1) };
        self.len -= 1;
    }

    /// A mutable reference to entry `i < len`.
    fn get_mut(&mut self, i: usize) -> &mut T {
        // SAFETY: `i < len`: an initialised entry.
        unsafe { &mut *self.at.add(i) }
    }

    fn grow<M: MemorySource>(&mut self, src: &mut M) -> bool {
        let size = core::mem::size_of::<T>();
        let cap = (self.cap * 2).max(PAGE / size);
        let Ok(g) = src.acquire(cap * size, core::mem::align_of::<T>().max(16)) else {
            return false;
        };
        let t = g.cast::<T>().as_ptr();
        if !self.at.is_null() {
            // SAFETY: the old table holds `len` entries; the new one has room for `cap > len`.
            unsafe {
                core::ptr::copy_nonoverlapping(self.at, t, self.len);
                let _ = src.release(NonNull::new_unchecked(self.at.cast()), self.bytes);
            }
        }
        self.at = t;
        self.cap = g.len() / size;
        self.bytes = g.len();
        true
    }

    /// Gives the table's grant back to `src`.
    fn free<M: MemorySource>(&mut self, src: &mut M) {
        if let Some(t) = NonNull::new(self.at.cast::<u8>()) {
            // SAFETY: the table is a grant of `src` of `bytes` bytes, no longer used.
            let _ = unsafe { src.release(t, self.bytes) };
        }
        *self = Table::new();
    }
}

/// The mapped chunks of one arena, and the user pointers of those freed since.
pub(crate) struct Mappings<M: MemorySource> {
    pub src: M,
    live: Table<Mapping>,
    freed: Table<usize>,
}

impl<M: MemorySource> Mappings<M> {
    pub const fn new(src: M) -> Self {
        Mappings {
            src,
            live: Table::new(),
            freed: Table::new(),
        }
    }

    /// All mapped chunks in address order.
    pub fn iter(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.live.entries().iter().copied()
    }

    /// The mapping that contains `addr`, and its index.
    pub fn find(&self, addr: usize) -> Option<(usize, Mapping)> {
        let e = self.live.entries();
        let i = e.partition_point(|m| m.addr <= addr);
        if i == 0 {
            return None;
        }
        let m = e[i - 1];
        (addr - m.addr < m.len).then_some((i - 1, m))
    }

    /// Whether `mem` is the user pointer of a mapped chunk freed since (and not mapped again).
    pub fn was_freed(&self, mem: usize) -> bool {
        self.freed.entries().binary_search(&mem).is_ok()
    }

    /// Maps `size` bytes (page-aligned) and records the mapping.
    pub fn map(&mut self, size: usize) -> Option<Mapping> {
        if self.live.len == self.live.cap && !self.live.grow(&mut self.src) {
            return None;
        }
        let g = self.src.acquire(size, PAGE).ok()?;
        let ptr = g.cast::<u8>().as_ptr();
        let m = Mapping {
            addr: ptr as usize,
            ptr,
            len: g.len(),
            lead: 0,
        };
        let i = self.live.entries().partition_point(|e| e.addr < m.addr);
        // Room was made above.
        self.live.insert(&mut self.src, i, m);
        // Freed pointers inside the new mapping may name live memory again.
        let f = self.freed.entries();
        let (lo, hi) = (
            f.partition_point(|&p| p < m.addr),
            f.partition_point(|&p| p < m.addr + m.len),
        );
        for _ in lo..hi {
            self.freed.remove(lo);
        }
        Some(m)
    }

    /// Records that the chunk of the mapping containing `a` now starts `lead` bytes in.
    pub fn set_lead(&mut self, a: usize, lead: usize) {
        if let Some((i, _)) = self.find(a) {
            self.live.get_mut(i).lead = lead;
        }
    }

    /// Unmaps the mapping at index `i` and remembers its chunk's user pointer as freed.
    pub fn unmap(&mut self, i: usize) -> Result<(), SourceError> {
        let m = self.live.entries()[i];
        // SAFETY: `m` was granted by `src` and its chunk is dead.
        let r = unsafe { self.src.release(NonNull::new_unchecked(m.ptr), m.len) };
        self.live.remove(i);
        let mem = chunk2mem(m.addr + m.lead);
        let f = self.freed.entries();
        let j = f.partition_point(|&p| p < mem);
        if f.get(j) != Some(&mem) {
            // Without room, the pointer is forgotten: a second free of it is then reported as
            // a pointer not from this heap.
            let _ = self.freed.insert(&mut self.src, j, mem);
        }
        r
    }
}

impl<M: MemorySource> Drop for Mappings<M> {
    fn drop(&mut self) {
        // The heap is going away with everything allocated from it: give back the mapped
        // chunks and the tables.
        while self.live.len > 0 {
            let m = self.live.entries()[self.live.len - 1];
            // SAFETY: `m` was granted by `src`; nothing uses it any more.
            let _ = unsafe { self.src.release(NonNull::new_unchecked(m.ptr), m.len) };
            self.live.len -= 1;
        }
        self.live.free(&mut self.src);
        self.freed.free(&mut self.src);
    }
}
