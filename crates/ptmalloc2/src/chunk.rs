//! Chunks: glibc's in-band boundary tags, its size arithmetic and the raw memory accessors.
//!
//! Every chunk starts with two words. The size word's low three bits are flags; the previous
//! chunk's size (`prev_size`) is only meaningful while that previous chunk is free, otherwise the
//! word belongs to the previous chunk's user data (hence an overhead of one word per chunk):
//!
//! ```text
//!  chunk -> +--------------------------------+
//!           | prev_size (if prev chunk free) |  offset 0
//!           +----------------------------+-+-+
//!           | size                       |A|M|P  offset 8   P=PREV_INUSE M=IS_MMAPPED
//!   mem  -> +----------------------------+-+-+              A=NON_MAIN_ARENA
//!           | fd          (free chunks)      |  offset 16   user data starts here
//!           | bk          (free chunks)      |  offset 24
//!           | fd_nextsize (free large chunks)|  offset 32
//!           | bk_nextsize (free large chunks)|  offset 40
//!           |  ...                           |
//!  next  -> +--------------------------------+
//!           | prev_size = size (free) / data |
//!           | next size                  |.|.|P  P clear <=> this chunk is free
//! ```
//!
//! In the model, a chunk is named by its address (`usize`). Free-list links hold chunk addresses
//! (glibc's safe-linking only changes the stored bits, not the order of anything); the numbers
//! `1..128` name the bins' own list heads and `0` is NULL.

/// One word (`INTERNAL_SIZE_T`).
pub const SIZE_SZ: usize = 8;
/// Chunk header: `prev_size` and `size`.
pub const CHUNK_HDR_SZ: usize = 2 * SIZE_SZ;
/// Alignment of every chunk and user pointer.
pub const MALLOC_ALIGNMENT: usize = 16;
/// `MALLOC_ALIGNMENT - 1`.
pub const MALLOC_ALIGN_MASK: usize = MALLOC_ALIGNMENT - 1;
/// The smallest chunk: room for the header, `fd` and `bk`.
pub const MINSIZE: usize = 32;
/// Size-word flag: the previous chunk is in use.
pub const PREV_INUSE: usize = 0x1;
/// Size-word flag: the chunk is its own `mmap`ping.
pub const IS_MMAPPED: usize = 0x2;
/// Size-word flag: the chunk belongs to a thread arena.
pub const NON_MAIN_ARENA: usize = 0x4;
/// All flag bits.
pub const SIZE_BITS: usize = PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA;
/// glibc's page size on x86-64 Linux (`GLRO(dl_pagesize)`); the model always uses it.
pub const PAGE: usize = 4096;

/// glibc's `request2size`: the chunk size serving a request of `req` bytes.
#[inline]
pub const fn request2size(req: usize) -> usize {
    if req + SIZE_SZ + MALLOC_ALIGN_MASK < MINSIZE {
        MINSIZE
    } else {
        (req + SIZE_SZ + MALLOC_ALIGN_MASK) & !MALLOC_ALIGN_MASK
    }
}

/// glibc's `checked_request2size`: `None` (ENOMEM) for requests above `PTRDIFF_MAX`.
#[inline]
pub const fn checked_request2size(req: usize) -> Option<usize> {
    if req > isize::MAX as usize {
        None
    } else {
        Some(request2size(req))
    }
}

/// `ALIGN_UP(v, a)` for a power of two `a` (wrapping like C).
#[inline]
pub const fn align_up(v: usize, a: usize) -> usize {
    v.wrapping_add(a - 1) & !(a - 1)
}

/// `ALIGN_DOWN(v, a)` for a power of two `a`.
#[inline]
pub const fn align_down(v: usize, a: usize) -> usize {
    v & !(a - 1)
}

/// Raw access to heap memory by address, keeping the provenance of the region's base pointer.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    base: *mut u8,
}

impl Mem {
    /// No memory yet.
    pub const fn empty() -> Self {
        Mem {
            base: core::ptr::null_mut(),
        }
    }

    /// Memory reached through `base` (every address used later lies in `base`'s allocation).
    pub const fn new(base: *mut u8) -> Self {
        Mem { base }
    }

    /// Whether a base is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        !self.base.is_null()
    }

    /// A pointer to address `a`, derived from the base pointer.
    #[inline(always)]
    pub fn ptr(&self, a: usize) -> *mut u8 {
        self.base.wrapping_add(a.wrapping_sub(self.base as usize))
    }

    /// Reads the word at `a`.
    ///
    /// # Safety
    /// `a` is 8-aligned and inside the region behind the base pointer.
    #[inline(always)]
    pub unsafe fn rd(&self, a: usize) -> usize {
        // SAFETY: the caller keeps `a` inside the region, aligned.
        unsafe { self.ptr(a).cast::<usize>().read() }
    }

    /// Writes the word at `a`.
    ///
    /// # Safety
    /// As for [`rd`](Self::rd).
    #[inline(always)]
    pub unsafe fn wr(&self, a: usize, v: usize) {
        // SAFETY: the caller keeps `a` inside the region, aligned.
        unsafe { self.ptr(a).cast::<usize>().write(v) }
    }

    /// Reads the 16-bit value at `a`.
    ///
    /// # Safety
    /// `a` is 2-aligned and inside the region.
    #[inline(always)]
    pub unsafe fn rd16(&self, a: usize) -> u16 {
        // SAFETY: as above.
        unsafe { self.ptr(a).cast::<u16>().read() }
    }

    /// Writes the 16-bit value at `a`.
    ///
    /// # Safety
    /// As for [`rd16`](Self::rd16).
    #[inline(always)]
    pub unsafe fn wr16(&self, a: usize, v: u16) {
        // SAFETY: as above.
        unsafe { self.ptr(a).cast::<u16>().write(v) }
    }

    /// Fills `len` bytes at `a` with `byte`.
    ///
    /// # Safety
    /// `a..a+len` is inside the region.
    #[inline]
    pub unsafe fn fill(&self, a: usize, byte: u8, len: usize) {
        // SAFETY: as above.
        unsafe { core::ptr::write_bytes(self.ptr(a), byte, len) }
    }
}

