//! The thread cache: the front end, a free list per size class owned by one thread, no locks.
//!
//! ```text
//!   lists[c]: head -> obj -> obj -> ...   length, lowater, max_length, overages
//!   size (bytes cached)                   max_size (budget; others may steal from it)
//!
//!   allocate: pop; empty -> fetch min(max_length, batch) from the central list, then
//!             slow start: max_length += 1 below batch, else += batch (<= 8192, a multiple)
//!   free:     (Tcmalloc's fast path, free_fast: the object-start test on the pointer's pagemap
//!             entry with the list's constants, the double-free key, then) push;
//!             length > max_length -> ListTooLong: give one batch back,
//!             max_length += 1 below batch, or count an overage above it (3 overages shrink
//!             max_length by a batch);  size > max_size -> Scavenge
//!   Scavenge: give back half of each list's low-water mark, shrink max_length by a batch,
//!             then raise max_size by 64 KiB from the unclaimed budget or by stealing it
//! ```
//!
//! This is gperftools 2.10's `ThreadCache` algorithm; what it asks of the shared layers (central
//! lists, budget) goes through [`Backend`].

use core::ptr::null_mut;

use crate::key::{carries, key_offset};
use crate::size_map::{NUM_CLASSES, SIZE_MAP, SizeMap};

/// Longest a list's `max_length` grows (gperftools' `kMaxDynamicFreeListLength`).
pub const MAX_DYNAMIC_FREE_LIST_LENGTH: u32 = 8192;
/// Overages tolerated before `max_length` shrinks (`kMaxOverages`).
pub const MAX_OVERAGES: u32 = 3;
/// Budget moved at a time between threads (`kStealAmount`).
pub const STEAL_AMOUNT: usize = 64 * 1024;
/// A thread's budget is never stolen below this (`kMinThreadCacheSize`).
pub const MIN_THREAD_CACHE_SIZE: usize = 512 * 1024;
/// Default overall limit of all thread caches (`kDefaultOverallThreadCacheSize`).
pub const DEFAULT_OVERALL_THREAD_CACHE_SIZE: usize = 32 << 20;

/// What a thread cache needs from the shared layers.
pub trait Backend {
    /// Up to `n` objects of `class` from its central list: `(head, tail, count)`, `count >= 1`.
    fn remove_range(&mut self, class: usize, n: usize) -> Option<(*mut u8, *mut u8, usize)>;
    /// Gives a null-terminated list of `n` objects of `class` back to its central list.
    ///
    /// # Safety
    /// The objects are of `class`, came from this allocator, and are no longer used.
    unsafe fn insert_range(&mut self, class: usize, head: *mut u8, tail: *mut u8, n: usize);
    /// The cache's budget in bytes (`max_size_`; other threads may lower it by stealing).
    fn max_size(&self) -> usize;
    /// Raises the cache's budget (gperftools' `IncreaseCacheLimit`).
    fn increase_cache_limit(&mut self);
}

/// One class's list in a thread cache, with the class's constants the free path needs (so that
/// one address, the list's, serves the object-start test, the key and the push).
///
/// 64 bytes, so a class byte scaled by one shift finds its list.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct FreeList {
    /// The objects, linked through their first word; exactly `length` of them, then null.
    pub(crate) head: *mut u8,
    pub(crate) length: u32,
    /// `lowater <= length`: the lowest length since the last scavenge.
    pub(crate) lowater: u32,
    /// `1 <= max_length <= MAX_DYNAMIC_FREE_LIST_LENGTH`.
    pub(crate) max_length: u32,
    /// `overages <= MAX_OVERAGES`.
    pub(crate) overages: u32,
    /// The class's object size.
    pub(crate) object_size: u32,
    /// Where cached objects carry the double-free key: `key_offset(object_size)`.
    pub(crate) key_offset: u32,
    /// The class's object-start test ([`SizeMap::start_test`]) on an offset with the class added
    /// (what a pagemap entry plus the offset in the page gives): `folded` starts an object iff
    /// `folded * start_magic - start_bias (mod 2^64) <= start_max`, where `start_bias = class *
    /// start_magic`. Class 0 and bytes past the last class have `start_magic` 0 and `start_bias`
    /// 1: the left side is then always `2^64 - 1`, above `start_max` 0, so nothing passes.
    start_magic: u64,
    start_bias: u64,
    start_max: u64,
}

