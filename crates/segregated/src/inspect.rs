//! What `inspect()` shows: first the page level (`L`'s own picture, in which spans are live
//! blocks), then every span as a region of its own with its objects, then one list per class.
//!
//! ```text
//!   (L's regions, blocks, lists, values)
//!   region  page map                 block Metadata (its entries, a live block of L)
//!   region  span 8 KiB               block hdr Metadata | obj Live | obj Live | objs Free | tail Padding
//!   list    class 5 (48 B): the class's spans that have a free object
//!   list    tiny (16 B blocks): likewise for the tiny spans
//!   values  class 5 live objects, tiny bytes saved, ...
//! ```

use allocator_traits::{BlockKind, Inspector};

use crate::free_slots::FreeSlots;
use crate::geometry::base_of;
use crate::span::{SpanHeader, SpanList};
use crate::{FreeSpaceManager, SLOTS, Segregated, TINY};

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
    fn show_span(&self, c: usize, s: *mut SpanHeader, out: &mut dyn Inspector) {
        let Some(g) = self.geo(c) else { return };
        let base = base_of(s, &g) as usize;
        let size = g.size as usize;
        out.region(base, g.span_bytes());
        if g.first > 0 {
            out.block(base, g.first as usize * size, BlockKind::Metadata);
        }
        // SAFETY: `s` is one of class c's spans.
        let bump = unsafe { (*s).bump } as usize;
        // Live: handed out and not on the span's free list (a list the walk would report is
        // read up to the fault).
        // SAFETY: one of class c's spans, `first <= bump <= slots`.
        let free = unsafe { FreeSlots::read(s, &g) }.ok();
        let mut free_run: Option<usize> = None;
        for slot in g.first as usize..g.slots as usize {
            let at = base + slot * size;
            let live = slot < bump && free.as_ref().is_none_or(|f| !f.has(slot));
            // The tiny allocator's current block holding no object is its cache, not a caller's.
            let idle_tiny = c == TINY && at == self.tiny.block as usize && self.tiny.objects == 0;
            if live && idle_tiny {
                if let Some(f) = free_run.take() {
                    out.block(f, at - f, BlockKind::Free);
                }
                out.block(at, size, BlockKind::Cached);
            } else if live {
                if let Some(f) = free_run.take() {
                    out.block(f, at - f, BlockKind::Free);
                }
                out.block(at, size, BlockKind::Live { requested: 0 });
            } else {
                free_run.get_or_insert(at);
            }
        }
        let end = base + g.slots as usize * size;
        if let Some(f) = free_run {
            out.block(f, end - f, BlockKind::Free);
        }
        if g.header_at > 0 {
            out.block(end, base + g.span_bytes() - end, BlockKind::Metadata);
        } else if end < base + g.span_bytes() {
            out.block(end, base + g.span_bytes() - end, BlockKind::Padding);
        }
    }

    pub(crate) fn show(&self, out: &mut dyn Inspector) {
        self.large.inspect(out);
        // The page map's entries: a live block of `L`, holding the front's own metadata.
        if let Some((at, len)) = self.pages.storage() {
            out.region(at, len);
            out.block(at, len, BlockKind::Metadata);
        }
        for c in 1..SLOTS {
            let st = &self.classes[c];
            SpanList::for_each(st.partial, |s| self.show_span(c, s, out));
            SpanList::for_each(st.full, |s| self.show_span(c, s, out));
        }
        for c in 1..SLOTS {
            let st = &self.classes[c];
            if st.spans == 0 {
                continue;
            }
            let Some(g) = self.geo(c) else { continue };
            if c == TINY {
                out.begin_list(format_args!("tiny ({} B blocks)", g.size));
            } else {
                out.begin_list(format_args!("class {c} ({} B)", g.size));
            }
            SpanList::for_each(st.partial, |s| {
                out.list_entry(base_of(s, &g) as usize, g.span_bytes())
            });
            out.end_list();
        }
        for c in 1..SLOTS {
            if let Some(cs) = self.class_stats(c).filter(|cs| cs.spans > 0) {
                // The tiny blocks are a class slot of their own, named as their list is.
                if c == TINY {
                    out.value(format_args!("tiny spans"), cs.spans);
                } else {
                    out.value(format_args!("class {c} live objects"), cs.live_objects);
                    out.value(format_args!("class {c} spans"), cs.spans);
                }
            }
        }
        let t = self.tiny_stats();
        out.value(format_args!("tiny live objects"), t.live_objects);
        out.value(format_args!("tiny live blocks"), t.live_blocks);
        out.value(
            format_args!("tiny bytes saved"),
            t.bytes_saved().max(0) as usize,
        );
    }
}
