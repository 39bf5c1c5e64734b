//! Single-thread malloc/free throughput of the model against the C library's malloc on the same
//! operation sequence: `cargo run --release -p ptmalloc2 --example throughput`.

use std::alloc::{GlobalAlloc, Layout};
use std::time::Instant;

use allocator_traits::{BrkRegion, OsPages};
use ptmalloc2::{Arena, Ptmalloc, Tunables};

fn ops(n: usize) -> Vec<(bool, usize, usize)> {
    // (is_alloc, slot, size): a random mix over 4096 slots, sizes mostly small.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut live = vec![false; 4096];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = (x >> 20) as usize % 4096;
        let size = match x % 16 {
            0..=9 => 8 + (x >> 40) as usize % 120,
            10..=14 => 128 + (x >> 40) as usize % 900,
            _ => 1024 + (x >> 40) as usize % 16000,
        };
        v.push((!live[slot], slot, size));
        live[slot] = !live[slot];
    }
    v
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4_000_000);
    let ops = ops(n);
    let mut slots = vec![core::ptr::null_mut::<u8>(); 4096];
    let t = Instant::now();
    for &(a, s, size) in &ops {
        if a {
            // SAFETY: plain malloc.
            slots[s] = unsafe { libc::malloc(size) }.cast();
        } else {
            // SAFETY: a live block from malloc.
            unsafe { libc::free(slots[s].cast()) };
            slots[s] = core::ptr::null_mut();
        }
    }
    let glibc = t.elapsed();
    for p in slots.iter_mut() {
        if !p.is_null() {
            // SAFETY: live.
            unsafe { libc::free(p.cast()) };
            *p = core::ptr::null_mut();
        }
    }

    let mut arena = Arena::new(BrkRegion::new(1 << 34), OsPages::new(), &Tunables::new());
    let mut slots = vec![None; 4096];
    let t = Instant::now();
    for &(a, s, size) in &ops {
        if a {
            slots[s] = Some(arena.malloc(size).unwrap());
        } else {
            // SAFETY: a live block of the arena.
            unsafe { arena.free_sized(slots[s].take().unwrap(), size) }.unwrap();
        }
    }
    let model = t.elapsed();

    let heap = Ptmalloc::new();
    let mut slots = vec![(core::ptr::null_mut::<u8>(), 0usize); 4096];
    let t = Instant::now();
    for &(a, s, size) in &ops {
        if a {
            // SAFETY: non-zero size.
            slots[s] = (
                unsafe { heap.alloc(Layout::from_size_align(size, 8).unwrap()) },
                size,
            );
        } else {
            let (p, sz) = slots[s];
            // SAFETY: a live block of `heap`.
            unsafe { heap.dealloc(p, Layout::from_size_align(sz, 8).unwrap()) };
        }
    }
    let threaded = t.elapsed();
    let per = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "{n} ops: glibc {:.1} ns/op, Arena {:.1} ns/op ({:.2}x glibc), Ptmalloc {:.1} ns/op ({:.2}x glibc)",
        per(glibc),
        per(model),
        glibc.as_secs_f64() / model.as_secs_f64(),
        per(threaded),
        glibc.as_secs_f64() / threaded.as_secs_f64()
    );
}
