//! The proof of fidelity: generated traces replayed through the real glibc (the C program in
//! `tests/glibc/replay.c`, built here with the system's `cc`) and through the model must print
//! the same `OP ID SIZE OFFSET|MMAP` lines, under the same tunables.
//!
//! Skipped (with a message) when there is no C compiler or the C library is not glibc 2.36.
#![cfg(all(unix, not(miri)))]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ptmalloc2::{Event, Replayer, Tunables};

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A request size from every bin range: tcache/fast, small, large, around the mmap threshold
/// and above it.
fn size(r: &mut Rng) -> usize {
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

fn small_size(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=5 => r.range(0, 160),
        6..=8 => r.range(160, 1100),
        _ => r.range(1100, 8000),
    }
}

struct Trace {
    text: String,
    live: Vec<u64>,
    next_id: u64,
    ops: usize,
}

impl Trace {
    fn new(name: &str) -> Self {
        Trace {
            text: format!("# {name}\n"),
            live: Vec::new(),
            next_id: 0,
            ops: 0,
        }
    }
    fn alloc(&mut self, r: &mut Rng, sz: usize) {
        let id = self.next_id;
        self.next_id += 1;
        self.ops += 1;
        let _ = writeln!(self.text, "a {id} {sz}");
        self.live.push(id);
        let _ = r;
    }
    fn calloc(&mut self, sz: usize) {
        let id = self.next_id;
        self.next_id += 1;
        self.ops += 1;
        let _ = writeln!(self.text, "c {id} {sz}");
        self.live.push(id);
    }
    fn memalign(&mut self, align: usize, sz: usize) {
        let id = self.next_id;
        self.next_id += 1;
        self.ops += 1;
        let _ = writeln!(self.text, "m {id} {align} {sz}");
        self.live.push(id);
    }
    fn free_at(&mut self, i: usize) {
        let id = self.live.swap_remove(i);
        self.ops += 1;
        let _ = writeln!(self.text, "f {id}");
    }
    fn free_random(&mut self, r: &mut Rng) {
        if !self.live.is_empty() {
            let i = r.below(self.live.len() as u64) as usize;
            self.free_at(i);
        }
    }
    fn realloc_random(&mut self, r: &mut Rng, sz: usize) {
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

fn random_trace(seed: u64, n: usize) -> Trace {
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

fn phased_trace(seed: u64, rounds: usize) -> Trace {
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

fn realloc_trace(seed: u64, n: usize) -> Trace {
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

fn calloc_memalign_trace(seed: u64, n: usize) -> Trace {
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

fn fastbin_trace(seed: u64, n: usize) -> Trace {
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

fn build_replayer(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/glibc/replay.c");
    let bin = dir.join("glibc-replay");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(bin)
}

fn glibc_is_2_36() -> bool {
    Command::new("ldd")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .contains(" 2.36")
        })
        .unwrap_or(false)
}

fn model_output(trace: &str, tunables: &str) -> Result<String, String> {
    let mut rep = Replayer::new(&Tunables::parse(tunables).map_err(|e| e.to_string())?);
    let mut out = String::new();
    for (n, line) in trace.lines().enumerate() {
        let ev: Option<Event> = Event::parse(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if let Some(ev) = ev
            && let Some(l) = rep.apply(ev).map_err(|e| format!("line {}: {e}", n + 1))?
        {
            out.push_str(&l);
            out.push('\n');
        }
    }
    Ok(out)
}

const CONFIGS: &[&str] = &[
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

#[test]
fn model_places_every_block_where_glibc_does() {
    if !glibc_is_2_36() {
        eprintln!("skipped: the C library is not glibc 2.36");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ptmalloc2-glibc");
    std::fs::create_dir_all(&dir).unwrap();
    let Some(bin) = build_replayer(&dir) else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let seeds: u64 = std::env::var("PTMALLOC2_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // PTMALLOC2_CONFIGS="cfg1;cfg2" replaces the configurations (for exploring).
    let extra = std::env::var("PTMALLOC2_CONFIGS").ok();
    let configs: Vec<&str> = match &extra {
        Some(e) => e.split(';').collect(),
        None => CONFIGS.to_vec(),
    };
    let (mut traces, mut ops, mut lines) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for (ci, cfg) in configs.iter().enumerate() {
        for seed in 0..seeds {
            let s = seed * 1000 + ci as u64;
            for t in [
                random_trace(s, 3000),
                random_trace(s + 7, 20000),
                phased_trace(s, 25),
                realloc_trace(s, 3000),
                calloc_memalign_trace(s, 2000),
                fastbin_trace(s, 4000),
            ] {
                let path = dir.join(format!("trace-{ci}-{seed}.txt"));
                std::fs::write(&path, &t.text).unwrap();
                let out = Command::new(&bin)
                    .arg(&path)
                    .env("GLIBC_TUNABLES", cfg)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "glibc replayer failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let want = String::from_utf8(out.stdout).unwrap();
                let got =
                    model_output(&t.text, cfg).unwrap_or_else(|e| format!("model error: {e}\n"));
                traces += 1;
                ops += t.ops;
                lines += want.lines().count();
                if got != want {
                    let first = want
                        .lines()
                        .zip(got.lines())
                        .position(|(a, b)| a != b)
                        .unwrap_or(want.lines().count().min(got.lines().count()));
                    let keep = dir.join(format!("mismatch-{}.txt", failures.len()));
                    std::fs::write(&keep, &t.text).unwrap();
                    failures.push(format!(
                        "config `{cfg}`, {} trace (seed {s}), saved as {}: first difference at output line {}: glibc `{}` model `{}`",
                        t.text.lines().next().unwrap_or(""),
                        keep.display(),
                        first + 1,
                        want.lines().nth(first).unwrap_or("<end>"),
                        got.lines().nth(first).unwrap_or("<end>"),
                    ));
                }
            }
        }
    }
    println!(
        "glibc comparison: {traces} traces, {ops} operations, {lines} placements, {} configurations, {} mismatching traces",
        configs.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {traces} traces differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Turns the recorder's log (addresses) into a trace (block IDs); `None` if the log frees a
/// pointer it never saw allocated (an allocation the recorder could not see).
fn log_to_trace(log: &str, name: &str) -> Option<Trace> {
    let mut t = Trace::new(name);
    let mut ids = std::collections::HashMap::new();
    let hex = |s: &str| usize::from_str_radix(s, 16).ok();
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let fresh = |ptr: usize, ids: &mut std::collections::HashMap<usize, u64>, t: &mut Trace| {
            let id = t.next_id;
            t.next_id += 1;
            ids.insert(ptr, id);
            id
        };
        t.ops += 1;
        match (f.first().copied(), f.len()) {
            (Some(op @ ("a" | "c")), 3) => {
                let (p, size) = (hex(f[1])?, hex(f[2])?);
                if p != 0 {
                    let id = fresh(p, &mut ids, &mut t);
                    let _ = writeln!(t.text, "{op} {id} {size}");
                }
            }
            (Some("m"), 4) => {
                let (p, align, size) = (hex(f[1])?, hex(f[2])?, hex(f[3])?);
                if p != 0 {
                    let id = fresh(p, &mut ids, &mut t);
                    let _ = writeln!(t.text, "m {id} {align} {size}");
                }
            }
            (Some("r"), 4) => {
                let (old, new, size) = (hex(f[1])?, hex(f[2])?, hex(f[3])?);
                if old == 0 {
                    if new != 0 {
                        let id = fresh(new, &mut ids, &mut t);
                        let _ = writeln!(t.text, "r {id} {size}");
                    }
                } else if size == 0 {
                    let id = ids.remove(&old)?;
                    let _ = writeln!(t.text, "r {id} 0");
                } else if new != 0 {
                    let id = ids.remove(&old)?;
                    ids.insert(new, id);
                    let _ = writeln!(t.text, "r {id} {size}");
                }
            }
            (Some("f"), 2) => {
                let id = ids.remove(&hex(f[1])?)?;
                let _ = writeln!(t.text, "f {id}");
            }
            _ => return None,
        }
    }
    Some(t)
}

#[test]
fn recorded_programs_replay_identically() {
    if !glibc_is_2_36() {
        eprintln!("skipped: the C library is not glibc 2.36");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ptmalloc2-recorded");
    std::fs::create_dir_all(&dir).unwrap();
    let Some(bin) = build_replayer(&dir) else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let so = dir.join("record.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/glibc/record.c");
    if !Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: cannot build the recorder");
        return;
    }
    let input = dir.join("input.txt");
    let mut text = String::new();
    let mut r = Rng(42);
    for i in 0..20_000 {
        let _ = writeln!(
            text,
            "{} {} {}",
            r.below(1_000_000),
            "w".repeat(r.range(1, 40)),
            i
        );
    }
    std::fs::write(&input, &text).unwrap();
    let inp = input.to_str().unwrap();
    let programs: Vec<(&str, Vec<&str>)> = vec![
        ("sort", vec!["--parallel=1", "-k2", inp]),
        (
            "awk",
            vec![
                "{ a[$1] = $0; n[length($2)]++ } END { for (k in n) s += n[k]; print s }",
                inp,
            ],
        ),
        ("sed", vec!["-e", "s/w\\+/x/g", inp]),
        (
            "perl",
            vec![
                "-e",
                "my %h; for my $i (1..30000) { $h{$i} = 'x' x ($i % 700); delete $h{$i - 50} if $i % 3 == 0 } my @k = sort keys %h; print scalar(@k), qq(\\n);",
            ],
        ),
        ("find", vec!["/usr/share/doc", "-name", "*.gz"]),
        ("gzip", vec!["-c", "-9", inp]),
        ("xz", vec!["-T1", "-c", inp]),
        (
            "python3",
            vec![
                "-c",
                "import json; d = {str(i): [i] * (i % 50) for i in range(20000)}; s = json.dumps(d); print(len(json.loads(s)))",
            ],
        ),
    ];
    let (mut traces, mut ops, mut lines) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for (prog, args) in &programs {
        let log = dir.join(format!("{prog}.log"));
        let _ = std::fs::remove_file(&log);
        let ran = Command::new(prog)
            .args(args)
            .env("LD_PRELOAD", &so)
            .env("PT_RECORD_OUT", &log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let Ok(log_text) = std::fs::read_to_string(&log) else {
            eprintln!("{prog}: not recorded ({ran:?}), left out");
            continue;
        };
        let Some(t) = log_to_trace(&log_text, prog) else {
            eprintln!("{prog}: the log frees a block it never saw allocated, left out");
            continue;
        };
        for cfg in [
            "",
            "glibc.malloc.tcache_count=0",
            "glibc.malloc.mxfast=0:glibc.malloc.top_pad=0",
        ] {
            let path = dir.join(format!("{prog}.trace"));
            std::fs::write(&path, &t.text).unwrap();
            let out = Command::new(&bin)
                .arg(&path)
                .env("GLIBC_TUNABLES", cfg)
                .output()
                .unwrap();
            assert!(out.status.success(), "glibc replayer failed on {prog}");
            let want = String::from_utf8(out.stdout).unwrap();
            let got = model_output(&t.text, cfg).unwrap_or_else(|e| format!("model error: {e}\n"));
            traces += 1;
            ops += t.ops;
            lines += want.lines().count();
            if got != want {
                let first = want
                    .lines()
                    .zip(got.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                failures.push(format!(
                    "{prog} under `{cfg}`: first difference at output line {}: glibc `{}` model `{}`",
                    first + 1,
                    want.lines().nth(first).unwrap_or("<end>"),
                    got.lines().nth(first).unwrap_or("<end>")
                ));
            }
        }
    }
    println!(
        "recorded programs: {traces} replays, {ops} operations, {lines} placements, {} mismatching",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
