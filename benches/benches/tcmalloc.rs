//! tcmalloc against gperftools' tcmalloc 2.10, glibc's malloc and mimalloc, side by side in one
//! run: churn of 8-512 B objects (free a random live slot, allocate a new random size into it)
//! on 1 and 2 threads, and the peak memory of a fixed churn, each allocator in its own process.
//!
//! ```text
//! cargo bench -p benches --bench tcmalloc                 # throughput (criterion)
//! TCMALLOC_BENCH_PEAK=1 cargo bench -p benches --bench tcmalloc   # also peak RSS per allocator
//! ```
//!
//! gperftools is loaded with `dlopen` (RTLD_LOCAL, so glibc stays the process's malloc) from
//! Debian's libtcmalloc-minimal4; it is left out with a message when the library is absent.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

static TC: tcmalloc::Tcmalloc = tcmalloc::Tcmalloc::new(allocator_traits::OsPages::new());
static MI: mimalloc::MiMalloc = mimalloc::MiMalloc;

type MallocFn = unsafe extern "C" fn(usize) -> *mut libc::c_void;
type FreeFn = unsafe extern "C" fn(*mut libc::c_void);

#[derive(Clone, Copy)]
enum Which {
    Tcmalloc,
    Gperftools(MallocFn, FreeFn),
    Glibc,
    Mimalloc,
    /// No allocator: every `alloc` returns the same static buffer and `free` does nothing. The
    /// harness's own cost, subtracted from the others' instruction counts.
    Floor,
}

/// The buffer [`Which::Floor`] hands out (written one byte at a time, never read).
static FLOOR: FloorBuf = FloorBuf(std::cell::UnsafeCell::new([0; 512]));
struct FloorBuf(std::cell::UnsafeCell<[u8; 512]>);
// SAFETY: the buffer is only written with single bytes whose values nobody reads.
unsafe impl Sync for FloorBuf {}

impl Which {
    fn name(&self) -> &'static str {
        match self {
            Which::Tcmalloc => "tcmalloc",
            Which::Gperftools(..) => "gperftools",
            Which::Glibc => "system",
            Which::Mimalloc => "mimalloc",
            Which::Floor => "floor",
        }
    }

    #[inline(always)]
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: sizes are 8..=512 and the layouts valid; each allocator's own entry point.
        unsafe {
            match self {
                Which::Tcmalloc => TC.alloc(Layout::from_size_align_unchecked(size, 8)),
                Which::Gperftools(m, _) => m(size).cast(),
                Which::Glibc => libc::malloc(size).cast(),
                Which::Mimalloc => MI.alloc(Layout::from_size_align_unchecked(size, 8)),
                Which::Floor => black_box(FLOOR.0.get().cast()),
            }
        }
    }

    #[inline(always)]
    fn free(&self, p: *mut u8, size: usize) {
        // SAFETY: `p` came from `alloc` of the same allocator with `size`.
        unsafe {
            match self {
                Which::Tcmalloc => TC.dealloc(p, Layout::from_size_align_unchecked(size, 8)),
                Which::Gperftools(_, f) => f(p.cast()),
                Which::Glibc => libc::free(p.cast()),
                Which::Mimalloc => MI.dealloc(p, Layout::from_size_align_unchecked(size, 8)),
                Which::Floor => {
                    black_box((p, size));
                }
            }
        }
    }
}

fn gperftools() -> Option<Which> {
    Gperf::load().map(|g| Which::Gperftools(g.malloc, g.free))
}

fn allocators() -> Vec<Which> {
    let mut v = vec![Which::Tcmalloc];
    match gperftools() {
        Some(g) => v.push(g),
        None => eprintln!("gperftools (libtcmalloc_minimal.so.4) not found: left out"),
    }
    v.push(Which::Glibc);
    v.push(Which::Mimalloc);
    v
}

/// Live slots of the churn.
const SLOTS: usize = 1024;

/// A churn of `ops` operations: free a random slot's block, allocate a random 8..=512 B block.
struct Churn {
    slots: Vec<(*mut u8, usize)>,
    rng: u64,
}

impl Churn {
    fn new(a: Which, seed: u64) -> Self {
        let mut c = Churn {
            slots: Vec::with_capacity(SLOTS),
            rng: seed | 1,
        };
        for _ in 0..SLOTS {
            let size = c.size();
            c.slots.push((a.alloc(size), size));
        }
        c
    }

    #[inline(always)]
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    #[inline(always)]
    fn size(&mut self) -> usize {
        8 + (self.next() % 505) as usize
    }

    #[inline(always)]
    fn run(&mut self, a: Which, ops: u64) {
        for _ in 0..ops {
            let r = self.next();
            let i = (r as usize) & (SLOTS - 1);
            let size = 8 + ((r >> 32) % 505) as usize;
            let (p, s) = self.slots[i];
            a.free(p, s);
            let q = a.alloc(size);
            // Touch the block, as a program would.
            // SAFETY: `q` has at least `size >= 8` bytes.
            unsafe { q.write(r as u8) };
            self.slots[i] = (black_box(q), size);
        }
    }

