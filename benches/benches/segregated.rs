//! Segregated lists: small sizes through the `&mut` API, beside the system allocator and
//! mimalloc (through `GlobalAlloc`), in the same run.
//!
//! * `pair/SIZE`: allocate SIZE bytes and free the block at once (the fast path of every size
//!   class allocator);
//! * `churn/1000`: 1 000 live blocks of random small sizes (8..=512 B); each iteration frees a
//!   random one and allocates a new one of a random size in its place.
//!
//! Times are the thread's CPU time (see `common/cpu_time.rs`).
//!
//! `cargo bench -p benches --bench segregated`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Duration;

use allocator_traits::{BoxedRegion, FreeSpaceManager};
use buddy::Buddy;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

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

impl Pairs for Segregated<Buddy<BoxedRegion>> {
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

fn segregated_heap() -> Segregated<Buddy<BoxedRegion>> {
    Segregated::new(
        Buddy::try_new(
            BoxedRegion::new(REGION).expect("region"),
            buddy::Config::new(REGION),
        )
        .expect("pages"),
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

fn churn<H: Pairs>(g: &mut criterion::BenchmarkGroup<'_, CpuTime>, name: &str, h: &mut H) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut live: Vec<(NonNull<u8>, Layout)> = (0..1000)
        .map(|_| {
            let l = Layout::from_size_align(rng.size(), 8).expect("layout");
            (h.alloc(l), l)
        })
        .collect();
    g.bench_function(BenchmarkId::new(format!("{name}/churn"), 1000), |b| {
        b.iter(|| {
            let i = (rng.next() % live.len() as u64) as usize;
            let (p, l) = live[i];
            h.free(p, l);
            let nl = Layout::from_size_align(rng.size(), 8).expect("layout");
            live[i] = (black_box(h.alloc(nl)), nl);
        })
    });
    for (p, l) in live {
        h.free(p, l);
    }
}

fn small(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("segregated_small");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    let mut seg = segregated_heap();
    pair(&mut g, "segregated", &mut seg);
    pair(&mut g, "system", &mut Global(System));
    pair(&mut g, "mimalloc", &mut Global(MiMalloc));
    churn(&mut g, "segregated", &mut seg);
    churn(&mut g, "system", &mut Global(System));
    churn(&mut g, "mimalloc", &mut Global(MiMalloc));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = small
}
criterion_main!(benches);
