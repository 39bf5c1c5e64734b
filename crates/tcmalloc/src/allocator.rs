//! `Tcmalloc`: the concurrent allocator, with a cache per thread.
//!
//! ```text
//!   thread 1            thread 2             (thread-local slot -> its ThreadCache, no lock)
//!   ThreadCache         ThreadCache          budget: max_size per thread, 32 MiB overall,
//!        \                 /                  stolen 64 KiB at a time (registry lock)
//!   central[c]: spin lock per class (transfer cache + spans)
//!        |
//!   page heap: one spin lock (+ the source's lock, taken after it)
//!   pagemap:   read without a lock by every free (atomics; nodes never freed)
//! ```
//!
//! Lock order: a class's central lock, then the page heap's, then the source's. The registry of
//! thread caches has its own lock, never held with another.
//!
//! All shared state (`Shared`: page heap, pagemap, central lists, registry) is carved from the
//! memory source on first use, as are the thread caches: nothing comes from the global
//! allocator, so a `Tcmalloc` can be the `#[global_allocator]`:
//!
//! ```no_run
//! use tcmalloc::Tcmalloc;
//! #[global_allocator]
//! static GLOBAL: Tcmalloc = Tcmalloc::new(allocator_traits::OsPages::new());
//! ```
//!
//! Bad frees abort the process with a message naming the pointer ([`abort_with`]): a free reads
//! the pointer's pagemap leaf (each thread keeps the last one it used), whose class byte and
//! page-in-span index must make the pointer an object start of that class; a page with no class
//! must be the first page of a large block in use (checked under the page heap's lock); an object
//! of 16 B or more that carries the process's double-free key ([`crate::key`]) is looked for on
//! the thread's own list. docs/tcmalloc.md lists exactly what is and is not caught.
//!
//! A thread finds its cache through a thread-local table of `(allocator id, cache)` slots (a
//! thread may use up to [`THREAD_SLOTS`] allocators with a cache each; beyond that it goes to
//! the central lists directly). When the thread exits, a thread-local guard gives every cached
//! object back to the central lists and recycles the cache. A thread-local destructor that
//! allocates after that goes to the central lists directly too.

mod c_api;
mod fork;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::ptr::{NonNull, addr_of_mut, null, null_mut};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use allocator_traits::{Corruption, FreeError, MemorySource, OsPages, abort_with};
use spin::Mutex;

use crate::central::{Central, PageSource};
use crate::check::{self, Parts};
use crate::key::{key_offset, process_key};
use crate::page_heap::PageHeap;
use crate::pagemap::{CLASS_MASK, Leaf, PageMap};
use crate::size_map::{NUM_CLASSES, PAGE_SHIFT, PAGE_SIZE, SIZE_MAP};
use crate::span::{Location, Span};
use crate::thread_cache::{
    Backend, DEFAULT_OVERALL_THREAD_CACHE_SIZE, MIN_THREAD_CACHE_SIZE, Pushed, STEAL_AMOUNT,
    ThreadCache, clear_key,
};

/// Allocators one thread can hold a cache for at once.
pub const THREAD_SLOTS: usize = 4;
/// Allocators alive at once whose thread caches are flushed on thread exit; further ones work
/// without thread caches.
pub const MAX_LIVE_ALLOCATORS: usize = 64;

/// A thread cache with its registry links and its budget (which other threads may steal from).
struct CacheNode {
    /// The process's double-free key (the shared state's copy, kept beside the cache).
    key: usize,
    /// The pagemap leaf this thread's frees looked up last (only this thread touches it).
    leaf: UnsafeCell<LeafCache>,
    max_size: AtomicUsize,
    next: *mut CacheNode,
    prev: *mut CacheNode,
    cache: UnsafeCell<ThreadCache>,
}

/// A thread's last pagemap leaf: `entries` is [`Leaf::entries_biased`] of the leaf covering the
/// pages whose leaf number is `number` (no page's, `usize::MAX`, while empty). Leaves never move
/// or go away, so it is never stale.
struct LeafCache {
    number: usize,
    entries: *const AtomicU32,
}

impl LeafCache {
    const EMPTY: LeafCache = LeafCache {
        number: usize::MAX,
        entries: null(),
    };
}

/// The registry of thread caches and the overall budget (gperftools' `thread_heaps_`,
/// `unclaimed_cache_space_`, `next_memory_steal_`).
struct Registry {
    head: *mut CacheNode,
    next_steal: *mut CacheNode,
    unclaimed: isize,
    recycled: *mut CacheNode,
    threads: usize,
}

/// Everything the threads share, placed in memory from the source.
struct Shared {
    id: u64,
    /// The process's double-free key ([`crate::key`]), kept here beside the pagemap that every
    /// free reads anyway.
    key: usize,
    heap: Mutex<PageHeap>,
    pagemap: PageMap,
    central: [Mutex<Central>; NUM_CLASSES],
    registry: Mutex<Registry>,
}

// SAFETY: all mutable state is behind locks or atomics; the raw pointers are to memory the
// allocator owns.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Registry {}

