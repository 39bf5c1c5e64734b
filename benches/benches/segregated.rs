//! Segregated lists: small sizes through the `&mut` API, beside the system allocator and
//! mimalloc (through `GlobalAlloc`), in the same run.
//!
//! * `pair/SIZE`: allocate SIZE bytes and free the block at once (the fast path of every size
//!   class allocator);
//! * `churn/LIVE` (1 000 and 100 000): LIVE live blocks of random small sizes (8..=512 B); each
//!   iteration frees a random one and allocates a new one of a random size in its place.
//!
//! Segregated runs over both page levels: best fit (`fit`, the default composition) and the
//! buddy system (`segregated:buddy`), and without bad-free detection (`segregated:unchecked`,
//! `Segregated::unchecked` over best fit). Times are the thread's CPU time (see
//! `common/cpu_time.rs`).
//!
//! `cargo bench -p benches --bench segregated`
//!
//! **Instruction counts**: with `SEGREGATED_CHURN_PROFILE=ALLOCATOR:LIVE:STEPS` set, the binary
//! skips criterion, fills one heap with LIVE blocks, runs LIVE uncounted steps and then STEPS
//! steps of the churn in `measured_steps`, so that
//!
//! ```text
//! SEGREGATED_CHURN_PROFILE=seg-fit:1000:100000 valgrind --tool=callgrind \
//!     --toggle-collect='*measured_steps*' --callgrind-out-file=/dev/null target/release/deps/segregated-HASH
//! ```
//!
//! counts only the steps (ALLOCATOR: `seg-fit`, `seg-buddy`, `seg-unchecked`, `mimalloc`, `system`; the loop's
//! own instructions are those of `none`, which allocates nothing).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Duration;

use allocator_traits::{BoxedRegion, FreeSpaceManager};
use buddy::Buddy;
use criterion::{BenchmarkId, Criterion};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;
use mimalloc::MiMalloc;
use segregated::Segregated;

const REGION: usize = 1 << 26;

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

trait Pairs {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8>;
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout);
}

impl<L: FreeSpaceManager, const C: bool> Pairs for Segregated<L, C> {
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

/// No allocator: the loop's own cost (a fixed fake pointer).
struct NoAlloc;

impl Pairs for NoAlloc {
    #[inline]
    fn alloc(&mut self, _layout: Layout) -> NonNull<u8> {
        NonNull::dangling()
    }
    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, _layout: Layout) {
        black_box(ptr);
    }
}

/// A `GlobalAlloc` called directly.
struct Global<A: GlobalAlloc>(A);

impl<A: GlobalAlloc> Pairs for Global<A> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { self.0.alloc(layout) }).expect("room")
    }
    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
    }
}

/// `segregated:buddy`: the buddy system as the page level, grown 1 MiB at a time (as the
/// registry builds it).
fn segregated_heap() -> Segregated<Buddy<BoxedRegion>> {
    Segregated::new(Buddy::new(
        BoxedRegion::new(REGION).expect("region"),
        buddy::Config::new(REGION).grow_by(1 << 20),
    ))
}

/// `segregated`: best fit (`fit`) as the page level, the default composition.
fn segregated_fit() -> Segregated<segregated::BestFit<BoxedRegion>> {
    Segregated::best_fit(BoxedRegion::new(REGION).expect("region"))
}

/// `segregated:unchecked`: the default composition without bad-free detection
/// (`Segregated::unchecked`).
fn segregated_unchecked() -> Segregated<segregated::BestFit<BoxedRegion>, false> {
    Segregated::unchecked(
        &segregated::GO,
        segregated::Config::DEFAULT,
        fit::FitHeap::new(
            BoxedRegion::new(REGION).expect("region"),
            fit::Config::best_fit(),
        ),
    )
}

fn pair<H: Pairs>(g: &mut criterion::BenchmarkGroup<'_, CpuTime>, name: &str, h: &mut H) {
    for size in [8usize, 16, 32, 64, 128, 256, 512] {
        let l = Layout::from_size_align(size, 8).expect("layout");
        g.bench_with_input(
            BenchmarkId::new(format!("{name}/pair"), size),
            &size,
            |b, _| {
                b.iter(|| {
                    let p = h.alloc(black_box(l));
                    h.free(black_box(p), l);
                })
            },
        );
    }
}

