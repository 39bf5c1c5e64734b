//! Synthetic workloads: deterministic (seeded) traces in the shapes the literature names.
//!
//! ```text
//!  live bytes
//!   ^        ramp            peaks               plateau          churn (uniform, pareto,
//!   |          /|        /|   /|   /|        ______________        larson, producer/consumer,
//!   |        /  |       / |  / |  / |       /              |       glibc-simple LIFO/FIFO)
//!   |      /    |      /  | /  | /  |      /               |       ~~~~~~~~~~~~~~~~~~~~~
//!   |____/______|____/____|/___|/___|____/_________________|___________________________> time
//! ```
//!
//! Wilson et al. (1995) warn that independent random sizes and lifetimes misjudge fragmentation;
//! the ramp, peak and plateau generators follow their description of real programs (sizes tied to
//! phases, objects born together die together). The churn generators follow mimalloc-bench's
//! throughput workloads (larson, glibc-simple, alloc-test's Pareto sizes).

use crate::trace::{Event, Op, Trace};

/// SplitMix64: a small, well-known generator, so every workload is reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Pareto with shape `alpha` and minimum `xmin`, capped at `max`.
    pub fn pareto(&mut self, alpha: f64, xmin: u64, max: u64) -> u64 {
        let u = 1.0 - self.unit(); // (0, 1]
        let x = xmin as f64 / u.powf(1.0 / alpha);
        (x as u64).clamp(xmin, max)
    }
}

/// Builds a trace, handing out fresh IDs.
#[derive(Debug, Default)]
struct Builder {
    events: Vec<Event>,
    next: u64,
}

impl Builder {
    fn alloc(&mut self, thread: Option<u32>, size: u64) -> u64 {
        self.next += 1;
        self.events.push(Event {
            thread,
            id: self.next,
            op: Op::Malloc { size },
        });
        self.next
    }
    fn push(&mut self, thread: Option<u32>, id: u64, op: Op) {
        self.events.push(Event { thread, id, op });
    }
    fn free(&mut self, thread: Option<u32>, id: u64) {
        self.push(thread, id, Op::Free);
    }
    fn finish(self) -> Trace {
        Trace::from_events(self.events)
    }
}

/// Random churn around `max_live` live blocks with sizes from `size` (independent sizes and
/// lifetimes: the kind of trace Wilson warns about, kept as a baseline). About `ops` events;
/// everything is freed at the end. One in 16 operations is a realloc, one in 32 a calloc.
pub fn random_churn(
    ops: usize,
    max_live: usize,
    seed: u64,
    mut size: impl FnMut(&mut Rng) -> u64,
) -> Trace {
    let mut rng = Rng::new(seed);
    let mut b = Builder::default();
    let mut live: Vec<u64> = Vec::new();
    while b.events.len() < ops {
        let r = rng.range(0, 31);
        let fill = live.len() < max_live / 2 || (live.len() < max_live && rng.range(0, 1) == 0);
        if !live.is_empty() && r < 2 {
            let k = rng.range(0, live.len() as u64 - 1) as usize;
            let s = size(&mut rng);
            b.push(None, live[k], Op::Realloc { size: s });
        } else if live.is_empty() || fill {
            let s = size(&mut rng);
            if r == 31 {
                b.next += 1;
                let id = b.next;
                b.push(None, id, Op::Calloc { size: s });
                live.push(id);
            } else {
                live.push(b.alloc(None, s));
            }
        } else {
            let k = rng.range(0, live.len() as u64 - 1) as usize;
            let id = live.swap_remove(k);
            b.free(None, id);
        }
    }
    for id in live {
        b.free(None, id);
    }
    b.finish()
}

/// Uniform sizes in `1..=max_size`.
pub fn uniform(ops: usize, max_size: u64, seed: u64) -> Trace {
    random_churn(ops, 1000, seed, |r| r.range(1, max_size))
}

/// Pareto sizes (shape 1.1, from 16 B, capped at `max_size`), as alloc-test uses up to 1 KiB.
pub fn pareto(ops: usize, max_size: u64, seed: u64) -> Trace {
    random_churn(ops, 1000, seed, |r| r.pareto(1.1, 16, max_size))
}

/// Sizes drawn from a small per-phase set, the way real programs' sizes cluster.
fn phase_sizes(rng: &mut Rng) -> [u64; 4] {
    let mut s = [0; 4];
    for x in &mut s {
        *x = match rng.range(0, 3) {
            0 => rng.range(8, 64),
            1 => rng.range(64, 512),
            2 => rng.range(512, 4096),
            _ => rng.range(16, 128),
        };
    }
    s
}

