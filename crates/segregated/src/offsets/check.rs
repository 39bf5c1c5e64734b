//! The offset manager's invariant walk ([`OffsetManager::check_invariants`]): every class's
//! lists, every span's bitmap, the span records, the map, the statistics against the page
//! level's, then the page level's own walk.
//!
//! ```text
//!   classes[c]  partial: links agree, each span of class c, not full, live < objects
//!               full:    likewise, full, live == objects
//!               spans == |partial| + |full|, empty == partial spans with live == 0 <= keep_empty
//!   span        popcount(bits) == live, no bit at or above objects, every slot below hint*64
//!               live, slack <= size on live slots, start aligned to the class, end = start +
//!               span_bytes inside the space, a live range of the page level
//!   records     every non-vacant record in exactly one list (counted), vacant ones class 0
//!   map         each span's first and last byte look up to it; each entry names a span that
//!               starts in (or covers the start of) its granule; no empty entry at the end
//!   stats       small live objects == the spans' live; live_blocks, live_held, live_requested
//!               == the spans' objects plus the page level's ranges that are not spans;
//!               footprint == the page level's; nothing live => no span
//!   page level  its own walk
//! ```
//!
//! [`OffsetManager::check_invariants`]: allocator_traits::OffsetManager::check_invariants

use allocator_traits::{Corruption, OffsetManager};

use super::SegregatedOffsets;
use super::span_map::GRANULE;
use super::spans::{NIL, WORDS};

/// What the class lists hold.
#[derive(Default)]
struct Count {
    spans: usize,
    live: usize,
    held: usize,
    asked: usize,
    /// Bytes the page level holds for spans, and asked for them.
    span_held: usize,
    span_asked: usize,
}

const LISTS: &str = "class lists";
const SPAN: &str = "span";
const MAP: &str = "span map";
const STATS: &str = "stats";

impl<L: OffsetManager> SegregatedOffsets<L> {
    /// The walk. O(spans + map entries).
    pub(super) fn walk(&self) -> Result<(), Corruption> {
        let mut n = Count::default();
        for c in 1..self.classes.len() {
            let class = &self.classes[c];
            let before = n.spans;
            let empty = self.walk_list(c, class.partial, false, &mut n)?;
            self.walk_list(c, class.full, true, &mut n)?;
            Corruption::ensure(
                class.spans as usize == n.spans - before,
                LISTS,
                c,
                "spans is not the number of spans in the lists",
            )?;
            Corruption::ensure(
                class.empty as usize == empty,
                LISTS,
                c,
                "empty is not the number of partial spans with no live slot",
            )?;
            Corruption::ensure(
                class.empty <= self.keep_empty,
                LISTS,
                c,
                "more empty spans kept than keep_empty",
            )?;
        }
        let slab = &self.spans.slab;
        let vacant = self.spans.vacant.len();
        Corruption::ensure(
            n.spans + vacant == slab.len(),
            "span records",
            n.spans,
            "a record in no list that is not vacant, or in two lists",
        )?;
        for &id in &self.spans.vacant {
            Corruption::ensure(
                slab.get(id as usize).is_some_and(|s| s.class == 0),
                "span records",
                id as usize,
                "a vacant id names a span of a class",
            )?;
        }
        self.walk_map()?;
        self.walk_stats(&n)?;
        self.page.check_invariants()
    }

