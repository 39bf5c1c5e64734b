//! Free pages go back to the source (issue 12): gperftools' incremental scavenging, returned
//! spans carved and committed again, the footprint counting only what is committed, and the
//! invariant walk passing over heaps with both kinds of free spans.
#![cfg(not(loom))]

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{BoxedRegion, FreeSpaceManager, MemorySource, SourceError};
use tcmalloc::Core;

/// A region that "decommits": it scribbles over the range (its contents are gone, as after
/// `MADV_DONTNEED`) and stops counting it, so a heap that reads released memory or counts it
/// wrongly is caught, under Miri too.
struct Releasing {
    inner: BoxedRegion,
    decommitted: usize,
    decommits: usize,
}

// SAFETY: forwards to a region that keeps the contract; decommit only scribbles inside a grant.
unsafe impl MemorySource for Releasing {
    fn acquire(&mut self, size: usize, align: usize) -> Result<NonNull<[u8]>, SourceError> {
        self.inner.acquire(size, align)
    }
    unsafe fn release(&mut self, ptr: NonNull<u8>, size: usize) -> Result<(), SourceError> {
        // SAFETY: forwarded contract.
        unsafe { self.inner.release(ptr, size) }
    }
    fn granularity(&self) -> usize {
        self.inner.granularity()
    }
    fn is_contiguous(&self) -> bool {
        self.inner.is_contiguous()
    }
    fn footprint(&self) -> usize {
        self.inner.footprint() - self.decommitted
    }
    unsafe fn decommit(&mut self, ptr: NonNull<u8>, size: usize) -> bool {
        // SAFETY: the range is inside a grant and unneeded (the trait's contract).
        unsafe { ptr.as_ptr().write_bytes(0xa5, size) };
        self.decommitted += size;
        self.decommits += 1;
        true
    }
    unsafe fn recommit(&mut self, _ptr: NonNull<u8>, size: usize) {
        assert!(
            size <= self.decommitted,
            "recommit of more than was decommitted"
        );
        self.decommitted -= size;
    }
}

fn core(cap: usize) -> Core<Releasing> {
    Core::new(Releasing {
        inner: BoxedRegion::new(cap).unwrap(),
        decommitted: 0,
        decommits: 0,
    })
}

#[test]
fn freed_pages_are_released_and_reused() {
    let mut c = core(if cfg!(miri) { 8 << 20 } else { 64 << 20 });
    let l = Layout::from_size_align(300_000, 8).unwrap();
    let n = if cfg!(miri) { 12 } else { 120 };
    let blocks: Vec<_> = (0..n).map(|_| c.allocate(l).unwrap()).collect();
    let grown = c.source().inner.footprint();
    for b in &blocks {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { c.deallocate(b.cast(), l) }.unwrap();
        c.check_invariants().unwrap();
    }
    let s = c.source();
    assert!(s.decommits > 0, "freed pages were released");
    assert!(
        s.footprint() < grown,
        "the footprint counts only committed pages"
    );
    assert_eq!(c.stats().footprint, s.footprint(), "stats read the source");
    // Allocations come back out of the returned spans (committed again) and are usable whole.
    let again: Vec<_> = (0..n).map(|_| c.allocate(l).unwrap()).collect();
    for b in &again {
        // SAFETY: a live block of at least `l.size()` bytes.
        unsafe { b.cast::<u8>().as_ptr().write_bytes(7, l.size()) };
    }
    c.check_invariants().unwrap();
    assert_eq!(
        c.source().inner.footprint(),
        grown,
        "the heap reused its returned pages instead of growing"
    );
    for b in again {
        // SAFETY: as above.
        unsafe { c.deallocate(b.cast(), l) }.unwrap();
    }
    c.check_invariants().unwrap();
}

#[test]
fn the_walk_passes_with_both_kinds_of_free_spans_after_a_random_workload() {
    let mut c = core(if cfg!(miri) { 16 << 20 } else { 128 << 20 });
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let ops = if cfg!(miri) { 400 } else { 40_000 };
    for op in 0..ops {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Smaller under Miri, whose region is smaller.
        let (cap, large) = if cfg!(miri) {
            (40, 100_000)
        } else {
            (400, 400_000)
        };
        if live.len() < 20 || (rng % 5 < 3 && live.len() < cap) {
            let size = match rng >> 61 {
                0 | 1 => 40_000 + (rng >> 20) as usize % large,
                _ => 1 + (rng >> 20) as usize % 4000,
            };
            let l = Layout::from_size_align(size, 8).unwrap();
            let b = c.allocate(l).unwrap().cast::<u8>();
            // SAFETY: a fresh block of `size` bytes.
            unsafe { b.as_ptr().write_bytes(op as u8, size) };
            live.push((b, l));
        } else {
            let (b, l) = live.swap_remove((rng >> 8) as usize % live.len());
            // SAFETY: allocated above with `l`, freed once.
            unsafe { c.deallocate(b, l) }.unwrap();
        }
        if op % 199 == 0 {
            c.check_invariants()
                .unwrap_or_else(|e| panic!("op {op}: {e}"));
        }
    }
    assert!(c.source().decommits > 0, "the workload released pages");
    for (b, l) in live {
        // SAFETY: as above.
        unsafe { c.deallocate(b, l) }.unwrap();
    }
    c.check_invariants().unwrap();
}

/// Through the OS: after a concurrent heap has freed 64 MiB, `release_free_memory` gives the
/// pages back (its footprint counts what the OS has committed); allocating again commits them
/// again.
#[cfg(not(miri))]
#[test]
fn tcmalloc_returns_pages_to_the_os() {
    use std::alloc::GlobalAlloc;
    let tc = tcmalloc::Tcmalloc::new(allocator_traits::OsPages::new());
    let l = Layout::from_size_align(1 << 20, 8).unwrap();
    // SAFETY: valid layouts; each block freed once.
    unsafe {
        let blocks: Vec<_> = (0..64).map(|_| tc.alloc(l)).collect();
        for &b in &blocks {
            assert!(!b.is_null());
            b.write_bytes(1, l.size());
        }
        let peak = tc.footprint();
        for &b in &blocks {
            tc.dealloc(b, l);
        }
        assert!(tc.release_free_memory() >= 64 * 128);
        let low = tc.footprint();
        assert!(
            low < peak / 8,
            "footprint {low} after the release (peak {peak})"
        );
        let b = tc.alloc(l);
        b.write_bytes(2, l.size());
        assert!(
            tc.footprint() > low,
            "carving a returned span commits it again"
        );
        tc.dealloc(b, l);
    }
    tc.check_invariants().unwrap();
}