impl FreeList {
    const fn new(class: usize) -> Self {
        let object_size = if class < NUM_CLASSES {
            CLASS_SIZES[class]
        } else {
            0
        };
        let (start_magic, start_max) = MAP.start_test(class as u8);
        let start_bias = if start_magic == 0 {
            1
        } else {
            (class as u64).wrapping_mul(start_magic)
        };
        FreeList {
            head: null_mut(),
            length: 0,
            lowater: 0,
            max_length: 1,
            overages: 0,
            object_size,
            key_offset: key_offset(object_size as usize) as u32,
            start_magic,
            start_bias,
            start_max,
        }
    }

    /// Whether `folded`, an offset from the start of a span of this list's class plus the class
    /// (a pagemap entry plus the address's offset in its page, [`crate::pagemap`]), is where an
    /// object starts. The offset must be below
    /// [`MAX_SPAN_OFFSET`](crate::size_map::MAX_SPAN_OFFSET) (a page index below 256). Always
    /// false on the lists of class 0 and past the last class.
    #[inline(always)]
    pub fn is_object_start(&self, folded: usize) -> bool {
        (folded as u64)
            .wrapping_mul(self.start_magic)
            .wrapping_sub(self.start_bias)
            <= self.start_max
    }

    /// Whether the object at `obj` carries `key` (then [`contains`](Self::contains) decides).
    ///
    /// # Safety
    /// `obj` is an object start of this list's class.
    #[inline(always)]
    pub unsafe fn carries_key(&self, obj: *mut u8, key: usize) -> bool {
        // SAFETY: the key's word lies inside the object (caller; `key_offset` is 0 for 8 B
        // objects).
        unsafe { carries(obj, self.key_offset as usize, key) }
    }

    /// Objects on the list.
    pub fn length(&self) -> usize {
        self.length as usize
    }

    /// The list's slow-start limit.
    pub fn max_length(&self) -> usize {
        self.max_length as usize
    }

    /// Lowest length since the last scavenge.
    pub fn lowater(&self) -> usize {
        self.lowater as usize
    }

    /// Times the list overflowed above one batch since `max_length` last changed.
    pub fn overages(&self) -> usize {
        self.overages as usize
    }

    /// The objects, first to be handed out first.
    pub fn iter(&self) -> impl Iterator<Item = *mut u8> + '_ {
        let mut cur = self.head;
        let mut left = self.length;
        core::iter::from_fn(move || {
            if left == 0 || cur.is_null() {
                return None;
            }
            let o = cur;
            left -= 1;
            // SAFETY: cached objects are linked through their first word.
            cur = unsafe { o.cast::<*mut u8>().read() };
            Some(o)
        })
    }

    /// Whether `obj` is on the list (a walk of `length` objects: the confirmation of a double
    /// free after the key matched).
    pub fn contains(&self, obj: *mut u8) -> bool {
        self.iter().any(|o| o == obj)
    }

    /// Unlinks the first `n` (`1..=length`) objects: `(head, tail)`, tail's link nulled.
    fn pop_range(&mut self, n: u32) -> (*mut u8, *mut u8) {
        let head = self.head;
        let mut tail = head;
        for _ in 1..n {
            // SAFETY: the list holds at least `n` linked objects.
            tail = unsafe { tail.cast::<*mut u8>().read() };
        }
        // SAFETY: `tail` is an object of the list.
        unsafe {
            self.head = tail.cast::<*mut u8>().read();
            tail.cast::<*mut u8>().write(null_mut());
        }
        self.length -= n;
        if self.length < self.lowater {
            self.lowater = self.length;
        }
        (head, tail)
    }
}

/// What [`ThreadCache::free_fast`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Not pushed: the pointer is no object start of the class (or the class is 0).
    NotObjectStart,
    /// Pushed, within the limits.
    Done,
    /// Pushed; the list or the cache went over its limit: [`ThreadCache::overflow`] must run.
    Overflow,
    /// Not pushed: the object carries the key.
    Keyed,
}

/// Clears the key of an object handed out by another path than [`ThreadCache::try_pop`].
///
/// # Safety
/// `obj` is an object whose size is at least `offset + 8` bytes, owned by the caller.
#[inline]
pub unsafe fn clear_key(obj: *mut u8, offset: usize) {
    // SAFETY: the word lies inside the object (caller).
    unsafe { obj.add(offset).cast::<usize>().write(0) }
}

