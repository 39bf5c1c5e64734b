//! Fit: every fit policy (first, next, best and worst fit on the index; first and best fit on the
//! list, the reference) at 1 000, 10 000 and 100 000 live blocks, beside rlsf (a TLSF) and talc
//! in the same run, and glibc malloc as a reference for the access pattern.
//!
//! Each heap is first filled with `2 * live` blocks of uniform random sizes (8..=512 B) and every
//! other one is freed; then one step frees a random live block and allocates a new one of a
//! random size in its place: the live count stays at `live`. Every allocator sees the identical
//! operation sequence. Before any step is timed or counted, `40 * live` steps take the heap
//! from that checkerboard to its steady state (`warm_up`). The list mechanisms run at 1 000 and
//! 10 000 live blocks only (each step scans the free list).
//!
//! Times are the thread's CPU time (see `common/cpu_time.rs`).
//!
//! `cargo bench -p benches --bench fit`
//!
//! **Instructions per step**: with `FIT_STEPS_PROFILE=ALLOCATOR:LIVE:STEPS` set, the binary
//! skips criterion, prepares one heap as above, warms it up and runs `STEPS` steps in
//! `measured_steps`, so that
//!
//! ```text
//! FIT_STEPS_PROFILE=best-fit:100000:100000 valgrind --tool=callgrind \
//!     --toggle-collect='*measured_steps*' --callgrind-out-file=/dev/null target/release/deps/fit-HASH
//! ```
//!
//! counts only the steps (ALLOCATOR: any fit name such as `best-fit` or `first-fit:list`,
//! `rlsf`, `talc`, `system`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Duration;

use allocator_traits::{BoxedRegion, FreeSpaceManager, MemorySource};
use criterion::{BenchmarkId, Criterion};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

const REGION: usize = 1 << 28;
const LIVE: [usize; 3] = [1_000, 10_000, 100_000];
/// Warm-up steps per live block before any step is timed or counted (see `warm_up`).
const WARM_UP: u64 = 40;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn size(&mut self) -> usize {
        8 + (self.next() % 505) as usize
    }
}

/// The two operations the benchmark needs, for every heap.
trait Steps {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8>;
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout);
}

impl Steps for fit::FitHeap<BoxedRegion> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        self.allocate(layout).expect("room").cast()
    }
    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` is a live block of this heap allocated with `layout`.
        unsafe { self.deallocate(ptr, layout) }.expect("valid free")
    }
}

/// rlsf over a region of its own.
struct Rlsf {
    tlsf: rlsf::Tlsf<'static, u32, u32, 28, 32>,
    _region: BoxedRegion,
}

impl Rlsf {
    fn new() -> Self {
        let mut region = BoxedRegion::new(REGION).expect("region");
        let mem = region.acquire(REGION, 4096).expect("all");
        let mut tlsf = rlsf::Tlsf::new();
        // SAFETY: the region's memory is ours for as long as `_region` lives, used only here.
        unsafe { tlsf.insert_free_block_ptr(mem) };
        Rlsf {
            tlsf,
            _region: region,
        }
    }
}

impl Steps for Rlsf {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        self.tlsf.allocate(layout).expect("room")
    }
    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` is a live block of this heap allocated with `layout`.
        unsafe { self.tlsf.deallocate(ptr, layout.align()) }
    }
}

/// talc over a region of its own.
struct Talc {
    talc: talc::TalcCell<talc::source::Claim>,
    _region: BoxedRegion,
}

impl Talc {
    fn new() -> Self {
        let mut region = BoxedRegion::new(REGION).expect("region");
        let mem = region.acquire(REGION, 4096).expect("all");
        // SAFETY: as for rlsf.
        let claim = unsafe { talc::source::Claim::new(mem.cast::<u8>().as_ptr(), REGION) };
        Talc {
            talc: talc::TalcCell::new(claim),
            _region: region,
        }
    }
}

impl Steps for Talc {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { self.talc.alloc(layout) }).expect("room")
    }
    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated by this heap with `layout`.
        unsafe { self.talc.dealloc(ptr.as_ptr(), layout) }
    }
}

/// glibc malloc, called directly (a reference for the access pattern).
struct Glibc;

impl Steps for Glibc {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { System.alloc(layout) }).expect("room")
    }
    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { System.dealloc(ptr.as_ptr(), layout) }
    }
}

fn fit_heap(name: &str) -> fit::FitHeap<BoxedRegion> {
    let cfg: fit::Config = name.parse().expect("a fit name");
    fit::FitHeap::new(BoxedRegion::new(REGION).expect("region"), cfg)
}