/// Wilson's ramp: a program that accumulates data and frees little until the end (a compiler's
/// symbol tables). Sizes change by phase; a few short-lived temporaries are freed on the way.
pub fn ramp(ops: usize, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut b = Builder::default();
    let mut kept = Vec::new();
    let mut sizes = phase_sizes(&mut rng);
    while b.events.len() + kept.len() < ops {
        if rng.range(0, 999) == 0 {
            sizes = phase_sizes(&mut rng);
        }
        let s = sizes[rng.range(0, 3) as usize];
        let id = b.alloc(None, s);
        if rng.range(0, 3) == 0 {
            b.free(None, id); // a temporary
        } else {
            kept.push(id);
        }
    }
    for id in kept {
        b.free(None, id);
    }
    b.finish()
}

/// Wilson's peaks: phases that build many objects of phase-specific sizes and free them all
/// together at the phase's end, over a slowly growing long-lived base.
pub fn peaks(ops: usize, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut b = Builder::default();
    let mut base = Vec::new();
    while b.events.len() < ops {
        let sizes = phase_sizes(&mut rng);
        let n = rng.range(500, 4000) as usize;
        let mut phase = Vec::with_capacity(n);
        for _ in 0..n {
            let id = b.alloc(None, sizes[rng.range(0, 3) as usize]);
            if rng.range(0, 49) == 0 {
                base.push(id);
            } else {
                phase.push(id);
            }
        }
        // Objects born together die together, in roughly reverse order.
        while let Some(id) = phase.pop() {
            b.free(None, id);
        }
        // The base occasionally shrinks: old long-lived data is dropped.
        if base.len() > 2000 {
            for id in base.drain(..1000) {
                b.free(None, id);
            }
        }
    }
    for id in base {
        b.free(None, id);
    }
    b.finish()
}

/// Wilson's plateau: build up to a working set quickly, then replace objects steadily (a
/// server's cache), then free everything.
pub fn plateau(ops: usize, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut b = Builder::default();
    let target = (ops / 8).clamp(100, 20_000);
    let sizes = phase_sizes(&mut rng);
    let mut live: Vec<(u64, u64)> = Vec::new();
    for _ in 0..target {
        let s = sizes[rng.range(0, 3) as usize];
        live.push((b.alloc(None, s), s));
    }
    while b.events.len() + live.len() < ops {
        // Replace an old object by one of a size seen in the current mix, sometimes a new one.
        let k = rng.range(0, live.len() as u64 - 1) as usize;
        b.free(None, live[k].0);
        let s = if rng.range(0, 9) == 0 {
            rng.range(8, 2048)
        } else {
            live[rng.range(0, live.len() as u64 - 1) as usize].1
        };
        live[k] = (b.alloc(None, s), s);
    }
    for (id, _) in live {
        b.free(None, id);
    }
    b.finish()
}

/// A larson-like server: `threads` threads each own an array of slots; each step a thread
/// replaces a random slot's object (8-1000 B), and every so often a thread's array is handed to
/// the next thread, which then frees objects another thread allocated.
pub fn larson(ops: usize, threads: u32, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut b = Builder::default();
    let threads = threads.max(1);
    let slots = 500usize;
    let mut arrays: Vec<Vec<Option<u64>>> = vec![vec![None; slots]; threads as usize];
    let mut round = 0u32;
    while b.events.len() < ops {
        for t in 0..threads {
            let a = &mut arrays[((t + round) % threads) as usize];
            for _ in 0..64 {
                let k = rng.range(0, slots as u64 - 1) as usize;
                if let Some(id) = a[k].take() {
                    b.free(Some(t), id);
                }
                a[k] = Some(b.alloc(Some(t), rng.range(8, 1000)));
            }
        }
        round += 1;
    }
    for (t, a) in arrays.into_iter().enumerate() {
        for id in a.into_iter().flatten() {
            b.free(Some(t as u32), id);
        }
    }
    b.finish()
}

/// Producer/consumer: thread 0 allocates messages (64 B - 4 KiB) into a queue; threads
/// `1..=consumers` take them in FIFO order and free them, so every free is cross-thread.
pub fn producer_consumer(ops: usize, consumers: u32, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut b = Builder::default();
    let consumers = consumers.max(1);
    let mut queue = std::collections::VecDeque::new();
    let mut next_consumer = 0;
    while b.events.len() < ops {
        let burst = rng.range(1, 64);
        for _ in 0..burst {
            queue.push_back(b.alloc(Some(0), rng.range(64, 4096)));
        }
        let take = rng.range(1, 64).min(queue.len() as u64);
        for _ in 0..take {
            if let Some(id) = queue.pop_front() {
                b.free(Some(1 + next_consumer), id);
                next_consumer = (next_consumer + 1) % consumers;
            }
        }
    }
    while let Some(id) = queue.pop_front() {
        b.free(Some(1), id);
    }
    b.finish()
}

