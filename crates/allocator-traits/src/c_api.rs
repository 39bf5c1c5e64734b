//! C's allocation API over any policy: blocks freed, resized and measured without their size.
//!
//! ```text
//!   malloc / free / realloc / malloc_usable_size  (the preload library's exports: C semantics,
//!          │                                        errno, calloc overflow, posix_memalign codes)
//!          ▼
//!   dyn MallocApi ──┬── a policy's own front that knows a block's size from its pointer
//!                   │   (ptmalloc2's Ptmalloc: the chunk header; tcmalloc's: the pagemap)
//!                   └── CHeap<M>: any FreeSpaceManager behind a lock no thread starves on,
//!                       with the table of live blocks (address -> the layout it was
//!                       allocated with) that C's free needs and that makes every bad free a
//!                       detected one; requests of its threshold (1 MiB) or more get a
//!                       mapping of their own (module `mapped`), as glibc's mmap threshold
//! ```
//!
//! A [`FreeSpaceManager`] is freed with the layout the block was allocated with; C's `free(p)`
//! has only `p`. [`CHeap`] keeps each live block's layout in a table beside the manager (its
//! memory is the table's own, not the manager's: the manager's counters stay exact), which also
//! makes every bad free detectable: a pointer that is not a key of the table is not a live block,
//! whatever the policy itself detects.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::collections::HashMap;

use crate::{AllocError, FreeError, FreeSpaceManager, Stats, abort_with};

mod mapped;

pub use mapped::DEFAULT_THRESHOLD;

/// C's allocation calls, as a front serves them. The C library built on it (the preload library)
/// handles C's special cases (`free(NULL)`, `realloc(NULL, n)`, `realloc(p, 0)`, `calloc`'s
/// overflow, `errno`); a front sees only valid sizes and non-null pointers.
///
/// # Safety
/// An implementation returns blocks valid for `size` bytes (at least [`usable_size`] bytes),
/// aligned as asked, not overlapping any other live block, until freed; a bad pointer passed to
/// [`free`], [`realloc`] or [`usable_size`] is either detected (the process aborts with a message
/// naming it) or documented as not detected.
///
/// [`usable_size`]: MallocApi::usable_size
/// [`free`]: MallocApi::free
/// [`realloc`]: MallocApi::realloc
pub unsafe trait MallocApi: Send + Sync {
    /// `malloc` (`align` 16), `memalign` and friends (a larger power of two), or `calloc`
    /// (`zeroed`): a block of at least `size` bytes, or null if refused.
    fn malloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8;

    /// `free` of a block this front handed out.
    ///
    /// # Safety
    /// `ptr` is not used afterwards. A pointer that is not a live block of this front aborts the
    /// process (where the front detects it).
    unsafe fn free(&self, ptr: NonNull<u8>);

    /// `realloc` of a live block to `size` bytes (more than 0), keeping its alignment: the block
    /// (perhaps moved, its first `min(old, size)` bytes kept), or null if refused (the old block
    /// is then unchanged and still live).
    ///
    /// # Safety
    /// As for [`free`](Self::free); on success the old pointer is no longer valid unless it is the
    /// one returned.
    unsafe fn realloc(&self, ptr: NonNull<u8>, size: usize) -> *mut u8;

    /// `malloc_usable_size`: the bytes of the live block at `ptr` the caller may use (at least the
    /// size it asked for).
    ///
    /// # Safety
    /// As for [`free`](Self::free), but the block stays live.
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize;

    /// The policy's counters, where the front keeps them.
    fn stats(&self) -> Option<Stats> {
        None
    }

    /// The front's own gauges, by name (`arenas`, `threads with a cache`, `footprint`): what it
    /// can say beyond [`stats`](Self::stats), for reports at exit. Empty where it has none.
    fn gauges(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }

    /// Before `fork`: take every lock the front has, so that the child, which has only the
    /// forking thread, finds none held by a thread that does not exist there.
    fn prepare_fork(&self) {}

    /// After `fork`, in the parent: release what [`prepare_fork`](Self::prepare_fork) took.
    fn after_fork_parent(&self) {}

    /// After `fork`, in the child (one thread: the one that forked): release what
    /// [`prepare_fork`](Self::prepare_fork) took, and forget every waiter (those threads are not
    /// in the child).
    fn after_fork_child(&self) {}
}

