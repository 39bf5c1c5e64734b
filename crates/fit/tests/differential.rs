//! The index against the list: in every configuration where both are defined (address order,
//! physical or no coalescing, with or without the check word), the same operations give the same
//! address for every allocation, the same refusals, and the same in-place resizes.
//!
//! * the recorded traces of `traces/` (every event, in lockstep; the first difference names the
//!   trace line);
//! * quickcheck sequences of allocations (alignments up to 4 KiB), frees, grows and shrinks.
//!
//! Whole traces are long (the list scans every free block; worst fit's list grows long): the
//! default run replays the first 20 000 events of each trace (60 000 in a release build), and
//! `cargo test --release -p fit --test differential -- --ignored` replays every event.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::ptr::NonNull;

use allocator_traits::{BoxedRegion, FreeSpaceManager, Placement};
use core::alloc::Layout;
use fit::{Coalesce, Config, FitHeap, Mechanism, Policy};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

/// Every configuration the index serves.
fn configs() -> Vec<Config> {
    let mut v = Vec::new();
    for p in Policy::ALL {
        for c in [Coalesce::Physical, Coalesce::Off] {
            for checked in [false, true] {
                let cfg = Config::new(p).with_coalesce(c).with_checked(checked);
                assert!(cfg.uses_index());
                v.push(cfg);
            }
        }
    }
    v
}

/// One operation, applied to both heaps.
#[derive(Debug, Clone, Copy)]
enum Op {
    Alloc {
        id: u64,
        size: usize,
        align: usize,
        zeroed: bool,
    },
    Resize {
        id: u64,
        size: usize,
    },
    Free {
        id: u64,
    },
}

/// The two heaps in lockstep and their live blocks.
struct Pair {
    heaps: [FitHeap<BoxedRegion>; 2],
    live: HashMap<u64, [(NonNull<u8>, Layout); 2]>,
}

impl Pair {
    fn new(cfg: Config, capacity: usize) -> Self {
        let make = |c| FitHeap::new(BoxedRegion::new(capacity).expect("region"), c);
        Pair {
            heaps: [make(cfg), make(cfg.with_mechanism(Mechanism::List))],
            live: HashMap::new(),
        }
    }

    fn offset(h: &FitHeap<BoxedRegion>, p: NonNull<u8>) -> usize {
        match h.placement(p) {
            Placement::Heap(o) => o,
            Placement::Mapped => panic!("a block outside the heap"),
        }
    }

    /// Applies `op` to both; `Err` says how they differ.
    fn apply(&mut self, op: Op) -> Result<(), String> {
        let mut got: [Option<usize>; 2] = [None; 2];
        match op {
            Op::Alloc {
                id,
                size,
                align,
                zeroed,
            } => {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    return Ok(());
                };
                if self.live.contains_key(&id) {
                    return Ok(());
                }
                let mut blocks = [(NonNull::dangling(), layout); 2];
                for (k, h) in self.heaps.iter_mut().enumerate() {
                    let r = if zeroed {
                        h.allocate_zeroed(layout)
                    } else {
                        h.allocate(layout)
                    };
                    if let Ok(b) = r {
                        blocks[k].0 = b.cast();
                        got[k] = Some(Self::offset(h, b.cast()));
                    }
                }
                if got[0] != got[1] {
                    return Err(format!(
                        "{op:?}: index at {:?}, list at {:?}",
                        got[0], got[1]
                    ));
                }
                if got[0].is_some() {
                    self.live.insert(id, blocks);
                }
            }
            Op::Resize { id, size } => {
                let Some(mut blocks) = self.live.get(&id).copied() else {
                    return Ok(());
                };
                let Ok(new) = Layout::from_size_align(size, blocks[0].1.align()) else {
                    return Ok(());
                };
                for (k, h) in self.heaps.iter_mut().enumerate() {
                    let (p, old) = blocks[k];
                    // SAFETY: `p` is live in `h` with layout `old`.
                    let r = unsafe {
                        if size >= old.size() {
                            h.grow(p, old, new)
                        } else {
                            h.shrink(p, old, new)
                        }
                    };
                    if let Ok(b) = r {
                        blocks[k] = (b.cast(), new);
                        got[k] = Some(Self::offset(h, b.cast()));
                    }
                }
                if got[0] != got[1] {
                    return Err(format!(
                        "{op:?}: index at {:?}, list at {:?}",
                        got[0], got[1]
                    ));
                }
                self.live.insert(id, blocks);
            }
            Op::Free { id } => {
                let Some(blocks) = self.live.remove(&id) else {
                    return Ok(());
                };
                for (k, h) in self.heaps.iter_mut().enumerate() {
                    // SAFETY: live in `h` with this layout.
                    unsafe { h.deallocate(blocks[k].0, blocks[k].1) }.map_err(|e| e.to_string())?;
                }
            }
        }
        let [a, b] = [self.heaps[0].stats(), self.heaps[1].stats()];
        if (a.footprint, a.live_held, a.in_place_resizes)
            != (b.footprint, b.live_held, b.in_place_resizes)
        {
            return Err(format!("{op:?}: stats differ: index {a:?}, list {b:?}"));
        }
        Ok(())
    }
}

