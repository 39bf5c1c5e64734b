//! The shadow model: what the live blocks must be, kept beside the manager under test.
//!
//! Every block the manager hands out is recorded with its layout, its usable length and a seed;
//! its bytes are filled with a pattern derived from the seed. After every operation the shadow
//! checks the manager against itself:
//!
//! ```text
//!   region(s) from inspect()   [..............................................]
//!   live blocks (shadow)           [A:seed 3]   [B:seed 9]        [C:seed 4]
//!   checks: inside a region, aligned, A/B/C disjoint, pattern intact,
//!           stats.live_blocks == 3, live_requested == |A|+|B|+|C|, footprint >= live_held
//! ```

use std::collections::BTreeMap;
use std::vec::Vec;

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::{AllocError, BlockKind, FreeSpaceManager, Inspector};

/// One operation of a random sequence. Indices pick a live block modulo the number live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Allocate `size` bytes aligned to `1 << align_shift`.
    Alloc {
        /// Requested size.
        size: usize,
        /// log2 of the alignment.
        align_shift: u8,
    },
    /// Free the `idx`-th live block.
    Free {
        /// Which live block.
        idx: usize,
    },
    /// Grow the `idx`-th live block by `extra` bytes.
    Grow {
        /// Which live block.
        idx: usize,
        /// Bytes to add.
        extra: usize,
    },
    /// Shrink the `idx`-th live block by `by` bytes (saturating at 0).
    Shrink {
        /// Which live block.
        idx: usize,
        /// Bytes to remove.
        by: usize,
    },
    /// Resize the `idx`-th live block in place to `size` bytes, if the policy can.
    InPlace {
        /// Which live block.
        idx: usize,
        /// New size.
        size: usize,
    },
    /// Grow or shrink the `idx`-th live block to `size` bytes at a new alignment of
    /// `1 << align_shift` (the allocator API allows it: a `Vec<u8>`'s buffer handed to a
    /// more-aligned type is regrown so).
    Realign {
        /// Which live block.
        idx: usize,
        /// New size.
        size: usize,
        /// log2 of the new alignment.
        align_shift: u8,
    },
}

/// A live block as the shadow knows it.
#[derive(Debug, Clone, Copy)]
struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
    seed: u8,
}

/// How one operation must change the op counters of [`Stats`](crate::Stats).
#[derive(Debug, Clone)]
struct Counted {
    allocs: u64,
    frees: u64,
    resizes: u64,
    in_place: core::ops::RangeInclusive<u64>,
}

impl Counted {
    const NOTHING: Counted = Counted {
        allocs: 0,
        frees: 0,
        resizes: 0,
        in_place: 0..=0,
    };
    const ALLOC: Counted = Counted {
        allocs: 1,
        ..Self::NOTHING
    };
    const FREE: Counted = Counted {
        frees: 1,
        ..Self::NOTHING
    };
    /// One resize: in place for sure (`resize_in_place`), or either way (grow, shrink).
    fn resize(in_place: bool) -> Counted {
        Counted {
            resizes: 1,
            in_place: if in_place { 1..=1 } else { 0..=1 },
            ..Self::NOTHING
        }
    }
}

/// The shadow of a manager's live blocks.
#[derive(Debug, Default)]
pub struct Shadow {
    live: BTreeMap<usize, Live>,
    next_seed: u8,
    failures: u64,
    failed_resizes: u64,
    peak_requested: usize,
    /// Largest alignment the policy promises (bigger ones are skipped).
    pub max_align: usize,
    /// [`apply`](Self::apply) runs the structural checks (the policy's invariant walk and its
    /// inspect picture) after every `walk_every`-th operation, the contents and stats after
    /// every one; 0 and 1 both mean after every operation.
    walk_every: usize,
    /// Operations applied so far (the count `walk_every` divides).
    applied: usize,
    /// After each operation, check only the first and last 16 bytes of every live block (where
    /// a neighbour's overrun lands); each block is still checked whole when it is freed or
    /// resized, and every block is freed at the end. Set by [`Shadow::checking_edges`], and from
    /// the start under Miri (which reads a byte ~1000x slower).
    edges_only: bool,
}

/// Period of the fill pattern: a prime, so bytes copied from the wrong offset show unless the
/// offset is a multiple of it.
const PERIOD: usize = 4099;

