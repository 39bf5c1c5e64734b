//! What a replay calls: C's allocation calls over a [`FreeSpaceManager`] or a [`GlobalAlloc`].
//!
//! ```text
//!   engine ──alloc / realloc / free──> Target ──┬─ ManagerTarget: allocate, allocate_zeroed,
//!          (C semantics: a refused             │    grow / shrink, deallocate; its own Stats
//!           request is NULL, not an error)     └─ GlobalTarget: alloc, alloc_zeroed, realloc,
//!                                                   dealloc; Stats kept here, footprint probed
//! ```
//!
//! An [`OffsetTarget`] drives an [`OffsetManager`] the same way: the engine's block handles are
//! then offsets (plus one, so that offset 0 is not null), never dereferenced; a `realloc` places
//! the new size and then frees the old range (an offset manager has no resize).
//!
//! A refusal (the allocator said no: out of memory, a layout it cannot serve) is `Ok(None)`, as
//! a C program sees NULL; an `Err` is the allocator misbehaving on valid input (refusing a valid
//! free, returning a block too short or misaligned), which stops the replay.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use allocator_traits::{AllocError, FreeSpaceManager, OffsetManager, Placement, Stats};

/// An allocator as a replay drives it.
pub trait Target {
    /// `malloc`/`memalign` (or `calloc` when `zeroed`): the block, or `None` if refused.
    fn alloc(&mut self, layout: Layout, zeroed: bool) -> Result<Option<NonNull<u8>>, String>;

    /// `realloc` of the live block `ptr` (allocated with `old`) to `new`: the block (perhaps
    /// moved) and the layout it now has (a `GlobalAlloc` keeps `old`'s alignment), or `None` if
    /// refused (the old block is then unchanged and still live).
    ///
    /// # Safety
    /// `ptr` is a live block of this target allocated (or last resized) with `old`.
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<Option<(NonNull<u8>, Layout)>, String>;

    /// `free` of the live block `ptr`, allocated (or last resized) with `layout`.
    ///
    /// # Safety
    /// As for [`realloc`](Self::realloc); the block is not used afterwards.
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), String>;

    /// The counters now.
    fn stats(&self) -> Stats;

    /// Where a live block lies (the manager's [`FreeSpaceManager::placement`]).
    fn placement(&self, ptr: NonNull<u8>) -> Placement;

    /// Called before the replay's first step and then every `every` steps when tracking: a
    /// target whose footprint is a costly reading (a peer's resident memory) takes it here.
    fn sample(&mut self) {}

    /// The allocator's own invariant walk, where it has one ([`Options::check`](super::Options)
    /// runs it after every step).
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Why a request for `layout` was just refused (see [`crate::explain`]), where the target
    /// can look inside itself; `None` otherwise.
    fn explain(&self, layout: Layout) -> Option<String> {
        let _ = layout;
        None
    }
}

/// Checks what an allocator handed out against what was asked: at least `size` bytes, aligned.
fn checked(block: NonNull<[u8]>, layout: Layout) -> Result<NonNull<u8>, String> {
    let p = block.cast::<u8>();
    if block.len() < layout.size() {
        return Err(format!(
            "the allocator returned {} bytes where {} were asked",
            block.len(),
            layout.size()
        ));
    }
    if !(p.as_ptr() as usize).is_multiple_of(layout.align()) {
        return Err(format!(
            "the allocator returned {p:p}, not aligned to {}",
            layout.align()
        ));
    }
    Ok(p)
}

/// A manager as a replay drives it (its own counters are the replay's).
pub struct ManagerTarget<'a>(pub &'a mut dyn FreeSpaceManager);