/// glibc's bench-malloc-simple: rounds of allocating `blocks` (up to 1600) blocks of 16 B, then
/// freeing them all in LIFO (`lifo = true`) or FIFO order.
pub fn glibc_simple(ops: usize, blocks: usize, lifo: bool) -> Trace {
    let mut b = Builder::default();
    let blocks = blocks.clamp(1, 1600);
    let mut ids = Vec::with_capacity(blocks);
    while b.events.len() < ops {
        ids.clear();
        for _ in 0..blocks {
            ids.push(b.alloc(None, 16));
        }
        if lifo {
            for &id in ids.iter().rev() {
                b.free(None, id);
            }
        } else {
            for &id in &ids {
                b.free(None, id);
            }
        }
    }
    b.finish()
}

/// The names of the synthetic workloads the matrix runs (see [`by_name`]).
pub const NAMES: &[&str] = &[
    "uniform",
    "pareto",
    "ramp",
    "peaks",
    "plateau",
    "larson",
    "prodcons",
    "glibc-lifo",
    "glibc-fifo",
];

/// The synthetic workload called `name` with about `ops` events (fixed seeds), or `None`.
pub fn by_name(name: &str, ops: usize) -> Option<Trace> {
    Some(match name {
        "uniform" => uniform(ops, 4096, 1),
        "pareto" => pareto(ops, 1024, 2),
        "ramp" => ramp(ops, 3),
        "peaks" => peaks(ops, 4),
        "plateau" => plateau(ops, 5),
        "larson" => larson(ops, 4, 6),
        "prodcons" => producer_consumer(ops, 3, 7),
        "glibc-lifo" => glibc_simple(ops, 1600, true),
        "glibc-fifo" => glibc_simple(ops, 1600, false),
        _ => return None,
    })
}

/// Every synthetic workload, by name, each of about `ops` events.
pub fn catalog(ops: usize) -> Vec<(&'static str, Trace)> {
    NAMES
        .iter()
        .filter_map(|&n| by_name(n, ops).map(|t| (n, t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_synthetic_trace_is_valid_and_ends_empty() {
        for (name, t) in catalog(20_000) {
            t.check().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(t.len() >= 20_000 && t.len() < 60_000, "{name}: {}", t.len());
            let allocs = t.events.iter().filter(|e| e.op.is_alloc()).count();
            let frees = t.events.iter().filter(|e| e.op == Op::Free).count();
            assert_eq!(allocs, frees, "{name} leaves blocks live");
        }
    }

    #[test]
    fn deterministic_from_the_seed() {
        assert_eq!(uniform(1000, 100, 9), uniform(1000, 100, 9));
        assert_ne!(uniform(1000, 100, 9), uniform(1000, 100, 10));
    }

    #[test]
    fn glibc_simple_by_hand() {
        let t = glibc_simple(1, 2, true);
        let mut out = Vec::new();
        t.write_text(&mut out, "").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a 1 16\na 2 16\nf 2\nf 1\n"
        );
        let t = glibc_simple(1, 2, false);
        assert_eq!(t.events[2], Event::new(1, Op::Free));
    }

    #[test]
    fn producer_consumer_frees_on_other_threads() {
        let t = producer_consumer(2000, 2, 1);
        for e in &t.events {
            match e.op {
                Op::Free => assert_ne!(e.thread, Some(0)),
                _ => assert_eq!(e.thread, Some(0)),
            }
        }
    }

    #[test]
    fn larson_names_its_threads_and_frees_across_them() {
        let t = larson(20_000, 4, 6);
        let mut owner = std::collections::HashMap::new();
        let mut cross = 0;
        for e in &t.events {
            let th = e.thread.expect("every larson event names its thread");
            assert!(th < 4);
            if e.op.is_alloc() {
                owner.insert(e.id, th);
            } else if e.op == Op::Free && owner[&e.id] != th {
                cross += 1;
            }
        }
        assert_eq!(crate::threaded::thread_count(&t), 4);
        assert!(cross > 1000, "{cross} cross-thread frees");
    }

    #[test]
    fn pareto_stays_in_range() {
        let mut r = Rng::new(1);
        let v: Vec<u64> = (0..10_000).map(|_| r.pareto(1.1, 16, 1024)).collect();
        assert!(v.iter().all(|&x| (16..=1024).contains(&x)));
        let small = v.iter().filter(|&&x| x < 64).count();
        assert!(
            small > 7000,
            "Pareto(1.1) puts most mass near the minimum: {small}"
        );
    }
}
