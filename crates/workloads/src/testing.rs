//! A bump manager for hand-computed tests: each block takes its size rounded up to 16 (at least
//! 16), aligned as asked; the footprint is the end of the last block and never shrinks; frees
//! only count.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{AllocError, BoxedRegion, FreeError, FreeSpaceManager, Inspector, Stats};

pub(crate) struct Bump {
    _region: BoxedRegion,
    base: NonNull<u8>,
    capacity: usize,
    used: usize,
    stats: Stats,
    /// A planted fault: the walk reports a corruption once more than this many blocks were
    /// allocated.
    fails_after: Option<u64>,
}

impl Bump {
    pub(crate) fn new(capacity: usize) -> Self {
        use allocator_traits::MemorySource;
        let mut region = BoxedRegion::new(capacity).unwrap();
        let all = region.acquire(capacity, 1).unwrap();
        Bump {
            _region: region,
            base: all.cast(),
            capacity,
            used: 0,
            stats: Stats::new(),
            fails_after: None,
        }
    }
    /// Plants a fault: the walk fails once more than `n` blocks were allocated.
    pub(crate) fn corrupt_after(&mut self, n: u64) {
        self.fails_after = Some(n);
    }
    pub(crate) fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }
    fn held(l: Layout) -> usize {
        l.size().max(1).div_ceil(16) * 16
    }
}

impl FreeSpaceManager for Bump {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let at = self.used.next_multiple_of(layout.align());
        let held = Self::held(layout);
        if at + held > self.capacity {
            self.stats.record_failure();
            return Err(AllocError::out_of_memory(layout));
        }
        self.used = at + held;
        self.stats.set_footprint(self.used);
        self.stats.record_alloc(layout.size(), held);
        // SAFETY: `at + held <= capacity`, inside the region.
        let p = unsafe { self.base.as_ptr().add(at) };
        NonNull::new(core::ptr::slice_from_raw_parts_mut(p, held))
            .ok_or(AllocError::out_of_memory(layout))
    }
    unsafe fn deallocate(&mut self, _ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        self.stats.record_free(layout.size(), Self::held(layout));
        Ok(())
    }
    fn stats(&self) -> Stats {
        self.stats
    }
    fn record_moved_resize(&mut self) {
        self.stats.record_moved_resize();
    }
    /// The region, and what is past the bump pointer as one free block.
    fn inspect(&self, out: &mut dyn Inspector) {
        out.region(self.base(), self.capacity);
        if self.used < self.capacity {
            out.block(
                self.base() + self.used,
                self.capacity - self.used,
                allocator_traits::BlockKind::Free,
            );
        }
    }
    /// The bump pointer stays inside the region.
    fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
        allocator_traits::Corruption::ensure(
            self.fails_after.is_none_or(|n| self.stats.allocs <= n),
            "planted fault",
            self.base(),
            "more blocks than the plant allows",
        )?;
        allocator_traits::Corruption::ensure(
            self.used <= self.capacity,
            "bump pointer",
            self.base() + self.used,
            "past the end of the region",
        )
    }
}