/// A live block as [`CHeap`] knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Live {
    /// The layout it was allocated (or last resized) with: what the manager is freed with.
    layout: Layout,
    /// The bytes the manager handed out (`malloc_usable_size`); of a mapped block, the
    /// mapping's length (the block starts the mapping).
    usable: usize,
    /// The block is a mapping of its own (module `mapped`), not the manager's.
    mapped: bool,
}

/// The manager and its table of live blocks, under one lock.
struct Inner<M> {
    manager: M,
    /// Every live block the manager handed out through this front, by address: a pointer is a
    /// live block iff it is a key here.
    live: HashMap<usize, Live>,
    /// Recently freed addresses, direct-mapped by [`slot`]: an entry is an address freed and
    /// not handed out since (an allocation at that address clears it), so a pointer found here
    /// is a double free for certain. Older frees are forgotten (said as "not a live block").
    freed: Vec<usize>,
    /// The mapped blocks: `blocks` is the number of entries of `live` with `mapped` set, `bytes`
    /// the sum of their `usable`.
    maps: mapped::Gauges,
}

/// Entries in [`Inner::freed`].
const FREED: usize = 4096;

/// The entry of [`Inner::freed`] for `addr`.
fn slot(addr: usize) -> usize {
    (addr >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - 12)
}

impl<M> Inner<M> {
    /// Notes that the live block at `from` is now `to` (resized in place or moved), allocated
    /// as `layout`, `mapped` or the manager's; gives the new address.
    fn moved(&mut self, from: usize, to: NonNull<[u8]>, layout: Layout, mapped: bool) -> *mut u8 {
        self.live.remove(&from);
        let q = to.cast::<u8>().as_ptr();
        if q as usize != from {
            self.freed[slot(from)] = from;
        }
        let usable = to.len();
        self.admit(
            q as usize,
            Live {
                layout,
                usable,
                mapped,
            },
        );
        q
    }

    /// Notes that `addr` is live (again).
    fn admit(&mut self, addr: usize, live: Live) {
        self.live.insert(addr, live);
        let i = slot(addr);
        if self.freed[i] == addr {
            self.freed[i] = 0;
        }
    }
}

/// Any [`FreeSpaceManager`] as a [`MallocApi`]: behind a lock no thread starves on
/// ([`TicketLock`](crate::ticket::TicketLock)), with the table of
/// live blocks C's size-less calls need. Every bad free (a foreign, interior or already freed
/// pointer) is detected, whatever the policy detects itself: it is not a key of the table.
///
/// Requests of the threshold ([`DEFAULT_THRESHOLD`], 1 MiB, unless built with
/// [`with_threshold`](Self::with_threshold)) or more get an anonymous mapping of their own, as
/// glibc serves requests above its mmap threshold; the manager serves the rest (and a large
/// request the OS refuses a mapping). Such blocks are not in the manager's [`Stats`]; the
/// [`gauges`](MallocApi::gauges) count them.
pub struct CHeap<M> {
    inner: crate::ticket::TicketLock<Inner<M>>,
    /// Requests of this many bytes or more are mapped; `None`: the manager serves every one.
    threshold: Option<usize>,
}

impl<M: FreeSpaceManager> CHeap<M> {
    /// Wraps `manager`, which must have no live blocks yet; requests of [`DEFAULT_THRESHOLD`]
    /// bytes or more get mappings of their own.
    pub fn new(manager: M) -> Self {
        Self::with_threshold(manager, Some(DEFAULT_THRESHOLD))
    }

    /// Wraps `manager`, which must have no live blocks yet; requests of `threshold` bytes or more
    /// get mappings of their own (`None`: the manager serves every request).
    pub fn with_threshold(manager: M, threshold: Option<usize>) -> Self {
        CHeap {
            inner: crate::ticket::TicketLock::new(Inner {
                manager,
                live: HashMap::new(),
                freed: vec![0; FREED],
                maps: mapped::Gauges::default(),
            }),
            threshold,
        }
    }

    /// Whether a request of `size` bytes gets a mapping of its own.
    fn maps(&self, size: usize) -> bool {
        self.threshold.is_some_and(|t| size >= t)
    }