/// Reads a trace in the project's text format (gzip), one `Op` per event.
fn read_trace(path: &str, limit: usize) -> Vec<(usize, Op)> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut ops = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.expect("trace line");
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let mut f: Vec<&str> = line.split(' ').collect();
        if f[0].starts_with('t') {
            f.remove(0);
        }
        let num = |i: usize| {
            f[i].parse::<u64>()
                .unwrap_or_else(|_| panic!("{path}:{}", n + 1))
        };
        let op = match f[0] {
            "a" => Op::Alloc {
                id: num(1),
                size: num(2) as usize,
                align: 16,
                zeroed: false,
            },
            "c" => Op::Alloc {
                id: num(1),
                size: num(2) as usize,
                align: 16,
                zeroed: true,
            },
            "m" => Op::Alloc {
                id: num(1),
                size: num(3) as usize,
                align: (num(2) as usize).max(16),
                zeroed: false,
            },
            "r" => Op::Resize {
                id: num(1),
                size: num(2) as usize,
            },
            "f" => Op::Free { id: num(1) },
            other => panic!("{path}:{}: unknown event {other}", n + 1),
        };
        ops.push((n + 1, op));
        if ops.len() == limit {
            break;
        }
    }
    ops
}

fn replay_trace(name: &str, limit: usize) {
    let path = format!(
        "{}/../../traces/{name}.trace.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let ops = read_trace(&path, limit);
    for cfg in configs() {
        let mut pair = Pair::new(cfg, 1 << 30);
        for &(line, op) in &ops {
            if let Err(e) = pair.apply(op) {
                panic!("{name} line {line}, {cfg}: {e}");
            }
        }
        pair.heaps[0].check_invariants().unwrap();
    }
}

/// Events of each trace the default run replays.
const PREFIX: usize = if cfg!(debug_assertions) {
    20_000
} else {
    60_000
};

macro_rules! traces {
    ($($name:ident, $full:ident = $file:literal;)*) => { $(
        #[cfg_attr(miri, ignore = "a real trace is far too long for the interpreter")]
        #[test]
        fn $name() {
            replay_trace($file, PREFIX);
        }

        /// The whole trace (the list's scans make this long: run with `--release -- --ignored`).
        #[ignore = "long: cargo test --release -p fit --test differential -- --ignored"]
        #[test]
        fn $full() {
            replay_trace($file, usize::MAX);
        }
    )* };
}

traces! {
    git_trace, git_trace_whole = "git";
    sqlite3_trace, sqlite3_trace_whole = "sqlite3";
    gcc_trace, gcc_trace_whole = "gcc";
    python3_trace, python3_trace_whole = "python3";
}

/// A random sequence for quickcheck: sizes mostly small, some large, alignments up to 4 KiB.
#[derive(Debug, Clone)]
struct Seq(Vec<Op>);

impl Arbitrary for Seq {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = g.size();
        let mut ops = Vec::with_capacity(n);
        let mut next = 0u64;
        for _ in 0..n {
            let pick = u8::arbitrary(g) % 10;
            let id = if next == 0 {
                0
            } else {
                u64::arbitrary(g) % next
            };
            let size = match u8::arbitrary(g) % 8 {
                0 => usize::arbitrary(g) % 70_000,
                1 => usize::arbitrary(g) % 4096,
                _ => usize::arbitrary(g) % 300,
            };
            ops.push(match pick {
                0..=4 => {
                    next += 1;
                    let align = 1usize << (u8::arbitrary(g) % 13).saturating_sub(4);
                    Op::Alloc {
                        id: next - 1,
                        size,
                        align,
                        zeroed: bool::arbitrary(g),
                    }
                }
                5..=7 => Op::Free { id },
                _ => Op::Resize { id, size },
            });
        }
        Seq(ops)
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        // Halves first, then one operation less at each place.
        let v = self.0.clone();
        let n = v.len();
        let halves = [v[..n / 2].to_vec(), v[n / 2..].to_vec()];
        let ones = (0..n).map(move |i| {
            let mut w = v.clone();
            w.remove(i);
            w
        });
        Box::new(
            halves
                .into_iter()
                .filter(move |h| h.len() < n)
                .chain(ones)
                .map(Seq),
        )
    }
}

#[test]
fn random_sequences_make_the_same_decisions() {
    fn prop(seq: Seq) -> TestResult {
        for cfg in configs() {
            // Small enough that refusals and the top of the heap come into play.
            let mut pair = Pair::new(cfg, 1 << 20);
            for &op in &seq.0 {
                if let Err(e) = pair.apply(op) {
                    return TestResult::error(format!("{cfg}: {e}"));
                }
            }
            for h in &pair.heaps {
                if let Err(e) = h.check_invariants() {
                    return TestResult::error(format!("{cfg}: {e}"));
                }
            }
        }
        TestResult::passed()
    }
    let (tests, size) = if cfg!(miri) { (2, 30) } else { (200, 400) };
    QuickCheck::new()
        .tests(tests)
        .rng(Gen::new(size))
        .quickcheck(prop as fn(Seq) -> TestResult);
}
