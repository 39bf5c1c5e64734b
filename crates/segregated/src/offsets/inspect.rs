//! What `inspect()` shows: the page level's picture first (its region, in which spans and large
//! ranges are live ranges), then every span in offset order as a region of its own with its
//! objects and free slots, then each class's partial list and counters.
//!
//! ```text
//!   (the page level: region(base, len), its ranges and free ranges, its lists)
//!   region  span 0x2000 + 8 KiB    block obj Live | obj Live | objs Free | tail Padding
//!   list    class 5 (48 B): the spans with a free slot (offset, span bytes)
//!   values  class 5 spans, class 5 live objects, spans, map bytes
//! ```

use alloc::vec::Vec;

use allocator_traits::{BlockKind, Inspector, OffsetManager};

use super::SegregatedOffsets;
use super::spans::{NIL, Span};

impl<L: OffsetManager> SegregatedOffsets<L> {
    fn show_span(&self, s: &Span, out: &mut dyn Inspector) {
        let g = &self.classes[s.class as usize].geo;
        let size = g.size as usize;
        out.region(s.start, s.end - s.start);
        let mut free_from: Option<usize> = None;
        for slot in 0..g.objects() {
            let at = s.start + slot * size;
            if s.is_live(slot) {
                if let Some(f) = free_from.take() {
                    out.block(f, at - f, BlockKind::Free);
                }
                let requested = size - s.slack[slot] as usize;
                out.block(at, size, BlockKind::Live { requested });
            } else {
                free_from.get_or_insert(at);
            }
        }
        let tail = s.start + g.objects() * size;
        if let Some(f) = free_from {
            out.block(f, tail - f, BlockKind::Free);
        }
        if tail < s.end {
            out.block(tail, s.end - tail, BlockKind::Padding);
        }
    }

    pub(super) fn show(&self, out: &mut dyn Inspector) {
        self.page.inspect(out);
        let mut spans: Vec<&Span> = self.spans.slab.iter().filter(|s| s.class != 0).collect();
        spans.sort_unstable_by_key(|s| s.start);
        for s in spans {
            self.show_span(s, out);
        }
        for (c, class) in self.classes.iter().enumerate().skip(1) {
            if class.spans == 0 {
                continue;
            }
            out.begin_list(format_args!("class {c} ({} B)", class.geo.size));
            let mut id = class.partial;
            while id != NIL {
                let s = &self.spans.slab[id as usize];
                out.list_entry(s.start, s.end - s.start);
                id = s.next;
            }
            out.end_list();
            let live: usize = self.class_live(class.partial) + self.class_live(class.full);
            out.value(format_args!("class {c} spans"), class.spans as usize);
            out.value(format_args!("class {c} live objects"), live);
        }
        out.value(format_args!("spans"), self.span_count());
        out.value(format_args!("metadata bytes"), self.metadata_bytes());
    }

    /// Live objects over the spans of one list.
    fn class_live(&self, head: u32) -> usize {
        let mut id = head;
        let mut n = 0;
        while id != NIL {
            let s = &self.spans.slab[id as usize];
            n += s.live as usize;
            id = s.next;
        }
        n
    }
}