impl Target for ManagerTarget<'_> {
    fn alloc(&mut self, layout: Layout, zeroed: bool) -> Result<Option<NonNull<u8>>, String> {
        let r = if zeroed {
            self.0.allocate_zeroed(layout)
        } else {
            self.0.allocate(layout)
        };
        match r {
            Ok(b) => checked(b, layout).map(Some).inspect_err(|_| {
                // SAFETY: just allocated with `layout`, never handed out.
                let _ = unsafe { self.0.deallocate(b.cast(), layout) };
            }),
            Err(AllocError::InvalidBlock(e)) => Err(e.to_string()),
            Err(_) => Ok(None),
        }
    }

    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<Option<(NonNull<u8>, Layout)>, String> {
        // SAFETY: forwarded caller contract.
        let r = unsafe {
            if new.size() >= old.size() {
                self.0.grow(ptr, old, new)
            } else {
                self.0.shrink(ptr, old, new)
            }
        };
        match r {
            Ok(b) => checked(b, new).map(|p| Some((p, new))).inspect_err(|_| {
                // SAFETY: the live block the resize returned, with layout `new`, never handed
                // out.
                let _ = unsafe { self.0.deallocate(b.cast(), new) };
            }),
            Err(AllocError::InvalidBlock(e)) => {
                Err(format!("the policy refused a valid realloc: {e}"))
            }
            Err(_) => Ok(None),
        }
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), String> {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.deallocate(ptr, layout) }
            .map_err(|e| format!("the policy refused a valid free: {e}"))
    }

    fn stats(&self) -> Stats {
        self.0.stats()
    }

    fn placement(&self, ptr: NonNull<u8>) -> Placement {
        self.0.placement(ptr)
    }

    fn check(&self) -> Result<(), String> {
        self.0
            .check_invariants()
            .map_err(|c| format!("the invariant walk failed: {c}"))
    }

    fn explain(&self, layout: Layout) -> Option<String> {
        Some(crate::explain::refusal(&*self.0, layout).to_string())
    }
}

/// A `GlobalAlloc` (a peer, or a concurrent front) as a replay drives it. It cannot take a zero
/// size, so a zero-byte request asks for one byte (what C's `malloc(0)` returns is as big); its
/// [`Stats`] are kept here and count requested bytes as held (what the allocator holds is not
/// known). The footprint is `probe()` (an absolute reading such as resident bytes) minus its
/// first reading, taken when [`Target::sample`] is called.
pub struct GlobalTarget<'g, 'p> {
    g: &'g dyn GlobalAlloc,
    stats: Stats,
    /// Count calls into `stats` (off in an untracked, timed replay).
    count: bool,
    probe: Option<&'p mut dyn FnMut() -> usize>,
    base: Option<usize>,
}

impl<'g, 'p> GlobalTarget<'g, 'p> {
    /// `g`, counting its calls when `count`, its footprint read by `probe`.
    pub fn new(
        g: &'g dyn GlobalAlloc,
        count: bool,
        probe: Option<&'p mut dyn FnMut() -> usize>,
    ) -> Self {
        GlobalTarget {
            g,
            stats: Stats::new(),
            count,
            probe,
            base: None,
        }
    }

    /// What `g` just returned for `l`: `None` for null (a refusal, counted), else the block,
    /// checked (a bad one is given back before the error).
    fn returned(&mut self, p: *mut u8, l: Layout) -> Result<Option<NonNull<u8>>, String> {
        let Some(p) = NonNull::new(p) else {
            if self.count {
                self.stats.record_failure();
            }
            return Ok(None);
        };
        checked(NonNull::slice_from_raw_parts(p, l.size()), l)
            .map(Some)
            .inspect_err(|_| {
                // SAFETY: `p` was just returned by `g` for `l` and never handed out.
                unsafe { self.g.dealloc(p.as_ptr(), l) };
            })
    }

    /// The layout a `GlobalAlloc` can take for `l` (zero sizes ask for one byte).
    fn nonzero(l: Layout) -> Layout {
        Layout::from_size_align(l.size().max(1), l.align()).unwrap_or(l)
    }
}