/// The fill pattern twice over (pseudo-random bytes, xorshift): any run of up to [`PERIOD`]
/// bytes from any phase is one slice, so a block is filled and checked with one copy or one
/// comparison per 4 KiB instead of a loop per byte (under Miri, which interprets the loop, most
/// of a kit test's time was that loop).
static PATTERN: [u8; 2 * PERIOD] = {
    let mut t = [0u8; 2 * PERIOD];
    let mut x: u32 = 0x9e37_79b9;
    let mut i = 0;
    while i < PERIOD {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        t[i] = (x >> 24) as u8;
        t[i + PERIOD] = t[i];
        i += 1;
    }
    t
};

/// Where byte `i` of a block with `seed` starts in [`PATTERN`]: the 256 seeds start 16 bytes
/// apart (256 * 16 < PERIOD), so no two blocks of different seeds hold the same bytes.
fn phase(seed: u8, i: usize) -> usize {
    (seed as usize * 16 + i % PERIOD) % PERIOD
}

impl Shadow {
    /// An empty shadow for a policy serving alignments up to `max_align`.
    pub fn new(max_align: usize) -> Self {
        Shadow {
            max_align,
            edges_only: cfg!(miri),
            ..Default::default()
        }
    }

    /// The same shadow, running the structural checks (the policy's invariant walk and its
    /// inspect picture) after every `n`-th operation it applies instead of every one; contents
    /// and stats are still checked after each. For runs under Miri, where a walk of the whole
    /// heap after every operation is most of the time (the conformance kit's
    /// [`Profile::miri_walk_every`](super::Profile::miri_walk_every)).
    pub fn walking_every(self, n: usize) -> Self {
        Shadow {
            walk_every: n,
            ..self
        }
    }

    /// The same shadow, checking only the edges of the live blocks after each operation and
    /// each block whole when it is freed or resized ([`check`](Self::check) too checks only
    /// the edges). A corruption is then found at the block's free rather than at the operation that
    /// made it; the fuzz targets use it, where checking every live byte after every operation
    /// was most of the time (ten runs per second).
    pub fn checking_edges(self) -> Self {
        Shadow {
            edges_only: true,
            ..self
        }
    }

    /// Refusals seen so far: (allocations refused, grows and shrinks refused as out of memory).
    pub fn refusals(&self) -> (u64, u64) {
        (self.failures - self.failed_resizes, self.failed_resizes)
    }

    /// The `idx`-th live block (modulo the number live), as [`Op::Free`] picks it: its address
    /// and layout.
    pub fn block(&self, idx: usize) -> Option<(NonNull<u8>, Layout)> {
        self.nth(idx).map(|(_, l)| (l.ptr, l.layout))
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when nothing is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn nth(&self, idx: usize) -> Option<(usize, Live)> {
        if self.live.is_empty() {
            return None;
        }
        self.live
            .iter()
            .nth(idx % self.live.len())
            .map(|(&a, &l)| (a, l))
    }

    /// Writes the pattern of `seed` over bytes `from..len` of the block at `p`.
    fn fill(p: NonNull<u8>, from: usize, len: usize, seed: u8) {
        let mut i = from;
        while i < len {
            let n = (len - i).min(PERIOD);
            let at = phase(seed, i);
            // SAFETY: `i..i + n` lies inside the live block at `p` the manager handed out to us
            // (`i + n <= len`); the source is `n <= PERIOD` bytes of the static table from
            // `at < PERIOD`; a live block and a static do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(PATTERN.as_ptr().add(at), p.as_ptr().add(i), n)
            };
            i += n;
        }
    }

    /// Checks bytes `0..upto` of the block at `p` against the pattern of `seed`.
    fn verify(p: NonNull<u8>, upto: usize, seed: u8, what: &str) {
        Self::verify_range(p, 0, upto, seed, what);
    }

    /// Checks bytes `from..to` of the block at `p` against the pattern of `seed`: one
    /// comparison per [`PERIOD`] bytes, and on a difference a panic naming the first byte.
    fn verify_range(p: NonNull<u8>, from: usize, to: usize, seed: u8, what: &str) {
        let mut i = from;
        while i < to {
            let n = (to - i).min(PERIOD);
            let at = phase(seed, i);
            // SAFETY: `i..i + n` lies inside a live block the manager handed out to us and that
            // we filled (`to` is at most its length); nothing writes to it while the slice
            // lives.
            let got = unsafe { core::slice::from_raw_parts(p.as_ptr().add(i), n) };
            let want = &PATTERN[at..at + n];
            if got != want {
                let k = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(0);
                panic!(
                    "{what}: byte {} of the block at {p:p} changed ({:#04x}, expected {:#04x})",
                    i + k,
                    got[k],
                    want[k]
                );
            }
            i += n;
        }
    }

