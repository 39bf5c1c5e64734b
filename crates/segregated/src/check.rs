//! The invariant walk ([`FreeSpaceManager::check_invariants`]): every class's span lists, every
//! span's objects, the page map, the tiny allocator and the statistics against each other,
//! then the page level's own walk.
//!
//! ```text
//!   classes[c]  partial: prev/next agree, each span: magic, class c, not full, live < objects
//!               full:    likewise, full, live == objects
//!               spans == |partial| + |full|, empty == partial spans with live == 0
//!   span        first <= bump <= slots; free list: each object in first..bump at an
//!               object boundary, none twice (so no cycle); live == bump - first - free;
//!               allocation bit set iff the slot is live (a checked heap; an unchecked one
//!               sets none); tiny: a block with a mask is live, a live block without one
//!               is the current block
//!   page map    every granule of every span looks up to that span and its class; every
//!               entry names a class the table has and a span covering (or starting in) it
//!   tiny        the current block is a live slot of a tiny span, off <= 16, no object starts
//!               at or past off; objects == mask bits set, blocks == live tiny blocks
//!   stats       allocs - frees == live objects + tiny objects + large blocks of L;
//!               every peak >= its current value; headroom <= its exact value
//!   L           L.check_invariants()
//! ```
//!
//! It reads span headers, bitmaps and the links in free objects (all the heap's own memory);
//! never a live object.

use allocator_traits::{Corruption, FreeSpaceManager};

use crate::free_slots::FreeSlots;
use crate::geometry::{SpanGeometry, base_of};
use crate::pagemap::GRANULE_SHIFT;
use crate::span::{self, SpanHeader, TINY_BLOCK};
use crate::{SLOTS, Segregated, TINY};

