//! Spans: power-of-two runs of pages, aligned to their size, carved into objects of one class.
//!
//! ```text
//!   span of class c (8 KiB .. 128 KiB, aligned to its objects; taken from the page level)
//!   +--------+--------+------+------+------+-----+------+--------+
//!   | header | bitmap | obj  | obj  | obj  | ... | obj  |  tail  |
//!   +--------+--------+------+------+------+-----+------+--------+
//!   ^ base (from the page map)           ^ free objects are linked through their first word
//!   (when the tail has room for header and bitmap, they go there and every slot is an object)
//!
//!   header: magic ^ address, class, live count, next never-used slot ("bump"),
//!           the span's own free list, links in its class's partial or full list
//!   bitmap: one bit per slot, set while the object is live (kept by a checked heap only;
//!           tiny spans: 16 bits per block, one per byte offset at which a tiny object starts)
//! ```
//!
//! A free finds the span's base and class in the page map. On a checked heap the class must be
//! the one the `Layout` gives; the free turns the offset into a slot with a multiply by a
//! precomputed reciprocal, checks that the slot starts at the pointer and is inside the span,
//! and tests the slot's bit (clear for header slots and slots never handed out): a foreign
//! pointer, a pointer inside an object, a double free and a free with a layout of another class
//! are all reported (an unchecked heap trusts the caller and keeps no bitmap). The general path
//! also checks the header's magic and class. Where the header sits in a span and how many slots
//! it has is the class's `SpanGeometry` (module `geometry`).

/// Bytes of the fixed part of a span header.
pub const HEADER_BYTES: usize = core::mem::size_of::<SpanHeader>();
/// Bytes of a block that tiny objects share.
pub const TINY_BLOCK: usize = 16;

const MAGIC: usize = 0x5e6_a7ed_5a11_u64 as usize;

/// The header at the start of every span.
#[repr(C)]
pub(crate) struct SpanHeader {
    pub(crate) magic: usize,
    pub(crate) prev: *mut SpanHeader,
    pub(crate) next: *mut SpanHeader,
    /// Recycled objects of this span, linked through their first word.
    pub(crate) free: *mut u8,
    pub(crate) class: u16,
    /// In the class's full list (not its partial list).
    pub(crate) full: bool,
    pub(crate) live: u32,
    /// Next slot never handed out.
    pub(crate) bump: u32,
}

impl SpanHeader {
    pub(crate) const fn magic_for(addr: usize) -> usize {
        MAGIC ^ addr
    }
}

/// A doubly linked list of spans (a class's partial or full spans).
pub(crate) struct SpanList;

impl SpanList {
    /// Pushes `s` at the head of the list at `head`.
    ///
    /// # Safety
    /// `s` is a valid span header in no list; `*head` is null or a valid span header.
    pub(crate) unsafe fn push(head: &mut *mut SpanHeader, s: *mut SpanHeader) {
        // SAFETY: both pointers are valid span headers (caller).
        unsafe {
            (*s).prev = core::ptr::null_mut();
            (*s).next = *head;
            if !(*head).is_null() {
                (**head).prev = s;
            }
        }
        *head = s;
    }

    /// Unlinks `s` from the list at `head`.
    ///
    /// # Safety
    /// `s` is in the list at `head`.
    pub(crate) unsafe fn remove(head: &mut *mut SpanHeader, s: *mut SpanHeader) {
        // SAFETY: `s` and its neighbours are valid span headers in this list.
        unsafe {
            let (prev, next) = ((*s).prev, (*s).next);
            if prev.is_null() {
                *head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*s).prev = core::ptr::null_mut();
            (*s).next = core::ptr::null_mut();
        }
    }

    /// Calls `f` on every span of the list.
    pub(crate) fn for_each(head: *mut SpanHeader, mut f: impl FnMut(*mut SpanHeader)) {
        let mut s = head;
        while !s.is_null() {
            f(s);
            // SAFETY: every span in a list is a valid span header.
            s = unsafe { (*s).next };
        }
    }
}

/// The bitmap words (or tiny masks) right after the fixed header.
#[inline]
pub(crate) fn bits_of(s: *mut SpanHeader) -> *mut u8 {
    s.cast::<u8>().wrapping_add(HEADER_BYTES)
}

/// Bit `slot` of a span's allocation bitmap.
///
/// # Safety
/// `s` is a span of a non-tiny class and `slot < geometry.slots`.
#[inline]
pub(crate) unsafe fn test_bit(s: *mut SpanHeader, slot: usize) -> bool {
    // SAFETY: the bitmap has a bit for every slot (geometry), right after the header.
    unsafe { *bits_of(s).cast::<u64>().add(slot / 64) & (1 << (slot % 64)) != 0 }
}

/// Sets or clears bit `slot` of a span's allocation bitmap.
///
/// # Safety
/// As for [`test_bit`].
#[inline]
pub(crate) unsafe fn put_bit(s: *mut SpanHeader, slot: usize, on: bool) {
    // SAFETY: as for `test_bit`.
    unsafe {
        let w = bits_of(s).cast::<u64>().add(slot / 64);
        if on {
            *w |= 1 << (slot % 64)
        } else {
            *w &= !(1 << (slot % 64))
        }
    }
}

/// Clears bit `slot` of a span's allocation bitmap if it is set; whether it was (one read and,
/// when set, one write of the word).
///
/// # Safety
/// As for [`test_bit`].
#[inline]
pub(crate) unsafe fn take_bit(s: *mut SpanHeader, slot: usize) -> bool {
    // SAFETY: as for `test_bit`.
    unsafe {
        let w = bits_of(s).cast::<u64>().add(slot / 64);
        let bit = 1u64 << (slot % 64);
        let v = *w;
        if v & bit == 0 {
            return false;
        }
        *w = v ^ bit;
        true
    }
}

/// Where the tiny mask of block `slot` is: bit `i` set while a tiny object starts at byte `i`.
/// Valid to dereference when `s` is a tiny span and `slot < geometry.slots`.
#[inline]
pub(crate) fn tiny_mask(s: *mut SpanHeader, slot: usize) -> *mut u16 {
    bits_of(s).cast::<u16>().wrapping_add(slot)
}
