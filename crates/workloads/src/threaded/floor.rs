//! The replay's floor: a concurrent bump allocator.

use core::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::mapping::Mapping;

/// The replay's floor: a concurrent bump allocator over its own address-space reservation that
/// frees nothing (one shared atomic cursor; a realloc allocates and copies). A threaded replay
/// through it costs the replay's own work (waiting for blocks' earlier events, the window, tag
/// bytes, thread scheduling) and next to no allocator work, so its time is the floor under every
/// allocator's threaded time on the same trace and machine.
pub struct BumpFloor {
    map: Mapping,
    next: AtomicUsize,
}

impl std::fmt::Debug for BumpFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BumpFloor")
            .field("len", &self.map.len())
            .field("used", &self.next.load(Ordering::Relaxed))
            .finish()
    }
}

impl BumpFloor {
    /// Reserves `len` bytes of address space (pages become resident when touched).
    pub fn new(len: usize) -> Result<Self, String> {
        let map = Mapping::new(len).map_err(|e| format!("the replay floor: {e}"))?;
        Ok(BumpFloor {
            map,
            next: AtomicUsize::new(0),
        })
    }

    /// Starts again from the beginning (the pages stay resident): only when no block is live.
    pub fn reset(&mut self) {
        *self.next.get_mut() = 0;
    }
}

// SAFETY: each block is a distinct range of the mapping (the cursor only moves forward, by the
// size plus the alignment, so the aligned start and the size fit in what was claimed), aligned
// as asked, valid until the value is reset or dropped (both need `&mut self`); null when the
// mapping is used up. Freeing does nothing.
unsafe impl GlobalAlloc for BumpFloor {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let need = layout.size().saturating_add(layout.align());
        let off = self.next.fetch_add(need, Ordering::Relaxed);
        if off.saturating_add(need) > self.map.len() {
            return core::ptr::null_mut();
        }
        let at = self.map.base().as_ptr().wrapping_add(off);
        // Derived from the mapping's pointer (keeps its provenance); `pad < align <= need - size`.
        at.wrapping_add(at.addr().wrapping_neg() & (layout.align() - 1))
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}
