//! Buddy: alloc+free pairs at 100, 1 000, 10 000 and 100 000 live blocks, beside
//! `buddy_system_allocator` (whose free scans its free list for the buddy).
//!
//! Each heap is first filled with `2 * live` blocks of random sizes (16..=512 B), every other
//! one is freed (so the free lists are long and fragmented), and then one iteration frees a
//! random live block and allocates a new one of a random size in its place: the live count stays
//! at `live`.
//!
//! Times are the thread's CPU time (see `common/cpu_time.rs`).
//!
//! `cargo bench -p benches --bench buddy`

use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Duration;

use allocator_traits::{BoxedRegion, FreeSpaceManager};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

const REGION: usize = 1 << 28;
const LIVE: [usize; 4] = [100, 1_000, 10_000, 100_000];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn size(&mut self) -> usize {
        16 + (self.next() % 497) as usize
    }
}

/// The two operations the benchmark needs, for both heaps.
trait Pairs {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8>;
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout);
}

impl Pairs for buddy::Buddy<BoxedRegion> {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        self.allocate(layout).expect("room").cast()
    }
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` is a live block of this heap allocated with `layout`.
        unsafe { self.deallocate(ptr, layout) }.expect("valid free")
    }
}

struct Bsa {
    heap: buddy_system_allocator::Heap<32>,
    _region: BoxedRegion,
}

impl Bsa {
    fn new() -> Self {
        let mut region = BoxedRegion::new(REGION).expect("region");
        let mem = allocator_traits::MemorySource::acquire(&mut region, REGION, 4096).expect("all");
        let mut heap = buddy_system_allocator::Heap::<32>::empty();
        // SAFETY: the region's memory is ours for as long as `_region` lives, used only here.
        unsafe { heap.init(mem.cast::<u8>().as_ptr() as usize, REGION) };
        Bsa {
            heap,
            _region: region,
        }
    }
}

impl Pairs for Bsa {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        self.heap.alloc(layout).expect("room")
    }
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` is a live block of this heap allocated with `layout`.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

fn prepare<H: Pairs>(h: &mut H, live: usize, rng: &mut Rng) -> Vec<(NonNull<u8>, Layout)> {
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

fn bench_one<H: Pairs>(c: &mut Criterion<CpuTime>, group: &str, name: &str, make: impl Fn() -> H) {
    let mut g = c.benchmark_group(group);
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for live in LIVE {
        let mut h = make();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut blocks = prepare(&mut h, live, &mut rng);
        g.bench_with_input(BenchmarkId::new(name, live), &live, |b, _| {
            b.iter(|| {
                let i = (rng.next() % blocks.len() as u64) as usize;
                let (p, l) = blocks[i];
                h.free(p, l);
                let nl = Layout::from_size_align(rng.size(), 8).expect("layout");
                let q = h.alloc(nl);
                blocks[i] = (black_box(q), nl);
            })
        });
        for (p, l) in blocks {
            h.free(p, l);
        }
    }
    g.finish();
}

fn pairs(c: &mut Criterion<CpuTime>) {
    bench_one(c, "buddy_pairs", "buddy", || {
        buddy::Buddy::try_new(
            BoxedRegion::new(REGION).expect("region"),
            buddy::Config::new(REGION),
        )
        .expect("heap")
    });
    bench_one(c, "buddy_pairs", "buddy_system_allocator", Bsa::new);
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = pairs
}
criterion_main!(benches);