/// The concurrent tcmalloc over a memory source (OS mappings by default).
pub struct Tcmalloc<S: MemorySource = OsPages> {
    source: Mutex<S>,
    shared: AtomicPtr<Shared>,
    /// The shared state's id, for the thread-local lookup (0 until started).
    id: AtomicU64,
    overall: usize,
}

// SAFETY: the source is behind a lock; the shared state is `Sync`.
unsafe impl<S: MemorySource + Send> Sync for Tcmalloc<S> {}
// SAFETY: as above.
unsafe impl<S: MemorySource + Send> Send for Tcmalloc<S> {}

impl<S: MemorySource> core::fmt::Debug for Tcmalloc<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tcmalloc").finish_non_exhaustive()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct LiveEntry {
    id: u64,
    shared: *const Shared,
}
// SAFETY: the pointer is only dereferenced under the LIVE lock, while the allocator is alive.
unsafe impl Send for LiveEntry {}

/// Allocators whose shared state is alive, for the thread-exit flush.
static LIVE: Mutex<[LiveEntry; MAX_LIVE_ALLOCATORS]> = Mutex::new(
    [const {
        LiveEntry {
            id: 0,
            shared: null(),
        }
    }; MAX_LIVE_ALLOCATORS],
);

/// The id of an empty thread-local slot (allocator ids count up from 1; 0 is "not started").
const NO_ID: u64 = u64::MAX;

struct Slot {
    id: Cell<u64>,
    node: Cell<*mut CacheNode>,
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = SLOTS.try_with(|slots| {
            for slot in slots {
                let id = slot.id.replace(NO_ID);
                let node = slot.node.replace(null_mut());
                if id == NO_ID {
                    continue;
                }
                let live = LIVE.lock();
                if let Some(e) = live.iter().find(|e| e.id == id) {
                    // SAFETY: the allocator is alive while its LIVE entry is (its drop removes
                    // the entry under this lock), and `node` is this thread's cache of it.
                    unsafe { (*e.shared).release_cache(node) };
                }
            }
        });
    }
}

std::thread_local! {
    static SLOTS: [Slot; THREAD_SLOTS] = const {
        [const { Slot { id: Cell::new(NO_ID), node: Cell::new(null_mut()) } }; THREAD_SLOTS]
    };
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static GUARD: ExitGuard = const { ExitGuard };
}

/// The page heap as the central lists see it in the concurrent allocator.
struct SharedPages<'a, S> {
    shared: &'a Shared,
    source: Option<&'a Mutex<S>>,
}

impl<S: MemorySource> PageSource for SharedPages<'_, S> {
    fn new_class_span(&mut self, pages: usize, class: usize) -> Option<*mut Span> {
        let source = self.source?;
        let mut heap = self.shared.heap.lock();
        let mut src = source.lock();
        let s = heap.new_span(pages, &self.shared.pagemap, &mut *src)?;
        // SAFETY: `s` was just carved and is in use.
        unsafe { heap.register_class(s, class, &self.shared.pagemap) };
        Some(s)
    }
    unsafe fn delete_class_span(&mut self, s: *mut Span) {
        let mut heap = self.shared.heap.lock();
        let mut src = self.source.map(|m| m.lock());
        // SAFETY: forwarded caller contract.
        unsafe {
            heap.unregister_class(s, &self.shared.pagemap);
            heap.delete_span(s, &self.shared.pagemap, src.as_deref_mut());
        }
    }
    fn pagemap(&self) -> &PageMap {
        &self.shared.pagemap
    }
}

/// What a thread cache of the concurrent allocator talks to.
struct SharedBackend<'a, S> {
    shared: &'a Shared,
    source: Option<&'a Mutex<S>>,
    node: *mut CacheNode,
}

impl<S: MemorySource> Backend for SharedBackend<'_, S> {
    fn remove_range(&mut self, class: usize, n: usize) -> Option<(*mut u8, *mut u8, usize)> {
        let mut pages = SharedPages {
            shared: self.shared,
            source: self.source,
        };
        self.shared.central[class]
            .lock()
            .remove_range(n, &mut pages)
    }
    unsafe fn insert_range(&mut self, class: usize, head: *mut u8, tail: *mut u8, n: usize) {
        let mut pages = SharedPages::<S> {
            shared: self.shared,
            source: self.source,
        };
        // SAFETY: forwarded caller contract.
        unsafe {
            self.shared.central[class]
                .lock()
                .insert_range(head, tail, n, &mut pages)
        }
    }
    #[inline]
    fn max_size(&self) -> usize {
        // SAFETY: the node is alive while its thread uses it; `max_size` is an atomic.
        unsafe { (*self.node).max_size.load(Ordering::Relaxed) }
    }
    fn increase_cache_limit(&mut self) {
        let mut reg = self.shared.registry.lock();
        // SAFETY: registered nodes are alive while the registry lock is held.
        unsafe { reg.increase_cache_limit(self.node) };
    }
}

