//! Offset managers: fit's policies over offsets (`fit::offsets::FitOffsets`, on the index),
//! segregated size classes over offsets (`segregated::offsets::SegregatedOffsets`) and the binary
//! buddy system over offsets (`buddy::offsets::BuddyOffsets`, on the pointer heap's bitmaps) beside
//! the `offset-allocator` crate (Aaltonen's OffsetAllocator: 256 bins of a small float, O(1),
//! approximate fit) in the same run.
//!
//! * **Time** (criterion, group `offset_steps`): a 256 MiB space is filled with `2 * live` ranges
//!   of uniform 8-512 B, every other one freed, then one step frees a random live range and
//!   allocates a random size in its place (live stays at `live`: 1 000, 10 000, 100 000). Every
//!   manager sees the identical sequence. Times are the thread's CPU time.
//! * **Space** (`OFFSETS_SPACE=1`, no criterion): after the same preparation, the largest request
//!   that still succeeds (a binary search by allocate and free); and the recorded traces of
//!   `traces/` replayed as offsets (malloc, calloc and memalign place their size, realloc places
//!   the new size then frees the old range, free frees), with Johnstone and Wilson's #4 = peak
//!   footprint / peak live bytes - 1, the footprint being the end of the highest live range.
//! * **Instructions** (`OFFSETS_PROFILE=NAME:LIVE:STEPS`): one prepared space and `STEPS` steps
//!   in `measured_steps`, for `valgrind --tool=callgrind --toggle-collect='*measured_steps*'`.
//!
//! ```text
//! cargo bench -p benches --bench offsets
//! OFFSETS_SPACE=1 cargo bench -p benches --bench offsets
//! ```
//!
//! Names: `offset-allocator`, `segregated/go` (Go's classes, one empty span kept per class, over
//! best fit with 16-byte granules), `buddy/mN` (the buddy system with N-byte smallest blocks,
//! `buddy/m16`), or a fit name with `/gN` for a granule of N bytes (`best-fit/g16`,
//! `best-fit/g1`). `OFFSETS_MANAGERS=a,b,...` restricts a time or space run.

use std::hint::black_box;
use std::time::Duration;

use allocator_traits::OffsetManager;
use allocator_traits::offset::largest_request;
use buddy::offsets::BuddyOffsets;
use criterion::{BenchmarkId, Criterion};
use fit::offsets::FitOffsets;
use segregated::offsets::SegregatedOffsets;

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

const SPACE: usize = 256 << 20;
const LIVE: [usize; 3] = [1_000, 10_000, 100_000];
/// What the time and space runs compare.
const MANAGERS: [&str; 8] = [
    "offset-allocator",
    "segregated/go",
    "best-fit/g16",
    "best-fit/g1",
    "first-fit/g16",
    "next-fit/g16",
    "worst-fit/g16",
    "buddy/m16",
];

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

/// What the benchmark needs of an offset manager.
trait Offsets {
    type Handle: Copy;
    fn alloc(&mut self, size: usize) -> Option<Self::Handle>;
    fn free(&mut self, h: Self::Handle);
    /// Where the range starts and ends (its bytes as placed).
    fn span(&self, h: Self::Handle, size: usize) -> (usize, usize);
    /// The largest request that still succeeds.
    fn largest(&mut self) -> usize;
}

/// `Offsets` for an [`OffsetManager`]: alignment 1, the bytes held, `largest_request`.
macro_rules! offset_manager {
    ($t:ty) => {
        impl Offsets for $t {
            type Handle = usize;
            #[inline]
            fn alloc(&mut self, size: usize) -> Option<usize> {
                self.allocate(size, 1).ok()
            }
            #[inline]
            fn free(&mut self, h: usize) {
                OffsetManager::free(self, h).expect("a live range");
            }
            fn span(&self, h: usize, _size: usize) -> (usize, usize) {
                (h, h + self.held(h).expect("live"))
            }
            fn largest(&mut self) -> usize {
                largest_request(self, 1)
            }
        }
    };
}
offset_manager!(FitOffsets);
offset_manager!(SegregatedOffsets);
offset_manager!(BuddyOffsets);