    /// Checks the first and last 16 bytes of the block at `p`, `len` bytes long (where a
    /// neighbour's overrun lands).
    fn verify_edges(p: NonNull<u8>, len: usize, seed: u8) {
        let edge = len.min(16);
        let what = "after an unrelated operation";
        Self::verify_range(p, 0, edge, seed, what);
        Self::verify_range(p, len - edge, len, seed, what);
    }

    fn admit(&mut self, block: NonNull<[u8]>, layout: Layout, seed: u8, keep: usize) {
        let addr = block.cast::<u8>().as_ptr() as usize;
        let len = block.len();
        assert!(
            len >= layout.size(),
            "block at {addr:#x} is {len} bytes, less than the {} asked",
            layout.size()
        );
        assert_eq!(
            addr % layout.align(),
            0,
            "block at {addr:#x} is not aligned to {}",
            layout.align()
        );
        let end = addr
            .checked_add(len)
            .expect("block wraps the address space");
        if let Some((&a, l)) = self.live.range(..end).next_back() {
            assert!(
                a + l.len <= addr || a >= end,
                "block {addr:#x}+{len} overlaps live block {a:#x}+{}",
                l.len
            );
        }
        Self::fill(block.cast(), keep, len, seed);
        self.live.insert(
            addr,
            Live {
                ptr: block.cast(),
                layout,
                len,
                seed,
            },
        );
        let requested: usize = self.live.values().map(|l| l.layout.size()).sum();
        self.peak_requested = self.peak_requested.max(requested);
    }

    /// Applies `op` to `m` and checks the result against the shadow.
    pub fn apply<M: FreeSpaceManager + ?Sized>(&mut self, m: &mut M, op: Op) {
        let before = m.stats();
        // What the op did, to check the op counters by.
        let counted: Option<Counted> = match op {
            Op::Alloc { size, align_shift } => {
                let align = (1usize << (align_shift % 13)).min(self.max_align.max(1));
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                match m.allocate(layout) {
                    Ok(b) => {
                        let seed = self.bump_seed();
                        self.admit(b, layout, seed, 0);
                        Some(Counted::ALLOC)
                    }
                    Err(AllocError::OutOfMemory { .. }) => {
                        self.failures += 1;
                        Some(Counted::NOTHING)
                    }
                    Err(e) => panic!("allocate({layout:?}) gave {e} instead of a block or OOM"),
                }
            }
            Op::Free { idx } => {
                let Some((addr, l)) = self.nth(idx) else {
                    return;
                };
                Self::verify(l.ptr, l.len, l.seed, "before free");
                let ptr = l.ptr;
                // SAFETY: `addr` is a live block allocated with `l.layout`.
                let r = unsafe { m.deallocate(ptr, l.layout) };
                assert_eq!(r, Ok(()), "free of live block {addr:#x} ({:?})", l.layout);
                self.live.remove(&addr);
                Some(Counted::FREE)
            }
            Op::Grow { idx, extra } => {
                let Some((addr, l)) = self.nth(idx) else {
                    return;
                };
                let new = Layout::from_size_align(l.layout.size() + extra, l.layout.align())
                    .expect("valid layout");
                let ptr = l.ptr;
                // SAFETY: `addr` is a live block allocated with `l.layout`.
                let r = unsafe { m.grow(ptr, l.layout, new) };
                self.after_resize(addr, l, new, r, false)
            }
            Op::Shrink { idx, by } => {
                let Some((addr, l)) = self.nth(idx) else {
                    return;
                };
                let new =
                    Layout::from_size_align(l.layout.size().saturating_sub(by), l.layout.align())
                        .expect("valid layout");
                let ptr = l.ptr;
                // SAFETY: `addr` is a live block allocated with `l.layout`.
                let r = unsafe { m.shrink(ptr, l.layout, new) };
                self.after_resize(addr, l, new, r, false)
            }
            Op::InPlace { idx, size } => {
                let Some((addr, l)) = self.nth(idx) else {
                    return;
                };
                let new = Layout::from_size_align(size, l.layout.align()).expect("valid layout");
                let ptr = l.ptr;
                // SAFETY: `addr` is a live block allocated with `l.layout`.
                let r = unsafe { m.resize_in_place(ptr, l.layout, new) };
                self.after_resize(addr, l, new, r, true)
            }
            Op::Realign {
                idx,
                size,
                align_shift,
            } => {
                let Some((addr, l)) = self.nth(idx) else {
                    return;
                };
                let align = (1usize << (align_shift % 13)).min(self.max_align.max(1));
                let new = Layout::from_size_align(size, align).expect("valid layout");
                let ptr = l.ptr;
                // SAFETY: `addr` is a live block allocated with `l.layout`; grow gets a size at
                // least the old one, shrink at most.
                let r = unsafe {
                    if size >= l.layout.size() {
                        m.grow(ptr, l.layout, new)
                    } else {
                        m.shrink(ptr, l.layout, new)
                    }
                };
                self.after_resize(addr, l, new, r, false)
            }
        };
        let s = m.stats();
        if let Some(c) = counted {
            let did = (
                s.allocs.wrapping_sub(before.allocs),
                s.frees.wrapping_sub(before.frees),
                s.resizes.wrapping_sub(before.resizes),
                s.in_place_resizes.wrapping_sub(before.in_place_resizes),
            );
            // A moved resize is one resize, not an allocation and a free
            // (`FreeSpaceManager::record_moved_resize`).
            assert!(
                did.0 == c.allocs
                    && did.1 == c.frees
                    && did.2 == c.resizes
                    && c.in_place.contains(&did.3),
                "{op:?} changed the op counters (allocs, frees, resizes, in place) by {did:?}, \
                 expected {c:?}: {s:?}"
            );
        }
        self.applied += 1;
        if self.applied.is_multiple_of(self.walk_every.max(1)) {
            self.check(m);
        } else {
            self.check_blocks_and_stats(m);
        }
    }