impl Registry {
    /// gperftools' `IncreaseCacheLimitLocked`: 64 KiB from the unclaimed budget, or stolen from
    /// another thread's (round robin, 10 tries, never below 512 KiB).
    ///
    /// # Safety
    /// `me` and all registered nodes are alive.
    unsafe fn increase_cache_limit(&mut self, me: *mut CacheNode) {
        // SAFETY: caller's contract; only the atomic budgets and the links are touched.
        unsafe {
            if self.unclaimed > 0 {
                self.unclaimed -= STEAL_AMOUNT as isize;
                (*me).max_size.fetch_add(STEAL_AMOUNT, Ordering::Relaxed);
                return;
            }
            for _ in 0..10 {
                if self.next_steal.is_null() {
                    self.next_steal = self.head;
                }
                let victim = self.next_steal;
                if victim.is_null() {
                    return;
                }
                self.next_steal = (*victim).next;
                let vmax = (*victim).max_size.load(Ordering::Relaxed);
                if victim == me || vmax <= MIN_THREAD_CACHE_SIZE {
                    continue;
                }
                (*victim)
                    .max_size
                    .store(vmax - STEAL_AMOUNT, Ordering::Relaxed);
                (*me).max_size.fetch_add(STEAL_AMOUNT, Ordering::Relaxed);
                return;
            }
        }
    }
}

impl Shared {
    /// Flushes a thread's cache to the central lists, unregisters and recycles it.
    ///
    /// # Safety
    /// `node` is a registered cache of this allocator, no longer used by its thread.
    unsafe fn release_cache(&self, node: *mut CacheNode) {
        let mut backend = SharedBackend::<OsPages> {
            shared: self,
            source: None,
            node,
        };
        // SAFETY: the node is ours and its thread is done with it.
        unsafe {
            let cache = &mut *(*node).cache.get();
            cache.flush(&mut backend);
            cache.reset();
            let mut reg = self.registry.lock();
            let (p, n) = ((*node).prev, (*node).next);
            if p.is_null() {
                reg.head = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
            if reg.next_steal == node {
                reg.next_steal = n;
            }
            reg.unclaimed += (*node).max_size.load(Ordering::Relaxed) as isize;
            reg.threads -= 1;
            (*node).next = reg.recycled;
            reg.recycled = node;
        }
    }
}

impl<S: MemorySource> Tcmalloc<S> {
    /// An allocator over `source`. `const`, for a `static` `#[global_allocator]`; nothing is
    /// taken from the source before the first allocation.
    pub const fn new(source: S) -> Self {
        Self::with_overall_thread_cache_size(source, DEFAULT_OVERALL_THREAD_CACHE_SIZE)
    }

    /// An allocator whose thread caches together aim to hold at most `bytes` (gperftools'
    /// `TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES`, clipped to 512 KiB ..= 1 GiB as there).
    pub const fn with_overall_thread_cache_size(source: S, bytes: usize) -> Self {
        let overall = if bytes < MIN_THREAD_CACHE_SIZE {
            MIN_THREAD_CACHE_SIZE
        } else if bytes > 1 << 30 {
            1 << 30
        } else {
            bytes
        };
        Tcmalloc {
            source: Mutex::new(source),
            shared: AtomicPtr::new(null_mut()),
            id: AtomicU64::new(0),
            overall,
        }
    }

    /// The thread caches' budgets: `(sum of every thread's max_size, unclaimed budget)`. The two
    /// add up to the overall limit (the unclaimed part goes negative when threads had to be given
    /// the 512 KiB minimum with nothing left).
    pub fn budget(&self) -> (usize, isize) {
        let Some(sh) = self.shared() else {
            return (0, self.overall as isize);
        };
        // SAFETY: the shared state lives as long as `self`; registered nodes are alive under
        // the registry lock.
        unsafe {
            let reg = (*sh).registry.lock();
            let mut sum = 0;
            let mut n = reg.head;
            while !n.is_null() {
                sum += (*n).max_size.load(Ordering::Relaxed);
                n = (*n).next;
            }
            (sum, reg.unclaimed)
        }
    }

    /// Bytes taken from the source (pages, metadata, thread caches).
    pub fn footprint(&self) -> usize {
        self.source.lock().footprint()
    }

    /// The invariant walk of `check` (src/check.rs) over the shared structures (page heap, pagemap,
    /// spans, central lists, transfer caches) and the calling thread's own cache, under every
    /// central lock and the page heap's (taken in the allocator's lock order, so the other
    /// threads wait at their next slow path and their fast paths go on). The other threads'
    /// caches are not read: their objects count as out of their spans.
    pub fn check_invariants(&self) -> Result<(), Corruption> {
        let Some(sh) = self.shared() else {
            return Ok(());
        };
        // SAFETY: the shared state lives as long as `self`.
        let sh = unsafe { &*sh };
        let central: [_; NUM_CLASSES] = core::array::from_fn(|c| sh.central[c].lock());
        let heap = sh.heap.lock();
        let own = SLOTS
            .try_with(|slots| {
                slots
                    .iter()
                    .find(|s| s.id.get() == sh.id)
                    .map(|s| s.node.get())
            })
            .ok()
            .flatten();
        // SAFETY: a node in this thread's slot is this thread's own live cache, not in use while
        // this function runs.
        let own = own.map(|n| unsafe { &*(*n).cache.get() });
        let caches: &[&ThreadCache] = match &own {
            Some(c) => core::slice::from_ref(c),
            None => &[],
        };
        check::check(&Parts {
            heap: &heap,
            pagemap: &sh.pagemap,
            central: central.each_ref().map(|g| &**g),
            caches,
        })
        .map(|_| ())
    }