    /// `realloc` where the old block or the new one is mapped: the mapping resized in place or by
    /// the kernel where it can be, else a new block (mapped or the manager's), the bytes copied
    /// and the old block freed. Null if refused (the old block is then unchanged and live).
    ///
    /// # Safety
    /// `ptr` is a live block of the table, allocated as `old`, and `new` has its alignment.
    unsafe fn realloc_moving(
        &self,
        mut g: crate::ticket::TicketGuard<'_, Inner<M>>,
        ptr: NonNull<u8>,
        old: Live,
        new: Layout,
    ) -> *mut u8 {
        let addr = ptr.as_ptr() as usize;
        let to_map = self.maps(new.size());
        let page = crate::source::page_size();
        if old.mapped && to_map {
            if crate::source::align_up(new.size(), page) == Some(old.usable) {
                g.live.insert(addr, Live { layout: new, ..old });
                return ptr.as_ptr();
            }
            // SAFETY: a live mapped block of `old.usable` bytes, aligned to at most a page.
            let moved = (old.layout.align() <= page)
                .then(|| unsafe { mapped::remap(ptr, old.usable, new.size()) })
                .flatten();
            if let Some(block) = moved {
                g.maps.remove(old.usable);
                g.maps.add(block.len());
                return g.moved(addr, block, new, true);
            }
        }
        // A new block: mapped when large (the manager's if the OS refuses), else the manager's.
        let (block, is_mapped) = match to_map.then(|| mapped::map(new.size(), new.align())) {
            Some(Some(b)) => (b, true),
            _ => match g.manager.allocate(new) {
                Ok(b) => (b, false),
                Err(_) => return core::ptr::null_mut(),
            },
        };
        let q = block.cast::<u8>();
        // SAFETY: both blocks are live and distinct; the old one is `old.usable` bytes long (the
        // caller may have written them all: `malloc_usable_size`), the new one at least
        // `new.size()`.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), q.as_ptr(), old.usable.min(new.size()))
        };
        if is_mapped {
            g.maps.add(block.len());
        }
        let q = g.moved(addr, block, new, is_mapped);
        // SAFETY: the old block was live (the table said so) and is out of the table now.
        unsafe { Self::release(g, ptr, old) };
        q
    }

    /// Gives back a block already removed from the table: unmaps it (the lock released first:
    /// no other call waits on the `munmap`), or frees it to the manager.
    ///
    /// # Safety
    /// `ptr` was a live block allocated as `l`, and is in the table no more.
    unsafe fn release(mut g: crate::ticket::TicketGuard<'_, Inner<M>>, ptr: NonNull<u8>, l: Live) {
        if l.mapped {
            g.maps.remove(l.usable);
            drop(g);
            // A failed munmap leaves the pages mapped and says nothing, as glibc's free.
            // SAFETY: a mapped block of `l.usable` bytes that nobody holds any more.
            let _ = unsafe { mapped::unmap(ptr, l.usable) };
            return;
        }
        // SAFETY: the table said `ptr` was a live block of the manager allocated with
        // `l.layout`; it is out of the table, so it is freed once.
        if let Err(e) = unsafe { g.manager.deallocate(ptr, l.layout) } {
            drop(g);
            abort_with(&e)
        }
    }

    /// What is wrong with a pointer that is not a live block (an error path: it may walk).
    fn diagnose(inner: &Inner<M>, ptr: NonNull<u8>) -> FreeError {
        let addr = ptr.as_ptr() as usize;
        if inner.freed[slot(addr)] == addr {
            return FreeError::DoubleFree { ptr: addr };
        }
        // Inside a live block, or somewhere in the heap: not the start of a live block.
        let interior = inner
            .live
            .iter()
            .any(|(&a, l)| addr > a && addr < a + l.usable.max(1));
        if interior || crate::manager::first_region_placement(&inner.manager, ptr).is_heap() {
            return FreeError::NotABlock { ptr: addr };
        }
        FreeError::Foreign { ptr: addr }
    }
}

impl<M> core::fmt::Debug for CHeap<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CHeap").finish_non_exhaustive()
    }
}

