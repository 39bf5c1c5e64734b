//! Instructions per step on issue 12's workload, for callgrind: a churn of uniform 8-512 B
//! requests over 1,000 live blocks, one free and one allocation per step, through glibc's own
//! malloc, `Arena` (through `FreeSpaceManager`, as the workspace drives it) or `Ptmalloc` (as a
//! `GlobalAlloc`), or through nothing (`none`: the harness alone, to subtract).
//!
//! ```text
//! cargo build --release -p ptmalloc2 --example churn
//! valgrind --tool=callgrind --callgrind-out-file=cg.arena target/release/examples/churn arena 1000000
//! callgrind_annotate --inclusive=yes cg.arena | grep drive_   # inclusive cost of the driver
//! ```
//!
//! Each driver is out of line (`drive_*`), so its inclusive cost is the allocator's work plus
//! the loop; the `none` driver's is the loop alone. Instructions per step =
//! (driver - none) / steps.
//!
//! `churn time STEPS ROUNDS` times the three side by side instead: each round runs STEPS steps
//! through glibc, `Arena` and `Ptmalloc` in turn (each keeps its own 1,000 blocks across
//! rounds), on the thread's CPU clock, and prints the median ns per step of each and the ratios
//! to glibc (glibc's time over the model's: at least 1 means at most glibc's time).
//!
//! `churn remote BLOCKS ROUNDS` times remote frees (producer/consumer): one thread allocates
//! BLOCKS blocks (8-512 B) in batches of 1,000 and hands each batch to a second thread, which
//! frees them; wall time per block, glibc and `Ptmalloc` interleaved round by round.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::ptr::NonNull;

use allocator_traits::{BrkRegion, FreeSpaceManager, OsPages};
use ptmalloc2::{Arena, Ptmalloc, Tunables};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_ns;

const LIVE: usize = 1000;

/// `(slot, size)` for each step: a slot to free and refill, a size of 8..=512 bytes.
fn steps(n: usize) -> Vec<(u32, u32)> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x >> 16) as usize % LIVE;
            let size = 8 + (x >> 40) as usize % 505;
            (slot as u32, size as u32)
        })
        .collect()
}

fn layout(size: u32) -> Layout {
    // SAFETY: sizes up to 512, alignment 8.
    unsafe { Layout::from_size_align_unchecked(size as usize, 8) }
}

#[inline(never)]
fn drive_none(steps: &[(u32, u32)], slots: &mut [(usize, u32)]) {
    for &(s, size) in steps {
        let p = &mut slots[s as usize];
        black_box(p.0);
        p.0 = black_box(size as usize);
        p.1 = size;
    }
}

#[inline(never)]
fn drive_glibc(steps: &[(u32, u32)], slots: &mut [(usize, u32)]) {
    for &(s, size) in steps {
        let p = &mut slots[s as usize];
        // SAFETY: plain malloc/free of our own blocks.
        unsafe {
            libc::free(p.0 as *mut libc::c_void);
            p.0 = black_box(libc::malloc(size as usize)) as usize;
        }
        p.1 = size;
    }
}

#[inline(never)]
fn drive_arena(
    a: &mut Arena<BrkRegion, OsPages>,
    steps: &[(u32, u32)],
    slots: &mut [(usize, u32)],
) {
    for &(s, size) in steps {
        let p = &mut slots[s as usize];
        if let Some(q) = NonNull::new(p.0 as *mut u8) {
            // SAFETY: a live block of `a` with its layout.
            unsafe { a.deallocate(q, layout(p.1)) }.expect("free");
        }
        let b = a.allocate(layout(size)).expect("allocate");
        p.0 = black_box(b.cast::<u8>().as_ptr() as usize);
        p.1 = size;
    }
}

#[inline(never)]
fn drive_ptmalloc(heap: &Ptmalloc, steps: &[(u32, u32)], slots: &mut [(usize, u32)]) {
    for &(s, size) in steps {
        let p = &mut slots[s as usize];
        // SAFETY: blocks of `heap` with their layouts.
        unsafe {
            if p.0 != 0 {
                heap.dealloc(p.0 as *mut u8, layout(p.1));
            }
            p.0 = black_box(heap.alloc(layout(size))) as usize;
        }
        p.1 = size;
    }
}

