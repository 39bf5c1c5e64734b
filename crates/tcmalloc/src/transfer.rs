//! The transfer cache: whole batches of objects parked between the thread caches and a class's
//! spans.
//!
//! ```text
//!   slots:  [ batch | batch | batch | .... ]   used <= capacity <= max_capacity <= 64
//!             each batch: head -> obj -> obj -> ... -> tail   (exactly batch_size objects)
//! ```
//!
//! A thread cache that releases exactly one batch parks it here in O(1); a thread cache that
//! fetches exactly one batch takes the most recently parked one, so objects move between threads
//! without touching the spans. The capacity starts at 16 slots and may grow, as batches arrive to
//! a full cache, up to `min(64, max(1, 1 MiB / (size * batch)))` slots (gperftools'
//! `max_cache_size_`). gperftools also lets a class take slots from another class's cache; this
//! model only grows each class's own capacity up to its maximum.

use core::ptr::null_mut;

use crate::size_map::SIZE_MAP;

/// Most batches one class's transfer cache holds.
pub const MAX_SLOTS: usize = 64;
/// Initial capacity in batches.
pub const INITIAL_SLOTS: usize = 16;

/// A linked batch of objects.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// First object.
    pub head: *mut u8,
    /// Last object (its link is null).
    pub tail: *mut u8,
}

/// One class's transfer cache.
#[derive(Debug)]
pub struct TransferCache {
    /// `slots[..used]` are whole batches: `batch_size(class)` objects of the class each, linked
    /// from `head` to `tail`, `tail`'s link null.
    slots: [Batch; MAX_SLOTS],
    /// `used <= capacity <= max_capacity <= MAX_SLOTS` (all 0 until the first insert).
    used: usize,
    capacity: usize,
    max_capacity: usize,
}

impl TransferCache {
    /// An empty cache (capacities are set on first use, from the class).
    pub const fn new() -> Self {
        TransferCache {
            slots: [Batch {
                head: null_mut(),
                tail: null_mut(),
            }; MAX_SLOTS],
            used: 0,
            capacity: 0,
            max_capacity: 0,
        }
    }

    fn init(&mut self, class: usize) {
        if self.max_capacity == 0 {
            let bytes = SIZE_MAP.class_size(class) * SIZE_MAP.batch_size(class);
            self.max_capacity = MAX_SLOTS.min(((1 << 20) / bytes).max(1));
            self.capacity = INITIAL_SLOTS.min(self.max_capacity);
        }
    }

    /// Parks a batch of `n` objects if `n` is the class's batch size and there is room.
    #[inline]
    pub fn insert(&mut self, class: usize, batch: Batch, n: usize) -> bool {
        if n != SIZE_MAP.batch_size(class) {
            return false;
        }
        self.init(class);
        if self.used == self.capacity {
            if self.capacity == self.max_capacity {
                return false;
            }
            self.capacity += 1;
        }
        self.slots[self.used] = batch;
        self.used += 1;
        true
    }

    /// Takes a batch if `n` is the class's batch size and one is parked.
    #[inline]
    pub fn remove(&mut self, class: usize, n: usize) -> Option<Batch> {
        if self.used == 0 || n != SIZE_MAP.batch_size(class) {
            return None;
        }
        self.used -= 1;
        Some(self.slots[self.used])
    }

    /// Batches parked now.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Current capacity in batches.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest capacity this class's cache may grow to (0 before first use).
    pub fn max_capacity(&self) -> usize {
        self.max_capacity
    }

    /// The parked batches, oldest first.
    pub fn batches(&self) -> &[Batch] {
        &self.slots[..self.used]
    }
}

impl Default for TransferCache {
    fn default() -> Self {
        Self::new()
    }
}