// SAFETY: blocks come from the manager (aligned, at least the size asked, distinct while live);
// the lock serialises every call; a pointer is acted on only if the table says it is a live
// block, so a bad one is always detected, and aborts naming it.
unsafe impl<M: FreeSpaceManager + Send> MallocApi for CHeap<M> {
    fn malloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let Ok(layout) = Layout::from_size_align(size, align) else {
            return core::ptr::null_mut();
        };
        if self.maps(size) {
            // Fresh mappings read as zero: `zeroed` holds without writing. If the OS refuses,
            // the manager serves the request (as glibc falls back to its heap).
            if let Some(block) = mapped::map(size, align) {
                let p = block.cast::<u8>();
                let mut g = self.inner.lock();
                g.maps.add(block.len());
                g.admit(
                    p.as_ptr() as usize,
                    Live {
                        layout,
                        usable: block.len(),
                        mapped: true,
                    },
                );
                return p.as_ptr();
            }
        }
        let mut g = self.inner.lock();
        let r = if zeroed {
            g.manager.allocate_zeroed(layout)
        } else {
            g.manager.allocate(layout)
        };
        match r {
            Ok(block) => {
                let p = block.cast::<u8>();
                let usable = block.len();
                let mapped = false;
                g.admit(
                    p.as_ptr() as usize,
                    Live {
                        layout,
                        usable,
                        mapped,
                    },
                );
                p.as_ptr()
            }
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        let mut g = self.inner.lock();
        let addr = ptr.as_ptr() as usize;
        let Some(l) = g.live.remove(&addr) else {
            let e = Self::diagnose(&g, ptr);
            drop(g);
            abort_with(&e)
        };
        g.freed[slot(addr)] = addr;
        // SAFETY: the table said `ptr` was a live block allocated as `l`; it is removed.
        unsafe { Self::release(g, ptr, l) }
    }

    unsafe fn realloc(&self, ptr: NonNull<u8>, size: usize) -> *mut u8 {
        let mut g = self.inner.lock();
        let addr = ptr.as_ptr() as usize;
        let Some(&old) = g.live.get(&addr) else {
            let e = Self::diagnose(&g, ptr);
            drop(g);
            abort_with(&e)
        };
        let Ok(new) = Layout::from_size_align(size, old.layout.align()) else {
            return core::ptr::null_mut();
        };
        if old.mapped || self.maps(size) {
            // SAFETY: `ptr` is a live block allocated as `old` (the table says so); `new` keeps
            // its alignment.
            return unsafe { self.realloc_moving(g, ptr, old, new) };
        }
        // SAFETY: `ptr` is a live block allocated with `old.layout` and `old.usable` bytes long
        // (the table says so).
        let r = unsafe {
            if size > old.layout.size() && old.usable > old.layout.size() {
                // `malloc_usable_size` told the caller the block is `old.usable` bytes long, and
                // C programs write up to it (redis's strings do): a move keeps them all, as
                // glibc's realloc copies the whole old chunk.
                crate::resize_keeping(&mut g.manager, ptr, old.layout, new, old.usable)
            } else if size >= old.layout.size() {
                g.manager.grow(ptr, old.layout, new)
            } else {
                g.manager.shrink(ptr, old.layout, new)
            }
        };
        match r {
            Ok(block) => g.moved(addr, block, new, false),
            Err(AllocError::InvalidBlock(e)) => {
                drop(g);
                abort_with(&e)
            }
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        let g = self.inner.lock();
        match g.live.get(&(ptr.as_ptr() as usize)) {
            Some(l) => l.usable,
            None => {
                let e = Self::diagnose(&g, ptr);
                drop(g);
                abort_with(&e)
            }
        }
    }

    fn stats(&self) -> Option<Stats> {
        Some(self.inner.lock().manager.stats())
    }

    fn gauges(&self) -> Vec<(&'static str, usize)> {
        let m = self.inner.lock().maps;
        vec![
            ("large blocks mapped", m.blocks),
            ("bytes mapped for large blocks", m.bytes),
            ("peak bytes mapped for large blocks", m.peak_bytes),
        ]
    }

    fn prepare_fork(&self) {
        // Held across fork: released after it, in the parent and in the child.
        self.inner.hold();
    }

    fn after_fork_parent(&self) {
        // SAFETY: `prepare_fork` held the lock on this thread (the one that forked).
        unsafe { self.inner.unlock() };
    }

    fn after_fork_child(&self) {
        // SAFETY: the child has one thread, the one that held the lock through `prepare_fork`;
        // the waiters (and their tickets) are threads that are not here.
        unsafe { self.inner.reset() };
    }
}
