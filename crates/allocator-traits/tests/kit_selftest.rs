//! The kit tests itself: a small correct manager passes every check, and managers with planted
//! bugs (overlapping blocks, lying stats, clobbered contents, silent bad frees) fail them.

use std::alloc::Layout;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;

use allocator_traits::conformance::{self, Profile};
use allocator_traits::{
    AllocError, BlockKind, BoxedRegion, Corruption, Detects, FreeError, FreeSpaceManager,
    Inspector, MemorySource, Stats,
};

/// A bump allocator that rewinds when nothing is live: the smallest honest manager.
/// A block's size is kept in an 8-byte header in front of it (with a live/free mark); alignment
/// padding in front of a header starts with a word that says how long it is.
struct Bump {
    region: BoxedRegion,
    mem: NonNull<u8>,
    base: usize,
    cap: usize,
    top: usize,
    stats: Stats,
    bug: Bug,
    /// A block was leaked ([`Bug::Leak`]): the region no longer rewinds.
    leaked: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// Hands out the previous block again.
    Overlap,
    /// Forgets to count frees.
    Stats,
    /// Writes into the next live block on free.
    Clobber,
    /// Claims double-free detection but ignores it.
    SilentDoubleFree,
    /// Counts a moved resize as an allocation and a free.
    MoveAsAllocFree,
    /// Marks a freed block's header with neither mark (only the walk can see it: the header lies
    /// outside every block, and nothing reads it again).
    BadHeader,
    /// Frees the old block when a grow is refused (a realloc that lets go before it knows the new
    /// block fits): only a grow refused for want of room shows it.
    GrowFailureFrees,
    /// Counts the first block freed as freed but leaves it marked live, so the region never
    /// rewinds: the stats say nothing is live, the heap still holds it.
    Leak,
    /// Never rewinds: a bump allocator that does not coalesce, which is honest unless it claims
    /// to.
    NoRewind,
    /// Shows a live block's body through `inspect()` as free (only the shadow's comparison of
    /// the picture with the live blocks can see it).
    LiveShownFree,
}

const LIVE: u64 = 0xA11C_0000_0000_0000;
const FREE: u64 = 0xF4EE_0000_0000_0000;
const PAD: u64 = 0x9AD0_0000_0000_0000;
const MARK: u64 = 0xFFFF_0000_0000_0000;

impl Bump {
    fn new(cap: usize, bug: Bug) -> Self {
        let mut region = BoxedRegion::new(cap).unwrap();
        let grant = region.acquire(cap, 16).unwrap();
        let mem = grant.cast::<u8>();
        let base = mem.as_ptr() as usize;
        let mut stats = Stats::new();
        stats.set_footprint(region.footprint());
        Bump {
            region,
            mem,
            base,
            cap,
            top: 0,
            stats,
            bug,
            leaked: false,
        }
    }
    fn at(&self, addr: usize) -> *mut u8 {
        // Derive from the region's pointer to keep provenance.
        self.mem.as_ptr().wrapping_add(addr - self.base)
    }
    fn header(&self, ptr: usize) -> *mut u64 {
        self.at(ptr - 8).cast()
    }
    /// Where a block for `layout` would end, if it fits.
    fn end_for(&self, layout: Layout) -> Option<usize> {
        let align = layout.align().max(8);
        let size = layout.size().max(1).next_multiple_of(8);
        let start = (self.base + self.top + 8).next_multiple_of(align);
        start
            .checked_add(size)
            .filter(|&e| e <= self.base + self.cap)
    }
    /// The blocks from the bottom to the top: (padding start, header address, held bytes, live).
    /// Stops at the first header it cannot read as one (the walk reports those).
    fn blocks(&self) -> Vec<(usize, usize, usize, bool)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.top {
            // SAFETY: `at .. at + 8` lies below `top`, inside our region.
            let mut w = unsafe { self.at(self.base + at).cast::<u64>().read() };
            let mut header = at;
            if w & MARK == PAD {
                header = at + (w & !MARK) as usize;
                if header + 8 > self.top {
                    break;
                }
                // SAFETY: as above, below `top`.
                w = unsafe { self.at(self.base + header).cast::<u64>().read() };
            }
            let held = (w & !MARK) as usize;
            if (w & MARK != LIVE && w & MARK != FREE) || held <= header - at || at + held > self.top
            {
                break;
            }
            out.push((at, header, held, w & MARK == LIVE));
            at += held;
        }
        out
    }
}