impl Offsets for offset_allocator::Allocator {
    type Handle = offset_allocator::Allocation;
    #[inline]
    fn alloc(&mut self, size: usize) -> Option<Self::Handle> {
        self.allocate(u32::try_from(size).ok()?)
    }
    #[inline]
    fn free(&mut self, h: Self::Handle) {
        offset_allocator::Allocator::free(self, h)
    }
    fn span(&self, h: Self::Handle, size: usize) -> (usize, usize) {
        (h.offset as usize, h.offset as usize + size)
    }
    fn largest(&mut self) -> usize {
        largest(self)
    }
}

/// Binds `$make` to the constructor of the manager named `$name` and evaluates `$body` (each
/// manager's type its own code): the one place that knows the names.
macro_rules! with_manager {
    ($name:expr, |$make:ident| $body:expr) => {
        match $name {
            "offset-allocator" => {
                let $make = offset_allocator;
                $body
            }
            "segregated/go" => {
                let $make = || SegregatedOffsets::new(0..SPACE).expect("a valid space");
                $body
            }
            buddy if buddy.starts_with("buddy/") => {
                let $make = || buddy_offsets(buddy);
                $body
            }
            fit => {
                let $make = || fit_offsets(fit);
                $body
            }
        }
    };
}

fn buddy_offsets(name: &str) -> BuddyOffsets {
    let min = name.strip_prefix("buddy/m").expect("buddy/mN");
    BuddyOffsets::new(0..SPACE, min.parse().expect("min block")).expect("a buddy space")
}

fn fit_offsets(name: &str) -> FitOffsets {
    let (policy, granule) = name.split_once("/g").expect("NAME/gN");
    let cfg: fit::Config = policy.parse().expect("a fit name");
    FitOffsets::new(0..SPACE, cfg, granule.parse().expect("granule")).expect("an index config")
}

fn offset_allocator() -> offset_allocator::Allocator {
    // Room for the preparation's 200 000 ranges and their free neighbours.
    offset_allocator::Allocator::with_max_allocs(SPACE as u32, 1 << 20)
}

fn prepare<H: Offsets>(h: &mut H, live: usize, rng: &mut Rng) -> Vec<H::Handle> {
    let all: Vec<H::Handle> = (0..2 * live)
        .map(|_| h.alloc(rng.size()).expect("room"))
        .collect();
    let mut kept = Vec::with_capacity(live);
    for (i, a) in all.into_iter().enumerate() {
        if i % 2 == 0 {
            h.free(a);
        } else {
            kept.push(a);
        }
    }
    kept
}

#[inline(always)]
fn one_step<H: Offsets>(h: &mut H, live: &mut [H::Handle], rng: &mut Rng) {
    let i = (rng.next() % live.len() as u64) as usize;
    h.free(live[i]);
    let size = rng.size();
    live[i] = black_box(h.alloc(size).expect("room"));
}

fn bench_one<H: Offsets>(c: &mut Criterion<CpuTime>, name: &str, make: impl Fn() -> H) {
    let mut g = c.benchmark_group("offset_steps");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for live in LIVE {
        let mut h = make();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut ranges = prepare(&mut h, live, &mut rng);
        g.bench_with_input(BenchmarkId::new(name, live), &live, |b, _| {
            b.iter(|| one_step(&mut h, &mut ranges, &mut rng))
        });
    }
    g.finish();
}

/// The steps counted under callgrind.
#[inline(never)]
fn measured_steps<H: Offsets>(h: &mut H, live: &mut [H::Handle], rng: &mut Rng, n: u64) {
    for _ in 0..n {
        one_step(h, live, rng);
    }
}

fn profile_one<H: Offsets>(mut h: H, live: usize, steps: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ranges = prepare(&mut h, live, &mut rng);
    for _ in 0..steps.min(live as u64) {
        one_step(&mut h, &mut ranges, &mut rng);
    }
    measured_steps(&mut h, &mut ranges, &mut rng, steps);
    println!("{steps} steps at {live} live ranges done");
}