    fn after_resize(
        &mut self,
        addr: usize,
        old: Live,
        new: Layout,
        r: Result<NonNull<[u8]>, AllocError>,
        must_stay: bool,
    ) -> Option<Counted> {
        match r {
            Ok(b) => {
                let at = b.cast::<u8>().as_ptr() as usize;
                if must_stay {
                    assert_eq!(at, addr, "resize_in_place moved the block");
                }
                let keep = old.layout.size().min(new.size());
                Self::verify(b.cast(), keep, old.seed, "after resize");
                self.live.remove(&addr);
                self.admit(b, new, old.seed, keep);
                // One resize; `resize_in_place` counts it in place, grow/shrink may or may not.
                Some(Counted::resize(must_stay))
            }
            Err(AllocError::NotInPlace) if must_stay => {
                Self::verify(
                    old.ptr,
                    old.len,
                    old.seed,
                    "after a refused in-place resize",
                );
                Some(Counted::NOTHING)
            }
            Err(AllocError::OutOfMemory { .. }) if !must_stay => {
                self.failures += 1;
                self.failed_resizes += 1;
                Self::verify(old.ptr, old.len, old.seed, "after a refused resize");
                Some(Counted::NOTHING)
            }
            Err(e) => panic!(
                "resize of {addr:#x} from {:?} to {new:?} gave {e}",
                old.layout
            ),
        }
    }

    fn bump_seed(&mut self) -> u8 {
        self.next_seed = self.next_seed.wrapping_add(1);
        self.next_seed
    }

    /// Checks every invariant the shadow can see: contents, stats, the policy's invariant walk,
    /// and the manager's picture of itself (regions contain the live blocks; no free block it
    /// reports overlaps a live one).
    pub fn check<M: FreeSpaceManager + ?Sized>(&self, m: &M) {
        self.check_blocks_and_stats(m);
        self.check_structure(m);
    }

    /// The live blocks' contents (only their edges if `edges_only`) and the stats.
    fn check_blocks_and_stats<M: FreeSpaceManager + ?Sized>(&self, m: &M) {
        for l in self.live.values() {
            if self.edges_only {
                Self::verify_edges(l.ptr, l.len, l.seed);
            } else {
                Self::verify(l.ptr, l.len, l.seed, "after an unrelated operation");
            }
        }
        let s = m.stats();
        assert_eq!(s.live_blocks, self.live.len(), "stats.live_blocks: {s:?}");
        let requested: usize = self.live.values().map(|l| l.layout.size()).sum();
        assert_eq!(s.live_requested, requested, "stats.live_requested: {s:?}");
        assert!(
            s.live_held >= requested,
            "live_held below live_requested: {s:?}"
        );
        assert!(
            s.footprint >= s.live_held,
            "footprint below live_held: {s:?}"
        );
        assert!(
            s.peak_footprint >= s.footprint,
            "peak_footprint below footprint: {s:?}"
        );
        assert!(
            s.peak_live_requested >= self.peak_requested,
            "peak_live_requested: {s:?}"
        );
        assert_eq!(
            s.allocs - s.frees,
            self.live.len() as u64,
            "allocs - frees must be the live count: {s:?}"
        );
        assert!(s.failed_allocs >= self.failures, "failed_allocs: {s:?}");
    }