fn prepare<H: Steps>(h: &mut H, live: usize, rng: &mut Rng) -> Vec<(NonNull<u8>, Layout)> {
    let mut all = Vec::with_capacity(2 * live);
    for _ in 0..2 * live {
        let l = Layout::from_size_align(rng.size(), 8).expect("layout");
        all.push((h.alloc(l), l));
    }
    let mut kept = Vec::with_capacity(live);
    for (i, (p, l)) in all.into_iter().enumerate() {
        if i % 2 == 0 {
            h.free(p, l);
        } else {
            kept.push((p, l));
        }
    }
    kept
}

/// `WARM_UP` times `blocks.len()` steps, uncounted and untimed: the heap leaves the
/// checkerboard `prepare` made (where a free merges both neighbours) for the steady state. The
/// instruction counts settle by then (best fit at 100 000 live: 522 per step after 1 times,
/// 451 after 10, 431 after 40 and 430 after 80).
fn warm_up<H: Steps>(h: &mut H, blocks: &mut [(NonNull<u8>, Layout)], rng: &mut Rng) {
    for _ in 0..WARM_UP * blocks.len() as u64 {
        one_step(h, blocks, rng);
    }
}

/// One step: frees a random live block and allocates a block of a random size in its place.
#[inline(always)]
fn one_step<H: Steps>(h: &mut H, blocks: &mut [(NonNull<u8>, Layout)], rng: &mut Rng) {
    let i = (rng.next() % blocks.len() as u64) as usize;
    let (p, l) = blocks[i];
    h.free(p, l);
    let nl = Layout::from_size_align(rng.size(), 8).expect("layout");
    let q = h.alloc(nl);
    blocks[i] = (black_box(q), nl);
}

fn bench_one<H: Steps>(
    c: &mut Criterion<CpuTime>,
    name: &str,
    lives: &[usize],
    make: impl Fn() -> H,
) {
    let mut g = c.benchmark_group("fit_steps");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for &live in lives {
        let mut h = make();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut blocks = prepare(&mut h, live, &mut rng);
        // Warmed in the routine, untimed, the first time criterion runs it: a benchmark its
        // filter skips is never run, and so never warmed.
        let mut warm = false;
        g.bench_with_input(BenchmarkId::new(name, live), &live, |b, _| {
            if !warm {
                warm_up(&mut h, &mut blocks, &mut rng);
                warm = true;
            }
            b.iter(|| one_step(&mut h, &mut blocks, &mut rng))
        });
        for (p, l) in blocks {
            h.free(p, l);
        }
    }
    g.finish();
}

/// The steps counted under callgrind (`--toggle-collect='*measured_steps*'`).
#[inline(never)]
fn measured_steps<H: Steps>(
    h: &mut H,
    blocks: &mut [(NonNull<u8>, Layout)],
    rng: &mut Rng,
    n: u64,
) {
    for _ in 0..n {
        one_step(h, blocks, rng);
    }
}

fn profile_one<H: Steps>(mut h: H, live: usize, steps: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut blocks = prepare(&mut h, live, &mut rng);
    warm_up(&mut h, &mut blocks, &mut rng);
    measured_steps(&mut h, &mut blocks, &mut rng, steps);
    for (p, l) in blocks {
        h.free(p, l);
    }
    println!("{steps} steps at {live} live blocks done");
}

/// `ALLOCATOR:LIVE:STEPS`, see the module docs (a fit name may hold colons itself).
fn profile(spec: &str) {
    let mut parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    parts.reverse();
    let [name, live, steps] = parts[..] else {
        panic!("FIT_STEPS_PROFILE wants ALLOCATOR:LIVE:STEPS, got {spec}");
    };
    let live: usize = live.parse().expect("LIVE");
    let steps: u64 = steps.parse().expect("STEPS");
    match name {
        "rlsf" => profile_one(Rlsf::new(), live, steps),
        "talc" => profile_one(Talc::new(), live, steps),
        "system" => profile_one(Glibc, live, steps),
        fit => profile_one(fit_heap(fit), live, steps),
    }
}

fn steps(c: &mut Criterion<CpuTime>) {
    bench_one(c, "rlsf", &LIVE, Rlsf::new);
    bench_one(c, "talc", &LIVE, Talc::new);
    for name in ["best-fit", "first-fit", "next-fit", "worst-fit"] {
        bench_one(c, name, &LIVE, || fit_heap(name));
    }
    for name in ["best-fit:list", "first-fit:list"] {
        bench_one(c, name, &LIVE[..2], || fit_heap(name));
    }
    bench_one(c, "system", &LIVE, || Glibc);
}

fn main() {
    if let Ok(spec) = std::env::var("FIT_STEPS_PROFILE") {
        profile(&spec);
        return;
    }
    let mut c = Criterion::default()
        .with_measurement(CpuTime)
        .configure_from_args();
    steps(&mut c);
    c.final_summary();
}