// Chunk field accessors. All take a chunk address inside the region of `m`.
// SAFETY (for every function below): callers pass chunks inside the region; these are thin
// wrappers over `Mem::rd`/`Mem::wr` at the field offsets listed in the module docs.

/// `prev_size(p)`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn prev_size(m: &Mem, p: usize) -> usize {
    // SAFETY: see above.
    unsafe { m.rd(p) }
}
/// `set_prev_size(p, v)`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn set_prev_size(m: &Mem, p: usize, v: usize) {
    // SAFETY: see above.
    unsafe { m.wr(p, v) }
}
/// `chunksize_nomask(p)`: the size word with its flags.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn size_nomask(m: &Mem, p: usize) -> usize {
    // SAFETY: see above.
    unsafe { m.rd(p + SIZE_SZ) }
}
/// `chunksize(p)`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn chunksize(m: &Mem, p: usize) -> usize {
    // SAFETY: see above.
    unsafe { m.rd(p + SIZE_SZ) & !SIZE_BITS }
}
/// `set_head(p, v)`: the whole size word.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn set_head(m: &Mem, p: usize, v: usize) {
    // SAFETY: see above.
    unsafe { m.wr(p + SIZE_SZ, v) }
}
/// `set_head_size(p, s)`: the size, keeping the flags.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn set_head_size(m: &Mem, p: usize, s: usize) {
    // SAFETY: see above.
    unsafe { m.wr(p + SIZE_SZ, (m.rd(p + SIZE_SZ) & SIZE_BITS) | s) }
}
/// `set_foot(p, s)`: the next chunk's `prev_size`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn set_foot(m: &Mem, p: usize, s: usize) {
    // SAFETY: see above.
    unsafe { m.wr(p + s, s) }
}
/// `prev_inuse(p)`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn prev_inuse(m: &Mem, p: usize) -> bool {
    // SAFETY: see above.
    unsafe { m.rd(p + SIZE_SZ) & PREV_INUSE != 0 }
}
/// `inuse_bit_at_offset(p, s)`: PREV_INUSE of the chunk at `p + s`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn inuse_bit_at_offset(m: &Mem, p: usize, s: usize) -> bool {
    // SAFETY: see above.
    unsafe { m.rd(p + s + SIZE_SZ) & PREV_INUSE != 0 }
}
/// `set_inuse_bit_at_offset(p, s)`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn set_inuse_bit_at_offset(m: &Mem, p: usize, s: usize) {
    // SAFETY: see above.
    unsafe { m.wr(p + s + SIZE_SZ, m.rd(p + s + SIZE_SZ) | PREV_INUSE) }
}
/// `clear_inuse_bit_at_offset(p, s)`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn clear_inuse_bit_at_offset(m: &Mem, p: usize, s: usize) {
    // SAFETY: see above.
    unsafe { m.wr(p + s + SIZE_SZ, m.rd(p + s + SIZE_SZ) & !PREV_INUSE) }
}
/// `chunk_is_mmapped(p)`.
///
/// # Safety
/// The chunk's words touched lie inside the region behind `m`.
#[inline(always)]
pub unsafe fn is_mmapped(m: &Mem, p: usize) -> bool {
    // SAFETY: see above.
    unsafe { m.rd(p + SIZE_SZ) & IS_MMAPPED != 0 }
}

/// `chunk2mem`.
#[inline(always)]
pub const fn chunk2mem(p: usize) -> usize {
    p + CHUNK_HDR_SZ
}
/// `mem2chunk`.
#[inline(always)]
pub const fn mem2chunk(mem: usize) -> usize {
    mem.wrapping_sub(CHUNK_HDR_SZ)
}
/// `misaligned_chunk(p)` (chunks are 16-aligned because their user pointers are).
#[inline(always)]
pub const fn misaligned(p: usize) -> bool {
    p & MALLOC_ALIGN_MASK != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_sizes_follow_glibc() {
        assert_eq!(request2size(0), 32);
        assert_eq!(request2size(24), 32);
        assert_eq!(request2size(25), 48);
        assert_eq!(request2size(40), 48);
        assert_eq!(request2size(41), 64);
        assert_eq!(request2size(56), 64);
        assert_eq!(request2size(640), 0x290);
        assert_eq!(request2size(200_000), 200_016);
        assert_eq!(checked_request2size(usize::MAX), None);
    }
}
