//! Bins: where free chunks wait, and the binmap that says which bins may hold some.
//!
//! ```text
//!  fastbinsY[0..10]  singly linked, LIFO, chunk sizes 32..176 (<= global_max_fast in use)
//!  bins[1]           unsorted: doubly linked; freed chunks enter at the head (fd side),
//!                    malloc takes them from the tail (bk side)
//!  bins[2..64]       small: one exact size each (32, 48, ..., 1008), FIFO
//!  bins[64..127]     large: a size range each, sorted by size (largest first along fd), with
//!                    a second list (fd_nextsize/bk_nextsize) linking the first chunk of each
//!                    distinct size:
//!
//!      bin <-> [4096] <-> [4096] <-> [3840] <-> [3584] <-> bin      (fd/bk)
//!                 ^----nextsize----^    ^---nextsize--^
//!  binmap[4]         one bit per bin, set when a chunk is binned, cleared lazily by malloc's scan
//! ```
//!
//! The model keeps the bins' list heads in the arena (not in memory); bin `i` is named by the
//! number `i` wherever a chunk address could appear in a link, so `1..128` never collide with a
//! chunk address.

use crate::chunk::MINSIZE;

/// Number of bins (`NBINS`); index 0 is unused and 127 is never indexed.
pub const NBINS: usize = 128;
/// Number of small bins plus bins 0 and 1 (`NSMALLBINS`).
pub const NSMALLBINS: usize = 64;
/// Smallest chunk size kept in a large bin (`MIN_LARGE_SIZE`).
pub const MIN_LARGE_SIZE: usize = 1024;
/// Number of fastbins (`NFASTBINS`), for chunk sizes up to 176.
pub const NFASTBINS: usize = 10;
/// Largest fastbin request in user bytes (`MAX_FAST_SIZE`).
pub const MAX_FAST_SIZE: usize = 160;
/// Default `global_max_fast` request (`DEFAULT_MXFAST`).
pub const DEFAULT_MXFAST: usize = 128;
/// A free of this much (after coalescing) triggers `malloc_consolidate` and trimming.
pub const FASTBIN_CONSOLIDATION_THRESHOLD: usize = 65536;
/// Words in the binmap (`BINMAPSIZE`).
pub const BINMAPSIZE: usize = 4;
/// The unsorted bin's index.
pub const UNSORTED: usize = 1;

/// `in_smallbin_range(sz)`.
#[inline(always)]
pub const fn in_smallbin_range(sz: usize) -> bool {
    sz < MIN_LARGE_SIZE
}

/// `smallbin_index(sz)`.
#[inline(always)]
pub const fn smallbin_index(sz: usize) -> usize {
    sz >> 4
}

/// `largebin_index_64(sz)`.
#[inline]
pub const fn largebin_index(sz: usize) -> usize {
    if sz >> 6 <= 48 {
        48 + (sz >> 6)
    } else if sz >> 9 <= 20 {
        91 + (sz >> 9)
    } else if sz >> 12 <= 10 {
        110 + (sz >> 12)
    } else if sz >> 15 <= 4 {
        119 + (sz >> 15)
    } else if sz >> 18 <= 2 {
        124 + (sz >> 18)
    } else {
        126
    }
}

/// `bin_index(sz)`.
#[inline]
pub const fn bin_index(sz: usize) -> usize {
    if in_smallbin_range(sz) {
        smallbin_index(sz)
    } else {
        largebin_index(sz)
    }
}

/// `fastbin_index(sz)`.
#[inline(always)]
pub const fn fastbin_index(sz: usize) -> usize {
    (sz >> 4) - 2
}

/// `set_max_fast(s)`: the chunk-size limit of fastbins for an `mxfast` of `s` bytes.
#[inline]
pub const fn max_fast_for(s: usize) -> usize {
    if s <= 7 { MINSIZE / 2 } else { (s + 8) & !15 }
}

/// The lowest chunk size a bin holds (for names and pictures).
pub const fn bin_min_size(i: usize) -> usize {
    if i < NSMALLBINS {
        i << 4
    } else {
        // Search the first size with this index (bins are monotone in size).
        let mut lo = MIN_LARGE_SIZE;
        let mut hi = 1usize << 40;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if largebin_index(mid) < i {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        lo
    }
}

/// `idx2block`.
#[inline(always)]
pub const fn idx2block(i: usize) -> usize {
    i >> 5
}

/// `idx2bit`.
#[inline(always)]
pub const fn idx2bit(i: usize) -> u32 {
    1u32 << (i & 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largebin_ranges_match_the_reference() {
        assert_eq!(largebin_index(1024), 64);
        assert_eq!(largebin_index(1087), 64);
        assert_eq!(largebin_index(3072), 96);
        assert_eq!(largebin_index(3135), 96);
        assert_eq!(largebin_index(3136), 97);
        assert_eq!(largebin_index(3583), 97);
        assert_eq!(largebin_index(3584), 98);
        assert_eq!(largebin_index(10751), 111);
        assert_eq!(largebin_index(10752), 112);
        assert_eq!(largebin_index(12287), 112);
        assert_eq!(largebin_index(12288), 113);
        assert_eq!(largebin_index(40959), 119);
        assert_eq!(largebin_index(40960), 120);
        assert_eq!(largebin_index(65535), 120);
        assert_eq!(largebin_index(65536), 121);
        assert_eq!(largebin_index(163839), 123);
        assert_eq!(largebin_index(163840), 124);
        assert_eq!(largebin_index(262144), 125);
        assert_eq!(largebin_index(524287), 125);
        assert_eq!(largebin_index(524288), 126);
        assert_eq!(largebin_index(usize::MAX >> 1), 126);
        assert_eq!(bin_min_size(97), 3136);
        assert_eq!(bin_min_size(126), 524288);
    }

    #[test]
    fn fast_limits() {
        assert_eq!(max_fast_for(DEFAULT_MXFAST), 128);
        assert_eq!(max_fast_for(0), 16);
        assert_eq!(max_fast_for(MAX_FAST_SIZE), (160 + 8) & !15);
        assert_eq!(
            fastbin_index(crate::chunk::request2size(MAX_FAST_SIZE)) + 1,
            NFASTBINS
        );
    }
}
