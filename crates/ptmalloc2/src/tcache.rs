//! The per-thread cache (tcache): 64 singly linked LIFO bins of at most `tcache_count` chunks.
//!
//! The cache itself lives in the heap, in the first chunk a thread allocates (0x290 bytes:
//! `uint16_t counts[64]` then `entries[64]`), exactly where glibc puts it:
//!
//! ```text
//!  tc -> counts[0..64]  (u16 each, 128 bytes)
//!        entries[0..64] (user pointer of the newest cached chunk, 512 bytes)
//!
//!  entries[i] -> [next | key] -> [next | key] -> 0     bin i: chunk size 32 + 16*i
//! ```
//!
//! A cached chunk stays "in use" as far as its neighbours know (no PREV_INUSE change, no
//! coalescing). `key` marks a cached chunk so that a second free of it is caught.

use crate::chunk::{MALLOC_ALIGN_MASK, MINSIZE, Mem};

/// `TCACHE_MAX_BINS`.
pub const TCACHE_MAX_BINS: usize = 64;
/// `TCACHE_FILL_COUNT`: default chunks per bin.
pub const TCACHE_FILL_COUNT: usize = 7;
/// `MAX_TCACHE_COUNT`.
pub const MAX_TCACHE_COUNT: usize = 65535;
/// `MAX_TCACHE_SIZE` = `tidx2usize(63)`: the largest cacheable request.
pub const MAX_TCACHE_SIZE: usize = tidx2usize(TCACHE_MAX_BINS - 1);
/// `sizeof(tcache_perthread_struct)`.
pub const TCACHE_STRUCT_SIZE: usize = 2 * TCACHE_MAX_BINS + 8 * TCACHE_MAX_BINS;
/// The value written in a cached chunk's `key` word (glibc draws a random one per process).
pub const TCACHE_KEY: usize = 0x7463_6163_6865_6b79; // "tcachaky"

/// A thread's tcache: the struct's user pointer and a pointer to it with the provenance of the
/// memory that holds it (the heap's, or a mapping's when glibc had to map the struct: an mmap
/// threshold below 0x290), so that its fields are reached with plain addressing.
#[derive(Debug, Clone, Copy)]
pub struct Tc {
    /// User pointer of the `tcache_perthread_struct` chunk (0 = no tcache).
    pub at: usize,
    /// The struct (`at`, reached through the memory that holds it; null without a tcache).
    p: *mut u8,
}

impl Tc {
    /// No tcache (not allocated yet, or switched off).
    pub const NONE: Tc = Tc {
        at: 0,
        p: core::ptr::null_mut(),
    };

    /// The tcache struct at user pointer `at` (not 0) in the memory `mem` reaches.
    #[inline(always)]
    pub fn new(at: usize, mem: Mem) -> Tc {
        Tc { at, p: mem.ptr(at) }
    }

    /// A pointer to the field `off` bytes into the struct.
    #[inline(always)]
    fn field(&self, off: usize) -> *mut u8 {
        self.p.wrapping_add(off)
    }

    /// Whether there is a tcache.
    #[inline(always)]
    pub fn is_some(&self) -> bool {
        self.at != 0
    }
}

/// `csize2tidx`.
#[inline(always)]
pub const fn csize2tidx(c: usize) -> usize {
    (c - MINSIZE + MALLOC_ALIGN_MASK) / MALLOC_ALIGN_MASK.wrapping_add(1)
}

/// `tidx2usize`: the largest request bin `i` serves.
#[inline(always)]
pub const fn tidx2usize(i: usize) -> usize {
    i * 16 + MINSIZE - 8
}

/// `counts[i]` of the cache at `tc`.
///
/// # Safety
/// `tc` is a live tcache struct and `i < 64`.
#[inline(always)]
pub unsafe fn count(tc: &Tc, i: usize) -> usize {
    // SAFETY: counts[i] lies inside the struct, 2-aligned (the struct is 16-aligned).
    unsafe { tc.field(2 * i).cast::<u16>().read() as usize }
}

/// `entries[i]` of the cache at `tc` (a user pointer, 0 = empty).
///
/// # Safety
/// As for [`count`].
#[inline(always)]
pub unsafe fn entry(tc: &Tc, i: usize) -> usize {
    // SAFETY: entries[i] lies inside the struct, 8-aligned.
    unsafe { entry_ptr(tc, i).read() }
}

