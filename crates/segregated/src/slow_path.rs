//! The general (slow) path: every request the fast paths decline, validated in full. A layout
//! takes one of three paths ([`Path`]); a small free finds its span through the page map, checks
//! the header's magic and class (a canary against stray writes), the slot arithmetic and the
//! bitmap, and reports what is wrong as a [`FreeError`] that changes nothing.
//!
//! ```text
//!   allocate_slow ─ path(layout) ─ Tiny  -> tiny_alloc         (module tiny)
//!                                ─ Class -> slot_alloc (new_span if none partial) + bit
//!                                ─ Large -> L.allocate
//!   deallocate_slow ─ Class -> find_span (page map, magic, class) -> check_object (slot, bit)
//!                           -> slot_free (full -> partial, empty -> drop_span)
//! ```

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{AllocError, FreeError, FreeSpaceManager};

use crate::geometry::base_of;
use crate::geometry::slot_of;
use crate::span::{self, SpanHeader, SpanList, TINY_BLOCK};
use crate::{Segregated, TINY};

/// Which path a layout takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Tiny,
    Class(usize),
    Large,
}

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
    #[inline]
    fn path(&self, layout: Layout) -> Path {
        let (size, align) = (layout.size(), layout.align());
        if self.config.tiny && size < TINY_BLOCK && align <= 8 {
            return Path::Tiny;
        }
        match self.table.class_for(size, align) {
            0 => Path::Large,
            c => Path::Class(c),
        }
    }

    /// Takes a free slot of class `c` (or a fresh span's first slot): its span, address and
    /// slot number. Does not touch the bitmap.
    #[inline]
    pub(crate) fn slot_alloc(&mut self, c: usize) -> Option<(*mut SpanHeader, *mut u8, usize)> {
        let g = self.geo(c)?;
        let mut s = self.classes[c].partial;
        if s.is_null() {
            s = self.new_span(c)?;
        }
        // SAFETY: `s` is a span of class c in its partial list, so it has a free slot.
        unsafe {
            let base = base_of(s, &g);
            let (obj, slot) = if !(*s).free.is_null() {
                let o = (*s).free;
                (*s).free = o.cast::<*mut u8>().read();
                (o, slot_of(o as usize - base as usize, g.recip))
            } else {
                let slot = (*s).bump as usize;
                (*s).bump += 1;
                (base.wrapping_add(slot * g.size as usize), slot)
            };
            let st = &mut self.classes[c];
            if (*s).live == 0 {
                st.empty -= 1;
            }
            (*s).live += 1;
            if (*s).live as usize == g.objects() {
                SpanList::remove(&mut st.partial, s);
                SpanList::push(&mut st.full, s);
                (*s).full = true;
            }
            Some((s, obj, slot))
        }
    }

    /// Puts `obj` back on its span's free list; returns the span to the page level if it is
    /// empty and the class already keeps enough empty spans.
    ///
    /// # Safety
    /// `obj` is a live slot of span `s` of class `c` (validated), given up by the caller.
    #[inline]
    pub(crate) unsafe fn slot_free(&mut self, c: usize, s: *mut SpanHeader, obj: *mut u8) {
        let keep = self.config.keep_empty;
        let st = &mut self.classes[c];
        // SAFETY: `obj` is a slot of `s` of at least 8 bytes, no longer used; `s` is in one of
        // class c's lists.
        unsafe {
            obj.cast::<*mut u8>().write((*s).free);
            (*s).free = obj;
            (*s).live -= 1;
            if (*s).full {
                SpanList::remove(&mut st.full, s);
                SpanList::push(&mut st.partial, s);
                (*s).full = false;
            }
            if (*s).live == 0 {
                st.empty += 1;
                let current_tiny = c == TINY && s == self.tiny.span;
                if st.empty > keep && !current_tiny {
                    self.drop_span(c, s);
                }
            }
        }
    }

    /// The span of a pointer freed as class `c`: the page map must record a span of class `c`
    /// at the pointer's span address before the header there is read.
    #[inline]
    pub(crate) fn find_span(&self, ptr: *mut u8, c: usize) -> Result<*mut SpanHeader, FreeError> {
        let a = ptr as usize;
        let Some(g) = self.geo(c) else {
            return Err(FreeError::Foreign { ptr: a });
        };
        let (base, class) = match self.pages.lookup(a) {
            Some(x) => x,
            None => return Err(FreeError::Foreign { ptr: a }),
        };
        if class as usize != c {
            return Err(FreeError::LayoutMismatch {
                ptr: a,
                size: 0,
                align: 0,
            });
        }
        if a >= base as usize + g.span_bytes() {
            return Err(FreeError::NotABlock { ptr: a });
        }
        let s = base.wrapping_add(g.header_at as usize).cast::<SpanHeader>();
        // SAFETY: the page map says a span of class c starts at `base` and contains the
        // pointer, so its header is at `base + header_at`, initialised.
        let (magic, class) = unsafe { ((*s).magic, (*s).class) };
        if magic != SpanHeader::magic_for(s as usize) || class as usize != c {
            return Err(FreeError::Corrupted {
                ptr: a,
                what: "span header does not match the page map",
            });
        }
        Ok(s)
    }

    /// Checks that `ptr` is a live object of class `c` (live by the bitmap only on a checked
    /// heap); returns its span and slot.
    #[inline]
    pub(crate) fn check_object(
        &self,
        ptr: *mut u8,
        c: usize,
    ) -> Result<(*mut SpanHeader, usize), FreeError> {
        let s = self.find_span(ptr, c)?;
        let g = self
            .geo(c)
            .ok_or(FreeError::Foreign { ptr: ptr as usize })?;
        let a = ptr as usize;
        // SAFETY: `s` is a span of class c (checked): its header is initialised.
        let bump = unsafe { (*s).bump } as usize;
        // The shared slot arithmetic: an object boundary in `first..slots`, and handed out.
        let Some(slot) = g
            .slot_at(a - base_of(s, &g) as usize)
            .filter(|&slot| slot < bump)
        else {
            return Err(FreeError::NotABlock { ptr: a });
        };
        // (Without detection the bitmap is not kept: the caller vouches for the object.)
        // SAFETY: `s` is a span of class c, `slot < bump <= slots`.
        if CHECKED && unsafe { !span::test_bit(s, slot) } {
            return Err(FreeError::DoubleFree { ptr: a });
        }
        Ok((s, slot))
    }

    pub(crate) fn fix_mismatch(e: FreeError, layout: Layout) -> FreeError {
        match e {
            FreeError::LayoutMismatch { ptr, .. } => FreeError::LayoutMismatch {
                ptr,
                size: layout.size(),
                align: layout.align(),
            },
            e => e,
        }
    }

    /// Allocates without recording the operation; returns the block and the bytes it holds.
    #[inline]
    pub(crate) fn alloc_inner(
        &mut self,
        layout: Layout,
    ) -> Result<(NonNull<[u8]>, usize), AllocError> {
        match self.path(layout) {
            Path::Tiny => self.tiny_alloc(layout),
            Path::Class(c) => {
                let Some((s, obj, slot)) = self.slot_alloc(c) else {
                    return Err(AllocError::out_of_memory(layout));
                };
                if CHECKED {
                    // SAFETY: `slot` is a slot of span `s` of class c.
                    unsafe { span::put_bit(s, slot, true) };
                }
                self.classes[c].requested += layout.size();
                let size = self.table.size(c);
                // SAFETY: slots are never null.
                let p = unsafe { NonNull::new_unchecked(obj) };
                Ok((NonNull::slice_from_raw_parts(p, size), size))
            }
            Path::Large => {
                let before = self.large.stats().live_held;
                let b = self.large.allocate(layout)?;
                let held = self.large.stats().live_held.saturating_sub(before);
                self.sync_footprint();
                Ok((b, held.max(layout.size())))
            }
        }
    }

    /// Frees without recording the operation; returns the bytes the block held.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::deallocate`].
    #[inline]
    pub(crate) unsafe fn free_inner(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<usize, FreeError> {
        match self.path(layout) {
            // SAFETY: forwarded caller contract.
            Path::Tiny => unsafe { self.tiny_free(ptr, layout) },
            Path::Class(c) => {
                let (s, slot) = self
                    .check_object(ptr.as_ptr(), c)
                    .map_err(|e| Self::fix_mismatch(e, layout))?;
                if CHECKED {
                    // SAFETY: validated live slot of `s`.
                    unsafe { span::put_bit(s, slot, false) };
                }
                let st = &mut self.classes[c];
                st.requested -= layout.size().min(st.requested);
                let size = self.table.size(c);
                let obj = self
                    .geo(c)
                    .map_or(ptr.as_ptr(), |g| base_of(s, &g).wrapping_add(slot * size));
                // SAFETY: validated live slot of `s` (its pointer derived from the span's, not
                // the caller's), given up by the caller.
                unsafe { self.slot_free(c, s, obj) };
                Ok(size)
            }
            Path::Large => {
                let before = self.large.stats().live_held;
                // SAFETY: forwarded caller contract.
                unsafe { self.large.deallocate(ptr, layout) }?;
                let held = before.saturating_sub(self.large.stats().live_held);
                self.sync_footprint();
                Ok(held.max(layout.size()))
            }
        }
    }

    /// `allocate` beyond the fast path.
    #[cold]
    #[inline(never)]
    pub(crate) fn allocate_slow(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.alloc_inner(layout) {
            Ok((b, held)) => {
                self.stats.record_alloc(layout.size(), held);
                Ok(b)
            }
            Err(e) => {
                self.stats.record_failure();
                Err(e)
            }
        }
    }

    /// `deallocate` beyond the fast path.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::deallocate`].
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn deallocate_slow(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded caller contract.
        match unsafe { self.free_inner(ptr, layout) } {
            Ok(held) => {
                self.stats.record_free(layout.size(), held);
                Ok(())
            }
            Err(e) => {
                self.stats.record_bad_free();
                Err(e)
            }
        }
    }

    /// [`FreeSpaceManager::resize_in_place`]: in place within a class or a tiny block, through
    /// `L` for large sizes; a small block is checked before any move.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::resize_in_place`].
    pub(crate) unsafe fn resize_slow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match (self.path(old), self.path(new)) {
            (Path::Class(a), Path::Class(b)) if a == b => {
                self.check_object(ptr.as_ptr(), a)
                    .map_err(|e| AllocError::InvalidBlock(Self::fix_mismatch(e, old)))?;
                let st = &mut self.classes[a];
                st.requested = st.requested - old.size().min(st.requested) + new.size();
                let size = self.table.size(a);
                self.stats
                    .record_resize(old.size(), size, new.size(), size, true);
                Ok(NonNull::slice_from_raw_parts(ptr, size))
            }
            (Path::Tiny, Path::Tiny) => {
                // SAFETY: forwarded caller contract.
                unsafe { self.tiny_resize_in_place(ptr, old, new) }
            }
            (Path::Large, Path::Large) => {
                let before = self.large.stats().live_held;
                // SAFETY: forwarded caller contract.
                let b = unsafe { self.large.resize_in_place(ptr, old, new) }?;
                let after = self.large.stats().live_held;
                self.sync_footprint();
                // Only the change in held bytes is known: record it as such.
                let (oh, nh) = if after >= before {
                    (0, after - before)
                } else {
                    (before - after, 0)
                };
                self.stats
                    .record_resize(old.size(), oh, new.size(), nh, true);
                Ok(b)
            }
            // Another class: the block moves, but is checked first (the small paths can), so
            // that `resize_by_moving` never copies from a bad pointer.
            (Path::Tiny, _) => {
                self.check_tiny(ptr.as_ptr())
                    .map_err(|e| AllocError::InvalidBlock(Self::fix_mismatch(e, old)))?;
                Err(AllocError::NotInPlace)
            }
            (Path::Class(c), _) => {
                self.check_object(ptr.as_ptr(), c)
                    .map_err(|e| AllocError::InvalidBlock(Self::fix_mismatch(e, old)))?;
                Err(AllocError::NotInPlace)
            }
            // The large manager checks the block when it is freed, after the copy.
            (Path::Large, _) => Err(AllocError::NotInPlace),
        }
    }
}
