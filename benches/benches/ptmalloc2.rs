//! ptmalloc2 against glibc's own malloc, side by side in one run: churn over 4096 slots (free a
//! slot if live, else allocate into it), sizes mostly 8 B..1 KiB with some up to 17 KiB, through
//! the single-arena model (`Arena`, C interface), the threaded front (`Ptmalloc`) and glibc, on
//! 1 and 2 threads (each thread its own slots).
//!
//! Times are CPU time (see `common/cpu_time.rs`): the benchmark thread's, and on 2 threads the
//! mean of the two workers' (each runs `n` operations, so 2 threads report `2n` elements per
//! that time). On the shared, loaded machine wall time mostly measured the other processes.
//!
//! ```text
//! cargo bench -p benches --bench ptmalloc2
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

use allocator_traits::{BrkRegion, OsPages};
use criterion::{Criterion, Throughput};
use ptmalloc2::{Arena, Ptmalloc, Tunables};

static PT: Ptmalloc = Ptmalloc::new();
const SLOTS: usize = 4096;

fn ops(n: usize, seed: u64) -> Vec<(u16, u32)> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = ((x >> 20) as usize % SLOTS) as u16;
            let size = match x % 16 {
                0..=9 => 8 + (x >> 40) % 120,
                10..=14 => 128 + (x >> 40) % 900,
                _ => 1024 + (x >> 40) % 16000,
            };
            (slot, size as u32)
        })
        .collect()
}

fn glibc(ops: &[(u16, u32)]) {
    let mut slots = vec![core::ptr::null_mut::<libc::c_void>(); SLOTS];
    for &(s, size) in ops {
        let p = &mut slots[s as usize];
        // SAFETY: plain malloc/free of our own blocks.
        unsafe {
            if p.is_null() {
                *p = black_box(libc::malloc(size as usize));
            } else {
                libc::free(*p);
                *p = core::ptr::null_mut();
            }
        }
    }
    for p in slots {
        // SAFETY: live blocks (or NULL).
        unsafe { libc::free(p) };
    }
}

fn ptmalloc(ops: &[(u16, u32)]) {
    let mut slots = vec![(core::ptr::null_mut::<u8>(), 0usize); SLOTS];
    for &(s, size) in ops {
        let p = &mut slots[s as usize];
        // SAFETY: blocks of `PT` freed with their layouts.
        unsafe {
            if p.0.is_null() {
                *p = (
                    black_box(PT.alloc(Layout::from_size_align_unchecked(size as usize, 8))),
                    size as usize,
                );
            } else {
                PT.dealloc(p.0, Layout::from_size_align_unchecked(p.1, 8));
                p.0 = core::ptr::null_mut();
            }
        }
    }
    for (p, size) in slots {
        if !p.is_null() {
            // SAFETY: live blocks of `PT`.
            unsafe { PT.dealloc(p, Layout::from_size_align_unchecked(size, 8)) };
        }
    }
}

fn arena(a: &mut Arena<BrkRegion, OsPages>, ops: &[(u16, u32)]) {
    let mut slots = vec![None; SLOTS];
    for &(s, size) in ops {
        let p = &mut slots[s as usize];
        match p.take() {
            // SAFETY: a live block of `a`.
            Some(q) => unsafe { a.free_sized(q, 0) }.expect("free"),
            None => *p = Some(black_box(a.malloc(size as usize).expect("malloc"))),
        }
    }
    for q in slots.into_iter().flatten() {
        // SAFETY: live blocks of `a`.
        unsafe { a.free_sized(q, 0) }.expect("free");
    }
}

/// Runs `f` `iters` times on each of `threads` threads at once; the mean of their CPU times.
fn threaded(threads: usize, iters: u64, n: usize, f: fn(&[(u16, u32)])) -> u64 {
    let per: Vec<Vec<(u16, u32)>> = (0..threads)
        .map(|t| ops(n, 0x9e37_79b9 + t as u64))
        .collect();
    let total: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = per
            .iter()
            .map(|o| {
                sc.spawn(move || {
                    let start = cpu_time::now_ns();
                    for _ in 0..iters {
                        f(o)
                    }
                    cpu_time::now_ns() - start
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("worker")).sum()
    });
    total / threads as u64
}

fn main() {
    let mut c = Criterion::default()
        .with_measurement(CpuTime)
        .configure_from_args();
    let n = 100_000;
    let o = ops(n, 0x9e37_79b9);
    let mut g = c.benchmark_group("ptmalloc2 churn 1 thread");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("system (glibc 2.36)", |b| b.iter(|| glibc(&o)));
    let mut a = Arena::new(BrkRegion::new(1 << 34), OsPages::new(), &Tunables::new());
    g.bench_function("ptmalloc2 Arena", |b| b.iter(|| arena(&mut a, &o)));
    g.bench_function("ptmalloc2 Ptmalloc", |b| b.iter(|| ptmalloc(&o)));
    g.finish();
    let mut g = c.benchmark_group("ptmalloc2 churn 2 threads");
    g.throughput(Throughput::Elements(2 * n as u64));
    g.bench_function("system (glibc 2.36)", |b| {
        b.iter_custom(|it| threaded(2, it, n, glibc))
    });
    g.bench_function("ptmalloc2 Ptmalloc", |b| {
        b.iter_custom(|it| threaded(2, it, n, ptmalloc))
    });
    g.finish();
    c.final_summary();
}