    /// Gives every free page of the page heap back to the source now (gperftools'
    /// `MallocExtension::ReleaseFreeMemory`); returns the pages released. Objects in thread,
    /// transfer and central caches stay.
    pub fn release_free_memory(&self) -> usize {
        let Some(sh) = self.shared() else {
            return 0;
        };
        // SAFETY: the shared state lives as long as `self`.
        let sh = unsafe { &*sh };
        let mut heap = sh.heap.lock();
        let mut src = self.source.lock();
        heap.release_at_least(usize::MAX, &sh.pagemap, &mut *src)
    }

    /// Number of threads holding a cache of this allocator.
    pub fn threads(&self) -> usize {
        match self.shared() {
            // SAFETY: the shared state lives as long as `self`.
            Some(sh) => unsafe { (*sh).registry.lock().threads },
            None => 0,
        }
    }

    /// Bytes sitting in the central lists' spans and transfer caches, and free in the page heap:
    /// `(central_free_objects_bytes, transfer_bytes, page_heap_free_bytes)`.
    pub fn cached_bytes(&self) -> (usize, usize, usize) {
        let Some(sh) = self.shared() else {
            return (0, 0, 0);
        };
        // SAFETY: the shared state lives as long as `self`.
        let sh = unsafe { &*sh };
        let (mut spans, mut transfer) = (0, 0);
        for (class, c) in sh.central.iter().enumerate().skip(1) {
            let c = c.lock();
            let size = SIZE_MAP.class_size(class);
            spans += c.free_objects * size;
            transfer += c.transfer.used() * SIZE_MAP.batch_size(class) * size;
        }
        let free = sh.heap.lock().free_pages << PAGE_SHIFT;
        (spans, transfer, free)
    }

    #[inline]
    fn shared(&self) -> Option<*const Shared> {
        let p = self.shared.load(Ordering::Acquire);
        if p.is_null() { self.init() } else { Some(p) }
    }

    #[cold]
    fn init(&self) -> Option<*const Shared> {
        let mut src = self.source.lock();
        let p = self.shared.load(Ordering::Acquire);
        if !p.is_null() {
            return Some(p);
        }
        let grant = src
            .acquire(
                core::mem::size_of::<Shared>(),
                core::mem::align_of::<Shared>().max(64),
            )
            .ok()?;
        let p = grant.cast::<Shared>().as_ptr();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `p` is a fresh grant big enough for a `Shared`, aligned for it, ours alone.
        // Each field is written in place (the whole struct is too big for some thread stacks);
        // the pagemap's all-zero bytes are a valid empty map (null atomics, zero counter).
        unsafe {
            addr_of_mut!((*p).id).write(id);
            addr_of_mut!((*p).key).write(process_key());
            addr_of_mut!((*p).heap).write(Mutex::new(PageHeap::new()));
            addr_of_mut!((*p).pagemap)
                .cast::<u8>()
                .write_bytes(0, core::mem::size_of::<PageMap>());
            let central = addr_of_mut!((*p).central).cast::<Mutex<Central>>();
            for class in 0..NUM_CLASSES {
                central.add(class).write(Mutex::new(Central::new(class)));
            }
            addr_of_mut!((*p).registry).write(Mutex::new(Registry {
                head: null_mut(),
                next_steal: null_mut(),
                unclaimed: self.overall as isize,
                recycled: null_mut(),
                threads: 0,
            }));
        }
        {
            let mut live = LIVE.lock();
            if let Some(e) = live.iter_mut().find(|e| e.id == 0) {
                e.id = id;
                e.shared = p;
            }
        }
        self.id.store(id, Ordering::Relaxed);
        self.shared.store(p, Ordering::Release);
        Some(p)
    }

    fn is_registered(id: u64) -> bool {
        LIVE.lock().iter().any(|e| e.id == id)
    }

    /// This thread's cache of this allocator, creating it on first use; `None` when the thread
    /// cannot have one (its slots are full, it is exiting, or creation is under way).
    #[inline]
    fn thread_cache(&self, sh: &Shared) -> Option<*mut CacheNode> {
        SLOTS
            .try_with(|slots| {
                for slot in slots {
                    if slot.id.get() == sh.id {
                        return Some(slot.node.get());
                    }
                }
                self.attach(sh, slots)
            })
            .ok()
            .flatten()
    }

    #[cold]
    fn attach(&self, sh: &Shared, slots: &[Slot; THREAD_SLOTS]) -> Option<*mut CacheNode> {
        if BUSY.try_with(|b| b.replace(true)).unwrap_or(true) {
            return None;
        }
        let r = self.attach_inner(sh, slots);
        let _ = BUSY.try_with(|b| b.set(false));
        r
    }