impl FreeSpaceManager for Bump {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > 4096 {
            self.stats.record_failure();
            return Err(AllocError::unsupported(layout, "alignment above 4 KiB"));
        }
        let align = layout.align().max(8);
        let start = (self.base + self.top + 8).next_multiple_of(align);
        let Some(end) = self.end_for(layout) else {
            self.stats.record_failure();
            return Err(AllocError::out_of_memory(layout));
        };
        let start = if self.bug == Bug::Overlap && self.top > 64 {
            start - 16
        } else {
            start
        };
        let held = end - (self.base + self.top);
        let gap = start - 8 - (self.base + self.top);
        if gap > 0 && self.bug != Bug::Overlap {
            // SAFETY: the gap is at least 8 bytes (everything is a multiple of 8) inside the
            // region, below the new block's header.
            unsafe {
                self.at(self.base + self.top)
                    .cast::<u64>()
                    .write(PAD | gap as u64)
            };
        }
        self.top = end - self.base;
        // SAFETY: `start - 8 .. end` lies in our region.
        unsafe { self.header(start).write(LIVE | held as u64) };
        self.stats.record_alloc(layout.size(), held);
        Ok(NonNull::slice_from_raw_parts(
            NonNull::new(self.at(start)).unwrap(),
            end - start,
        ))
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let p = ptr.as_ptr() as usize;
        if p < self.base + 8 || p >= self.base + self.cap {
            self.stats.record_bad_free();
            return Err(FreeError::Foreign { ptr: p });
        }
        // SAFETY: inside our region, past its first 8 bytes.
        let h = unsafe { self.header(p).read() };
        if h & MARK == FREE && self.bug != Bug::SilentDoubleFree {
            self.stats.record_bad_free();
            return Err(FreeError::DoubleFree { ptr: p });
        }
        if h & MARK != LIVE && self.bug != Bug::SilentDoubleFree {
            self.stats.record_bad_free();
            return Err(FreeError::NotABlock { ptr: p });
        }
        let held = (h & !MARK) as usize;
        let leak = self.bug == Bug::Leak && !self.leaked;
        self.leaked |= leak;
        let mark = match self.bug {
            Bug::BadHeader => 0,
            _ if leak => LIVE,
            _ => FREE,
        };
        // SAFETY: the header is ours.
        unsafe { self.header(p).write(mark | held as u64) };
        if self.bug == Bug::Clobber && p + layout.size() + 16 < self.base + self.top {
            // SAFETY: inside the region (planted bug: writes over a neighbour).
            unsafe {
                self.at(p + layout.size().next_multiple_of(8) + 8)
                    .write(0x55)
            };
        }
        if self.bug != Bug::Stats {
            self.stats.record_free(layout.size(), held);
        }
        if self.stats.live_blocks == 0 && !self.leaked && self.bug != Bug::NoRewind {
            self.top = 0;
        }
        Ok(())
    }

    unsafe fn grow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if self.bug == Bug::GrowFailureFrees && self.end_for(new).is_none() {
            // SAFETY: the caller's contract: `ptr` is live with `old` (planted bug: it is freed
            // although the grow fails).
            let _ = unsafe { self.deallocate(ptr, old) };
            self.stats.record_failure();
            return Err(AllocError::out_of_memory(new));
        }
        // SAFETY: the caller's contract is the same as ours.
        unsafe { allocator_traits::resize_by_moving(self, ptr, old, new) }
    }

    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        _old: Layout,
        _new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // Never in place, but the block is checked first, as the trait asks.
        let p = ptr.as_ptr() as usize;
        if p < self.base + 8 || p >= self.base + self.cap {
            return Err(AllocError::InvalidBlock(FreeError::Foreign { ptr: p }));
        }
        // SAFETY: inside our region, past its first 8 bytes.
        if unsafe { self.header(p).read() } & MARK != LIVE {
            return Err(AllocError::InvalidBlock(FreeError::NotABlock { ptr: p }));
        }
        Err(AllocError::NotInPlace)
    }

    fn stats(&self) -> Stats {
        self.stats
    }
    fn record_moved_resize(&mut self) {
        if self.bug != Bug::MoveAsAllocFree {
            self.stats.record_moved_resize();
        }
    }

    /// The region, tiled: padding, header and body of every block, then the top.
    fn inspect(&self, out: &mut dyn Inspector) {
        out.region(self.base, self.cap);
        let mut end = 0;
        for (at, header, held, live) in self.blocks() {
            if header > at {
                out.block(self.base + at, header - at, BlockKind::Padding);
            }
            out.block(self.base + header, 8, BlockKind::Header);
            let kind = if live && self.bug != Bug::LiveShownFree {
                BlockKind::Live { requested: 0 }
            } else {
                BlockKind::Free
            };
            out.block(self.base + header + 8, at + held - header - 8, kind);
            end = at + held;
        }
        out.block(self.base + end, self.cap - end, BlockKind::Top);
    }

    fn detects(&self) -> Detects {
        Detects {
            foreign: true,
            double_free: true,
            double_free_above: 0,
            layout_mismatch: false,
        }
    }

    /// The blocks tile `base .. base + top`: from the previous block's end comes either the
    /// block's header or a padding word saying how far on the header is; the header carries the
    /// live or the free mark and the bytes the block holds from the previous block's end.
    fn check_invariants(&self) -> Result<(), Corruption> {
        let mut at = 0;
        while at < self.top {
            // SAFETY: `at .. at + 8` lies below `top`, inside our region.
            let mut w = unsafe { self.at(self.base + at).cast::<u64>().read() };
            let mut header = at;
            if w & MARK == PAD {
                // Alignment padding: its first word says how far the block's header is.
                header = at + (w & !MARK) as usize;
                Corruption::ensure(
                    header + 8 <= self.top,
                    "padding",
                    self.base + at,
                    "runs past the top",
                )?;
                // SAFETY: as above, below `top`.
                w = unsafe { self.at(self.base + header).cast::<u64>().read() };
            }
            Corruption::ensure(
                w & MARK == LIVE || w & MARK == FREE,
                "block header",
                self.base + header,
                "carries neither the live nor the free mark",
            )?;
            let held = (w & !MARK) as usize;
            Corruption::ensure(
                held > header - at && at + held <= self.top,
                "block header",
                self.base + header,
                "held bytes do not end between the header and the top",
            )?;
            at += held;
        }
        Ok(())
    }
}

