//! What the tests share: the generators of the traces compared with the real glibc (random
//! mixes over every bin range, phase-structured, realloc-heavy, calloc and memalign, small-chunk
//! churn) and the tunables they run under.
#![allow(dead_code)]

use std::fmt::Write as _;

pub mod oracle;

/// A small deterministic generator (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A request size from every bin range: tcache/fast, small, large, around the mmap threshold
/// and above it.
pub fn size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=29 => r.range(0, 128),
        30..=49 => r.range(129, 1040),
        50..=69 => r.range(1024, 4096),
        70..=81 => r.range(4096, 65536),
        82..=89 => r.range(65536, 126_000),
        90..=95 => r.range(126_000, 140_000),
        _ => r.range(140_000, 1_200_000),
    }
}

pub fn small_size(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=5 => r.range(0, 160),
        6..=8 => r.range(160, 1100),
        _ => r.range(1100, 8000),
    }
}

pub struct Trace {
    /// The trace text (project format).
    pub text: String,
    /// Live block IDs.
    pub live: Vec<u64>,
    /// The next fresh ID.
    pub next_id: u64,
    /// Events written.
    pub ops: usize,
}

impl Trace {
    pub fn new(name: &str) -> Self {
        Trace {
            text: format!("# {name}\n"),
            live: Vec::new(),
            next_id: 0,
            ops: 0,
        }
    }
    pub fn alloc(&mut self, r: &mut Rng, sz: usize) {
        let id = self.next_id;
        self.next_id += 1;
        self.ops += 1;
        let _ = writeln!(self.text, "a {id} {sz}");
        self.live.push(id);
        let _ = r;
    }
    pub fn calloc(&mut self, sz: usize) {
        let id = self.next_id;
        self.next_id += 1;
        self.ops += 1;
        let _ = writeln!(self.text, "c {id} {sz}");
        self.live.push(id);
    }
    pub fn memalign(&mut self, align: usize, sz: usize) {
        let id = self.next_id;
        self.next_id += 1;
        self.ops += 1;
        let _ = writeln!(self.text, "m {id} {align} {sz}");
        self.live.push(id);
    }
    pub fn free_at(&mut self, i: usize) {
        let id = self.live.swap_remove(i);
        self.ops += 1;
        let _ = writeln!(self.text, "f {id}");
    }
    pub fn free_random(&mut self, r: &mut Rng) {
        if !self.live.is_empty() {
            let i = r.below(self.live.len() as u64) as usize;
            self.free_at(i);
        }
    }
    pub fn realloc_random(&mut self, r: &mut Rng, sz: usize) {
        if self.live.is_empty() {
            return;
        }
        let i = r.below(self.live.len() as u64) as usize;
        let id = self.live[i];
        self.ops += 1;
        let _ = writeln!(self.text, "r {id} {sz}");
        if sz == 0 {
            self.live.swap_remove(i);
        }
    }
}

pub fn random_trace(seed: u64, n: usize) -> Trace {
    let mut r = Rng(seed);
    let mut t = Trace::new("random");
    for _ in 0..n {
        match r.below(100) {
            0..=49 => {
                let s = size(&mut r);
                t.alloc(&mut r, s)
            }
            50..=89 => t.free_random(&mut r),
            90..=94 => {
                let s = size(&mut r);
                t.realloc_random(&mut r, s)
            }
            95..=97 => t.calloc(size(&mut r)),
            _ => {
                let a = 1 << r.range(3, 12);
                t.memalign(a, size(&mut r))
            }
        }
    }
    t
}

pub fn phased_trace(seed: u64, rounds: usize) -> Trace {
    let mut r = Rng(seed);
    let mut t = Trace::new("phased");
    for _ in 0..rounds {
        // Build up a phase of similar sizes, free a pattern of them, then a new phase.
        let base = small_size(&mut r);
        let n = r.range(20, 200);
        for _ in 0..n {
            let s = base + r.range(0, base / 4 + 1);
            t.alloc(&mut r, s);
        }
        let stride = r.range(2, 4);
        let mut i = t.live.len();
        while i > 0 {
            i -= 1;
            if i.is_multiple_of(stride) && i < t.live.len() {
                t.free_at(i);
            }
        }
        for _ in 0..r.range(0, 30) {
            let s = size(&mut r);
            t.alloc(&mut r, s);
        }
        if r.chance(30) {
            while !t.live.is_empty() && r.chance(97) {
                t.free_random(&mut r);
            }
        }
    }
    t
}