    fn attach_inner(&self, sh: &Shared, slots: &[Slot; THREAD_SLOTS]) -> Option<*mut CacheNode> {
        // Only allocators whose caches the exit guard can find get thread caches.
        if !Self::is_registered(sh.id) {
            return None;
        }
        // A free slot, or one whose allocator is gone.
        let slot = slots
            .iter()
            .find(|s| s.id.get() == NO_ID)
            .or_else(|| slots.iter().find(|s| !Self::is_registered(s.id.get())))?;
        // Registers the exit guard (this may allocate; BUSY keeps that from recursing here).
        GUARD.try_with(|_| ()).ok()?;
        let node = {
            let mut reg = sh.registry.lock();
            let recycled = reg.recycled;
            if !recycled.is_null() {
                // SAFETY: recycled nodes are valid and unused.
                reg.recycled = unsafe { (*recycled).next };
            }
            recycled
        };
        let node = if node.is_null() {
            let mut heap = sh.heap.lock();
            let mut src = self.source.lock();
            let p = heap
                .arena
                .alloc(
                    core::mem::size_of::<CacheNode>(),
                    core::mem::align_of::<CacheNode>(),
                    &mut *src,
                )?
                .cast::<CacheNode>()
                .as_ptr();
            // SAFETY: a fresh block for a node; fields written in place.
            unsafe {
                addr_of_mut!((*p).max_size).write(AtomicUsize::new(0));
                addr_of_mut!((*p).cache).write(UnsafeCell::new(ThreadCache::new()));
                addr_of_mut!((*p).key).write(sh.key);
                addr_of_mut!((*p).leaf).write(UnsafeCell::new(LeafCache::EMPTY));
            }
            p
        } else {
            node
        };
        {
            let mut reg = sh.registry.lock();
            // SAFETY: `node` is ours; registered nodes are alive under the lock.
            unsafe {
                (*node).max_size.store(0, Ordering::Relaxed);
                *(*node).leaf.get() = LeafCache::EMPTY;
                (*node).prev = null_mut();
                (*node).next = reg.head;
                if !reg.head.is_null() {
                    (*reg.head).prev = node;
                }
                reg.head = node;
                reg.threads += 1;
                reg.increase_cache_limit(node);
                if (*node).max_size.load(Ordering::Relaxed) == 0 {
                    (*node)
                        .max_size
                        .store(MIN_THREAD_CACHE_SIZE, Ordering::Relaxed);
                    reg.unclaimed -= MIN_THREAD_CACHE_SIZE as isize;
                }
            }
        }
        if slot.id.get() != NO_ID {
            // The slot's allocator is gone: its cache went with it.
            slot.node.set(null_mut());
        }
        slot.id.set(sh.id);
        slot.node.set(node);
        Some(node)
    }

    /// This thread's cache when it is in the first slot (the fast path).
    #[inline(always)]
    fn fast_node(&self) -> Option<*mut CacheNode> {
        let id = self.id.load(Ordering::Relaxed);
        SLOTS
            .try_with(|s| {
                // Both read through one address of the slot (one thread-local base).
                let (slot_id, node) = (s[0].id.get(), s[0].node.get());
                (slot_id == id).then_some(node)
            })
            .ok()
            .flatten()
    }

    /// Allocates a block for `layout`, or null.
    #[inline(always)]
    fn alloc_impl(&self, layout: Layout) -> *mut u8 {
        if let Some(class) = SIZE_MAP.class_for(layout)
            && let Some(node) = self.fast_node()
        {
            // SAFETY: the node is this thread's own cache; no one else touches the lists.
            let cache = unsafe { &mut *(*node).cache.get() };
            if let Some(o) = cache.try_pop(class) {
                return o;
            }
        }
        self.alloc_slow(layout)
    }

    /// Everything but a hit in the first slot's cache.
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        let Some(sh) = self.shared() else {
            return null_mut();
        };
        // SAFETY: the shared state lives as long as `self`.
        let sh = unsafe { &*sh };
        if let Some(class) = SIZE_MAP.class_for(layout) {
            if let Some(node) = self.thread_cache(sh) {
                let mut backend = SharedBackend {
                    shared: sh,
                    source: Some(&self.source),
                    node,
                };
                // SAFETY: the node is this thread's own cache; no one else touches the lists.
                let cache = unsafe { &mut *(*node).cache.get() };
                return cache.allocate(class, &mut backend).unwrap_or(null_mut());
            }
            let mut pages = SharedPages {
                shared: sh,
                source: Some(&self.source),
            };
            return match sh.central[class].lock().remove_range(1, &mut pages) {
                Some((head, _, _)) => {
                    // SAFETY: `head` is an object of `class`, the caller's now.
                    unsafe { clear_key(head, key_offset(SIZE_MAP.class_size(class))) };
                    head
                }
                None => null_mut(),
            };
        }
        self.alloc_large(sh, layout)
    }