const fn lists() -> [FreeList; LISTS] {
    let mut a = [FreeList::new(0); LISTS];
    let mut c = 0;
    while c < LISTS {
        a[c] = FreeList::new(c);
        c += 1;
    }
    a
}

/// Lists in a cache: one per value of a class byte.
const LISTS: usize = 256;

const MAP: SizeMap = SizeMap::compute();
const CLASS_SIZES: [u32; NUM_CLASSES] = MAP.class_sizes();

/// A thread's cache.
#[derive(Debug)]
pub struct ThreadCache {
    /// `lists[c]` holds objects of class `c` only; `lists[0]` and those past the last class
    /// are always empty (there are 256 so that any class byte indexes them without a bounds
    /// check on the fast paths).
    pub(crate) lists: [FreeList; LISTS],
    /// The sum over the lists of `length * object_size`.
    pub(crate) size: usize,
}

// SAFETY: the cached objects belong to the cache.
unsafe impl Send for ThreadCache {}

impl ThreadCache {
    /// An empty cache (its budget is kept by the [`Backend`]).
    pub const fn new() -> Self {
        ThreadCache {
            lists: lists(),
            size: 0,
        }
    }

    /// Bytes cached.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The list of `class`.
    #[inline(always)]
    pub fn list(&self, class: usize) -> &FreeList {
        &self.lists[class as u8 as usize]
    }

    /// An object of `class` from the list, if it has one (the fast path: no backend). Its key
    /// is cleared.
    #[inline(always)]
    pub fn try_pop(&mut self, class: usize) -> Option<*mut u8> {
        let l = &mut self.lists[class as u8 as usize];
        let o = l.head;
        if o.is_null() {
            return None;
        }
        // SAFETY: cached objects are linked through their first word; the key's word lies
        // inside the object (read the link first: for 8 B objects they are the same word).
        unsafe {
            l.head = o.cast::<*mut u8>().read();
            o.add(l.key_offset as usize).cast::<usize>().write(0);
        }
        l.length -= 1;
        if l.length < l.lowater {
            l.lowater = l.length;
        }
        self.size -= l.object_size as usize;
        Some(o)
    }

    /// An object of `class`, from the list or else from the central list.
    #[inline]
    pub fn allocate<B: Backend>(&mut self, class: usize, backend: &mut B) -> Option<*mut u8> {
        match self.try_pop(class) {
            Some(o) => Some(o),
            None => self.fetch_from_central(class, backend),
        }
    }

    /// Refills the empty list of `class` from the central list and returns one object
    /// (gperftools' `FetchFromCentralCache`).
    #[cold]
    #[inline(never)]
    pub fn fetch_from_central<B: Backend>(
        &mut self,
        class: usize,
        backend: &mut B,
    ) -> Option<*mut u8> {
        let batch = SIZE_MAP.batch_size(class) as u32;
        let l = &mut self.lists[class as u8 as usize];
        let want = l.max_length.min(batch) as usize;
        let (head, tail, count) = backend.remove_range(class, want)?;
        if count > 1 {
            // SAFETY: `head..tail` is a list of `count` objects; the first is the caller's.
            let rest = unsafe { head.cast::<*mut u8>().read() };
            // SAFETY: `tail` is the last object of the fetched list.
            unsafe { tail.cast::<*mut u8>().write(l.head) };
            l.head = rest;
            l.length += count as u32 - 1;
            self.size += SIZE_MAP.class_size(class) * (count - 1);
        }
        // SAFETY: `head` is an object of `class`, the caller's now; its link was read above
        // (for 8 B objects the key's word is the link's).
        unsafe { clear_key(head, l.key_offset as usize) };
        if l.max_length < batch {
            l.max_length += 1;
        } else {
            let mut new = (l.max_length + batch).min(MAX_DYNAMIC_FREE_LIST_LENGTH);
            new -= new % batch;
            l.max_length = new;
        }
        Some(head)
    }