pub fn realloc_trace(seed: u64, n: usize) -> Trace {
    let mut r = Rng(seed);
    let mut t = Trace::new("realloc");
    for _ in 0..n {
        match r.below(100) {
            0..=29 => {
                let s = small_size(&mut r);
                t.alloc(&mut r, s)
            }
            30..=49 => t.free_random(&mut r),
            50..=94 => {
                let s = if r.chance(70) {
                    small_size(&mut r)
                } else {
                    size(&mut r)
                };
                t.realloc_random(&mut r, s)
            }
            _ => t.realloc_random(&mut r, 0),
        }
    }
    t
}

pub fn calloc_memalign_trace(seed: u64, n: usize) -> Trace {
    let mut r = Rng(seed);
    let mut t = Trace::new("calloc+memalign");
    for _ in 0..n {
        match r.below(100) {
            0..=24 => t.calloc(size(&mut r)),
            25..=49 => {
                let a = if r.chance(85) {
                    1 << r.range(3, 12)
                } else {
                    r.range(17, 4000)
                };
                let s = if r.chance(70) {
                    small_size(&mut r)
                } else {
                    size(&mut r)
                };
                t.memalign(a, s)
            }
            50..=64 => {
                let s = small_size(&mut r);
                t.alloc(&mut r, s)
            }
            _ => t.free_random(&mut r),
        }
    }
    t
}

pub fn fastbin_trace(seed: u64, n: usize) -> Trace {
    // Many small chunks: tcache, fastbins, consolidation triggered by large requests.
    let mut r = Rng(seed);
    let mut t = Trace::new("small-churn");
    for _ in 0..n {
        match r.below(100) {
            0..=47 => {
                let s = r.range(0, 200);
                t.alloc(&mut r, s)
            }
            48..=93 => t.free_random(&mut r),
            94..=97 => {
                let s = r.range(1000, 70_000);
                t.alloc(&mut r, s)
            }
            _ => {
                let s = r.range(0, 300);
                t.realloc_random(&mut r, s)
            }
        }
    }
    t
}

/// The GLIBC_TUNABLES settings every generated trace is compared under.
pub const CONFIGS: &[&str] = &[
    "",
    "glibc.malloc.tcache_count=0",
    "glibc.malloc.mxfast=0",
    "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0",
    "glibc.malloc.tcache_count=0:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072:glibc.malloc.top_pad=131072",
    "glibc.malloc.top_pad=0",
    "glibc.malloc.tcache_count=2:glibc.malloc.tcache_unsorted_limit=3:glibc.malloc.tcache_max=200",
    "glibc.malloc.mmap_max=0:glibc.malloc.mxfast=160",
    "glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=4096",
    // trim at every 64 KiB free, which reaches systrim's unsigned-comparison quirk
    "glibc.malloc.trim_threshold=0:glibc.malloc.perturb=165",
    "glibc.malloc.mxfast=80:glibc.malloc.tcache_count=1:glibc.malloc.tcache_max=0",
    // below 0x290: the tcache struct itself gets a mapping
    "glibc.malloc.mmap_threshold=600:glibc.malloc.tcache_count=3",
];

/// The six generated traces of seed `s` (the glibc comparison's set); `scale` divides their
/// lengths (1: full length).
pub fn generated(s: u64, scale: usize) -> [Trace; 6] {
    [
        random_trace(s, 3000 / scale),
        random_trace(s + 7, 20000 / scale),
        phased_trace(s, 25 / scale.min(5)),
        realloc_trace(s, 3000 / scale),
        calloc_memalign_trace(s, 2000 / scale),
        fastbin_trace(s, 4000 / scale),
    ]
}

/// The recorded traces in the repository's `traces/` folder, as `(file name, text)`, at least
/// four of them.
pub fn recorded_traces() -> Vec<(String, String)> {
    use std::io::Read as _;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../traces");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("traces/") {
        let path = e.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".trace.gz") {
            continue;
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("open"))
            .read_to_string(&mut text)
            .expect("gzip");
        out.push((name, text));
    }
    assert!(
        out.len() >= 4,
        "the recorded traces are in traces/ ({} found)",
        out.len()
    );
    out.sort();
    out
}

/// Where two outputs first differ, as "first difference at output line N: A `..`, B `..`"
/// (`names` are A and B); `None` if they are the same.
pub fn first_difference(a: &str, b: &str, names: (&str, &str)) -> Option<String> {
    if a == b {
        return None;
    }
    let n = a.lines().count().min(b.lines().count());
    let k = a
        .lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .unwrap_or(n);
    Some(format!(
        "first difference at output line {}: {} `{}`, {} `{}`",
        k + 1,
        names.0,
        a.lines().nth(k).unwrap_or("<end>"),
        names.1,
        b.lines().nth(k).unwrap_or("<end>")
    ))
}
