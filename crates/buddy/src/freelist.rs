//! One free list per order: intrusive doubly linked lists kept inside the free blocks.
//!
//! ```text
//!   heads[k] -> [prev|next]  <->  [prev|next]  <->  [prev|next] -> null
//!               free block        free block        free block      (all of order k)
//! ```
//!
//! A free block's first two words hold its links, so a block can leave its list in O(1) when its
//! buddy merges with it (the bitmap says *whether* the buddy is free; the links let us unlink it
//! without a search). A bit mask of the non-empty orders finds the smallest order at or above a
//! request with one `trailing_zeros`.

use crate::order::MAX_ORDERS;

/// The links at the start of a free block.
#[repr(C)]
pub(crate) struct FreeNode {
    prev: *mut FreeNode,
    next: *mut FreeNode,
}

/// The free lists of every order.
pub(crate) struct FreeLists {
    heads: [*mut FreeNode; MAX_ORDERS],
    lens: [usize; MAX_ORDERS],
    nonempty: u64,
}

impl FreeLists {
    pub(crate) const fn new() -> Self {
        FreeLists {
            heads: [core::ptr::null_mut(); MAX_ORDERS],
            lens: [0; MAX_ORDERS],
            nonempty: 0,
        }
    }

    /// Pushes the block at `node` on list `k`.
    ///
    /// # Safety
    /// `node` is a free block of at least 16 bytes, aligned for pointers, valid for writes, in no
    /// list.
    pub(crate) unsafe fn push(&mut self, k: u32, node: *mut FreeNode) {
        let k = k as usize;
        let head = self.heads[k];
        // SAFETY: `node` is valid for writes (caller); `head`, if non-null, is a block in list k.
        unsafe {
            node.write(FreeNode {
                prev: core::ptr::null_mut(),
                next: head,
            });
            if !head.is_null() {
                (*head).prev = node;
            }
        }
        self.heads[k] = node;
        self.lens[k] += 1;
        self.nonempty |= 1 << k;
    }

    /// Unlinks `node` from list `k`.
    ///
    /// # Safety
    /// `node` is in list `k`.
    pub(crate) unsafe fn remove(&mut self, k: u32, node: *mut FreeNode) {
        let k = k as usize;
        // SAFETY: `node` and its neighbours are blocks in list k, valid for reads and writes.
        unsafe {
            let FreeNode { prev, next } = node.read();
            if prev.is_null() {
                self.heads[k] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
        self.lens[k] -= 1;
        if self.lens[k] == 0 {
            self.nonempty &= !(1 << k);
        }
    }

    /// Takes the first block of list `k`.
    pub(crate) fn pop(&mut self, k: u32) -> Option<*mut FreeNode> {
        let head = self.heads[k as usize];
        if head.is_null() {
            return None;
        }
        // SAFETY: `head` is in list k.
        unsafe { self.remove(k, head) };
        Some(head)
    }

    /// The smallest non-empty order `>= k`, if any.
    #[inline]
    pub(crate) fn first_at_least(&self, k: u32) -> Option<u32> {
        let above = self.nonempty >> k;
        (above != 0).then(|| k + above.trailing_zeros())
    }

    /// Number of blocks in list `k`.
    pub(crate) fn len(&self, k: u32) -> usize {
        self.lens[k as usize]
    }

    /// The addresses in list `k`, in list order.
    pub(crate) fn for_each(&self, k: u32, mut f: impl FnMut(usize)) {
        let mut p = self.heads[k as usize];
        while !p.is_null() {
            f(p as usize);
            // SAFETY: every node in a list is a valid free block.
            p = unsafe { (*p).next };
        }
    }
}