    #[cold]
    fn alloc_large(&self, sh: &Shared, layout: Layout) -> *mut u8 {
        let Some(bytes) = layout.size().checked_add(PAGE_SIZE - 1) else {
            return null_mut();
        };
        if bytes > isize::MAX as usize {
            return null_mut();
        }
        let pages = (bytes >> PAGE_SHIFT).max(1);
        let mut heap = sh.heap.lock();
        let mut src = self.source.lock();
        let s = if layout.align() > PAGE_SIZE {
            heap.new_span_aligned(pages, layout.align(), &sh.pagemap, &mut *src)
        } else {
            heap.new_span(pages, &sh.pagemap, &mut *src)
        };
        match s {
            // SAFETY: a span just carved is valid.
            Some(s) => unsafe { (*s).start },
            None => null_mut(),
        }
    }

    /// Frees `ptr`. Aborts with a message naming the pointer on a bad free the checks see (see
    /// the module docs): the fast path reads the pointer's pagemap entry (its class and its
    /// page's place in the span, one load through the thread's leaf cache), checks that it is an
    /// object start of that class, and looks for the double-free key; the layout is not used for
    /// small blocks (the pagemap's class is the truth).
    #[inline(always)]
    fn dealloc_impl(&self, ptr: *mut u8, layout: Layout) {
        if let Some(node) = self.fast_node() {
            let page = ptr.addr() >> PAGE_SHIFT;
            // SAFETY: the node is this thread's own cache; only this thread touches its leaf
            // cache.
            let lc = unsafe { &*(*node).leaf.get() };
            if lc.number == PageMap::leaf_number(page) {
                // SAFETY: the node is this thread's cache, the cached leaf covers `page`.
                unsafe { self.dealloc_in_leaf(node, lc.entries, ptr, layout) };
                return;
            }
            self.dealloc_leaf_miss(node, ptr, layout);
            return;
        }
        self.dealloc_slow(ptr, layout)
    }

    /// The free fast path once the pointer's leaf is known: the object-start test on the
    /// pagemap entry (class 0, a page of no class span, fails it and goes to the slow path), the
    /// key, the push.
    ///
    /// # Safety
    /// `node` is this thread's cache; `entries` is [`Leaf::entries_biased`] of a live leaf of
    /// this allocator's pagemap that covers `ptr`'s page.
    #[inline(always)]
    unsafe fn dealloc_in_leaf(
        &self,
        node: *mut CacheNode,
        entries: *const AtomicU32,
        ptr: *mut u8,
        layout: Layout,
    ) {
        let addr = ptr.addr();
        // SAFETY: the leaf covers `addr`'s page (caller).
        let entry = unsafe { Leaf::packed_entry(entries, addr >> PAGE_SHIFT) };
        let class = entry & CLASS_MASK;
        // The budget is read before any list field: the compiler then keeps the fields it read
        // for the checks in registers for the push (an atomic load between them makes it read
        // them again).
        // SAFETY: the node is alive while its thread runs; `max_size` is an atomic.
        let max_size = unsafe { (*node).max_size.load(Ordering::Relaxed) };
        // SAFETY: the node is this thread's own cache; no one else touches the lists.
        let cache = unsafe { &mut *(*node).cache.get() };
        // SAFETY: the node is alive while its thread runs; `key` never changes.
        let key = unsafe { (*node).key };
        // entry + offset in the page = offset in the span + class (the page index is below 256).
        let folded = entry + (addr & (PAGE_SIZE - 1));
        // SAFETY: the caller gives `ptr` up; `class` and `folded` are its pagemap entry's.
        match unsafe { cache.free_fast(class, folded, ptr, max_size, key) } {
            Pushed::Done => {}
            Pushed::Overflow => self.dealloc_overflow(node, class),
            Pushed::NotObjectStart => self.dealloc_not_object_start(ptr, class, layout),
            // SAFETY: `ptr` is an object start of `class` (tested) the caller gives up.
            Pushed::Keyed => unsafe { self.dealloc_keyed(node, class, ptr) },
        }
    }

    /// Pushes `ptr` onto this thread's list of `class` and runs the overflow if the list went
    /// over its limit or the cache over `max_size` (its budget, read by the caller).
    ///
    /// # Safety
    /// `node` is this thread's cache; `ptr` is an object of `class`, not on its list, that the
    /// caller gives up.
    #[inline(always)]
    unsafe fn push_or_overflow(
        &self,
        node: *mut CacheNode,
        class: usize,
        ptr: *mut u8,
        key: usize,
        max_size: usize,
    ) {
        // SAFETY: the node is this thread's own cache (caller), alive while its thread runs;
        // `ptr` is the caller's object of `class`.
        unsafe {
            let cache = &mut *(*node).cache.get();
            if !cache.push(class, ptr, max_size, key) {
                self.dealloc_overflow(node, class);
            }
        }
    }