impl Drop for Bump {
    fn drop(&mut self) {
        let _ = &self.region;
    }
}

const PROFILE: Profile = Profile {
    coalesces: false,
    max_align: 4096,
    capacity: 1 << 20,
    collections_capacity: 64 << 20,
    miri_capacity: 128 << 10,
    miri_walk_every: 1,
};

allocator_traits::conformance_suite!(bump, PROFILE, |cap| Bump::new(cap, Bug::None));

fn fails(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

/// A manager with `bug` and its shadow, after `n` allocations of 40 bytes through the shadow.
fn after_allocations(bug: Bug, n: usize) -> (Bump, conformance::Shadow) {
    let mut m = Bump::new(PROFILE.capacity, bug);
    let mut shadow = conformance::Shadow::new(PROFILE.max_align);
    for _ in 0..n {
        shadow.apply(
            &mut m,
            conformance::Op::Alloc {
                size: 40,
                align_shift: 3,
            },
        );
    }
    (m, shadow)
}

// The planted bugs are undefined behaviour by design (overlapping blocks, writes over a
// neighbour): Miri would stop at the bug instead of letting the kit find it.
#[test]
#[cfg_attr(miri, ignore)]
fn the_kit_catches_overlapping_blocks() {
    // Allocations only: a random sequence could hand the overlapping block to a moving resize,
    // whose `copy_nonoverlapping` precondition check aborts the process instead of unwinding.
    assert!(fails(|| {
        after_allocations(Bug::Overlap, 8);
    }));
}

// The planted bugs are undefined behaviour by design (overlapping blocks, writes over a
// neighbour): Miri would stop at the bug instead of letting the kit find it.
#[test]
#[cfg_attr(miri, ignore)]
fn the_kit_catches_lying_stats() {
    assert!(fails(|| conformance::check_shadow_model(PROFILE, |c| {
        Bump::new(c, Bug::Stats)
    })));
}

// The planted bugs are undefined behaviour by design (overlapping blocks, writes over a
// neighbour): Miri would stop at the bug instead of letting the kit find it.
#[test]
#[cfg_attr(miri, ignore)]
fn the_kit_catches_clobbered_contents() {
    assert!(fails(|| conformance::check_shadow_model(PROFILE, |c| {
        Bump::new(c, Bug::Clobber)
    })));
}

// The planted bugs are undefined behaviour by design (overlapping blocks, writes over a
// neighbour): Miri would stop at the bug instead of letting the kit find it.
#[test]
#[cfg_attr(miri, ignore)]
fn the_kit_catches_an_unreported_double_free() {
    assert!(fails(|| conformance::check_bad_frees(PROFILE, |c| {
        Bump::new(c, Bug::SilentDoubleFree)
    })));
}

#[test]
fn the_kit_catches_a_live_block_shown_free() {
    // Only inspect() lies: the stats, the contents and the walk are right.
    assert!(fails(|| {
        after_allocations(Bug::LiveShownFree, 3);
    }));
}

#[test]
fn a_shadow_walking_every_fourth_operation_walks_on_the_fourth() {
    // A shadow walking after every 4th operation (as Miri's further configurations do after
    // every Profile::FURTHER_WALK_EVERY-th): the picture's lie goes unseen for three
    // allocations and is caught by the fourth.
    let walking = |n: usize| {
        let mut m = Bump::new(PROFILE.capacity, Bug::LiveShownFree);
        let mut shadow = conformance::Shadow::new(PROFILE.max_align).walking_every(4);
        for _ in 0..n {
            shadow.apply(
                &mut m,
                conformance::Op::Alloc {
                    size: 40,
                    align_shift: 3,
                },
            );
        }
        (m, shadow)
    };
    assert!(!fails(|| {
        walking(3);
    }));
    assert!(fails(|| {
        walking(4);
    }));
}

#[test]
fn a_shadow_checking_edges_finds_a_changed_middle_byte_at_the_free() {
    // The fuzz targets check only the edges of the live blocks after each operation
    // (Shadow::checking_edges): a byte changed in the middle of a block goes unseen until the
    // block is freed, where it is checked whole; the default shadow sees it at once.
    let corrupted = |edges: bool| {
        let mut m = Bump::new(PROFILE.capacity, Bug::None);
        let shadow = conformance::Shadow::new(PROFILE.max_align);
        let mut shadow = if edges {
            shadow.checking_edges()
        } else {
            shadow
        };
        let alloc = conformance::Op::Alloc {
            size: 64,
            align_shift: 3,
        };
        for _ in 0..3 {
            shadow.apply(&mut m, alloc);
        }
        let (p, _) = shadow.block(1).expect("three blocks live");
        // SAFETY: byte 32 of a live 64-byte block the test owns (a write a policy's bug would
        // make, made here through the owner's pointer).
        unsafe { *p.as_ptr().add(32) ^= 0xff };
        (m, shadow, alloc)
    };
    let (mut m, mut shadow, alloc) = corrupted(true);
    assert!(!fails(|| shadow.apply(&mut m, alloc)));
    assert!(fails(
        || shadow.apply(&mut m, conformance::Op::Free { idx: 1 })
    ));
    if !cfg!(miri) {
        // (Under Miri every shadow checks only the edges between frees.)
        let (mut m, mut shadow, alloc) = corrupted(false);
        assert!(fails(|| shadow.apply(&mut m, alloc)));
    }
}

#[test]
fn the_kit_runs_the_invariant_walk() {
    // A corrupted header is invisible to the shadow (it is outside every block and never read
    // again); only the policy's walk, which the kit runs after every operation, catches it.
    assert!(fails(|| {
        let (mut m, mut shadow) = after_allocations(Bug::BadHeader, 3);
        shadow.apply(&mut m, conformance::Op::Free { idx: 1 });
    }));
    // The same sequence on the honest manager passes.
    let (mut m, mut shadow) = after_allocations(Bug::None, 3);
    shadow.apply(&mut m, conformance::Op::Free { idx: 1 });
}

#[test]
fn the_kit_catches_a_move_counted_as_alloc_and_free() {
    assert!(fails(|| {
        let mut m = Bump::new(PROFILE.capacity, Bug::MoveAsAllocFree);
        let mut shadow = conformance::Shadow::new(PROFILE.max_align);
        shadow.apply(
            &mut m,
            conformance::Op::Alloc {
                size: 40,
                align_shift: 3,
            },
        );
        // The bump allocator never resizes in place: this grow moves.
        shadow.apply(&mut m, conformance::Op::Grow { idx: 0, extra: 100 });
    }));
}

/// The panic message of `f`, if it panics.
fn panic_of(f: impl FnOnce()) -> Option<String> {
    let e = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

/// `f` panics, and its message says `why`.
fn fails_with(why: &str, f: impl FnOnce()) {
    match panic_of(f) {
        None => panic!("the planted bug went unnoticed (expected: {why})"),
        Some(m) => assert!(m.contains(why), "failed for another reason: {m}"),
    }
}

#[test]
fn the_kit_holds_a_coalescing_claim_to_account() {
    // The bump allocator rewinds when everything is free, so a claim to coalesce holds for
    // fill-and-drain. One that never rewinds leaks nothing (its freed blocks are free in
    // inspect(), the stats are zero) but cannot keep the claim: it is caught by the largest block
    // after the drain, the check the claim is about (before, a plant that kept a block live was
    // caught by the live count first).
    let profile = Profile {
        coalesces: true,
        ..PROFILE
    };
    conformance::check_fill_and_drain(profile, |c| Bump::new(c, Bug::None));
    fails_with("after freeing everything the largest block is", || {
        conformance::check_fill_and_drain(profile, |c| Bump::new(c, Bug::NoRewind))
    });
}

#[test]
fn the_kit_catches_a_leak_after_draining() {
    // Counted as freed, still held: the stats are zero, only inspect() shows it.
    fails_with("still shows a live block", || {
        conformance::check_fill_and_drain(PROFILE, |c| Bump::new(c, Bug::Leak))
    });
    fails_with("still shows a live block", || {
        conformance::check_drained(&{
            let mut m = Bump::new(4096, Bug::Leak);
            let l = Layout::new::<u64>();
            let b = m.allocate(l).unwrap();
            // SAFETY: just allocated with `l`.
            unsafe { m.deallocate(b.cast(), l) }.unwrap();
            m
        })
    });
}

// Under Miri the kit runs 2 sequences of 40 operations, which need not reach the region's end
// (the check that they do is off there), so the plant may go unseen: natively only.
#[test]
#[cfg_attr(miri, ignore)]
fn the_kit_presses_against_the_regions_end() {
    // The honest manager passes: the sequences are refused allocations and grows mid-way (the
    // check fails when they are not), each refusal checked.
    conformance::check_shadow_near_oom(PROFILE, |c| Bump::new(c, Bug::None));
    // A grow refused for want of room that lets the block go is caught: the refused grow counted
    // a free.
    fails_with("by (0, 1, 0, 0)", || {
        conformance::check_shadow_near_oom(PROFILE, |c| Bump::new(c, Bug::GrowFailureFrees))
    });
}

/// Four bytes per operation (`conformance::fuzz_one`'s encoding): three allocations, a free,
/// a double free of it, a foreign free, then more allocations and frees.
const FUZZ_INPUT: &[u8] = &[
    0, 8, 0, 0, 0, 8, 0, 64, 0, 8, 0, 128, 7, 8, 0, 1, 14, 8, 0, 0, 15, 8, 0, 2, 0, 8, 0, 3, 7, 8,
    0, 0, 14, 8, 0, 0, 15, 8, 0, 0, 10, 200, 0, 0xc1, 13, 9, 3, 0x82,
];

#[test]
#[cfg_attr(miri, ignore)]
fn the_fuzz_harness_holds_detects_to_account() {
    let mut m = Bump::new(conformance::FUZZ_CAPACITY, Bug::None);
    conformance::fuzz_one(&mut m, 4096, FUZZ_INPUT);
    // A double free it claims to detect but takes is what the fuzzer reports.
    fails_with("double free", || {
        let mut m = Bump::new(conformance::FUZZ_CAPACITY, Bug::SilentDoubleFree);
        conformance::fuzz_one(&mut m, 4096, FUZZ_INPUT);
    });
}
