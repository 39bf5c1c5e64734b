//! A bump manager for hand-computed tests: each block takes its size rounded up to 16 (at least
//! 16), aligned as asked; the footprint is the end of the last block and never shrinks; frees
//! only count. [`OffsetBump`] is the same over offsets.

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

/// [`Bump`] over the offsets `0..capacity`: each range takes its size rounded up to 16, aligned as
/// asked, after the last; a free of a live range only counts. A planted fault: every offset
/// handed out is `skew` bytes past where the range was placed.
pub(crate) struct OffsetBump {
    capacity: usize,
    used: usize,
    live: std::collections::BTreeMap<usize, (usize, usize)>,
    stats: Stats,
    pub(crate) skew: usize,
}

impl OffsetBump {
    pub(crate) fn new(capacity: usize) -> Self {
        OffsetBump {
            capacity,
            used: 0,
            live: Default::default(),
            stats: Stats::new(),
            skew: 0,
        }
    }
}

impl allocator_traits::OffsetManager for OffsetBump {
    fn allocate(&mut self, size: usize, align: usize) -> Result<usize, AllocError> {
        let at = self.used.next_multiple_of(align) + self.skew;
        let held = size.max(1).next_multiple_of(16);
        if at + held > self.capacity {
            self.stats.record_failure();
            let layout = Layout::from_size_align(size, align).map_err(|_| {
                AllocError::unsupported(Layout::new::<u8>(), "alignment not a power of two")
            })?;
            return Err(AllocError::out_of_memory(layout));
        }
        self.used = at + held;
        self.live.insert(at, (size, held));
        self.stats.record_alloc(size, held);
        self.stats.set_footprint(self.used);
        Ok(at)
    }
    fn free(&mut self, offset: usize) -> Result<(), FreeError> {
        let (size, held) = self
            .live
            .remove(&offset)
            .ok_or(FreeError::DoubleFree { ptr: offset })?;
        self.stats.record_free(size, held);
        Ok(())
    }
    fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
        self.capacity += additional;
        Ok(())
    }
    fn range(&self) -> core::ops::Range<usize> {
        0..self.capacity
    }
    fn held(&self, offset: usize) -> Option<usize> {
        self.live.get(&offset).map(|&(_, held)| held)
    }
    fn stats(&self) -> Stats {
        self.stats
    }
    fn inspect(&self, out: &mut dyn Inspector) {
        out.region(0, self.capacity);
    }
    fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
        Ok(())
    }
    fn detects(&self) -> allocator_traits::Detects {
        allocator_traits::Detects::default()
    }
}