    /// A free on the fast path of an object that carries the double-free key: aborts if it is
    /// on this thread's list of `class`, else frees it (a live block whose word held the key by
    /// chance).
    ///
    /// # Safety
    /// `node` is this thread's cache; `ptr` is an object start of `class` the caller gives up.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_keyed(&self, node: *mut CacheNode, class: usize, ptr: *mut u8) {
        // SAFETY: the node is this thread's own cache, alive while its thread runs.
        let (cache, key) = unsafe { (&*(*node).cache.get(), (*node).key) };
        confirm_not_cached(cache, class, ptr);
        // SAFETY: the node is alive; `max_size` is an atomic.
        let max_size = unsafe { (*node).max_size.load(Ordering::Relaxed) };
        // SAFETY: `ptr` is an object of `class`, not on this thread's list (confirmed).
        unsafe { self.push_or_overflow(node, class, ptr, key, max_size) }
    }

    /// A free whose pointer failed the object-start test: a page of no class span (class 0: a
    /// large block, free pages, or a leaf's page the heap never mapped) goes to the slow path,
    /// anything else aborts.
    #[cold]
    #[inline(never)]
    fn dealloc_not_object_start(&self, ptr: *mut u8, class: usize, layout: Layout) {
        if class != 0 {
            bad_free(FreeError::NotABlock { ptr: ptr.addr() })
        }
        self.dealloc_slow(ptr, layout)
    }

    /// A free on the fast path whose page is not in the thread's cached leaf: looks the leaf up
    /// (kept for the next frees), then frees as the fast path does, or through the slow path if
    /// the heap has no leaf there.
    #[cold]
    #[inline(never)]
    fn dealloc_leaf_miss(&self, node: *mut CacheNode, ptr: *mut u8, layout: Layout) {
        let page = ptr.addr() >> PAGE_SHIFT;
        let p = self.shared.load(Ordering::Acquire);
        let leaf = if p.is_null() {
            None
        } else {
            // SAFETY: the shared state lives as long as `self` (and its leaves with it).
            unsafe { (*p).pagemap.leaf_for(page) }
        };
        let Some(leaf) = leaf else {
            return self.dealloc_slow(ptr, layout);
        };
        let number = PageMap::leaf_number(page);
        let entries = leaf.entries_biased(number);
        // SAFETY: the node is this thread's own cache; only this thread touches its leaf cache.
        unsafe {
            *(*node).leaf.get() = LeafCache { number, entries };
        }
        // SAFETY: `entries` is the biased entries of the live leaf covering `ptr`'s page.
        unsafe { self.dealloc_in_leaf(node, entries, ptr, layout) }
    }

    #[cold]
    #[inline(never)]
    fn dealloc_overflow(&self, node: *mut CacheNode, class: usize) {
        let p = self.shared.load(Ordering::Acquire);
        // SAFETY: a thread cache exists, so the shared state does, for as long as `self`.
        let sh = unsafe { &*p };
        let mut backend = SharedBackend {
            shared: sh,
            source: Some(&self.source),
            node,
        };
        // SAFETY: the node is this thread's own cache.
        unsafe { (*(*node).cache.get()).overflow(class, &mut backend) };
    }

    /// Frees `ptr` when the fast path cannot: a large block, a thread without a cache in its
    /// first slot, or a pointer with no class (foreign, a large block's interior, free pages).
    #[inline(never)]
    fn dealloc_slow(&self, ptr: *mut u8, _layout: Layout) {
        let p = self.shared.load(Ordering::Acquire);
        if p.is_null() {
            bad_free(FreeError::Foreign { ptr: ptr as usize })
        }
        // SAFETY: the shared state lives as long as `self`.
        let sh = unsafe { &*p };
        let class = match small_class(sh, ptr) {
            Ok(c) => c,
            Err(e) => bad_free(e),
        };
        if class != 0 {
            if let Some(node) = self.thread_cache(sh) {
                let mut backend = SharedBackend {
                    shared: sh,
                    source: Some(&self.source),
                    node,
                };
                // SAFETY: the node is this thread's own cache; `ptr` is an object start of
                // `class` (checked) that the caller gives up.
                unsafe {
                    let cache = &mut *(*node).cache.get();
                    if cache.list(class).carries_key(ptr, sh.key) {
                        confirm_not_cached(cache, class, ptr);
                    }
                    cache.deallocate(class, ptr, sh.key, &mut backend);
                }
                return;
            }
            let mut pages = SharedPages::<S> {
                shared: sh,
                source: Some(&self.source),
            };
            // SAFETY: `ptr` is a free object of `class` (checked); a one-object list.
            unsafe {
                ptr.cast::<*mut u8>().write(null_mut());
                sh.central[class]
                    .lock()
                    .insert_range(ptr, ptr, 1, &mut pages);
            }
            return;
        }
        self.dealloc_large(sh, ptr);
    }

    #[cold]
    fn dealloc_large(&self, sh: &Shared, ptr: *mut u8) {
        let mut heap = sh.heap.lock();
        let s = match large_span(sh, &heap, ptr) {
            Ok(s) => s,
            Err(e) => {
                drop(heap);
                bad_free(e)
            }
        };
        let mut src = self.source.lock();
        // SAFETY: `s` is the live large span starting at `ptr`, given up by the caller.
        unsafe { heap.delete_span(s, &sh.pagemap, Some(&mut *src)) };
    }

    /// The usable size of the block at `ptr`: its class size, or its span's bytes. Aborts on a
    /// pointer that is not a block's start (as a free of it would), before anything reads it.
    fn usable_size(&self, ptr: *mut u8) -> usize {
        let p = self.shared.load(Ordering::Acquire);
        if p.is_null() {
            bad_free(FreeError::Foreign { ptr: ptr as usize })
        }
        // SAFETY: the shared state lives as long as `self`.
        let sh = unsafe { &*p };
        match small_class(sh, ptr) {
            Ok(0) => {
                let heap = sh.heap.lock();
                match large_span(sh, &heap, ptr) {
                    // SAFETY: a live large span of ours, not changed under the heap lock.
                    Ok(s) => unsafe { (*s).bytes() },
                    Err(e) => bad_free(e),
                }
            }
            Ok(c) => SIZE_MAP.class_size(c),
            Err(e) => bad_free(e),
        }
    }
}