    fn finish(self, a: Which) {
        for (p, s) in self.slots {
            a.free(p, s);
        }
    }
}

fn churn_threads(a: Which, threads: usize, ops: u64) -> Duration {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Churn::new(a, 0x9e37_79b9 + t as u64);
                    c.run(a, 10_000); // warm the caches
                    let start = Instant::now();
                    c.run(a, ops);
                    let d = start.elapsed();
                    c.finish(a);
                    d
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}

fn bench(c: &mut Criterion) {
    let allocs = allocators();
    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("churn_8_512B_{threads}thread"));
        g.throughput(Throughput::Elements(threads as u64));
        g.measurement_time(Duration::from_secs(3));
        g.warm_up_time(Duration::from_secs(1));
        for &a in &allocs {
            g.bench_function(a.name(), |b| {
                if threads == 1 {
                    let mut ch = Churn::new(a, 0x1234_5678);
                    ch.run(a, 10_000);
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        ch.run(a, iters);
                        start.elapsed()
                    });
                    ch.finish(a);
                } else {
                    b.iter_custom(|iters| churn_threads(a, threads, iters));
                }
            });
        }
        g.finish();
    }
}

fn status_kib(field: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// In a child process: a fixed churn with one allocator, then its peak RSS growth.
fn peak_child(name: &str) {
    let a = allocators()
        .into_iter()
        .find(|a| a.name() == name)
        .expect("allocator");
    let before = status_kib("VmRSS:");
    // A bigger working set for the memory measure: 64 Ki live blocks, 4 M operations.
    let mut live: Vec<(*mut u8, usize)> = Vec::with_capacity(1 << 16);
    let mut rng = 0x2545_f491u64;
    for _ in 0..(1 << 16) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let size = 8 + (rng % 505) as usize;
        let p = a.alloc(size);
        // SAFETY: fresh block of `size` bytes.
        unsafe { p.write_bytes(1, size) };
        live.push((p, size));
    }
    let requested: usize = live.iter().map(|l| l.1).sum();
    for _ in 0..(4 << 20) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = (rng as usize) & ((1 << 16) - 1);
        let size = 8 + ((rng >> 32) % 505) as usize;
        let (p, s) = live[i];
        a.free(p, s);
        let q = a.alloc(size);
        // SAFETY: fresh block of `size` bytes.
        unsafe { q.write_bytes(1, size) };
        live[i] = (q, size);
    }
    let hwm = status_kib("VmHWM:");
    println!(
        "{name} peak_rss_growth_kib={} live_requested_kib_at_start={}",
        hwm.saturating_sub(before),
        requested / 1024
    );
}

/// gperftools' entry points as a `GlobalAlloc` (for the trace replays).
struct Gperf {
    malloc: MallocFn,
    free: FreeFn,
    realloc: unsafe extern "C" fn(*mut libc::c_void, usize) -> *mut libc::c_void,
    memalign: unsafe extern "C" fn(usize, usize) -> *mut libc::c_void,
}

