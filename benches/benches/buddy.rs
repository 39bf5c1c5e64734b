//! Buddy: alloc+free pairs at 100, 1 000, 10 000 and 100 000 live blocks, beside
//! `buddy_system_allocator` (whose free scans its free list for the buddy) and, as reference
//! peers that show what this access pattern costs any allocator, the system allocator (glibc
//! malloc) and mimalloc doing the identical operation sequence.
//!
//! Each heap is first filled with `2 * live` blocks of random sizes (16..=512 B), every other
//! one is freed (so the free lists are long and fragmented), and then one iteration frees a
//! random live block and allocates a new one of a random size in its place: the live count stays
//! at `live`. At 100 000 live blocks the pairs touch random places in tens of megabytes, so part
//! of any growth with `live` is the memory hierarchy (cache and TLB misses), not the algorithm.
//!
//! `buddy_system_allocator` is not run at 100 000 live blocks: its setup (100 000 frees, each
//! scanning a free list of up to 100 000 blocks) did not finish in 20 minutes.
//!
//! Times are the thread's CPU time (see `common/cpu_time.rs`).
//!
//! `cargo bench -p benches --bench buddy`
//!
//! **Instruction and cache-miss counts** (no hardware counters on the benchmark machine): with
//! `BUDDY_PAIRS_PROFILE=ALLOCATOR:LIVE:PAIRS` set, the binary skips criterion, prepares one heap
//! as above and runs `PAIRS` pairs in `measured_pairs`, so that
//!
//! ```text
//! BUDDY_PAIRS_PROFILE=buddy:100000:100000 valgrind --tool=callgrind --cache-sim=yes \
//!     --toggle-collect='*measured_pairs*' --callgrind-out-file=/dev/null target/release/deps/buddy-HASH
//! ```
//!
//! counts only the pairs (ALLOCATOR: `buddy`, `bsa`, `system`, `mimalloc`; the loop's own
//! instructions are those of `none`, which allocates nothing).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Duration;

use allocator_traits::{BoxedRegion, FreeSpaceManager};
use criterion::{BenchmarkId, Criterion};
use mimalloc::MiMalloc;

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

/// No allocator: the loop's own cost under callgrind (`none`), to subtract from the others'.
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

/// A `GlobalAlloc` called directly (a reference peer).
struct Global<A: GlobalAlloc>(A);

impl<A: GlobalAlloc> Pairs for Global<A> {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { self.0.alloc(layout) }).expect("room")
    }
    fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
    }
}

fn buddy_heap() -> buddy::Buddy<BoxedRegion> {
    buddy::Buddy::try_new(
        BoxedRegion::new(REGION).expect("region"),
        buddy::Config::new(REGION),
    )
    .expect("heap")
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

/// One pair: frees a random live block and allocates a block of a random size in its place.
#[inline(always)]
fn one_pair<H: Pairs>(h: &mut H, blocks: &mut [(NonNull<u8>, Layout)], rng: &mut Rng) {
    let i = (rng.next() % blocks.len() as u64) as usize;
    let (p, l) = blocks[i];
    h.free(p, l);
    let nl = Layout::from_size_align(rng.size(), 8).expect("layout");
    let q = h.alloc(nl);
    blocks[i] = (black_box(q), nl);
}

fn bench_one<H: Pairs>(
    c: &mut Criterion<CpuTime>,
    group: &str,
    name: &str,
    lives: &[usize],
    make: impl Fn() -> H,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &live in lives {
        let mut h = make();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut blocks = prepare(&mut h, live, &mut rng);
        g.bench_with_input(BenchmarkId::new(name, live), &live, |b, _| {
            b.iter(|| one_pair(&mut h, &mut blocks, &mut rng))
        });
        for (p, l) in blocks {
            h.free(p, l);
        }
    }
    g.finish();
}

/// The pairs counted under callgrind (`--toggle-collect='*measured_pairs*'`).
#[inline(never)]
fn measured_pairs<H: Pairs>(
    h: &mut H,
    blocks: &mut [(NonNull<u8>, Layout)],
    rng: &mut Rng,
    n: u64,
) {
    for _ in 0..n {
        one_pair(h, blocks, rng);
    }
}

fn profile_one<H: Pairs>(mut h: H, live: usize, pairs: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut blocks = prepare(&mut h, live, &mut rng);
    // Warm-up pairs, not counted, as criterion's warm-up.
    for _ in 0..pairs.min(live as u64) {
        one_pair(&mut h, &mut blocks, &mut rng);
    }
    measured_pairs(&mut h, &mut blocks, &mut rng, pairs);
    for (p, l) in blocks {
        h.free(p, l);
    }
    println!("{pairs} pairs at {live} live blocks done");
}

/// `ALLOCATOR:LIVE:PAIRS`, see the module docs.
fn profile(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [name, live, pairs] = parts[..] else {
        panic!("BUDDY_PAIRS_PROFILE wants ALLOCATOR:LIVE:PAIRS, got {spec}");
    };
    let live: usize = live.parse().expect("LIVE");
    let pairs: u64 = pairs.parse().expect("PAIRS");
    match name {
        "buddy" => profile_one(buddy_heap(), live, pairs),
        "bsa" => profile_one(Bsa::new(), live, pairs),
        "system" => profile_one(Global(System), live, pairs),
        "mimalloc" => profile_one(Global(MiMalloc), live, pairs),
        "none" => profile_one(NoAlloc, live, pairs),
        other => panic!("unknown allocator {other}"),
    }
}

fn pairs(c: &mut Criterion<CpuTime>) {
    bench_one(c, "buddy_pairs", "buddy", &LIVE, buddy_heap);
    // Not at 100 000: see the module docs.
    bench_one(
        c,
        "buddy_pairs",
        "buddy_system_allocator",
        &LIVE[..3],
        Bsa::new,
    );
    bench_one(c, "buddy_pairs", "system", &LIVE, || Global(System));
    bench_one(c, "buddy_pairs", "mimalloc", &LIVE, || Global(MiMalloc));
}

fn main() {
    if let Ok(spec) = std::env::var("BUDDY_PAIRS_PROFILE") {
        profile(&spec);
        return;
    }
    let mut c = Criterion::default()
        .with_measurement(CpuTime)
        .configure_from_args();
    pairs(&mut c);
    c.final_summary();
}
