//! The double-free key: a per-process value written into every object a thread cache holds
//! (glibc's `tcache_key`), so a free can tell at a glance whether the object may already be
//! cached.
//!
//! ```text
//!   cached object of 16 B or more:   [ link to next | KEY | ... ]
//!   object handed out:               [ user bytes   | 0 (cleared at pop) ... ]
//!
//!   free(p): word 1 of p == KEY ?  no -> push (the common case: one load, one compare)
//!                                  yes -> walk the list of p's class: p on it -> double free
//! ```
//!
//! A live object whose second word happens to equal the key costs a walk of one list and is then
//! freed normally. Objects of the 8 B class have no second word: the key would land on the link,
//! so it is not written and their double frees are not seen this way ([`key_offset`] is 0 for
//! them and a cached 8 B object's first word is a link, never the key: the key is odd).
//!
//! The key is made once per process from addresses that address-space layout randomisation
//! moves (a stack slot, a static, this function), mixed by SplitMix64's finaliser; it is odd,
//! so no object link or null pointer equals it.

use core::sync::atomic::{AtomicUsize, Ordering};

static KEY: AtomicUsize = AtomicUsize::new(0);

/// The process's key (made on first call; never 0, always odd).
#[inline]
pub fn process_key() -> usize {
    let k = KEY.load(Ordering::Relaxed);
    if k != 0 { k } else { make_key() }
}

#[cold]
fn make_key() -> usize {
    let local = 0u8;
    let mut x = (core::ptr::addr_of!(local).addr() as u64)
        ^ (core::ptr::addr_of!(KEY).addr() as u64).rotate_left(21)
        ^ ((make_key as fn() -> usize as *const ()).addr() as u64).rotate_left(42)
        ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let k = (x as usize) | 1;
    // Whoever stores first wins; every caller returns the stored key.
    match KEY.compare_exchange(0, k, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => k,
        Err(won) => won,
    }
}

/// Byte offset of the key in a cached object of `object_size` bytes: 8 (the second word), or 0
/// for the 8 B class, where the link written after it takes the word back.
pub const fn key_offset(object_size: usize) -> usize {
    if object_size >= 16 { 8 } else { 0 }
}

/// Whether the object at `obj` carries `key` at `offset`.
///
/// # Safety
/// `obj` is an object start of a class whose objects are at least `offset + 8` bytes.
#[inline(always)]
pub unsafe fn carries(obj: *mut u8, offset: usize, key: usize) -> bool {
    // SAFETY: the word lies inside the object (caller); objects are 8-aligned.
    unsafe { obj.add(offset).cast::<usize>().read() == key }
}