    /// Whether the object at `ptr` may already be on the list of `class`: it carries `key`
    /// (then [`FreeList::contains`] decides).
    ///
    /// # Safety
    /// `ptr` is an object start of `class`.
    #[inline(always)]
    pub unsafe fn carries_key(&self, class: usize, ptr: *mut u8, key: usize) -> bool {
        // SAFETY: `ptr` is an object start of `class` (caller).
        unsafe { self.list(class).carries_key(ptr, key) }
    }

    /// Pushes a freed object of `class`, marked with `key` (the fast path). Returns `false` when
    /// the list grew too long or the cache went over `max_size`: then
    /// [`overflow`](Self::overflow) must run.
    ///
    /// # Safety
    /// `ptr` is a block of `class` from this allocator, no longer used.
    #[inline(always)]
    pub unsafe fn push(&mut self, class: usize, ptr: *mut u8, max_size: usize, key: usize) -> bool {
        let l = &mut self.lists[class as u8 as usize];
        // SAFETY: the block is at least 8 bytes, 8-aligned, and ours now (caller); the key's
        // word lies inside it and, for 8 B objects, is the link's (written second).
        unsafe {
            ptr.add(l.key_offset as usize).cast::<usize>().write(key);
            ptr.cast::<*mut u8>().write(l.head);
        }
        l.head = ptr;
        l.length += 1;
        if l.length > l.max_length {
            return false;
        }
        self.size += l.object_size as usize;
        self.size <= max_size
    }

    /// The free fast path, on the class byte of the pointer's pagemap entry and `folded` (the
    /// entry plus the pointer's offset in its page, see [`FreeList::is_object_start`]):
    /// [`Pushed::NotObjectStart`] if `ptr` is no object start of `class` (always for class 0);
    /// [`Pushed::Keyed`] if the object carries `key` and so may be on the list already (the
    /// caller decides with [`FreeList::contains`]); in both cases nothing is changed. Else the
    /// object is pushed as by [`push`](Self::push) ([`Pushed::Overflow`] where `push` returns
    /// `false`). One function, so the list's address is found once for the test, the key's load
    /// and store and the push.
    ///
    /// # Safety
    /// `ptr` is a pointer the caller gives up as a block of this allocator; `class` and `folded`
    /// come from its pagemap entry (a page index below 256), so that passing the test makes it
    /// an object start of `class`.
    #[inline(always)]
    pub unsafe fn free_fast(
        &mut self,
        class: usize,
        folded: usize,
        ptr: *mut u8,
        max_size: usize,
        key: usize,
    ) -> Pushed {
        let l = &mut self.lists[class as u8 as usize];
        if !l.is_object_start(folded) {
            return Pushed::NotObjectStart;
        }
        // SAFETY: the key's word lies inside the object, an object start of `class` (tested,
        // caller; `key_offset` is 0 for 8 B objects), which is 8-aligned.
        let word = unsafe { ptr.add(l.key_offset as usize).cast::<usize>() };
        // SAFETY: as above.
        if unsafe { word.read() } == key {
            return Pushed::Keyed;
        }
        // SAFETY: the block is ours now (caller); for 8 B objects the key's word is the link's,
        // written second.
        unsafe {
            word.write(key);
            ptr.cast::<*mut u8>().write(l.head);
        }
        l.head = ptr;
        l.length += 1;
        if l.length > l.max_length {
            return Pushed::Overflow;
        }
        self.size += l.object_size as usize;
        if self.size <= max_size {
            Pushed::Done
        } else {
            Pushed::Overflow
        }
    }

    /// What a [`push`](Self::push) that returned `false` leaves to do: `ListTooLong` or
    /// `Scavenge`.
    #[cold]
    #[inline(never)]
    pub fn overflow<B: Backend>(&mut self, class: usize, backend: &mut B) {
        let l = &self.lists[class as u8 as usize];
        if l.length > l.max_length {
            self.list_too_long(class, backend);
        } else {
            self.scavenge(backend);
        }
    }

    /// Takes back an object of `class`, marked with `key`.
    ///
    /// # Safety
    /// `ptr` is a block of `class` from this allocator, no longer used.
    #[inline]
    pub unsafe fn deallocate<B: Backend>(
        &mut self,
        class: usize,
        ptr: *mut u8,
        key: usize,
        backend: &mut B,
    ) {
        // SAFETY: forwarded caller contract.
        if !unsafe { self.push(class, ptr, backend.max_size(), key) } {
            self.overflow(class, backend);
        }
    }

