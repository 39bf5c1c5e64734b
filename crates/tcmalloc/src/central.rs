//! The central free list of one size class: the spans cut into that class's objects, with the
//! class's transfer cache in front.
//!
//! ```text
//!   remove_range(n) / insert_range(n)
//!          |
//!   transfer cache (whole batches) ----- hit: O(1)
//!          | miss
//!   levels[7] -> [span: 900 of 1024 out] -> ...     fullest spans first
//!   levels[6] -> [span:  40 of 1024 out]
//!   ...
//!   levels[0] -> [fresh span]
//!          | none
//!   page heap: new span of class_pages pages, cut into objects in address order (Populate)
//! ```
//!
//! Spans with free objects are kept on `NUM_LEVELS` lists by allocation level
//! (`bit_width(objects out)`, capped), and objects are taken from the fullest span first, so
//! sparsely used spans drain and go back to the page heap (as google/tcmalloc does); a full span
//! is on no list. A span whose objects are all back is returned to the page heap at once.

use core::ptr::null_mut;

use crate::pagemap::PageMap;
use crate::size_map::{PAGE_SHIFT, SIZE_MAP};
use crate::span::{NO_LEVEL, Span, SpanList};
use crate::transfer::{Batch, TransferCache};

/// Number of allocation-level lists.
pub const NUM_LEVELS: usize = 8;

/// What a central list needs from the back end: spans of pages, and the pagemap.
pub trait PageSource {
    /// A span of `pages` pages registered with size class `class`, or `None` if out of memory.
    fn new_class_span(&mut self, pages: usize, class: usize) -> Option<*mut Span>;
    /// Returns a class span whose objects are all free to the page heap.
    ///
    /// # Safety
    /// `s` is an in-use class span with no objects out, on no list.
    unsafe fn delete_class_span(&mut self, s: *mut Span);
    /// The pagemap.
    fn pagemap(&self) -> &PageMap;
}

/// The central free list of one class.
#[derive(Debug)]
pub struct Central {
    pub(crate) class: usize,
    /// `levels[l]` holds exactly the class's spans that have a free object and whose
    /// `level_of(refcount)` is `l` (`Span::level == l`); a span with no free object is on none.
    pub(crate) levels: [SpanList; NUM_LEVELS],
    /// The class's transfer cache.
    pub transfer: TransferCache,
    /// Spans this class holds: in use, of this class, with `refcount >= 1`.
    pub spans: usize,
    /// Free objects inside those spans (the sum of their free lists' lengths; the transfer
    /// cache not counted).
    pub free_objects: usize,
}

// SAFETY: the spans and objects reachable from a central list belong to it.
unsafe impl Send for Central {}

/// The level list a span with `refcount` objects out and a free object belongs on.
#[inline]
pub(crate) fn level_of(refcount: u32) -> u8 {
    ((u32::BITS - refcount.leading_zeros()) as usize).min(NUM_LEVELS - 1) as u8
}

impl Central {
    /// The (empty) central list of `class`.
    pub const fn new(class: usize) -> Self {
        Central {
            class,
            levels: [const { SpanList::new() }; NUM_LEVELS],
            transfer: TransferCache::new(),
            spans: 0,
            free_objects: 0,
        }
    }

    /// Puts `s` on the list its fullness says (none when it has no free object).
    ///
    /// # Safety
    /// `s` is one of this class's spans.
    #[inline]
    unsafe fn relevel(&mut self, s: *mut Span) {
        // SAFETY: `s` is ours (caller).
        unsafe {
            let new = if (*s).objects.is_null() {
                NO_LEVEL
            } else {
                level_of((*s).refcount)
            };
            let old = (*s).level;
            if new != old {
                if old != NO_LEVEL {
                    self.levels[old as usize].remove(s);
                }
                if new != NO_LEVEL {
                    self.levels[new as usize].push(s);
                }
                (*s).level = new;
            }
        }
    }

    fn fullest(&self) -> *mut Span {
        for l in (0..NUM_LEVELS).rev() {
            if !self.levels[l].is_empty() {
                return self.levels[l].head;
            }
        }
        null_mut()
    }

