//! The size classes a program sees: which request sizes share a chunk size (for
//! `fsm classes --policy ptmalloc2`).
//!
//! ```text
//!  request  1..=24 -> chunk 32 (usable 24)    25..=40 -> 48 (40)    41..=56 -> 64 (56) ...
//!  ... every 16 bytes up to the default mmap threshold (128 KiB)
//! ```

use crate::chunk::{MALLOC_ALIGN_MASK, MALLOC_ALIGNMENT, MINSIZE, SIZE_SZ};
use crate::tunables::DEFAULT_MMAP_THRESHOLD;

/// The request-size runs of heap chunks as `(from, to, rounded)`: every request of `from..=to`
/// bytes gets a chunk of `rounded + 8` bytes whose usable size is `rounded` (glibc's
/// `malloc_usable_size`), from 1 byte up to requests just below the default mmap threshold
/// (128 KiB; larger requests get page-rounded mappings when the top cannot serve them).
/// For `fsm classes --policy ptmalloc2`.
pub fn classes() -> impl Iterator<Item = (usize, usize, usize)> {
    let last = DEFAULT_MMAP_THRESHOLD;
    (MINSIZE..last).step_by(MALLOC_ALIGNMENT).map(|c| {
        let to = c - SIZE_SZ;
        let from = if c == MINSIZE {
            1
        } else {
            to - MALLOC_ALIGN_MASK
        };
        (from, to, to)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::request2size;

    #[test]
    fn runs_share_one_chunk_size() {
        let runs: Vec<_> = classes().take(3).collect();
        assert_eq!(runs, [(1, 24, 24), (25, 40, 40), (41, 56, 56)]);
        for (from, to, rounded) in classes() {
            assert_eq!(request2size(from), request2size(to));
            assert_eq!(request2size(to) - SIZE_SZ, rounded);
        }
    }
}