/// What one class's lists hold.
#[derive(Default)]
struct ClassCount {
    spans: usize,
    empty: usize,
    live: usize,
    tiny_objects: usize,
}

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
    /// The walk.
    pub(crate) fn walk(&self) -> Result<(), Corruption> {
        let (mut spans, mut live, mut tiny_objects) = (0usize, 0usize, 0usize);
        for c in 1..SLOTS {
            let st = &self.classes[c];
            let Some(g) = self.geo(c) else {
                Corruption::ensure(
                    st.partial.is_null() && st.full.is_null() && st.spans == 0,
                    "class lists",
                    c,
                    "a class the table does not have holds spans",
                )?;
                continue;
            };
            let mut n = ClassCount::default();
            self.walk_list(c, &g, st.partial, false, &mut n)?;
            self.walk_list(c, &g, st.full, true, &mut n)?;
            Corruption::ensure(
                n.spans == st.spans as usize,
                "class lists",
                c,
                "the class's span count is not the spans in its lists",
            )?;
            Corruption::ensure(
                n.empty == st.empty as usize,
                "class lists",
                c,
                "the class's empty count is not its partial spans with no live object",
            )?;
            spans += n.spans;
            if c != TINY {
                live += n.live;
            }
            tiny_objects += n.tiny_objects;
        }
        Corruption::ensure(
            spans == self.spans,
            "class lists",
            spans,
            "the heap's span count is not the spans in the class lists",
        )?;
        self.walk_page_map()?;
        self.walk_tiny(tiny_objects)?;
        self.walk_stats(live)?;
        self.large.check_invariants()
    }

    /// One of class `c`'s lists (`full` or partial).
    fn walk_list(
        &self,
        c: usize,
        g: &SpanGeometry,
        head: *mut SpanHeader,
        full: bool,
        n: &mut ClassCount,
    ) -> Result<(), Corruption> {
        let structure = if full { "full list" } else { "partial list" };
        let mut prev: *mut SpanHeader = core::ptr::null_mut();
        let mut s = head;
        while !s.is_null() {
            Corruption::ensure(
                n.spans < self.spans,
                structure,
                s as usize,
                "the list is longer than the spans held (a cycle)",
            )?;
            // SAFETY: every span on a class list is a live span whose header is initialised
            // (what this walk checks first: its magic and class).
            let h = unsafe { &*s };
            Corruption::ensure(
                h.magic == SpanHeader::magic_for(s as usize),
                "span header",
                s as usize,
                "bad magic",
            )?;
            Corruption::ensure(
                h.class as usize == c,
                "span header",
                s as usize,
                "a span on another class's list",
            )?;
            Corruption::ensure(
                h.prev == prev,
                structure,
                s as usize,
                "prev is not the span before",
            )?;
            Corruption::ensure(
                h.full == full,
                "span header",
                s as usize,
                "the full flag disagrees with the list the span is on",
            )?;
            let live = self.walk_span(c, g, s)?;
            let objects = g.objects();
            Corruption::ensure(
                if full {
                    live == objects
                } else {
                    live < objects
                },
                structure,
                s as usize,
                "a full span with a free object, or a partial span with none",
            )?;
            n.spans += 1;
            n.live += live;
            if live == 0 {
                n.empty += 1;
            }
            if c == TINY {
                n.tiny_objects += self.tiny_objects_in(g, s);
            }
            prev = s;
            s = h.next;
        }
        Ok(())
    }

    /// One span's free list, bitmap (or tiny masks) and live count against each other; returns
    /// its live objects (tiny spans: live blocks).
    fn walk_span(
        &self,
        c: usize,
        g: &SpanGeometry,
        s: *mut SpanHeader,
    ) -> Result<usize, Corruption> {
        // SAFETY: `s` is a checked span header (magic and class).
        let h = unsafe { &*s };
        let (first, bump, slots) = (g.first as usize, h.bump as usize, g.slots as usize);
        Corruption::ensure(
            first <= bump && bump <= slots,
            "span header",
            s as usize,
            "the bump index is outside the span's slots",
        )?;
        // SAFETY: a checked header with `first <= bump <= slots`.
        let free = unsafe { FreeSlots::read(s, g) }
            .map_err(|(at, what)| Corruption::new("span free list", at, what))?;
        // Live: handed out and not on the free list.
        let live = bump - first - free.count;
        Corruption::ensure(
            live == h.live as usize,
            "span header",
            s as usize,
            "the live count is not the slots handed out and not on the free list",
        )?;
        let base = base_of(s, g) as usize;
        for slot in 0..slots {
            let is_live = (first..bump).contains(&slot) && !free.has(slot);
            let at = base + slot * g.size as usize;
            if c == TINY {
                // SAFETY: `slot < slots`; a tiny span has a mask per slot.
                let objects = unsafe { *span::tiny_mask(s, slot) } != 0;
                let current = s == self.tiny.span && slot == self.tiny.slot;
                Corruption::ensure(
                    !objects || is_live,
                    "tiny masks",
                    at,
                    "a tiny block with objects is free or was never handed out",
                )?;
                Corruption::ensure(
                    !is_live || objects || (current && !self.tiny.block.is_null()),
                    "tiny masks",
                    at,
                    "a live tiny block with no object is not the current block",
                )?;
            } else {
                // SAFETY: `slot < slots`; the bitmap has a bit per slot.
                let bit = unsafe { span::test_bit(s, slot) };
                Corruption::ensure(
                    bit == (CHECKED && is_live),
                    "span bitmap",
                    at,
                    if CHECKED {
                        "the allocation bit is not set exactly for the live slots"
                    } else {
                        "a bit is set in the bitmap an unchecked heap does not keep"
                    },
                )?;
            }
        }
        Ok(live)
    }

    /// Tiny objects in tiny span `s`: the mask bits set.
    fn tiny_objects_in(&self, g: &SpanGeometry, s: *mut SpanHeader) -> usize {
        (0..g.slots as usize)
            // SAFETY: `slot < slots`; a tiny span has a mask per slot.
            .map(|slot| unsafe { *span::tiny_mask(s, slot) }.count_ones() as usize)
            .sum()
    }

    /// Every span's granules look up to it; every entry names a span covering its granule.
    fn walk_page_map(&self) -> Result<(), Corruption> {
        for c in 1..SLOTS {
            let Some(g) = self.geo(c) else { continue };
            let st = &self.classes[c];
            for head in [st.partial, st.full] {
                let mut s = head;
                while !s.is_null() {
                    let base = base_of(s, &g);
                    let end = base as usize + g.span_bytes();
                    let granule = 1usize << GRANULE_SHIFT;
                    let mut at = base as usize;
                    while at < end {
                        let (p, class) = self.pages.lookup_raw(at);
                        Corruption::ensure(
                            p == base && class as usize == c,
                            "page map",
                            at,
                            "a granule of a span does not map to it",
                        )?;
                        at = (at + granule) & !(granule - 1);
                    }
                    let (p, class) = self.pages.lookup_raw(end - 1);
                    Corruption::ensure(
                        p == base && class as usize == c,
                        "page map",
                        end - 1,
                        "the last byte of a span does not map to it",
                    )?;
                    // SAFETY: a checked span on a class list.
                    s = unsafe { (*s).next };
                }
            }
        }
        let mut bad = None;
        self.pages.for_each(|start, cover, cc, next, nc| {
            let granule = 1usize << GRANULE_SHIFT;
            let spans = |p: *mut u8, class: u8, starts_inside: bool| {
                if class == 0 {
                    return true;
                }
                let Some(g) = self.geo(class as usize) else {
                    return false;
                };
                let b = p as usize;
                if starts_inside {
                    b >= start && b < start + granule
                } else {
                    b <= start && start < b + g.span_bytes()
                }
            };
            let next_inside = nc != 0 && next as usize > start;
            if bad.is_none()
                && !(spans(cover, cc, false) && (next == cover || spans(next, nc, next_inside)))
            {
                bad = Some(start);
            }
        });
        Corruption::ensure(
            bad.is_none(),
            "page map",
            bad.unwrap_or(0),
            "an entry names no span of its class covering its granule",
        )
    }

    /// The tiny allocator's current block and counts.
    fn walk_tiny(&self, objects: usize) -> Result<(), Corruption> {
        let t = &self.tiny;
        Corruption::ensure(
            t.objects == objects,
            "tiny",
            t.objects,
            "the tiny object count is not the mask bits set",
        )?;
        if t.block.is_null() {
            return Corruption::ensure(t.off == 0, "tiny", t.off, "an offset without a block");
        }
        let g = self.table.tiny_geometry();
        let base = base_of(t.span, &g);
        Corruption::ensure(
            self.pages.lookup_raw(t.block as usize) == (base, TINY as u8)
                && t.block == base.wrapping_add(t.slot * TINY_BLOCK)
                && (g.first as usize..g.slots as usize).contains(&t.slot),
            "tiny",
            t.block as usize,
            "the current block is not a slot of the tiny span it names",
        )?;
        Corruption::ensure(
            t.off <= TINY_BLOCK,
            "tiny",
            t.off,
            "the offset is past the block",
        )?;
        // SAFETY: the current block is a slot of a tiny span (checked above).
        let mask = unsafe { *span::tiny_mask(t.span, t.slot) } as usize;
        Corruption::ensure(
            mask >> t.off == 0,
            "tiny",
            t.block as usize,
            "an object starts at or past the current block's offset",
        )?;
        // Live tiny blocks: the tiny spans' live counts.
        let blocks: usize = {
            let st = &self.classes[TINY];
            let mut n = 0;
            for head in [st.partial, st.full] {
                span::SpanList::for_each(head, |s| {
                    // SAFETY: a checked span on a class list.
                    n += unsafe { (*s).live } as usize
                });
            }
            n
        };
        Corruption::ensure(
            t.blocks == blocks,
            "tiny",
            t.blocks,
            "the tiny block count is not the live tiny blocks",
        )
    }

    /// The statistics against the objects found.
    fn walk_stats(&self, class_live: usize) -> Result<(), Corruption> {
        let s = self.stats.get();
        let l = self.large.stats();
        let ours = self.spans + self.pages.is_allocated() as usize;
        let large = l.live_blocks.checked_sub(ours);
        Corruption::ensure(
            large.is_some_and(|large| s.live_blocks == class_live + self.tiny.objects + large),
            "stats",
            s.live_blocks,
            "live_blocks is not the live objects, tiny objects and large blocks",
        )?;
        Corruption::ensure(
            s.peak_live_requested >= s.live_requested && s.peak_live_held >= s.live_held,
            "stats",
            s.live_held,
            "a live count above its peak",
        )?;
        self.stats.check_headroom()
    }
}

