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
        }
    }
    fn at(&self, addr: usize) -> *mut u8 {
        // Derive from the region's pointer to keep provenance.
        self.mem.as_ptr().wrapping_add(addr - self.base)
    }
    fn header(&self, ptr: usize) -> *mut u64 {
        self.at(ptr - 8).cast()
    }
}

impl FreeSpaceManager for Bump {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > 4096 {
            self.stats.record_failure();
            return Err(AllocError::unsupported(layout, "alignment above 4 KiB"));
        }
        let align = layout.align().max(8);
        let size = layout.size().max(1).next_multiple_of(8);
        let start = (self.base + self.top + 8).next_multiple_of(align);
        let Some(end) = start
            .checked_add(size)
            .filter(|&e| e <= self.base + self.cap)
        else {
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
        let mark = if self.bug == Bug::BadHeader { 0 } else { FREE };
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
        if self.stats.live_blocks == 0 {
            self.top = 0;
        }
        Ok(())
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

    fn inspect(&self, out: &mut dyn Inspector) {
        out.region(self.base, self.cap);
        out.block(self.base + self.top, self.cap - self.top, BlockKind::Top);
    }

    fn detects(&self) -> Detects {
        Detects {
            foreign: true,
            double_free: true,
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
};

allocator_traits::conformance_suite!(bump, PROFILE, |cap| Bump::new(cap, Bug::None));

fn fails(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

// The planted bugs are undefined behaviour by design (overlapping blocks, writes over a
// neighbour): Miri would stop at the bug instead of letting the kit find it.
#[test]
#[cfg_attr(miri, ignore)]
fn the_kit_catches_overlapping_blocks() {
    // Allocations only: a random sequence could hand the overlapping block to a moving resize,
    // whose `copy_nonoverlapping` precondition check aborts the process instead of unwinding.
    assert!(fails(|| {
        let mut m = Bump::new(PROFILE.capacity, Bug::Overlap);
        let mut shadow = conformance::Shadow::new(PROFILE.max_align);
        for _ in 0..8 {
            shadow.apply(
                &mut m,
                conformance::Op::Alloc {
                    size: 40,
                    align_shift: 3,
                },
            );
        }
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
fn the_kit_runs_the_invariant_walk() {
    // A corrupted header is invisible to the shadow (it is outside every block and never read
    // again); only the policy's walk, which the kit runs after every operation, catches it.
    assert!(fails(|| {
        let mut m = Bump::new(PROFILE.capacity, Bug::BadHeader);
        let mut shadow = conformance::Shadow::new(PROFILE.max_align);
        for _ in 0..3 {
            shadow.apply(
                &mut m,
                conformance::Op::Alloc {
                    size: 40,
                    align_shift: 3,
                },
            );
        }
        shadow.apply(&mut m, conformance::Op::Free { idx: 1 });
    }));
    // The same sequence on the honest manager passes.
    let mut m = Bump::new(PROFILE.capacity, Bug::None);
    let mut shadow = conformance::Shadow::new(PROFILE.max_align);
    for _ in 0..3 {
        shadow.apply(
            &mut m,
            conformance::Op::Alloc {
                size: 40,
                align_shift: 3,
            },
        );
    }
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

// The planted bugs are undefined behaviour by design (overlapping blocks, writes over a
// neighbour): Miri would stop at the bug instead of letting the kit find it.
#[test]
#[cfg_attr(miri, ignore)]
fn the_kit_holds_a_coalescing_claim_to_account() {
    // The bump allocator only rewinds when everything is free, so a claim to coalesce holds for
    // fill-and-drain; a claim it cannot keep is caught: with one block kept live, the largest
    // block after draining the rest is smaller than on a fresh heap.
    let profile = Profile {
        coalesces: true,
        ..PROFILE
    };
    conformance::check_fill_and_drain(profile, |c| Bump::new(c, Bug::None));
    assert!(fails(|| conformance::check_fill_and_drain(profile, |c| {
        let mut m = Bump::new(c, Bug::None);
        let _pinned = m.allocate(Layout::new::<u64>()).unwrap();
        // The pinned block is counted as live, so the drain's "nothing live" check trips too;
        // either way the claim is caught.
        m
    })));
}