    /// Takes up to `n` objects: returns `(head, tail, count)` of a linked list with `count >= 1`,
    /// or `None` when out of memory (gperftools' `RemoveRange`).
    pub fn remove_range(
        &mut self,
        n: usize,
        pages: &mut dyn PageSource,
    ) -> Option<(*mut u8, *mut u8, usize)> {
        let class = self.class;
        if let Some(b) = self.transfer.remove(class, n) {
            return Some((b.head, b.tail, n));
        }
        if self.fullest().is_null() {
            self.populate(pages)?;
        }
        let mut head: *mut u8 = null_mut();
        let mut tail: *mut u8 = null_mut();
        let mut count = 0;
        while count < n {
            let s = self.fullest();
            if s.is_null() {
                break;
            }
            // SAFETY: `s` is one of our spans; its free objects are linked through their first
            // word and lie inside it.
            unsafe {
                while count < n && !(*s).objects.is_null() {
                    let obj = (*s).objects;
                    (*s).objects = obj.cast::<*mut u8>().read();
                    obj.cast::<*mut u8>().write(head);
                    if head.is_null() {
                        tail = obj;
                    }
                    head = obj;
                    count += 1;
                    (*s).refcount += 1;
                }
                self.relevel(s);
            }
        }
        self.free_objects -= count;
        (count > 0).then_some((head, tail, count))
    }

    /// Takes back a list of `n` objects (gperftools' `InsertRange`).
    ///
    /// # Safety
    /// `head..tail` is a null-terminated list of `n` objects of this class, out of this central
    /// list and no longer used by anyone.
    pub unsafe fn insert_range(
        &mut self,
        head: *mut u8,
        tail: *mut u8,
        n: usize,
        pages: &mut dyn PageSource,
    ) {
        if self.transfer.insert(self.class, Batch { head, tail }, n) {
            return;
        }
        let mut obj = head;
        while !obj.is_null() {
            // SAFETY: each object is one of ours (caller), so its page maps to its span.
            unsafe {
                let next = obj.cast::<*mut u8>().read();
                let s = pages.pagemap().get(obj as usize >> PAGE_SHIFT);
                self.release_to_span(s, obj, pages);
                obj = next;
            }
        }
    }

    /// # Safety
    /// `obj` is a free object of span `s` of this class.
    unsafe fn release_to_span(&mut self, s: *mut Span, obj: *mut u8, pages: &mut dyn PageSource) {
        // SAFETY: `s` is the object's span (caller).
        unsafe {
            obj.cast::<*mut u8>().write((*s).objects);
            (*s).objects = obj;
            (*s).refcount -= 1;
            self.free_objects += 1;
            if (*s).refcount == 0 {
                if (*s).level != NO_LEVEL {
                    self.levels[(*s).level as usize].remove(s);
                    (*s).level = NO_LEVEL;
                }
                self.free_objects -= SIZE_MAP.objects_per_span(self.class);
                self.spans -= 1;
                pages.delete_class_span(s);
            } else {
                self.relevel(s);
            }
        }
    }

    /// Gets a new span from the page heap and cuts it into objects (gperftools' `Populate`).
    fn populate(&mut self, pages: &mut dyn PageSource) -> Option<()> {
        let class = self.class;
        let s = pages.new_class_span(SIZE_MAP.class_pages(class), class)?;
        let size = SIZE_MAP.class_size(class);
        let n = SIZE_MAP.objects_per_span(class);
        // SAFETY: `s` is a fresh span of `class_pages` pages, ours alone; the objects lie inside.
        unsafe {
            let base = (*s).start;
            for i in 0..n {
                let obj = base.add(i * size);
                let next = if i + 1 < n {
                    base.add((i + 1) * size)
                } else {
                    null_mut()
                };
                obj.cast::<*mut u8>().write(next);
            }
            (*s).objects = base;
            (*s).refcount = 0;
            (*s).level = NO_LEVEL;
            self.relevel(s);
        }
        self.spans += 1;
        self.free_objects += n;
        Some(())
    }

    /// The spans on each level list, fullest level first: `(level, list)`.
    pub fn levels(&self) -> impl Iterator<Item = (usize, &SpanList)> {
        (0..NUM_LEVELS)
            .rev()
            .map(move |l| (l, &self.levels[l]))
            .filter(|(_, list)| !list.is_empty())
    }
}
