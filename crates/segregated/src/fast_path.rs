//! The fast paths: a size class up to 1024 B (alignment at most 8) whose partial list has a
//! span, or a tiny object in the current block. Each either does the whole operation (with its
//! statistics) or changes nothing and declines, and the general path (module `slow_path`) then
//! handles or reports the request. They are inline; what they leave to out-of-line calls is a
//! span changing lists.
//!
//! ```text
//!   alloc_fast:  index8[(size + 7) >> 3] -> classes[c] (one line) -> partial span
//!                -> pop its free list (or bump) -> [set the slot's bit] -> counts
//!   free_fast:   page map (span, class) -> [class == the layout's? slot = off * recip,
//!                exact, bit set? clear it] -> push on the span's free list -> counts
//!                -> Done | Unfull (span was full) | Emptied (beyond keep_empty) | Declined
//!   [...]: only on a checked heap (`Segregated<L, true>`, the default); an unchecked one
//!          (`Segregated::unchecked`) takes the class from the page map and trusts the caller
//! ```

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_traits::{FreeError, FreeSpaceManager};

use crate::classes::MAX_CLASSES;
use crate::geometry::slot_of;
use crate::span::{self, SpanHeader, SpanList, TINY_BLOCK};
use crate::{SLOTS, Segregated, TINY};

/// What the fast path of `deallocate` did.
#[derive(Clone, Copy)]
pub(crate) enum Freed {
    /// Freed, nothing left to do.
    Done,
    /// Nothing changed: the general path takes it.
    Declined,
    /// Freed; span `.1` of class `.0` was full and changes lists.
    Unfull(usize, *mut SpanHeader),
    /// Freed; span `.1` of class `.0` is empty, counted as such, and goes back to the page
    /// level.
    Emptied(usize, *mut SpanHeader),
}

/// What the check of a small free on a checked heap found ([`Segregated::claim`]).
#[derive(Clone, Copy)]
enum Claim {
    /// A live object of class `.1` (a class of the table) in the span at `.0`; its allocation
    /// bit is now clear.
    Class(*mut u8, usize),
    /// A tiny layout at the tiny span at `.0` (the mask is not checked yet).
    Tiny(*mut u8),
    /// Anything else: nothing changed, the general path decides.
    No,
}