    /// Walks one list of class `c` (`full`: the full list), counting into `n`; returns the
    /// number of spans in it with no live slot.
    fn walk_list(
        &self,
        c: usize,
        head: u32,
        full: bool,
        n: &mut Count,
    ) -> Result<usize, Corruption> {
        let slab = &self.spans.slab;
        let g = self.classes[c].geo;
        let (objects, size) = (g.objects(), g.size as usize);
        let range = self.page.range();
        let (mut id, mut prev, mut steps, mut empty) = (head, NIL, 0usize, 0usize);
        while id != NIL {
            steps += 1;
            let s = slab
                .get(id as usize)
                .filter(|_| steps <= slab.len())
                .ok_or(Corruption::new(
                    LISTS,
                    c,
                    "a link past the records, or a cycle",
                ))?;
            let at = s.start;
            Corruption::ensure(
                s.prev == prev,
                LISTS,
                at,
                "prev does not name the span before",
            )?;
            Corruption::ensure(s.class as usize == c, LISTS, at, "a span of another class")?;
            Corruption::ensure(
                s.full == full,
                LISTS,
                at,
                "the full flag disagrees with the list",
            )?;
            let live = s.live as usize;
            let room = if full {
                live == objects
            } else {
                live < objects
            };
            Corruption::ensure(
                room,
                LISTS,
                at,
                "live does not fit the list (full iff live == objects)",
            )?;
            // The span's own state.
            let set: usize = s.bits.iter().map(|w| w.count_ones() as usize).sum();
            Corruption::ensure(
                set == live,
                SPAN,
                at,
                "the bitmap disagrees with the live count",
            )?;
            // Word by word: the slots of word `w` that are objects, live or not.
            let objects_in = |w: usize| match objects.saturating_sub(w * 64) {
                0 => 0,
                k if k >= 64 => u64::MAX,
                k => (1u64 << k) - 1,
            };
            let beyond = (0..WORDS).any(|w| s.bits[w] & !objects_in(w) != 0);
            Corruption::ensure(!beyond, SPAN, at, "a bit at or above the objects")?;
            let below_hint = (0..(s.hint as usize).min(WORDS)).all(|w| s.bits[w] == objects_in(w));
            Corruption::ensure(below_hint, SPAN, at, "a free slot below the search hint")?;
            Corruption::ensure(
                s.slack.len() == objects,
                SPAN,
                at,
                "slack is not one per object",
            )?;
            for w in 0..WORDS {
                let mut bits = s.bits[w] & objects_in(w);
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let slack = s.slack[i] as usize;
                    Corruption::ensure(
                        slack <= size,
                        SPAN,
                        at + i * size,
                        "slack above the class size",
                    )?;
                    n.asked += size - slack;
                }
            }
            Corruption::ensure(
                at.is_multiple_of(g.span_align()) && s.end == at + g.span_bytes(),
                SPAN,
                at,
                "start not aligned to the class, or end not start + span bytes",
            )?;
            Corruption::ensure(
                range.start <= at && s.end <= range.end,
                SPAN,
                at,
                "a span outside the space",
            )?;
            let page_held = self.page.held(at);
            Corruption::ensure(
                page_held.is_some_and(|h| h >= g.span_bytes()),
                SPAN,
                at,
                "a span the page level does not hold",
            )?;
            n.span_held += page_held.unwrap_or(0);
            n.span_asked += g.span_bytes();
            n.spans += 1;
            n.live += live;
            n.held += live * size;
            empty += usize::from(live == 0);
            prev = id;
            id = s.next;
        }
        Ok(empty)
    }

    /// The map against the spans, both ways.
    fn walk_map(&self) -> Result<(), Corruption> {
        let slab = &self.spans.slab;
        let base = self.page.range().start;
        for (id, s) in slab.iter().enumerate().filter(|(_, s)| s.class != 0) {
            let ends = [s.start, s.end - 1].map(|o| self.span_at(o));
            Corruption::ensure(
                ends == [Some(id as u32); 2],
                MAP,
                s.start,
                "a span's first or last byte does not look up to it",
            )?;
        }
        let live = |id: u32| slab.get(id as usize).filter(|s| s.class != 0);
        for (g, e) in self.map.entries.iter().enumerate() {
            let (lo, hi) = (base + g * GRANULE, base + (g + 1) * GRANULE);
            if e.starts != NIL {
                let ok = live(e.starts).is_some_and(|s| lo <= s.start && s.start < hi);
                Corruption::ensure(ok, MAP, lo, "starts names no span starting in the granule")?;
            }
            if e.covers != NIL {
                let ok = live(e.covers).is_some_and(|s| s.start < lo && lo < s.end);
                Corruption::ensure(ok, MAP, lo, "covers names no span over the granule's start")?;
            }
        }
        let trimmed = self
            .map
            .entries
            .last()
            .is_none_or(|e| e.starts != NIL || e.covers != NIL);
        Corruption::ensure(
            trimmed,
            MAP,
            self.map.entries.len(),
            "an empty entry at the end",
        )
    }

    /// The statistics against the spans and the page level.
    fn walk_stats(&self, n: &Count) -> Result<(), Corruption> {
        let s = self.stats;
        let p = self.page.stats();
        Corruption::ensure(
            n.live == self.small_live,
            STATS,
            n.live,
            "small_live is not the spans' live",
        )?;
        Corruption::ensure(
            self.small_live > 0 || n.spans == 0,
            STATS,
            n.spans,
            "spans held with nothing live in them",
        )?;
        let large = p.live_blocks.checked_sub(n.spans);
        Corruption::ensure(
            large.is_some_and(|l| s.live_blocks == n.live + l),
            STATS,
            s.live_blocks,
            "live_blocks is not the objects plus the page level's large ranges",
        )?;
        let large_held = p.live_held.checked_sub(n.span_held);
        Corruption::ensure(
            large_held.is_some_and(|l| s.live_held == n.held + l),
            STATS,
            s.live_held,
            "live_held is not the objects' class sizes plus the large ranges'",
        )?;
        let large_asked = p.live_requested.checked_sub(n.span_asked);
        Corruption::ensure(
            large_asked.is_some_and(|l| s.live_requested == n.asked + l),
            STATS,
            s.live_requested,
            "live_requested is not the objects' plus the large ranges'",
        )?;
        Corruption::ensure(
            s.footprint == p.footprint && s.peak_footprint >= s.footprint,
            STATS,
            s.footprint,
            "footprint is not the page level's (or above its peak)",
        )
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use allocator_traits::{
        AllocError, Corruption, Detects, FreeError, Inspector, OffsetManager, Stats,
    };
    use fit::offsets::FitOffsets;

    use super::super::spans::NIL;
    use super::super::{OffsetsError, SegregatedOffsets};
    use crate::classes::GO;

    /// A page level whose walk can be made to fail.
    #[derive(Debug)]
    struct Pages {
        inner: FitOffsets,
        broken: bool,
    }

    impl OffsetManager for Pages {
        fn allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
            self.inner.allocate(size, align)
        }
        fn free(&mut self, offset: usize) -> Result<(), FreeError> {
            self.inner.free(offset)
        }
        fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
            self.inner.grow(additional)
        }
        fn range(&self) -> core::ops::Range<usize> {
            self.inner.range()
        }
        fn held(&self, offset: usize) -> Option<usize> {
            self.inner.held(offset)
        }
        fn stats(&self) -> Stats {
            self.inner.stats()
        }
        fn inspect(&self, out: &mut dyn Inspector) {
            self.inner.inspect(out)
        }
        fn check_invariants(&self) -> Result<(), Corruption> {
            if self.broken {
                return Err(Corruption::new("planted", 0, "the page level's walk"));
            }
            self.inner.check_invariants()
        }
        fn detects(&self) -> Detects {
            self.inner.detects()
        }
    }

    type M = SegregatedOffsets<Pages>;

    fn manager() -> M {
        let inner = FitOffsets::new(0..1 << 20, fit::Config::best_fit(), 16).unwrap();
        SegregatedOffsets::with_page_level(
            Pages {
                inner,
                broken: false,
            },
            &GO,
            1,
        )
        .unwrap()
    }

    /// A manager with objects of four classes (a full span among them) and a large range:
    /// `live[4]` is the class 8 object.
    fn busy() -> (M, Vec<usize>) {
        let mut m = manager();
        let mut live = Vec::new();
        for _ in 0..4 {
            live.push(m.allocate(4000, 8).unwrap()); // class 4096: 2 per span, one full span
        }
        for size in [8, 1000, 100_000] {
            live.push(m.allocate(size, 8).unwrap());
        }
        m.free(live[3]).unwrap();
        m.check_invariants().expect("a healthy manager");
        (m, live)
    }

    /// The id of the span of the class of `size` (at alignment 8): its partial head.
    fn partial_of(m: &M, size: usize) -> u32 {
        m.classes[GO.class_of(size)].partial
    }

    fn problem(m: &M) -> &'static str {
        m.check_invariants()
            .expect_err("the planted corruption is reported")
            .problem
    }

    #[test]
    fn a_healthy_manager_passes_after_a_long_random_workload() {
        let mut m = manager();
        let mut live: Vec<usize> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let steps = if cfg!(miri) { 60 } else { 20_000 };
        for _ in 0..steps {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !x.is_multiple_of(3) || live.is_empty() {
                let size = match x >> 60 {
                    0 => (x >> 8) as usize % 100_000,
                    _ => (x >> 8) as usize % 2048,
                };
                if let Ok(o) = m.allocate(size, 1 << ((x >> 32) % 8)) {
                    live.push(o);
                }
            } else {
                let o = live.swap_remove((x >> 16) as usize % live.len());
                m.free(o).unwrap();
            }
            if x.is_multiple_of(if cfg!(miri) { 4 } else { 64 }) {
                m.check_invariants().unwrap();
            }
        }
        for o in live {
            m.free(o).unwrap();
        }
        m.check_invariants().unwrap();
        assert_eq!(m.span_count(), 0, "nothing live, no span kept");
    }

    #[test]
    fn a_wrong_live_count_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 1000);
        m.spans.slab[id as usize].live += 1;
        assert_eq!(problem(&m), "the bitmap disagrees with the live count");
    }

    #[test]
    fn a_bit_above_the_objects_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 1000);
        let s = &mut m.spans.slab[id as usize];
        s.bits[15] |= 1 << 63;
        s.live += 1;
        assert_eq!(problem(&m), "a bit at or above the objects");
    }

    #[test]
    fn a_free_slot_below_the_hint_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 4000);
        m.spans.slab[id as usize].hint = 1;
        assert_eq!(problem(&m), "a free slot below the search hint");
    }

    #[test]
    fn a_wrong_full_flag_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 8);
        m.spans.slab[id as usize].full = true;
        assert_eq!(problem(&m), "the full flag disagrees with the list");
    }

    #[test]
    fn a_full_span_in_the_partial_list_is_reported() {
        let (mut m, _) = busy();
        let c = GO.class_of(4000);
        let full = m.classes[c].full;
        assert_ne!(full, NIL);
        m.spans.slab[full as usize].full = false;
        m.spans.unlink(&mut m.classes[c].full, full);
        m.spans.push(&mut m.classes[c].partial, full);
        assert_eq!(
            problem(&m),
            "live does not fit the list (full iff live == objects)"
        );
    }

    #[test]
    fn a_span_of_another_class_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 8);
        m.spans.slab[id as usize].class += 1;
        assert_eq!(problem(&m), "a span of another class");
    }

    #[test]
    fn a_broken_link_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 4000);
        m.spans.slab[id as usize].prev = 7;
        assert_eq!(problem(&m), "prev does not name the span before");
        let (mut m, _) = busy();
        let id = partial_of(&m, 4000);
        m.spans.slab[id as usize].next = id;
        assert_eq!(problem(&m), "prev does not name the span before");
        let (mut m, _) = busy();
        let id = partial_of(&m, 4000);
        m.spans.slab[id as usize].next = 999;
        assert_eq!(problem(&m), "a link past the records, or a cycle");
    }

    #[test]
    fn wrong_class_counters_are_reported() {
        let (mut m, _) = busy();
        m.classes[GO.class_of(8)].spans += 1;
        assert_eq!(problem(&m), "spans is not the number of spans in the lists");
        let (mut m, _) = busy();
        m.classes[GO.class_of(8)].empty += 1;
        assert_eq!(
            problem(&m),
            "empty is not the number of partial spans with no live slot"
        );
    }

    #[test]
    fn too_many_kept_spans_are_reported() {
        let (mut m, live) = busy();
        m.keep_empty = 2;
        m.free(live[4]).unwrap(); // the class 8 span becomes empty and is kept
        m.keep_empty = 0;
        assert_eq!(problem(&m), "more empty spans kept than keep_empty");
    }

    #[test]
    fn a_record_in_no_list_is_reported() {
        let (mut m, _) = busy();
        let c = GO.class_of(1000);
        let id = m.classes[c].partial;
        m.spans.unlink(&mut m.classes[c].partial, id);
        m.classes[c].spans -= 1;
        assert_eq!(
            problem(&m),
            "a record in no list that is not vacant, or in two lists"
        );
    }

    #[test]
    fn slack_above_the_class_size_is_reported() {
        let (mut m, live) = busy();
        let id = partial_of(&m, 8);
        let slot = (live[4] - m.spans.slab[id as usize].start) / 8;
        m.spans.slab[id as usize].slack[slot] = 9;
        assert_eq!(problem(&m), "slack above the class size");
    }

    #[test]
    fn a_misaligned_span_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 8);
        m.spans.slab[id as usize].end += 8;
        assert_eq!(
            problem(&m),
            "start not aligned to the class, or end not start + span bytes"
        );
    }

    #[test]
    fn a_span_the_page_level_does_not_hold_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 8);
        let start = m.spans.slab[id as usize].start;
        m.page.inner.free(start).unwrap();
        assert_eq!(problem(&m), "a span the page level does not hold");
    }

    #[test]
    fn a_vacant_id_of_a_live_span_is_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 8);
        m.spans.vacant.push(id);
        m.spans.slab.push(m.spans.slab[id as usize].clone());
        m.spans.slab.last_mut().unwrap().class = 0;
        assert_eq!(problem(&m), "a vacant id names a span of a class");
    }

    #[test]
    fn map_entries_that_disagree_are_reported() {
        let (mut m, _) = busy();
        let id = partial_of(&m, 1000);
        let g = m.spans.slab[id as usize].start / super::GRANULE;
        m.map.entries[g].starts = NIL;
        assert_eq!(
            problem(&m),
            "a span's first or last byte does not look up to it"
        );
        let (mut m, _) = busy();
        m.map.entries[0].covers = 0;
        assert_eq!(problem(&m), "covers names no span over the granule's start");
        let (mut m, _) = busy();
        let end = m.map.entries.len();
        m.map.entries.resize(
            end + 3,
            super::super::span_map::Entry {
                covers: NIL,
                starts: NIL,
            },
        );
        m.map.entries[end + 1].starts = partial_of(&m, 8);
        assert_eq!(problem(&m), "starts names no span starting in the granule");
        let (mut m, _) = busy();
        m.map.entries.push(super::super::span_map::Entry {
            covers: NIL,
            starts: NIL,
        });
        assert_eq!(problem(&m), "an empty entry at the end");
    }

    #[test]
    fn wrong_statistics_are_reported() {
        let (mut m, _) = busy();
        m.small_live += 1;
        assert_eq!(problem(&m), "small_live is not the spans' live");
        let (mut m, _) = busy();
        m.stats.live_blocks += 1;
        assert_eq!(
            problem(&m),
            "live_blocks is not the objects plus the page level's large ranges"
        );
        let (mut m, _) = busy();
        m.stats.live_held -= 8;
        assert_eq!(
            problem(&m),
            "live_held is not the objects' class sizes plus the large ranges'"
        );
        let (mut m, _) = busy();
        m.stats.live_requested += 1;
        assert_eq!(
            problem(&m),
            "live_requested is not the objects' plus the large ranges'"
        );
        let (mut m, _) = busy();
        m.stats.footprint += 16;
        assert_eq!(
            problem(&m),
            "footprint is not the page level's (or above its peak)"
        );
    }

    #[test]
    fn a_span_with_nothing_live_is_reported() {
        let mut m = manager();
        let a = m.allocate(8, 8).unwrap();
        m.small_live = 0;
        m.stats.live_blocks -= 1;
        let id = partial_of(&m, 8);
        let s = &mut m.spans.slab[id as usize];
        s.bits[0] = 0;
        s.live = 0;
        m.classes[GO.class_of(8)].empty = 1;
        m.stats.live_held -= 8;
        m.stats.live_requested -= 8;
        assert_eq!(problem(&m), "spans held with nothing live in them");
        let _ = a;
    }

    #[test]
    fn the_page_level_is_walked_too() {
        let (mut m, _) = busy();
        m.page.broken = true;
        assert_eq!(problem(&m), "the page level's walk");
    }

    #[test]
    fn a_page_level_in_use_is_refused() {
        let mut inner = FitOffsets::new(0..1 << 20, fit::Config::best_fit(), 16).unwrap();
        inner.allocate(100, 1).unwrap();
        let r = SegregatedOffsets::with_page_level(
            Pages {
                inner,
                broken: false,
            },
            &GO,
            1,
        );
        assert_eq!(r.err(), Some(OffsetsError::PageLevelInUse));
    }
}
