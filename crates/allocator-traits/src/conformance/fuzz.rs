//! The fuzz harness every policy's fuzz target calls (`fuzz/fuzz_targets/*.rs`): the fuzzer's
//! bytes become a sequence of operations run through the shadow model.
//!
//! ```text
//!   bytes:  [kind][a][b][c] [kind][a][b][c] ...      four bytes per operation
//!   kind % 16:  0..=6 alloc   7..=9 free   10 grow   11 shrink   12 resize in place
//!               13 realign   14 double free of the block freed last   15 free of a foreign pointer
//!   sizes:  (a, b) little-endian, scaled by c's top bits: small, up to 4 KiB, or up to 1/4 of
//!           the region, so sequences reach the region's end
//! ```
//!
//! After every operation the shadow checks the edges of every live block (each block whole when
//! it is freed or resized: [`Shadow::checking_edges`]), the stats and the policy's invariant walk
//! ([`Shadow::apply`]); at the end everything is freed and
//! [`super::check_drained`] looks for leaks. The two bad frees run only where the policy claims
//! to detect them ([`crate::FreeSpaceManager::detects`]): each must be refused with an error
//! naming the pointer, counted in `bad_frees`, and change nothing. Any failure panics, which is
//! what the fuzzer reports.

use core::alloc::Layout;
use core::ptr::NonNull;

use super::{Op, Shadow, check_drained};
use crate::FreeSpaceManager;

/// The region a fuzz target gives its manager: small, so sequences press against its end.
pub const FUZZ_CAPACITY: usize = 256 << 10;

/// Runs the operations `data` encodes on `m` against the shadow model (module docs); panics on
/// the first disagreement. `max_align` is the largest alignment the policy serves.
pub fn fuzz_one<M: FreeSpaceManager>(m: &mut M, max_align: usize, data: &[u8]) {
    let d = m.detects();
    let mut shadow = Shadow::new(max_align).checking_edges();
    shadow.check(m);
    // The block freed last, while no operation since could have handed it out again.
    let mut freed: Option<(NonNull<u8>, Layout)> = None;
    for w in data.chunks_exact(4).take(2000) {
        let (kind, a, b, c) = (w[0] % 16, w[1], w[2], w[3]);
        let raw = u16::from_le_bytes([a, b]) as usize;
        let size = match c >> 6 {
            0 | 1 => raw % 128,
            2 => raw % 4096,
            _ => (raw * 4) % (FUZZ_CAPACITY / 4),
        };
        let idx = (c & 0x3f) as usize;
        let op = match kind {
            0..=6 => Op::Alloc {
                size,
                align_shift: a % 13,
            },
            7..=9 => {
                let victim = shadow.block(idx);
                shadow.apply(m, Op::Free { idx });
                freed = victim;
                continue;
            }
            10 => Op::Grow { idx, extra: size },
            11 => Op::Shrink { idx, by: size },
            12 => Op::InPlace { idx, size },
            13 => Op::Realign {
                idx,
                size,
                align_shift: b % 13,
            },
            14 => {
                if let (true, Some((ptr, layout))) = (d.double_free, freed)
                    && layout.size() > d.double_free_above
                {
                    let before = m.stats().bad_frees;
                    // SAFETY: the policy claims to detect a double free of a block freed with
                    // no operation since; nothing is freed.
                    let r = unsafe { m.deallocate(ptr, layout) };
                    refused(m, &shadow, before, r, ptr.as_ptr() as usize, "double free");
                }
                continue;
            }
            _ => {
                if d.foreign {
                    let outside = [0u64; 4];
                    let ptr = NonNull::from(&outside[idx % 4]).cast::<u8>();
                    let before = m.stats().bad_frees;
                    // SAFETY: the policy claims to detect foreign pointers; nothing is freed.
                    let r = unsafe { m.deallocate(ptr, Layout::new::<u64>()) };
                    refused(m, &shadow, before, r, ptr.as_ptr() as usize, "foreign free");
                }
                continue;
            }
        };
        shadow.apply(m, op);
        freed = None;
    }
    while !shadow.is_empty() {
        shadow.apply(m, Op::Free { idx: 0 });
    }
    check_drained(m);
}

/// A bad free was refused: an error naming `ptr`, counted, nothing else changed.
fn refused<M: FreeSpaceManager>(
    m: &M,
    shadow: &Shadow,
    before: u64,
    r: Result<(), crate::FreeError>,
    ptr: usize,
    what: &str,
) {
    let e = r.expect_err(what);
    assert_eq!(
        e.ptr(),
        ptr,
        "{what}: the error must name the pointer ({e})"
    );
    assert_eq!(
        m.stats().bad_frees,
        before + 1,
        "{what}: bad_frees not counted"
    );
    shadow.check(m);
}