    /// The policy's invariant walk and its inspect picture against the live blocks.
    fn check_structure<M: FreeSpaceManager + ?Sized>(&self, m: &M) {
        if let Err(c) = m.check_invariants() {
            panic!("the policy's invariant walk failed: {c}");
        }

        let mut pic = Picture::default();
        m.inspect(&mut pic);
        // A heap that grows lazily may have no region before its first block; once a block is
        // live, some region must hold it.
        assert!(
            self.live.is_empty() || !pic.regions.is_empty(),
            "the policy reports no regions through inspect() while blocks are live"
        );
        for (&a, l) in &self.live {
            let inside = pic
                .regions
                .iter()
                .any(|&(s, n)| a >= s && a + l.len <= s + n);
            assert!(
                inside,
                "live block {a:#x}+{} lies outside every region {:x?}",
                l.len, pic.regions
            );
        }
        // No free block overlaps a live one: for each free block, the live block starting last
        // before its end must end by its start. Taking the free blocks in order of their ends
        // makes that live block a cursor that only moves forward over the (address-ordered)
        // live map: one pass over both, where a map search per block cost most of the check on
        // a policy that reports every free object (tcmalloc).
        pic.free.sort_by_key(|&(fa, fl, _)| fa + fl);
        let mut live = self.live.iter().peekable();
        let mut before_end = None;
        for &(fa, fl, kind) in &pic.free {
            while let Some((&a, l)) = live.next_if(|&(&a, _)| a < fa + fl) {
                before_end = Some((a, l.len));
            }
            if let Some((a, len)) = before_end {
                assert!(
                    a + len <= fa || fl == 0,
                    "inspect() shows a {kind:?} block {fa:#x}+{fl} over live block {a:#x}+{len}"
                );
            }
        }
    }
}

/// What inspect() shows, as the shadow checks it.
#[derive(Default)]
struct Picture {
    regions: Vec<(usize, usize)>,
    free: Vec<(usize, usize, BlockKind)>,
}

impl Inspector for Picture {
    fn region(&mut self, start: usize, len: usize) {
        self.regions.push((start, len));
    }
    fn block(&mut self, addr: usize, len: usize, kind: BlockKind) {
        if matches!(kind, BlockKind::Free | BlockKind::Cached | BlockKind::Top) {
            self.free.push((addr, len, kind));
        }
    }
}

impl quickcheck::Arbitrary for Op {
    fn arbitrary(g: &mut quickcheck::Gen) -> Self {
        let pick = u8::arbitrary(g) % 16;
        let sz = |g: &mut quickcheck::Gen| -> usize {
            match u8::arbitrary(g) % 10 {
                0..=5 => usize::arbitrary(g) % 64,
                6..=8 => usize::arbitrary(g) % 1024,
                _ => usize::arbitrary(g) % 16384,
            }
        };
        let idx = usize::arbitrary(g);
        match pick {
            0..=6 => Op::Alloc {
                size: sz(g),
                align_shift: match u8::arbitrary(g) % 8 {
                    0..=5 => u8::arbitrary(g) % 5,
                    _ => u8::arbitrary(g) % 13,
                },
            },
            7..=11 => Op::Free { idx },
            12 => Op::Grow { idx, extra: sz(g) },
            13 => Op::Shrink { idx, by: sz(g) },
            14 => Op::InPlace { idx, size: sz(g) },
            _ => Op::Realign {
                idx,
                size: sz(g),
                align_shift: u8::arbitrary(g) % 13,
            },
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        match *self {
            Op::Alloc { size, align_shift } if size > 0 => Box::new(
                [size / 2, 0]
                    .into_iter()
                    .map(move |size| Op::Alloc { size, align_shift }),
            ),
            _ => quickcheck::empty_shrinker(),
        }
    }
}
