//! Single-thread malloc/free throughput of the model against the C library's malloc on the same
//! operation sequence, interleaved so that a loaded machine disturbs all three alike:
//! `cargo run --release -p ptmalloc2 --example throughput [OPS] [ROUNDS] [fresh]`.
//!
//! Each round runs the same `OPS` operations (a churn over 4096 slots: free a slot if live, else
//! allocate into it, sizes mostly 8 B..1 KiB with some up to 17 KiB) through glibc, `Arena` and
//! `Ptmalloc`, one after the other, and takes each one's thread CPU time (with `fresh`, each
//! round also frees every block left, as the criterion bench does, so every round starts from
//! an empty heap; without it the slots carry over: a steady state). It prints the median
//! and the minimum over the rounds, in ns per operation, and the ratios to glibc (its time over
//! the model's: above 1 means faster than glibc).

use std::alloc::{GlobalAlloc, Layout};

use allocator_traits::{BrkRegion, OsPages};
use ptmalloc2::{Arena, Ptmalloc, Tunables};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_ns;

const SLOTS: usize = 4096;

fn ops(n: usize) -> Vec<(usize, usize)> {
    // (slot, size): a random mix over the slots, sizes mostly small.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x >> 20) as usize % SLOTS;
            let size = match x % 16 {
                0..=9 => 8 + (x >> 40) as usize % 120,
                10..=14 => 128 + (x >> 40) as usize % 900,
                _ => 1024 + (x >> 40) as usize % 16000,
            };
            (slot, size)
        })
        .collect()
}

#[inline(never)]
fn glibc(ops: &[(usize, usize)], slots: &mut [*mut libc::c_void]) {
    for &(s, size) in ops {
        let p = &mut slots[s];
        // SAFETY: plain malloc/free of our own blocks.
        unsafe {
            if p.is_null() {
                *p = std::hint::black_box(libc::malloc(size));
            } else {
                libc::free(*p);
                *p = core::ptr::null_mut();
            }
        }
    }
}

#[inline(never)]
fn arena(
    a: &mut Arena<BrkRegion, OsPages>,
    ops: &[(usize, usize)],
    slots: &mut [Option<(core::ptr::NonNull<u8>, usize)>],
) {
    for &(s, size) in ops {
        let p = &mut slots[s];
        match p.take() {
            // SAFETY: a live block of `a`.
            Some((q, req)) => unsafe { a.free_sized(q, req) }.expect("free"),
            None => *p = Some((std::hint::black_box(a.malloc(size).expect("malloc")), size)),
        }
    }
}

#[inline(never)]
fn threaded(heap: &Ptmalloc, ops: &[(usize, usize)], slots: &mut [(*mut u8, usize)]) {
    for &(s, size) in ops {
        let p = &mut slots[s];
        // SAFETY: blocks of `heap` freed with their layouts.
        unsafe {
            if p.0.is_null() {
                *p = (
                    std::hint::black_box(heap.alloc(Layout::from_size_align_unchecked(size, 8))),
                    size,
                );
            } else {
                heap.dealloc(p.0, Layout::from_size_align_unchecked(p.1, 8));
                p.0 = core::ptr::null_mut();
            }
        }
    }
}

fn glibc_drain(slots: &mut [*mut libc::c_void]) {
    for p in slots {
        // SAFETY: live blocks (or NULL) of malloc.
        unsafe { libc::free(*p) };
        *p = core::ptr::null_mut();
    }
}

fn arena_drain(
    a: &mut Arena<BrkRegion, OsPages>,
    slots: &mut [Option<(core::ptr::NonNull<u8>, usize)>],
) {
    for (q, req) in slots.iter_mut().filter_map(Option::take) {
        // SAFETY: a live block of `a`.
        unsafe { a.free_sized(q, req) }.expect("free");
    }
}

fn threaded_drain(heap: &Ptmalloc, slots: &mut [(*mut u8, usize)]) {
    for p in slots {
        if !p.0.is_null() {
            // SAFETY: a live block of `heap` with its layout.
            unsafe { heap.dealloc(p.0, Layout::from_size_align_unchecked(p.1, 8)) };
            p.0 = core::ptr::null_mut();
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let fresh = args.next().is_some_and(|a| a == "fresh");
    let ops = ops(n);
    let mut gslots = vec![core::ptr::null_mut::<libc::c_void>(); SLOTS];
    let mut a = Arena::new(BrkRegion::new(1 << 34), OsPages::new(), &Tunables::new());
    let mut aslots = vec![None; SLOTS];
    let heap = Ptmalloc::new();
    let mut pslots = vec![(core::ptr::null_mut::<u8>(), 0usize); SLOTS];
    let mut t = [Vec::new(), Vec::new(), Vec::new()];
    // One round of warm-up, then the measured rounds.
    for r in 0..=rounds {
        let t0 = cpu_ns();
        glibc(&ops, &mut gslots);
        if fresh {
            glibc_drain(&mut gslots);
        }
        let t1 = cpu_ns();
        arena(&mut a, &ops, &mut aslots);
        if fresh {
            arena_drain(&mut a, &mut aslots);
        }
        let t2 = cpu_ns();
        threaded(&heap, &ops, &mut pslots);
        if fresh {
            threaded_drain(&heap, &mut pslots);
        }
        let t3 = cpu_ns();
        if r > 0 {
            t[0].push(t1 - t0);
            t[1].push(t2 - t1);
            t[2].push(t3 - t2);
        }
    }
    let per = |v: u64| v as f64 / n as f64;
    let stat = |v: &mut Vec<u64>| {
        v.sort_unstable();
        (per(v[v.len() / 2]), per(v[0]))
    };
    let [g, am, pm] = t.each_mut().map(stat);
    println!(
        "{n} ops x {rounds} rounds, ns/op median (min): glibc {:.1} ({:.1}), \
         Arena {:.1} ({:.1}) = {:.2}x ({:.2}x) glibc, Ptmalloc {:.1} ({:.1}) = {:.2}x ({:.2}x) glibc",
        g.0,
        g.1,
        am.0,
        am.1,
        g.0 / am.0,
        g.1 / am.1,
        pm.0,
        pm.1,
        g.0 / pm.0,
        g.1 / pm.1
    );
}
