//! The page level: spans are taken from the manager `L` when a class has no free object and go
//! back to it when all their objects are free (beyond the empty spans a class keeps), with the
//! page map written when a span arrives and erased before it leaves.
//!
//! ```text
//!   new_span(c):   L.allocate(span_bytes, span_align) -> page map covers it -> init header
//!                  -> push on classes[c].partial                       (spans += 1, empty += 1)
//!   drop_span(c):  unlink from partial -> magic = 0 -> erase page map -> L.deallocate
//!                  (the last span takes the page map back to L too)
//! ```

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::FreeSpaceManager;

use crate::geometry::{base_of, init_span};
use crate::span::{SpanHeader, SpanList};
use crate::{SLOTS, Segregated, TINY};

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
    /// Gives every empty span back to the page level; returns how many.
    pub fn release_empty_spans(&mut self) -> usize {
        let mut n = 0;
        for c in 1..SLOTS {
            let mut s = self.classes[c].partial;
            while !s.is_null() {
                // SAFETY: `s` is a span in class c's partial list.
                let (next, live) = unsafe { ((*s).next, (*s).live) };
                let current_tiny = c == TINY && s == self.tiny.span && !self.tiny.block.is_null();
                if live == 0 && !current_tiny {
                    // SAFETY: an empty span of class c, in its partial list.
                    unsafe { self.drop_span(c, s) };
                    n += 1;
                }
                s = next;
            }
        }
        n
    }

    /// A new span for class `c` from the page level, pushed on its partial list.
    pub(crate) fn new_span(&mut self, c: usize) -> Option<*mut SpanHeader> {
        let g = self.geo(c)?;
        let bytes = g.span_bytes();
        let layout = Layout::from_size_align(bytes, g.span_align()).ok()?;
        let block = self.large.allocate(layout).ok()?;
        let span = block.cast::<u8>().as_ptr();
        if !self.pages.cover(span as usize, bytes, &mut self.large) {
            // SAFETY: the block was just allocated with `layout` and is unused.
            let _ = unsafe { self.large.deallocate(block.cast(), layout) };
            self.sync_footprint();
            return None;
        }
        self.pages.set(span, bytes, c as u8);
        let per_slot = if c == TINY { 16 } else { 1 };
        // SAFETY: a fresh block of `bytes` bytes aligned to `bytes`, ours alone.
        let s = unsafe { init_span(span, c as u16, &g, per_slot) };
        let st = &mut self.classes[c];
        // SAFETY: `s` is a fresh span in no list.
        unsafe { SpanList::push(&mut st.partial, s) };
        st.spans += 1;
        self.spans += 1;
        st.empty += 1;
        self.sync_footprint();
        Some(s)
    }

    /// Returns an empty span of class `c` (in its partial list) to the page level.
    ///
    /// # Safety
    /// `s` is a span of class `c` with no live object, in the partial list.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn drop_span(&mut self, c: usize, s: *mut SpanHeader) {
        let Some(g) = self.geo(c) else { return };
        let st = &mut self.classes[c];
        // SAFETY: `s` is in the partial list (caller).
        unsafe {
            SpanList::remove(&mut st.partial, s);
            (*s).magic = 0;
        }
        st.spans -= 1;
        self.spans -= 1;
        st.empty -= 1;
        let bytes = g.span_bytes();
        // The page level may hand these bytes out again: the map must not send a free there.
        self.pages.set(base_of(s, &g), bytes, 0);
        // The layout `new_span` asked with (a page level that checks the alignment, as best fit
        // does, would refuse another one and the span would leak).
        if let Ok(layout) = Layout::from_size_align(bytes, g.span_align()) {
            // SAFETY: the span was allocated from `large` with this layout and nothing in it is
            // live. A refusal cannot happen for a block `large` gave us; if it did, the span is
            // only leaked.
            let base = base_of(s, &g);
            // SAFETY: as above.
            let _ = unsafe { self.large.deallocate(NonNull::new_unchecked(base), layout) };
        }
        if self.spans == 0 {
            // No span left: the page map (taken from `L` with the first span) goes back too, so
            // that an emptied heap leaves `L` as it found it.
            self.pages.release(&mut self.large);
        }
        self.sync_footprint();
    }
}