    #[cold]
    fn list_too_long<B: Backend>(&mut self, class: usize, backend: &mut B) {
        self.size += SIZE_MAP.class_size(class);
        let batch = SIZE_MAP.batch_size(class) as u32;
        self.release_to_central(class, batch, backend);
        let l = &mut self.lists[class as u8 as usize];
        if l.max_length < batch {
            l.max_length += 1;
        } else if l.max_length > batch {
            l.overages += 1;
            if l.overages > MAX_OVERAGES {
                l.max_length -= batch;
                l.overages = 0;
            }
        }
        if self.size > backend.max_size() {
            self.scavenge(backend);
        }
    }

    /// Gives `n` objects of `class` (at most the list's length) back to the central list, in
    /// batches (gperftools' `ReleaseToCentralCache`).
    fn release_to_central<B: Backend>(&mut self, class: usize, n: u32, backend: &mut B) {
        let l = &mut self.lists[class as u8 as usize];
        let mut n = n.min(l.length);
        if n == 0 {
            return;
        }
        let delta = SIZE_MAP.class_size(class) * n as usize;
        let batch = SIZE_MAP.batch_size(class) as u32;
        while n > 0 {
            let take = n.min(batch);
            let (head, tail) = l.pop_range(take);
            // SAFETY: the objects were cached here, so they are free blocks of `class`.
            unsafe { backend.insert_range(class, head, tail, take as usize) };
            n -= take;
        }
        self.size -= delta;
    }

    /// Gives back half of each list's low-water mark and raises the budget
    /// (gperftools' `Scavenge`).
    #[cold]
    pub fn scavenge<B: Backend>(&mut self, backend: &mut B) {
        for class in 1..NUM_CLASSES {
            let low = self.lists[class].lowater;
            if low > 0 {
                let drop = if low > 1 { low / 2 } else { 1 };
                self.release_to_central(class, drop, backend);
                let batch = SIZE_MAP.batch_size(class) as u32;
                let l = &mut self.lists[class as u8 as usize];
                if l.max_length > batch {
                    l.max_length = (l.max_length - batch).max(batch);
                }
            }
            let l = &mut self.lists[class as u8 as usize];
            l.lowater = l.length;
        }
        backend.increase_cache_limit();
    }

    /// Gives every cached object back to the central lists (thread exit).
    pub fn flush<B: Backend>(&mut self, backend: &mut B) {
        for class in 1..NUM_CLASSES {
            let n = self.lists[class].length;
            self.release_to_central(class, n, backend);
            let l = &mut self.lists[class as u8 as usize];
            l.lowater = 0;
        }
    }

    /// Resets every list to its initial state (a recycled cache for a new thread). The cache must
    /// be empty.
    pub fn reset(&mut self) {
        debug_assert_eq!(self.size, 0);
        self.lists = lists();
        self.size = 0;
    }
}

impl Default for ThreadCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_map::{MAX_SPAN_OFFSET, PAGE_SHIFT};

    /// Every list's folded object-start test agrees with the size map's on every offset a free
    /// can form (sampled under Miri), and the lists of class 0 and past the last class refuse
    /// every offset.
    #[test]
    fn each_lists_folded_test_is_the_size_maps() {
        let cache = ThreadCache::new();
        let step = if cfg!(miri) { 16411 } else { 3 };
        for class in 0..LISTS {
            let l = cache.list(class);
            for off in (0..MAX_SPAN_OFFSET)
                .step_by(step)
                .chain([0, MAX_SPAN_OFFSET - 1])
            {
                let want = class < NUM_CLASSES && SIZE_MAP.is_object_start(class, off);
                assert_eq!(
                    l.is_object_start(off + class),
                    want,
                    "class {class} offset {off}"
                );
            }
        }
        // The object starts themselves, which a step may skip.
        for class in 1..NUM_CLASSES {
            let size = SIZE_MAP.class_size(class);
            let n = SIZE_MAP.objects_per_span(class);
            let l = cache.list(class);
            assert!(
                (0..n).all(|k| l.is_object_start(k * size + class)),
                "class {class}"
            );
            assert!(
                !l.is_object_start(n * size + class),
                "class {class}: the span's tail"
            );
            assert!(
                (n * size) >> PAGE_SHIFT < 256,
                "class {class}: a page index fits the pagemap entry"
            );
        }
    }
}