impl Gperf {
    fn load() -> Option<Gperf> {
        // SAFETY: dlopen/dlsym with valid C strings; the symbols have the C signatures named.
        unsafe {
            let h = libc::dlopen(
                c"libtcmalloc_minimal.so.4".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if h.is_null() {
                return None;
            }
            let sym = |n: &std::ffi::CStr| {
                let p = libc::dlsym(h, n.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Gperf {
                malloc: std::mem::transmute::<*mut libc::c_void, MallocFn>(sym(c"tc_malloc")?),
                free: std::mem::transmute::<*mut libc::c_void, FreeFn>(sym(c"tc_free")?),
                realloc: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(*mut libc::c_void, usize) -> *mut libc::c_void,
                >(sym(c"tc_realloc")?),
                memalign: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(usize, usize) -> *mut libc::c_void,
                >(sym(c"tc_memalign")?),
            })
        }
    }
}

// SAFETY: gperftools' malloc family returns blocks aligned to 8 (16 from 16 B up) valid until
// freed; larger or stricter alignments go through `tc_memalign`.
unsafe impl GlobalAlloc for Gperf {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // The 8 B class is only 8-aligned: ask 16 for a 16-aligned block under 16 B.
        // SAFETY: plain C calls.
        unsafe {
            if l.align() <= 8 || (l.align() <= 16 && l.size() >= 16) {
                (self.malloc)(l.size()).cast()
            } else {
                (self.memalign)(l.align(), l.size()).cast()
            }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, _: Layout) {
        // SAFETY: `p` came from this allocator.
        unsafe { (self.free)(p.cast()) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if l.align() <= 8 {
            // SAFETY: `p` came from this allocator.
            unsafe { (self.realloc)(p.cast(), new).cast() }
        } else {
            // SAFETY: the default's contract is ours.
            unsafe {
                let q = self.alloc(Layout::from_size_align_unchecked(new, l.align()));
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, l.size().min(new));
                    self.dealloc(p, l);
                }
                q
            }
        }
    }
}

/// In a child process: replays `trace` through one allocator, prints #4 by resident memory (the
/// matrix's method: RSS growth over the baseline read when the replay starts, every page of
/// every block touched, the peak from VmHWM) and the median time per step of 5 replays. Both
/// allocators are set up (one malloc and free) before the baseline, as loading gperftools does.
fn trace_child(name: &str, trace: &str) {
    let t = workloads::Trace::load(trace).expect("trace");
    let prog = workloads::Program::compile(&t).expect("program");
    drop(t);
    let g: Box<dyn GlobalAlloc> = match name {
        "tcmalloc" => Box::new(tcmalloc::Tcmalloc::new(allocator_traits::OsPages::new())),
        "gperftools" => Box::new(Gperf::load().expect("libtcmalloc_minimal.so.4")),
        other => panic!("no allocator {other}"),
    };
    // gperftools sets itself up when it is loaded (a static constructor mallocs and frees one
    // byte); set tcmalloc up the same way, so neither's start-up lands in the replay's growth.
    let one = Layout::from_size_align(1, 1).expect("layout");
    // SAFETY: a valid layout; the block is freed at once.
    unsafe { g.dealloc(g.alloc(one), one) };
    let rss = || status_kib("VmRSS:") * 1024;
    let reset_peak = || std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let mut base = 0;
    let mut probe = || {
        let now = rss();
        if base == 0 {
            reset_peak();
            base = now;
        }
        now.saturating_sub(base)
    };
    let track = workloads::Options {
        track: true,
        series_points: 300,
        touch: true,
        ..Default::default()
    };
    let out = workloads::replay_global(&*g, &prog, track, Some(&mut probe)).expect("replay");
    let peak = (status_kib("VmHWM:") * 1024).saturating_sub(base);
    let f = workloads::Fragmentation::of_peer(&out, peak);
    let mut ns: Vec<f64> = (0..5)
        .map(|_| {
            let o = workloads::replay_global(&*g, &prog, workloads::Options::default(), None)
                .expect("replay");
            workloads::metrics::ns_per_op(&o)
        })
        .collect();
    let ns = workloads::metrics::median(&mut ns).unwrap_or(0.0);
    println!(
        "{name} {trace} frag4={:.1}% peak_rss_growth={} peak_live={} ns_per_step={ns:.1}",
        f.frag4.unwrap_or(0.0) * 100.0,
        f.peak_footprint,
        f.peak_live
    );
}

fn main() {
    // `TCMALLOC_BENCH_TRACES=FILE,FILE...`: each recorded trace through gperftools and tcmalloc,
    // each replay in its own child process (resident memory, #4, time per step).
    if let Ok(name) = std::env::var("TCMALLOC_BENCH_TRACE_CHILD") {
        let trace = std::env::var("TCMALLOC_BENCH_TRACE_FILE").expect("trace file");
        trace_child(&name, &trace);
        return;
    }
    if let Ok(traces) = std::env::var("TCMALLOC_BENCH_TRACES") {
        let exe = std::env::current_exe().expect("own path");
        for trace in traces.split(',') {
            for name in ["gperftools", "tcmalloc"] {
                let out = std::process::Command::new(&exe)
                    .env("TCMALLOC_BENCH_TRACE_CHILD", name)
                    .env("TCMALLOC_BENCH_TRACE_FILE", trace)
                    .output()
                    .expect("child run");
                print!("{}", String::from_utf8_lossy(&out.stdout));
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        return;
    }

    // `TCMALLOC_BENCH_OPS=NAME`: 10 M churn operations with one allocator and nothing else, for
    // callgrind (instructions per operation do not depend on the machine's load). `floor` is the
    // harness alone.
    if let Ok(name) = std::env::var("TCMALLOC_BENCH_OPS") {
        let a = allocators()
            .into_iter()
            .chain([Which::Floor])
            .find(|a| a.name() == name)
            .expect("allocator");
        let mut ch = Churn::new(a, 0x1234_5678);
        let n: u64 = std::env::var("TCMALLOC_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000_000);
        let start = Instant::now();
        ch.run(a, n);
        println!(
            "{name}: {:.1} ns/op",
            start.elapsed().as_nanos() as f64 / n as f64
        );
        ch.finish(a);
        return;
    }
    if let Ok(name) = std::env::var("TCMALLOC_BENCH_PEAK_CHILD") {
        peak_child(&name);
        return;
    }
    if std::env::var_os("TCMALLOC_BENCH_PEAK").is_some() {
        let exe = std::env::current_exe().expect("own path");
        for a in allocators() {
            let out = std::process::Command::new(&exe)
                .env("TCMALLOC_BENCH_PEAK_CHILD", a.name())
                .output()
                .expect("child run");
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