/// `churn time STEPS ROUNDS`: the three allocators interleaved round by round.
fn time(n: usize, rounds: usize) {
    let fill: Vec<(u32, u32)> = (0..LIVE as u32).map(|i| (i, 8 + i % 505)).collect();
    let churn = steps(n);
    let mut a = Arena::new(BrkRegion::new(1 << 34), OsPages::new(), &Tunables::new());
    let heap = Ptmalloc::new();
    let mut slots = [
        vec![(0usize, 0u32); LIVE],
        vec![(0, 0); LIVE],
        vec![(0, 0); LIVE],
    ];
    drive_glibc(&fill, &mut slots[0]);
    drive_arena(&mut a, &fill, &mut slots[1]);
    drive_ptmalloc(&heap, &fill, &mut slots[2]);
    let mut t = [Vec::new(), Vec::new(), Vec::new()];
    for r in 0..=rounds {
        let t0 = cpu_ns();
        drive_glibc(&churn, &mut slots[0]);
        let t1 = cpu_ns();
        drive_arena(&mut a, &churn, &mut slots[1]);
        let t2 = cpu_ns();
        drive_ptmalloc(&heap, &churn, &mut slots[2]);
        let t3 = cpu_ns();
        if r > 0 {
            t[0].push(t1 - t0);
            t[1].push(t2 - t1);
            t[2].push(t3 - t2);
        }
    }
    let [g, am, pm] = t.map(|mut v| {
        v.sort_unstable();
        v[v.len() / 2] as f64 / n as f64
    });
    println!(
        "{n} steps x {rounds} rounds, {LIVE} live, median ns/step: glibc {g:.1}, Arena {am:.1} \
         ({:.2}x glibc's speed), Ptmalloc {pm:.1} ({:.2}x)",
        g / am,
        g / pm
    );
}

/// One producer/consumer round of `n` blocks through `alloc`/`free`: wall ns per block.
fn remote_round(
    n: usize,
    alloc: &(dyn Fn(usize) -> usize + Sync),
    free: &(dyn Fn(usize) + Sync),
) -> f64 {
    let sizes = steps(n);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(4);
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            for batch in rx {
                for p in batch {
                    free(p);
                }
            }
        });
        for chunk in sizes.chunks(LIVE) {
            let batch: Vec<usize> = chunk
                .iter()
                .map(|&(_, size)| alloc(size as usize))
                .collect();
            tx.send(batch).expect("consumer");
        }
        drop(tx);
    });
    t0.elapsed().as_nanos() as f64 / n as f64
}

/// `churn remote BLOCKS ROUNDS`.
fn remote(n: usize, rounds: usize) {
    let heap = Ptmalloc::new();
    // Blocks of one allocator each, freed once by the consumer.
    // SAFETY: any size may be asked of malloc.
    let g_alloc = |size: usize| unsafe { libc::malloc(size) as usize };
    // SAFETY: a live block of malloc, freed once.
    let g_free = |p: usize| unsafe { libc::free(p as *mut libc::c_void) };
    // SAFETY: sizes of 8..=512, alignment 8.
    let p_alloc = |size: usize| unsafe { heap.alloc(layout(size as u32)) as usize };
    // SAFETY: a live block of `heap`, freed once (Ptmalloc reads the size from the chunk).
    let p_free = |p: usize| unsafe { heap.dealloc(p as *mut u8, layout(8)) };
    let mut t = [Vec::new(), Vec::new()];
    for r in 0..=rounds {
        let g = remote_round(n, &g_alloc, &g_free);
        let p = remote_round(n, &p_alloc, &p_free);
        if r > 0 {
            t[0].push(g);
            t[1].push(p);
        }
    }
    let [g, p] = t.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    println!(
        "remote frees, {n} blocks x {rounds} rounds, median wall ns/block: glibc {g:.1}, \
         Ptmalloc {p:.1} ({:.2}x glibc's speed)",
        g / p
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "arena".into());
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    if which == "remote" {
        let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
        return remote(n, rounds);
    }
    if which == "time" {
        let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
        return time(n, rounds);
    }
    // The first LIVE steps fill every slot, then the churn.
    let fill: Vec<(u32, u32)> = (0..LIVE as u32).map(|i| (i, 8 + i % 505)).collect();
    let churn = steps(n);
    let mut slots = vec![(0usize, 0u32); LIVE];
    match which.as_str() {
        "none" => {
            drive_none(&fill, &mut slots);
            drive_none(&churn, &mut slots);
        }
        "glibc" => {
            drive_glibc(&fill, &mut slots);
            drive_glibc(&churn, &mut slots);
        }
        "arena" => {
            let mut a = Arena::new(BrkRegion::new(1 << 34), OsPages::new(), &Tunables::new());
            drive_arena(&mut a, &fill, &mut slots);
            drive_arena(&mut a, &churn, &mut slots);
        }
        "ptmalloc" => {
            let heap = Ptmalloc::new();
            drive_ptmalloc(&heap, &fill, &mut slots);
            drive_ptmalloc(&heap, &churn, &mut slots);
        }
        other => panic!("unknown driver {other} (none, glibc, arena, ptmalloc)"),
    }
    println!("{which}: {n} steps, {LIVE} live");
}