/// Aborts the process with a message naming the pointer of a bad free.
#[cold]
#[inline(never)]
fn bad_free(e: FreeError) -> ! {
    abort_with(&e)
}

/// The class of the object starting at `ptr`, or 0 when `ptr`'s page belongs to no class span
/// (a large block, free pages, or not this heap: [`large_span`] decides);
/// [`FreeError::NotABlock`] for a pointer inside a class span that is not an object start.
fn small_class(sh: &Shared, ptr: *mut u8) -> Result<usize, FreeError> {
    let addr = ptr as usize;
    let entry = sh.pagemap.entry(addr >> PAGE_SHIFT);
    let class = entry & CLASS_MASK;
    let off = ((entry >> 8) << PAGE_SHIFT) | (addr & (PAGE_SIZE - 1));
    if class != 0 && !SIZE_MAP.is_object_start(class, off) {
        return Err(FreeError::NotABlock { ptr: addr });
    }
    Ok(class)
}

/// The large span starting at `ptr` (`heap` is the locked page heap):
/// [`FreeError::Foreign`] for an address the heap never had, [`FreeError::NotABlock`] for
/// anything but the start of a large block in use (its interior, free pages: a large block freed
/// twice).
fn large_span(sh: &Shared, heap: &PageHeap, ptr: *mut u8) -> Result<*mut Span, FreeError> {
    if !heap.holds(ptr as usize) {
        return Err(FreeError::Foreign { ptr: ptr as usize });
    }
    let s = sh.pagemap.get(ptr as usize >> PAGE_SHIFT);
    if s.is_null() {
        return Err(FreeError::NotABlock { ptr: ptr as usize });
    }
    // SAFETY: pagemap entries name span records of ours; under the heap lock no one changes an
    // in-use large span.
    let ok = unsafe { (*s).location == Location::InUse && (*s).class == 0 && (*s).start == ptr };
    if ok {
        Ok(s)
    } else {
        Err(FreeError::NotABlock { ptr: ptr as usize })
    }
}

/// After the key matched: aborts if `ptr` is on this thread's list of `class` (a double free).
#[cold]
#[inline(never)]
fn confirm_not_cached(cache: &ThreadCache, class: usize, ptr: *mut u8) {
    if cache.list(class).contains(ptr) {
        bad_free(FreeError::DoubleFree { ptr: ptr as usize })
    }
}

impl<S: MemorySource> Drop for Tcmalloc<S> {
    fn drop(&mut self) {
        let p = *self.shared.get_mut();
        if !p.is_null() {
            // SAFETY: the shared state is alive until the source drops, after this.
            let id = unsafe { (*p).id };
            let mut live = LIVE.lock();
            if let Some(e) = live.iter_mut().find(|e| e.id == id) {
                e.id = 0;
                e.shared = null();
            }
        }
    }
}

// SAFETY: blocks are aligned and sized as asked (size classes honour alignment up to a page,
// larger alignments get aligned spans), stay valid until freed, and are handed to one caller;
// the bad frees the checks see abort (see the module docs).
unsafe impl<S: MemorySource> GlobalAlloc for Tcmalloc<S> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_impl(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.dealloc_impl(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        let usable = self.usable_size(ptr);
        let same_class = SIZE_MAP.class_for(new).is_some_and(|c| {
            SIZE_MAP.class_size(c) == usable && SIZE_MAP.class_for(layout) == Some(c)
        });
        let same_pages = SIZE_MAP.class_for(new).is_none()
            && SIZE_MAP.class_for(layout).is_none()
            && new_size.div_ceil(PAGE_SIZE) * PAGE_SIZE == usable;
        if same_class || same_pages {
            return ptr;
        }
        let fresh = self.alloc_impl(new);
        if !fresh.is_null() {
            // SAFETY: both blocks are live and distinct; the old one has `layout.size()` bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
            }
            self.dealloc_impl(ptr, layout);
        }
        fresh
    }
}

// SAFETY: as for `GlobalAlloc`; the slice handed out is the size asked (a caller may free with
// any size up to the length it got), within the block.
unsafe impl<S: MemorySource> allocator_api2::alloc::Allocator for Tcmalloc<S> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = self.alloc_impl(layout);
        let p = NonNull::new(p).ok_or(allocator_api2::alloc::AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.dealloc_impl(ptr.as_ptr(), layout)
    }
}