/// `&entries[i]` of the cache at `tc`.
#[inline(always)]
fn entry_ptr(tc: &Tc, i: usize) -> *mut usize {
    tc.field(2 * TCACHE_MAX_BINS + 8 * i).cast()
}

/// `&counts[i]` of the cache at `tc`.
#[inline(always)]
fn count_ptr(tc: &Tc, i: usize) -> *mut u16 {
    tc.field(2 * i).cast()
}

/// `tcache_put`: caches the chunk `p` in bin `i`.
///
/// # Safety
/// As for [`count`]; `p` is an in-use chunk of bin `i`'s size in the region.
#[inline(always)]
pub unsafe fn put(m: &Mem, tc: &Tc, p: usize, i: usize) {
    let e = p + 16;
    // SAFETY: `e` and its two words are in the chunk; the struct fields are in the struct.
    unsafe {
        m.wr(e + 8, TCACHE_KEY);
        m.wr(e, entry(tc, i));
        entry_ptr(tc, i).write(e);
        *count_ptr(tc, i) += 1;
    }
}

/// `tcache_get`: takes the newest chunk of bin `i` (which must not be empty); returns its user
/// pointer.
///
/// # Safety
/// As for [`count`]; `counts[i] > 0`.
#[inline(always)]
pub unsafe fn get(m: &Mem, tc: &Tc, i: usize) -> Result<usize, &'static str> {
    // SAFETY: as above; `e` is a cached chunk's user pointer.
    unsafe {
        let e = entry(tc, i);
        if e & MALLOC_ALIGN_MASK != 0 {
            return Err(crate::checks::TCACHE_UNALIGNED);
        }
        pop(m, tc, i, e);
        Ok(e)
    }
}

/// `tcache_get` of `e`, the first entry of bin `i`, already read and checked by the caller.
///
/// # Safety
/// As for [`count`]; `counts[i] > 0` and `e == entry(tc, i)` is a 16-aligned chunk of `m`.
#[inline(always)]
pub unsafe fn pop(m: &Mem, tc: &Tc, i: usize, e: usize) {
    // SAFETY: as above.
    unsafe {
        entry_ptr(tc, i).write(m.rd(e));
        *count_ptr(tc, i) -= 1;
        m.wr(e + 8, 0);
    }
}

/// The tcache half of `_int_free`: the double-free check (walk the bin if the chunk carries
/// the key), then cache the chunk if its bin has room. `Ok(true)` when cached. The caller has
/// checked that the size's bin is in use (`csize2tidx(size) < tcache_bins`).
///
/// # Safety
/// `tc` is a live tcache struct and `p` a chunk of `size` bytes, both in `m`'s region.
#[inline(always)]
pub unsafe fn free_to_cache(
    m: &Mem,
    tc: &Tc,
    p: usize,
    size: usize,
    tcache_count: usize,
) -> Result<bool, &'static str> {
    let tc_idx = csize2tidx(size);
    let e = p + 16;
    // SAFETY: `e + 8` is inside the chunk (size >= 32); the walk follows the bin's links.
    unsafe {
        if m.rd(e + 8) == TCACHE_KEY {
            let mut cnt = 0;
            let mut tmp = entry(tc, tc_idx);
            while tmp != 0 {
                if cnt >= tcache_count {
                    return Err(crate::checks::TCACHE_TOO_MANY);
                }
                if tmp & MALLOC_ALIGN_MASK != 0 {
                    return Err(crate::checks::TCACHE_UNALIGNED_2);
                }
                if tmp == e {
                    return Err(crate::checks::TCACHE_DOUBLE_FREE);
                }
                tmp = m.rd(tmp);
                cnt += 1;
            }
        }
        if count(tc, tc_idx) < tcache_count {
            // Model check (see `checks::FREE_NOT_INUSE`): the chunk after `p` marks it in use.
            if !crate::chunk::inuse_bit_at_offset(m, p, size) {
                return Err(crate::checks::FREE_NOT_INUSE);
            }
            put(m, tc, p, tc_idx);
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(csize2tidx(32), 0);
        assert_eq!(csize2tidx(48), 1);
        assert_eq!(csize2tidx(1040), 63);
        assert_eq!(MAX_TCACHE_SIZE, 1032);
        assert_eq!(crate::chunk::request2size(TCACHE_STRUCT_SIZE), 0x290);
    }
}