impl Target for GlobalTarget<'_, '_> {
    fn alloc(&mut self, layout: Layout, zeroed: bool) -> Result<Option<NonNull<u8>>, String> {
        let l = Self::nonzero(layout);
        // SAFETY: `l` has a non-zero size.
        let p = unsafe {
            if zeroed {
                self.g.alloc_zeroed(l)
            } else {
                self.g.alloc(l)
            }
        };
        let Some(p) = self.returned(p, l)? else {
            return Ok(None);
        };
        if self.count {
            self.stats.record_alloc(l.size(), l.size());
        }
        Ok(Some(p))
    }

    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<Option<(NonNull<u8>, Layout)>, String> {
        // A `GlobalAlloc` keeps the block's alignment through a realloc.
        let old = Self::nonzero(old);
        let new = Self::nonzero(
            Layout::from_size_align(new.size(), old.align()).map_err(|e| e.to_string())?,
        );
        // SAFETY: `ptr` is live in `g` with `old` (the caller's contract, with the same
        // zero-to-one rounding every call here makes); `new.size()` is non-zero and valid with
        // `old.align()` (it is a `Layout`).
        let q = unsafe { self.g.realloc(ptr.as_ptr(), old, new.size()) };
        let Some(q) = self.returned(q, new)? else {
            return Ok(None);
        };
        if self.count {
            self.stats
                .record_resize(old.size(), old.size(), new.size(), new.size(), q == ptr);
        }
        Ok(Some((q, new)))
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), String> {
        let l = Self::nonzero(layout);
        // SAFETY: `ptr` is live in `g` with `l` (the caller's contract, rounded as above).
        unsafe { self.g.dealloc(ptr.as_ptr(), l) };
        if self.count {
            self.stats.record_free(l.size(), l.size());
        }
        Ok(())
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    fn placement(&self, ptr: NonNull<u8>) -> Placement {
        // A peer's heap start is not known: its blocks are placed by absolute address.
        Placement::Heap(ptr.as_ptr() as usize)
    }

    fn sample(&mut self) {
        if let Some(probe) = self.probe.as_deref_mut() {
            let now = probe();
            let base = *self.base.get_or_insert(now);
            self.stats.set_footprint(now.saturating_sub(base));
        }
    }
}

/// An offset manager as a replay drives it (its own counters are the replay's): each block
/// handle is `offset + 1` as an address without provenance, a name for the range and never a
/// pointer to memory, so the replay must not touch blocks ([`Options::touch`](super::Options)
/// off; [`replay_offset_manager`](super::replay_offset_manager) sees to it). `calloc` is a plain
/// allocation (nothing to zero), and `realloc` places the new size first and then frees the old
/// range, so a range never grows or shrinks in place.
pub struct OffsetTarget<'a>(pub &'a mut dyn OffsetManager);

impl OffsetTarget<'_> {
    /// The handle of the range at `offset`.
    fn handle(offset: usize) -> Result<NonNull<u8>, String> {
        offset
            .checked_add(1)
            .and_then(|h| NonNull::new(core::ptr::without_provenance_mut(h)))
            .ok_or_else(|| format!("the manager returned offset {offset}, past any handle"))
    }

    /// The offset a handle names.
    fn offset(handle: NonNull<u8>) -> usize {
        handle.as_ptr().addr() - 1
    }

    /// Places `layout`, checked against the contract (aligned, inside the space, holding at
    /// least the size): `None` if refused.
    fn place(&mut self, layout: Layout) -> Result<Option<NonNull<u8>>, String> {
        let o = match self.0.allocate(layout.size(), layout.align()) {
            Ok(o) => o,
            Err(AllocError::InvalidBlock(e)) => return Err(e.to_string()),
            Err(_) => return Ok(None),
        };
        let space = self.0.range();
        let held = self.0.held(o).unwrap_or(0);
        let why = if !o.is_multiple_of(layout.align()) {
            Some(format!("offset {o} is not aligned to {}", layout.align()))
        } else if o < space.start || o.saturating_add(layout.size()) > space.end {
            Some(format!(
                "offset {o} + {} bytes is outside the space {space:?}",
                layout.size()
            ))
        } else if held < layout.size() {
            Some(format!(
                "the range at {o} holds {held} bytes where {} were asked",
                layout.size()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let _ = self.0.free(o);
            return Err(format!("the offset manager misplaced a range: {why}"));
        }
        Self::handle(o).map(Some)
    }
}

impl Target for OffsetTarget<'_> {
    fn alloc(&mut self, layout: Layout, _zeroed: bool) -> Result<Option<NonNull<u8>>, String> {
        self.place(layout)
    }

    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        _old: Layout,
        new: Layout,
    ) -> Result<Option<(NonNull<u8>, Layout)>, String> {
        let Some(q) = self.place(new)? else {
            return Ok(None);
        };
        // SAFETY: forwarded caller contract (`ptr` names a live range of this target).
        unsafe { self.free(ptr, new) }?;
        Ok(Some((q, new)))
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>, _layout: Layout) -> Result<(), String> {
        self.0
            .free(Self::offset(ptr))
            .map_err(|e| format!("the offset manager refused a valid free: {e}"))
    }

    fn stats(&self) -> Stats {
        self.0.stats()
    }

    fn placement(&self, ptr: NonNull<u8>) -> Placement {
        Placement::Heap(Self::offset(ptr) - self.0.range().start)
    }

    fn check(&self) -> Result<(), String> {
        self.0
            .check_invariants()
            .map_err(|c| format!("the invariant walk failed: {c}"))
    }
}