fn profile(spec: &str) {
    let mut parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    parts.reverse();
    let [name, live, steps] = parts[..] else {
        panic!("OFFSETS_PROFILE wants NAME:LIVE:STEPS, got {spec}");
    };
    let live: usize = live.parse().expect("LIVE");
    let steps: u64 = steps.parse().expect("STEPS");
    with_manager!(name, |make| profile_one(make(), live, steps))
}

/// The largest request that still succeeds (a binary search by allocate and free).
fn largest<H: Offsets>(h: &mut H) -> usize {
    let (mut lo, mut hi) = (0usize, SPACE);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match h.alloc(mid) {
            Some(a) => {
                h.free(a);
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    lo
}

/// A trace replayed as offsets: (#4, peak footprint, peak live), or `None` if a request failed.
fn replay<H: Offsets>(h: &mut H, trace: &workloads::Trace) -> Option<(f64, usize, usize)> {
    use std::collections::HashMap;
    use workloads::trace::Op;
    let mut live: HashMap<u64, (H::Handle, usize)> = HashMap::new();
    let (mut now, mut peak_live, mut peak_end) = (0usize, 0usize, 0usize);
    for ev in &trace.events {
        match ev.op {
            Op::Free => {
                let (a, size) = live.remove(&ev.id)?;
                h.free(a);
                now -= size;
            }
            op => {
                let size = usize::try_from(op.size()?).ok()?;
                let a = h.alloc(size)?;
                peak_end = peak_end.max(h.span(a, size).1);
                if let Op::Realloc { .. } = op {
                    let (old, old_size) = live.remove(&ev.id)?;
                    h.free(old);
                    now -= old_size;
                }
                live.insert(ev.id, (a, size));
                now += size;
                peak_live = peak_live.max(now);
            }
        }
    }
    let f4 = peak_end as f64 / peak_live as f64 - 1.0;
    Some((f4, peak_end, peak_live))
}

/// The managers of a run: `OFFSETS_MANAGERS=a,b,...` or [`MANAGERS`].
fn managers() -> Vec<String> {
    match std::env::var("OFFSETS_MANAGERS") {
        Ok(list) => list.split(',').map(str::to_owned).collect(),
        Err(_) => MANAGERS.iter().map(|&m| m.to_owned()).collect(),
    }
}

fn space_report() {
    let managers = managers();
    println!("largest request that still fits after the preparation (bytes):");
    print!("{:>18}", "live");
    for m in &managers {
        print!(" {m:>17}");
    }
    println!();
    for live in LIVE {
        print!("{live:>18}");
        for m in &managers {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let l = with_manager!(m.as_str(), |make| {
                let mut h = make();
                let _keep = prepare(&mut h, live, &mut rng);
                h.largest()
            });
            print!(" {l:>17}");
        }
        println!();
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("traces/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".trace.gz"))
        .collect();
    paths.sort();
    println!("\nrecorded traces replayed as offsets: #4 (peak footprint / peak live - 1)");
    for p in paths {
        let trace = workloads::Trace::load(&p).expect("a trace");
        let name = p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".trace.gz", "");
        print!("{name:>18}");
        for m in &managers {
            let r = with_manager!(m.as_str(), |make| replay(&mut make(), &trace));
            match r {
                Some((f4, _, _)) => print!(" {:>16.2}%", 100.0 * f4),
                None => print!(" {:>17}", "refused"),
            }
        }
        println!();
    }
}

fn steps(c: &mut Criterion<CpuTime>) {
    for m in managers() {
        with_manager!(m.as_str(), |make| bench_one(c, &m, make));
    }
}

fn main() {
    if let Ok(spec) = std::env::var("OFFSETS_PROFILE") {
        profile(&spec);
        return;
    }
    if std::env::var_os("OFFSETS_SPACE").is_some() {
        space_report();
        return;
    }
    let mut c = Criterion::default()
        .with_measurement(CpuTime)
        .configure_from_args();
    steps(&mut c);
    c.final_summary();
}
