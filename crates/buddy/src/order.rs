//! Orders: the sizes a buddy system deals in.
//!
//! A block of order `k` is `min_block << k` bytes and starts at an address that is a multiple of
//! its own size. A request is served by the smallest order whose block holds both its size and
//! its alignment, so alignment up to the block size costs nothing:
//!
//! ```text
//!   order 0   16 B   |..|..|..|..|..|..|..|..|
//!   order 1   32 B   |.....|.....|.....|.....|
//!   order 2   64 B   |...........|...........|
//!   order 3  128 B   |.......................|
//!   request (40 B, align 8)  -> order 2 (64 B): 24 B of internal fragmentation
//!   request (8 B, align 64)  -> order 2 (64 B): the block is 64-aligned by construction
//! ```
//!
//! The order of a live block is not stored anywhere: [`order_for`] derives it from the `Layout`
//! the caller passes to free, exactly as it did at allocation. The allocation bitmap (see
//! [`crate::Buddy`]) confirms that a block of that order really starts at the pointer.

/// The largest number of orders a [`crate::Buddy`] keeps (orders `0..MAX_ORDERS`).
pub const MAX_ORDERS: usize = 48;

/// The order that serves `size` bytes aligned to `align` when the smallest block is
/// `1 << min_shift` bytes, or `None` if no power of two holds it.
#[inline]
pub const fn order_for(size: usize, align: usize, min_shift: u32) -> Option<u32> {
    let need = if size > align { size } else { align };
    let need = if need == 0 { 1 } else { need };
    match need.checked_next_power_of_two() {
        Some(p) => Some(p.trailing_zeros().saturating_sub(min_shift)),
        None => None,
    }
}

/// Bytes in a block of `order` when the smallest block is `1 << min_shift` bytes.
#[inline]
pub const fn block_size(order: u32, min_shift: u32) -> usize {
    1usize << (order + min_shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_cover_size_and_alignment() {
        assert_eq!(order_for(0, 1, 4), Some(0));
        assert_eq!(order_for(16, 8, 4), Some(0));
        assert_eq!(order_for(17, 8, 4), Some(1));
        assert_eq!(order_for(40, 8, 4), Some(2));
        assert_eq!(order_for(8, 64, 4), Some(2));
        assert_eq!(order_for(4096, 4096, 4), Some(8));
        assert_eq!(order_for(usize::MAX, 1, 4), None);
        assert_eq!(block_size(2, 4), 64);
    }
}