impl<L: FreeSpaceManager, const CHECKED: bool> Segregated<L, CHECKED> {
    /// The common case of `allocate`: a size class up to 1024 B at alignment <= 8 whose partial
    /// list has a span, or a tiny object that fits in the current block.
    #[inline(always)]
    pub(crate) fn alloc_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        let size = layout.size();
        if layout.align() > 8 || size > 1024 {
            return None;
        }
        if size < self.tiny_below {
            return self.tiny_alloc_fast(size, layout.align());
        }
        // Class 0 (no class this small in a user table) has no spans.
        let c = self.index8[(size + 7) >> 3] as usize;
        debug_assert!(c < SLOTS);
        // SAFETY: `index8` comes from a `ClassTable`, whose entries are classes up to its
        // length, at most `MAX_CLASSES < SLOTS`.
        let st = unsafe { self.classes.get_unchecked_mut(c) };
        let s = st.partial;
        if s.is_null() {
            return None;
        }
        // SAFETY: `s` heads class c's partial list: a live span of class c with a free slot,
        // either on its free list or at `bump < slots`; its bitmap has a bit per slot.
        let obj = unsafe {
            let base = s.cast::<u8>().wrapping_sub(st.header_at as usize);
            let mut obj = (*s).free;
            if !obj.is_null() {
                (*s).free = obj.cast::<*mut u8>().read();
                if CHECKED {
                    span::put_bit(s, slot_of(obj as usize - base as usize, st.recip), true);
                }
            } else {
                let b = (*s).bump;
                (*s).bump = b + 1;
                obj = base.wrapping_add(b as usize * st.size as usize);
                if CHECKED {
                    span::put_bit(s, b as usize, true);
                }
            }
            let live = (*s).live;
            if live == 0 {
                st.empty -= 1;
            }
            (*s).live = live + 1;
            st.requested = st.requested.wrapping_add(size);
            if live + 1 == st.objects {
                SpanList::remove(&mut st.partial, s);
                SpanList::push(&mut st.full, s);
                (*s).full = true;
            }
            obj
        };
        let held = st.size as usize;
        self.stats.alloc(size, held);
        // SAFETY: slots are never null.
        let p = unsafe { NonNull::new_unchecked(obj) };
        Some(NonNull::slice_from_raw_parts(p, held))
    }

    /// A tiny object that fits in the current block.
    #[inline(always)]
    pub(crate) fn tiny_alloc_fast(&mut self, size: usize, align: usize) -> Option<NonNull<[u8]>> {
        let t = &mut self.tiny;
        let size1 = size.max(1);
        // `align` is a power of two at most 8.
        let off = (t.off + align - 1) & !(align - 1);
        if t.block.is_null() || off + size1 > TINY_BLOCK {
            return None;
        }
        // SAFETY: the current block is a live slot of the tiny span `t.span`.
        unsafe { *span::tiny_mask(t.span, t.slot) |= 1 << off };
        t.off = off + size1;
        t.objects += 1;
        t.unshared += self.tiny_unshared[size] as usize;
        let p = t.block.wrapping_add(off);
        self.classes[TINY].requested += size1;
        self.stats.alloc(size, size1);
        // SAFETY: inside a slot, never null.
        let p = unsafe { NonNull::new_unchecked(p) };
        Some(NonNull::slice_from_raw_parts(p, size1))
    }

    /// `deallocate`: the fast path, then what it leaves to out-of-line calls.
    ///
    /// # Safety
    /// As for [`FreeSpaceManager::deallocate`].
    #[inline(always)]
    pub(crate) unsafe fn free(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), FreeError> {
        match self.free_fast(ptr, layout) {
            Freed::Done => {}
            // SAFETY: forwarded caller contract.
            Freed::Declined => return unsafe { self.deallocate_slow(ptr, layout) },
            // SAFETY: `free_fast` says span `s` of class `c` was full.
            Freed::Unfull(c, s) => unsafe { self.unfull(c, s) },
            // SAFETY: `free_fast` says span `s` of class `c` is empty, in its partial list,
            // counted as empty, and beyond what the class keeps.
            Freed::Emptied(c, s) => unsafe { self.drop_span(c, s) },
        }
        Ok(())
    }

    /// The common case of `deallocate`: a live object of a size class whose span was not full
    /// and, if it becomes empty, is kept; or a tiny object whose block keeps an object or is the
    /// current one. Declines, having changed nothing, for anything else. A checked heap checks
    /// the free first ([`Segregated::claim`]); an unchecked one trusts the caller.
    #[inline(always)]
    fn free_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> Freed {
        let size = layout.size();
        let a = ptr.as_ptr() as usize;
        let (base, c) = if CHECKED {
            match self.claim(a, layout) {
                Claim::Class(base, c) => (base, c),
                Claim::Tiny(base) => return self.tiny_free_fast(base, a, size),
                Claim::No => return Freed::Declined,
            }
        } else {
            // The page map says which span (and class) holds `a` before anything of it is read.
            let (base, class) = self.pages.lookup_raw(a);
            let c = class as usize;
            // The page map's entry for a granule names the span covering its first byte, which
            // may end before `a` (a large block of `L` after it in the same granule).
            // SAFETY: `c` is a class of the table or TINY, below `SLOTS`, or 0 (no span, and
            // `span_bytes` 0).
            let end = unsafe { self.classes.get_unchecked(c) }.span_bytes as usize;
            if a.wrapping_sub(base as usize) >= end {
                return Freed::Declined;
            }
            // One comparison for both exceptions: class 0 (declined) and TINY (just above every
            // class a table can have).
            if c.wrapping_sub(1) >= MAX_CLASSES {
                // (A size no tiny object has goes to the general path, which reports it.)
                if c != TINY || size >= TINY_BLOCK {
                    return Freed::Declined;
                }
                return self.tiny_free_fast(base, a, size);
            }
            (base, c)
        };
        debug_assert!(c < SLOTS);
        // SAFETY: `c` is a class of the table (the page map records no other), `< SLOTS`.
        let st = unsafe { self.classes.get_unchecked_mut(c) };
        let s = base
            .wrapping_add(st.header_at as usize)
            .cast::<SpanHeader>();
        // SAFETY: the page map says a span of class c starts at `base` and holds `a`; its
        // entries are written by `new_span` once the span is ours and erased by `drop_span`
        // before it goes back, so the header is initialised. (The header's magic and class, a
        // canary against stray writes, are checked on the general path only.) `a` is a live
        // object of the span: checked by `claim`, or vouched for by the caller (the contract of
        // `deallocate` when nothing is detected).
        unsafe {
            // Written through the span's pointer: the caller's may cover only its bytes.
            let obj = base.wrapping_add(a - base as usize);
            obj.cast::<*mut u8>().write((*s).free);
            (*s).free = obj;
            let live = (*s).live - 1;
            (*s).live = live;
            st.requested = st.requested.wrapping_sub(size);
            // The object was live, so `stats` counts it and its class size: no underflow for
            // the layout it was allocated with. (`live_blocks` is `allocs - frees`, filled in by
            // `stats()`.)
            let held = st.size as usize;
            self.stats.free(size, held);
            if (*s).full {
                return Freed::Unfull(c, s);
            }
            if live == 0 {
                let st = self.classes.get_unchecked_mut(c);
                st.empty += 1;
                if st.empty > self.config.keep_empty {
                    return Freed::Emptied(c, s);
                }
            }
        }
        Freed::Done
    }

    /// The check of a small free on a checked heap: the span's start and class when `a` is a
    /// live object of the class `layout` gives, whose allocation bit it then clears; the tiny
    /// span's start for a tiny layout at a tiny span (`tiny_free_fast` checks the mask);
    /// [`Claim::No`], having changed nothing, for anything else. (Three outcomes, not a class
    /// number the caller tests again: one comparison less per free.)
    #[inline(always)]
    fn claim(&mut self, a: usize, layout: Layout) -> Claim {
        let size = layout.size();
        let none = Claim::No;
        if layout.align() > 8 || size > 1024 {
            return none;
        }
        let (base, class) = self.pages.lookup_raw(a);
        if size < self.tiny_below {
            // (`tiny_below` is at most `TINY_BLOCK`: every size here has a tiny object.)
            return if class as usize == TINY {
                Claim::Tiny(base)
            } else {
                none
            };
        }
        let c = self.index8[(size + 7) >> 3] as usize;
        if class as usize != c || c == 0 {
            return none;
        }
        debug_assert!(c < MAX_CLASSES);
        // SAFETY: `c` is a class of the table, `< SLOTS`.
        let st = unsafe { self.classes.get_unchecked(c) };
        let s = base
            .wrapping_add(st.header_at as usize)
            .cast::<SpanHeader>();
        let off = a - base as usize;
        let slot = slot_of(off, st.recip);
        // `geometry::starts_slot` written out on the class state's copies: through the call the
        // checked fast path took two more instructions per step under callgrind (the slow path
        // and the offset manager use it, through `SpanGeometry::slot_at`).
        // SAFETY: the page map says a span of class c starts at `base` (so `a >= base`), its
        // header initialised (as in `free_fast`). The slot is checked against `slots` before
        // its bit is read (and cleared if set); a slot in the header (below `first`) or never
        // handed out (at or above `bump`) has its bit clear, so the bit test sends it, unchanged,
        // to the general path, which reports it.
        unsafe {
            if slot * st.size as usize != off
                || slot >= st.slots as usize
                || !span::take_bit(s, slot)
            {
                return none;
            }
        }
        Claim::Class(base, c)
    }

    /// The end of a free the fast path did from a full span `s` of class `c`: it moves to the
    /// partial list (and, with one object per span, becomes empty too: counted here, and given
    /// back beyond `keep_empty`).
    ///
    /// # Safety
    /// `s` is a span of class `c` in its full list, with a free object.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn unfull(&mut self, c: usize, s: *mut SpanHeader) {
        let st = &mut self.classes[c];
        // SAFETY: `s` is in the full list (caller).
        unsafe {
            SpanList::remove(&mut st.full, s);
            SpanList::push(&mut st.partial, s);
            (*s).full = false;
            if (*s).live != 0 {
                return;
            }
        }
        st.empty += 1;
        if st.empty > self.config.keep_empty {
            // SAFETY: an empty span of class c in its partial list, counted as empty.
            unsafe { self.drop_span(c, s) };
        }
    }

    /// A tiny object at `a` in the tiny span at `base` (by the page map), whose block keeps
    /// another object or is the current block.
    #[inline(always)]
    fn tiny_free_fast(&mut self, base: *mut u8, a: usize, size: usize) -> Freed {
        let st = &mut self.classes[TINY];
        let s = base
            .wrapping_add(st.header_at as usize)
            .cast::<SpanHeader>();
        // SAFETY: as in `free_fast`: the page map vouches for a tiny span at `base` holding
        // `a` (so `a >= base`); `slot < slots` is checked before the block's mask is read (blocks in the header
        // or never handed out have empty masks).
        unsafe {
            let off = a - base as usize;
            let slot = off / TINY_BLOCK;
            let bit = 1u16 << (off % TINY_BLOCK);
            if slot >= st.slots as usize {
                return Freed::Declined;
            }
            let mask = span::tiny_mask(s, slot);
            let m = *mask;
            if m & bit == 0 {
                return Freed::Declined;
            }
            let left = m & !bit;
            if left == 0 {
                // An emptied block other than the current one goes back to its span: the
                // general path does that.
                let block = base.wrapping_add(slot * TINY_BLOCK);
                if block != self.tiny.block || self.config.keep_empty == 0 {
                    return Freed::Declined;
                }
                self.tiny.off = 0;
            }
            *mask = left;
        }
        let size1 = size.max(1);
        st.requested = st.requested.wrapping_sub(size1);
        let t = &mut self.tiny;
        t.objects -= 1;
        t.unshared = t.unshared.wrapping_sub(self.tiny_unshared[size] as usize);
        self.stats.free(size, size1);
        Freed::Done
    }
}
