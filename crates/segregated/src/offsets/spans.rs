//! The spans of the offset manager, out of band: a slab of [`Span`] records (one per span the
//! page level holds for a class), each with its allocation bitmap and the bytes each live slot's
//! request left unused, and the doubly linked partial and full lists of each class over their ids.
//!
//! ```text
//!   spans: Vec<Span>   id 0          id 1          id 2 (vacant)   id 3
//!                      [start 0x0    [start 0x6000  next vacant     [start 0x2000
//!                       class 5       class 5                        class 12
//!                       live 3        live 168 full                  live 0 (kept empty)
//!                       bits 0b111    bits all set                   bits 0
//!                       prev/next]    prev/next]                     prev/next]
//!   classes[5]:  partial -> 0        full -> 1          (lists linked by id, NIL ends them)
//!   vacant: 2 (ids of released spans, reused first)
//! ```

use alloc::vec::Vec;

/// The end of a list, or no span.
pub(super) const NIL: u32 = u32::MAX;

/// Bitmap words per span: enough for 1024 objects, the most a span can have (sizes are
/// multiples of 8, and a size up to 1024 always gets an 8 KiB span, since its tail is under
/// 1/8 of it; larger sizes have at most 128 objects in 128 KiB).
pub(super) const WORDS: usize = 16;
/// The most objects a span may have.
pub(super) const MAX_OBJECTS: usize = WORDS * 64;

/// One span: `objects` slots of one class from `start`, found by offset through the span map.
#[derive(Debug, Clone)]
pub(super) struct Span {
    /// Offset of slot 0 (the span's start at the page level; aligned to the class's alignment).
    pub(super) start: usize,
    /// `start + span_bytes`: the range the page level holds for the span.
    pub(super) end: usize,
    /// Neighbours in the class's partial list (`full` clear) or full list (`full` set).
    pub(super) prev: u32,
    /// See `prev`.
    pub(super) next: u32,
    /// The class (1-based index of the table), 0 for a vacant record.
    pub(super) class: u16,
    /// Live objects: the number of bits set in `bits`.
    pub(super) live: u16,
    /// In the class's full list (`live == objects`); else in its partial list.
    pub(super) full: bool,
    /// Every slot below `hint * 64` is live: the search for the lowest free slot starts at word
    /// `hint`.
    pub(super) hint: u16,
    /// Bit `i` set iff slot `i` is live; bits at and above `objects` are clear.
    pub(super) bits: [u64; WORDS],
    /// For a live slot, the class size minus the bytes asked (for the exact `live_requested`);
    /// `objects` entries.
    pub(super) slack: Vec<u16>,
}

impl Span {
    fn vacant() -> Span {
        Span {
            start: 0,
            end: 0,
            prev: NIL,
            next: NIL,
            class: 0,
            live: 0,
            full: false,
            hint: 0,
            bits: [0; WORDS],
            slack: Vec::new(),
        }
    }

    /// Whether slot `slot` is live.
    #[inline]
    pub(super) fn is_live(&self, slot: usize) -> bool {
        self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Takes the lowest free slot (the span has one: `live < objects`) and marks it live.
    #[inline]
    pub(super) fn take_lowest(&mut self) -> usize {
        let mut w = self.hint as usize;
        while self.bits[w] == u64::MAX {
            w += 1;
        }
        self.hint = w as u16;
        let bit = self.bits[w].trailing_ones() as usize;
        self.bits[w] |= 1 << bit;
        self.live += 1;
        w * 64 + bit
    }

    /// Marks the live slot `slot` free.
    #[inline]
    pub(super) fn release(&mut self, slot: usize) {
        let w = slot / 64;
        self.bits[w] &= !(1 << (slot % 64));
        self.live -= 1;
        if (w as u16) < self.hint {
            self.hint = w as u16;
        }
    }
}

/// The slab of spans and the list heads of each class.
#[derive(Debug, Default)]
pub(super) struct Spans {
    /// Every record, live or vacant (`class == 0`).
    pub(super) slab: Vec<Span>,
    /// Ids of the vacant records.
    pub(super) vacant: Vec<u32>,
}

impl Spans {
    /// A record for a fresh span of `class` over `start..end` with `objects` slots, all free,
    /// in no list.
    pub(super) fn add(&mut self, class: u16, start: usize, end: usize, objects: usize) -> u32 {
        let id = match self.vacant.pop() {
            Some(id) => id,
            None => {
                self.slab.push(Span::vacant());
                (self.slab.len() - 1) as u32
            }
        };
        let s = &mut self.slab[id as usize];
        s.start = start;
        s.end = end;
        s.class = class;
        s.slack.clear();
        s.slack.resize(objects, 0);
        id
    }

    /// Makes the record `id` (in no list, no live slot) vacant.
    pub(super) fn remove(&mut self, id: u32) {
        let s = &mut self.slab[id as usize];
        let slack = core::mem::take(&mut s.slack);
        *s = Span::vacant();
        // The slack's buffer serves the next span placed in this record.
        s.slack = slack;
        self.vacant.push(id);
    }

    /// Pushes `id` at the head of the list at `head`.
    pub(super) fn push(&mut self, head: &mut u32, id: u32) {
        let old = *head;
        let s = &mut self.slab[id as usize];
        s.prev = NIL;
        s.next = old;
        if old != NIL {
            self.slab[old as usize].prev = id;
        }
        *head = id;
    }

    /// Unlinks `id` from the list at `head`.
    pub(super) fn unlink(&mut self, head: &mut u32, id: u32) {
        let (prev, next) = {
            let s = &self.slab[id as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            *head = next;
        } else {
            self.slab[prev as usize].next = next;
        }
        if next != NIL {
            self.slab[next as usize].prev = prev;
        }
        let s = &mut self.slab[id as usize];
        s.prev = NIL;
        s.next = NIL;
    }
}