/// `n` live blocks of random sizes.
fn fill<H: Pairs>(h: &mut H, rng: &mut Rng, n: usize) -> Vec<(NonNull<u8>, Layout)> {
    (0..n)
        .map(|_| {
            let l = Layout::from_size_align(rng.size(), 8).expect("layout");
            (h.alloc(l), l)
        })
        .collect()
}

/// One churn step: free a random live block, allocate a random size in its place.
#[inline(always)]
fn step<H: Pairs>(h: &mut H, rng: &mut Rng, live: &mut [(NonNull<u8>, Layout)]) {
    let i = (rng.next() % live.len() as u64) as usize;
    let (p, l) = live[i];
    h.free(p, l);
    let nl = Layout::from_size_align(rng.size(), 8).expect("layout");
    live[i] = (black_box(h.alloc(nl)), nl);
}

fn churn<H: Pairs>(
    g: &mut criterion::BenchmarkGroup<'_, CpuTime>,
    name: &str,
    h: &mut H,
    live_blocks: usize,
) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut live = fill(h, &mut rng, live_blocks);
    g.bench_function(
        BenchmarkId::new(format!("{name}/churn"), live_blocks),
        |b| b.iter(|| step(h, &mut rng, &mut live)),
    );
    for (p, l) in live {
        h.free(p, l);
    }
}

/// The steps counted under callgrind (`--toggle-collect='*measured_steps*'`).
#[inline(never)]
fn measured_steps<H: Pairs>(h: &mut H, rng: &mut Rng, live: &mut [(NonNull<u8>, Layout)], n: u64) {
    for _ in 0..n {
        step(h, rng, live);
    }
}

fn profile_one<H: Pairs>(mut h: H, live_blocks: usize, steps: u64) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut live = fill(&mut h, &mut rng, live_blocks);
    for _ in 0..live_blocks {
        step(&mut h, &mut rng, &mut live);
    }
    measured_steps(&mut h, &mut rng, &mut live, steps);
    for (p, l) in live {
        h.free(p, l);
    }
    println!("{steps} steps at {live_blocks} live blocks done");
}

/// `ALLOCATOR:LIVE:STEPS`, see the module docs.
fn profile(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [name, live, steps] = parts[..] else {
        panic!("SEGREGATED_CHURN_PROFILE wants ALLOCATOR:LIVE:STEPS, got {spec}");
    };
    let live: usize = live.parse().expect("LIVE");
    let steps: u64 = steps.parse().expect("STEPS");
    match name {
        "seg-fit" => profile_one(segregated_fit(), live, steps),
        "seg-buddy" => profile_one(segregated_heap(), live, steps),
        "seg-unchecked" => profile_one(segregated_unchecked(), live, steps),
        "mimalloc" => profile_one(Global(MiMalloc), live, steps),
        "system" => profile_one(Global(System), live, steps),
        "none" => profile_one(NoAlloc, live, steps),
        other => panic!("unknown allocator {other}"),
    }
}

fn small(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("segregated_small");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    let mut seg = segregated_heap();
    pair(&mut g, "segregated:buddy", &mut seg);
    pair(&mut g, "system", &mut Global(System));
    pair(&mut g, "mimalloc", &mut Global(MiMalloc));
    for live in [1000, 100_000] {
        churn(&mut g, "segregated:buddy", &mut segregated_heap(), live);
        churn(&mut g, "segregated", &mut segregated_fit(), live);
        churn(
            &mut g,
            "segregated:unchecked",
            &mut segregated_unchecked(),
            live,
        );
        churn(&mut g, "system", &mut Global(System), live);
        churn(&mut g, "mimalloc", &mut Global(MiMalloc), live);
    }
    g.finish();
}

fn main() {
    if let Ok(spec) = std::env::var("SEGREGATED_CHURN_PROFILE") {
        profile(&spec);
        return;
    }
    let mut c = Criterion::default()
        .with_measurement(CpuTime)
        .configure_from_args();
    small(&mut c);
    c.final_summary();
}
