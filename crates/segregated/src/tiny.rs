//! Tiny objects: requests under 16 bytes (alignment at most 8) share 16-byte blocks, as in Go's
//! tiny allocator.
//!
//! ```text
//!   current block (16 B)      mask (one bit per byte offset where an object starts)
//!   |aaaa|bb|pp|cccccc|....|   1000 1000 0010 0000     a: 4 B, b: 2 B, p: padding to c's align
//!        off ----------------^ next tiny object goes here if it fits, else a new block
//! ```
//!
//! Unlike Go's (freed by the collector), our objects are freed one by one: a free clears the
//! object's bit, and a block whose mask is empty is reusable: the current block starts over at
//! offset 0 (or, with `keep_empty == 0`, is given up like the others), any other block goes back
//! to its span's free list. The mask makes every free exact:
//! a second free of the same object finds its bit clear. Blocks are slots of their own spans
//! (class [`crate::TINY`]), 16 mask bits per block in the span header.
//! [`crate::TinyStats::bytes_saved`] is what combining saves against giving each tiny object its
//! own class slot.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{AllocError, FreeError};

use crate::geometry::base_of;
use crate::span::{self, SpanHeader, TINY_BLOCK};
use crate::{FreeSpaceManager, Segregated, TINY, TinyStats};

/// The tiny allocator's state.
pub(crate) struct TinyState {
    /// The current block (null before the first tiny object): slot `slot` of tiny span `span`,
    /// live while it is current even with an empty mask.
    pub(crate) block: *mut u8,
    /// The tiny span holding the current block.
    pub(crate) span: *mut SpanHeader,
    /// The current block's slot in `span`.
    pub(crate) slot: usize,
    /// Next free byte offset in the current block (`<= 16`); no object starts at or past it.
    pub(crate) off: usize,
    /// Live tiny objects: the mask bits set over every tiny span.
    pub(crate) objects: usize,
    /// Live tiny blocks: the tiny spans' live counts summed.
    pub(crate) blocks: usize,
    /// Bytes the live tiny objects would hold in their own classes.
    pub(crate) unshared: usize,
}

impl TinyState {
    pub(crate) const EMPTY: TinyState = TinyState {
        block: core::ptr::null_mut(),
        span: core::ptr::null_mut(),
        slot: 0,
        off: 0,
        objects: 0,
        blocks: 0,
        unshared: 0,
    };

    pub(crate) fn stats(&self) -> TinyStats {
        TinyStats {
            live_objects: self.objects,
            live_blocks: self.blocks,
            unshared_bytes: self.unshared,
        }
    }
}

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
    /// Bytes the object would hold in its own class.
    #[inline]
    fn unshared(&self, layout: Layout) -> usize {
        let c = self.table.class_for(layout.size(), layout.align());
        self.table.size(c).max(layout.size().max(1))
    }

    #[inline]
    pub(crate) fn tiny_alloc(
        &mut self,
        layout: Layout,
    ) -> Result<(NonNull<[u8]>, usize), AllocError> {
        let size = layout.size().max(1);
        let align = layout.align();
        let mut off = self.tiny.off.next_multiple_of(align);
        if self.tiny.block.is_null() || off + size > TINY_BLOCK {
            let (s, block, slot) = self
                .slot_alloc(TINY)
                .ok_or(AllocError::out_of_memory(layout))?;
            self.tiny.slot = slot;
            self.tiny.block = block;
            self.tiny.span = s;
            self.tiny.blocks += 1;
            off = 0;
        }
        // SAFETY: the current block is a live slot of the tiny span `span`.
        unsafe { *span::tiny_mask(self.tiny.span, self.tiny.slot) |= 1 << off };
        self.tiny.off = off + size;
        self.tiny.objects += 1;
        self.tiny.unshared += self.unshared(layout);
        self.classes[TINY].requested += size;
        let p = self.tiny.block.wrapping_add(off);
        // SAFETY: inside a slot, never null.
        let p = unsafe { NonNull::new_unchecked(p) };
        Ok((NonNull::slice_from_raw_parts(p, size), size))
    }

    /// Checks that a tiny object starts at `ptr`; returns its span, block slot and bit.
    #[inline]
    pub(crate) fn check_tiny(
        &self,
        ptr: *mut u8,
    ) -> Result<(*mut SpanHeader, usize, u16), FreeError> {
        let s = self.find_span(ptr, TINY)?;
        let g = self.table.tiny_geometry();
        let a = ptr as usize;
        let off = a - base_of(s, &g) as usize;
        let slot = off / TINY_BLOCK;
        let bit = 1u16 << (off % TINY_BLOCK);
        // SAFETY: `s` is a tiny span; `slot < bump <= slots` is checked before the mask is read.
        unsafe {
            if slot < g.first as usize || slot >= (*s).bump as usize {
                return Err(FreeError::NotABlock { ptr: a });
            }
            if *span::tiny_mask(s, slot) & bit == 0 {
                return Err(FreeError::DoubleFree { ptr: a });
            }
        }
        Ok((s, slot, bit))
    }

    /// Frees a tiny object; returns the bytes it held.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::deallocate`].
    #[inline]
    pub(crate) unsafe fn tiny_free(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<usize, FreeError> {
        let (s, slot, bit) = self
            .check_tiny(ptr.as_ptr())
            .map_err(|e| Self::fix_mismatch(e, layout))?;
        let mask = span::tiny_mask(s, slot);
        // SAFETY: checked: a tiny span's block with this object's bit set.
        let left = unsafe {
            *mask &= !bit;
            *mask
        };
        self.tiny.objects -= 1;
        self.tiny.unshared -= self.unshared(layout).min(self.tiny.unshared);
        let st = &mut self.classes[TINY];
        st.requested -= layout.size().max(1).min(st.requested);
        if left == 0 {
            // The span's pointer, not the caller's (whose provenance may cover only its bytes).
            let g = self.table.tiny_geometry();
            let block = base_of(s, &g).wrapping_add(slot * TINY_BLOCK);
            if block == self.tiny.block && self.config.keep_empty > 0 {
                self.tiny.off = 0;
            } else {
                if block == self.tiny.block {
                    self.tiny.block = core::ptr::null_mut();
                    self.tiny.off = 0;
                }
                self.tiny.blocks -= 1;
                // SAFETY: the block is a live slot of tiny span `s` with no object left.
                unsafe { self.slot_free(TINY, s, block) };
            }
        }
        Ok(layout.size().max(1))
    }

    /// A tiny object can shrink where it is (its bit stays); it cannot grow.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::resize_in_place`].
    pub(crate) unsafe fn tiny_resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.check_tiny(ptr.as_ptr())
            .map_err(|e| AllocError::InvalidBlock(Self::fix_mismatch(e, old)))?;
        let (os, ns) = (old.size().max(1), new.size().max(1));
        if ns > os || new.align() > old.align() {
            return Err(AllocError::NotInPlace);
        }
        self.tiny.unshared =
            self.tiny.unshared - self.unshared(old).min(self.tiny.unshared) + self.unshared(new);
        let st = &mut self.classes[TINY];
        st.requested = st.requested - os.min(st.requested) + ns;
        self.stats
            .record_resize(old.size(), os, new.size(), ns, true);
        Ok(NonNull::slice_from_raw_parts(ptr, ns))
    }
}