#[cfg(test)]
mod tests {
    use core::ptr::NonNull;

    use allocator_traits::{
        AllocError, BoxedRegion, Corruption, FreeError, FreeSpaceManager, Inspector, Layout, Stats,
    };
    use buddy::Buddy;

    use crate::geometry::base_of;
    use crate::{GO, Segregated};

    /// Buddy as the page level, with a switch that makes its walk fail (to see that the heap's
    /// walk asks the page level's).
    struct Pages(Buddy<BoxedRegion>, bool);

    impl FreeSpaceManager for Pages {
        fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            self.0.allocate(layout)
        }
        unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
            // SAFETY: forwarded caller contract.
            unsafe { self.0.deallocate(ptr, layout) }
        }
        fn stats(&self) -> Stats {
            self.0.stats()
        }
        fn inspect(&self, out: &mut dyn Inspector) {
            self.0.inspect(out)
        }
        fn check_invariants(&self) -> Result<(), Corruption> {
            if self.1 {
                return Err(Corruption::new("page level", 0, "planted"));
            }
            self.0.check_invariants()
        }
    }

    /// The page level's region: 4 MiB, or 1 MiB under Miri (whose every walk and bitmap set-up
    /// is per page: a quarter of the pages, a quarter of the time).
    const CAP: usize = if cfg!(miri) { 1 << 20 } else { 1 << 22 };

    fn heap() -> Segregated<Pages> {
        let b = Buddy::try_new(BoxedRegion::new(CAP).unwrap(), buddy::Config::new(CAP)).unwrap();
        Segregated::new(Pages(b, false))
    }

    fn l(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    /// A heap with objects of class 48 B (one freed), tiny objects and a large one.
    fn busy() -> (Segregated<Pages>, usize) {
        let mut h = heap();
        let objs: Vec<_> = (0..5).map(|_| h.allocate(l(40)).unwrap()).collect();
        // SAFETY: a live block with its layout.
        unsafe { h.deallocate(objs[1].cast(), l(40)).unwrap() };
        for s in [3, 5, 1] {
            h.allocate(Layout::from_size_align(s, 1).unwrap()).unwrap();
        }
        h.allocate(l(100_000)).unwrap();
        h.walk().unwrap();
        (h, GO.class_of(40))
    }

    fn problem<L: FreeSpaceManager, const C: bool>(h: &Segregated<L, C>) -> &'static str {
        h.walk()
            .expect_err("the walk must report the planted corruption")
            .problem
    }

    fn unchecked_heap() -> Segregated<Pages, false> {
        let b = Buddy::try_new(BoxedRegion::new(CAP).unwrap(), buddy::Config::new(CAP)).unwrap();
        Segregated::unchecked(&GO, crate::Config::DEFAULT, Pages(b, false))
    }

    #[test]
    fn a_healthy_heap_passes_after_a_long_random_workload() {
        random_workload(heap());
    }

    #[test]
    fn a_healthy_unchecked_heap_passes_after_a_long_random_workload() {
        random_workload(unchecked_heap());
    }

    fn random_workload<const C: bool>(mut h: Segregated<Pages, C>) {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut live = Vec::new();
        let n = if cfg!(miri) { 300 } else { 20_000 };
        for step in 0..n {
            if next() % 3 != 0 || live.is_empty() {
                let size = match next() % 10 {
                    0..=2 => (next() % 16) as usize,
                    3..=8 => (next() % 1024) as usize,
                    _ => (next() % 40_000) as usize,
                };
                let lay = Layout::from_size_align(size, 1 << (next() % 4)).unwrap();
                if let Ok(b) = h.allocate(lay) {
                    live.push((b, lay));
                }
            } else {
                let (b, lay) = live.swap_remove((next() % live.len() as u64) as usize);
                // SAFETY: a live block with its layout.
                unsafe { h.deallocate(b.cast(), lay).unwrap() };
            }
            if step % 101 == 0 {
                h.walk().unwrap();
            }
        }
        h.walk().unwrap();
        for (b, lay) in live {
            // SAFETY: a live block with its layout.
            unsafe { h.deallocate(b.cast(), lay).unwrap() };
        }
        h.release_empty_spans();
        h.walk().unwrap();
    }

    #[test]
    fn a_wrong_live_count_is_reported() {
        let (h, c) = busy();
        // SAFETY: the class's partial span is a live span header.
        unsafe { (*h.classes[c].partial).live += 1 };
        assert_eq!(
            problem(&h),
            "the live count is not the slots handed out and not on the free list"
        );
    }

    #[test]
    fn an_allocation_bit_that_disagrees_with_the_free_list_is_reported() {
        let (h, c) = busy();
        // SAFETY: the span's free list holds the freed object; set its allocation bit.
        unsafe {
            let s = h.classes[c].partial;
            let g = GO.geometry(c).unwrap();
            let off = (*s).free as usize - base_of(s, &g) as usize;
            crate::span::put_bit(s, off / g.size as usize, true);
        }
        assert_eq!(
            problem(&h),
            "the allocation bit is not set exactly for the live slots"
        );
    }

    #[test]
    fn a_bit_in_an_unchecked_heap_is_reported() {
        let mut h = unchecked_heap();
        let c = GO.class_of(40);
        let a = h.allocate(l(40)).unwrap();
        h.walk().unwrap();
        let g = GO.geometry(c).unwrap();
        let s = h.classes[c].partial;
        let slot = (a.cast::<u8>().as_ptr() as usize - base_of(s, &g) as usize) / 48;
        // SAFETY: `s` is the class's span and `slot` a live slot of it.
        unsafe { crate::span::put_bit(s, slot, true) };
        assert_eq!(
            problem(&h),
            "a bit is set in the bitmap an unchecked heap does not keep"
        );
    }

    #[test]
    fn a_free_object_off_its_boundary_is_reported() {
        let (h, c) = busy();
        // SAFETY: the span's free list holds the freed object; its link is the heap's.
        unsafe {
            let s = h.classes[c].partial;
            let o = (*s).free;
            o.cast::<*mut u8>().write(o.wrapping_add(3));
        }
        assert_eq!(
            problem(&h),
            "a free object is not at an object boundary inside its span"
        );
    }

    #[test]
    fn a_free_object_on_the_list_twice_is_reported() {
        let (h, c) = busy();
        // SAFETY: as above: the free object now links to itself.
        unsafe {
            let s = h.classes[c].partial;
            let o = (*s).free;
            o.cast::<*mut u8>().write(o);
        }
        assert_eq!(
            problem(&h),
            "an object is on the free list twice (or the list has a cycle)"
        );
    }

    #[test]
    fn a_span_on_the_wrong_class_list_is_reported() {
        let (h, c) = busy();
        // SAFETY: a live span header.
        unsafe { (*h.classes[c].partial).class += 1 };
        assert_eq!(problem(&h), "a span on another class's list");
    }

    #[test]
    fn a_wrong_full_state_is_reported() {
        let (h, c) = busy();
        // SAFETY: a live span header.
        unsafe { (*h.classes[c].partial).full = true };
        assert_eq!(
            problem(&h),
            "the full flag disagrees with the list the span is on"
        );
    }

    #[test]
    fn a_broken_list_link_is_reported() {
        let (h, c) = busy();
        // SAFETY: a live span header.
        unsafe { (*h.classes[c].partial).prev = h.classes[c].partial };
        assert_eq!(problem(&h), "prev is not the span before");
    }

    #[test]
    fn a_span_missing_from_the_page_map_is_reported() {
        let (mut h, c) = busy();
        let g = GO.geometry(c).unwrap();
        let base = base_of(h.classes[c].partial, &g);
        h.pages.set(base, g.span_bytes(), 0);
        assert_eq!(problem(&h), "a granule of a span does not map to it");
    }

    #[test]
    fn a_tiny_offset_before_its_objects_is_reported() {
        let (mut h, _) = busy();
        assert!(h.tiny.off > 4);
        h.tiny.off = 2;
        assert_eq!(
            problem(&h),
            "an object starts at or past the current block's offset"
        );
        h.tiny.off = 17;
        assert_eq!(problem(&h), "the offset is past the block");
    }

    #[test]
    fn a_wrong_tiny_count_is_reported() {
        let (mut h, _) = busy();
        h.tiny.objects += 1;
        assert_eq!(
            problem(&h),
            "the tiny object count is not the mask bits set"
        );
    }

    #[test]
    fn wrong_statistics_are_reported() {
        let (mut h, _) = busy();
        h.stats.raw_mut().frees += 1;
        assert_eq!(
            problem(&h),
            "live_blocks is not the live objects, tiny objects and large blocks"
        );
    }

    #[test]
    fn a_headroom_above_the_peaks_is_reported() {
        let (mut h, _) = busy();
        h.stats.plant_headroom(h.stats.exact_headroom() + 1);
        assert_eq!(
            problem(&h),
            "the headroom is above the live counts' distance to the peaks"
        );
    }

    #[test]
    fn the_page_level_is_walked_too() {
        let (mut h, _) = busy();
        h.large.1 = true;
        assert_eq!(problem(&h), "planted");
    }
}
