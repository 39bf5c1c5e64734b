//! The op language of `malloc.py` and its two drivers: an explicit list (`-A +10,-0`) and the
//! seeded random generator. A driver turns ops into calls on an [`Engine`] and prints what
//! `malloc.py` prints for each; the engine says what the heap did and how its state reads.
//!
//! ```text
//!   -A "+10,-0"  --explicit()--+
//!                              +--> Engine::malloc / Engine::free --> op lines + Engine::dump
//!   -s/-n/-r/-P  --random()----+              (and an SVG row per op, through Engine::snapshot)
//! ```
//!
//! The printing rules (section 3 and 4 of the reference) live here, once, for every engine:
//! ptr numbering that counts failed allocations, `Invalid Free: Skipping` with no dump, stale and
//! double frees going to the engine, `List?` without a trailing space in `-A` mode and with one
//! in random mode, and the places where `malloc.py` crashes.

use std::collections::BTreeMap;
use std::io::Write;

use super::mt::PyRandom;
use super::opts::py_int;
use super::svg::Snapshot;

/// Why a run stopped early.
#[derive(Debug)]
pub enum Stop {
    /// `malloc.py` would have died here; the message names the op or flag and why.
    Crash(String),
    /// Writing the output failed (a closed pipe, a full disk).
    Io(std::io::Error),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

/// The outcome of one allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malloc {
    /// The block's address as the engine reports it (`None`: the allocation failed).
    pub addr: Option<i128>,
    /// How many free-list entries the search examined, where the engine counts them.
    pub searched: Option<usize>,
}

/// A heap the drivers can run ops on and print.
pub trait Engine {
    /// Serves an allocation of `size` bytes (the `N` of `+N`). `Err` is a crash.
    fn malloc(&mut self, size: i128) -> Result<Malloc, String>;
    /// Frees the block at `addr` (an address [`Engine::malloc`] returned): `true` if a block was
    /// there and is now free (`returned 0`), `false` if nothing was there (`returned -1`).
    fn free(&mut self, addr: i128) -> Result<bool, String>;
    /// The address printed after `returned` for an allocation result (`None`: failed).
    fn shown_address(&self, addr: Option<i128>, random_mode: bool) -> i128 {
        let _ = random_mode;
        addr.unwrap_or(-1)
    }
    /// Writes the engine's state after an op (the `-c` answer), each line ending in `\n`.
    fn dump(&self, out: &mut String);
    /// The heap's blocks, for a picture.
    fn snapshot(&self) -> Snapshot;
}

/// What the drivers print and record, besides the engine.
pub struct Output<'a> {
    /// Where the text goes.
    pub out: &'a mut dyn Write,
    /// `-c`: print answers instead of `?`.
    pub compute: bool,
    /// Rows for the SVG (`None`: no picture asked for).
    pub rows: Option<Vec<(String, Snapshot)>>,
}

impl Output<'_> {
    fn op_done(&mut self, engine: &dyn Engine, text: &mut String, label: String, random: bool) {
        if self.compute {
            engine.dump(text);
        } else if random {
            text.push_str("List? \n");
        } else {
            text.push_str("List?\n");
        }
        text.push('\n');
        if let Some(rows) = &mut self.rows {
            rows.push((label, engine.snapshot()));
        }
    }

    fn alloc_line(
        &self,
        engine: &dyn Engine,
        text: &mut String,
        c: usize,
        size: i128,
        r: Malloc,
        random: bool,
    ) {
        text.push_str(&format!("ptr[{c}] = Alloc({size})"));
        if self.compute {
            text.push_str(&format!(
                " returned {}",
                engine.shown_address(r.addr, random)
            ));
            if let Some(k) = r.searched {
                text.push_str(&format!(" (searched {k} elements)"));
            }
            text.push('\n');
        } else {
            text.push_str(" returned ?\n");
        }
    }

    fn free_lines(&self, text: &mut String, index: usize, freed: bool) {
        text.push_str(&format!("Free(ptr[{index}])\n"));
        if self.compute {
            text.push_str(if freed {
                "returned 0\n"
            } else {
                "returned -1\n"
            });
        } else {
            text.push_str("returned ?\n");
        }
    }
}

/// Runs an explicit op list (`-A`), as section 3.1 of the reference describes.
pub fn explicit(engine: &mut dyn Engine, list: &str, o: &mut Output<'_>) -> Result<(), Stop> {
    // ptr number -> block address, successful allocations only, never removed.
    let mut p: BTreeMap<usize, i128> = BTreeMap::new();
    let mut c = 0usize;
    for (k, op) in list.split(',').enumerate() {
        let n = k + 1;
        let mut text = String::new();
        let label;
        match op.chars().next() {
            None => {
                return Err(Stop::Crash(format!(
                    "op #{n} of -A {list:?} is empty: a trailing or doubled comma \
                     (malloc.py stops with IndexError)"
                )));
            }
            Some('+') => {
                let field = op.split('+').nth(1).unwrap_or("");
                let size = py_int(field, 10).ok_or_else(|| bad_number(op, n, field))?;
                let r = engine
                    .malloc(size)
                    .map_err(|why| Stop::Crash(format!("op {op:?} (#{n}): {why}")))?;
                // malloc.py records a block only `if ptr != -1`: a block placed at address -1
                // (a negative `-b`) is taken for a failure, though the heap keeps it.
                if let Some(a) = r.addr.filter(|&a| a != -1) {
                    p.insert(c, a);
                }
                o.alloc_line(&*engine, &mut text, c, size, r, false);
                label = format!("ptr[{c}] = Alloc({size})");
                c += 1;
            }
            Some('-') => {
                let field = op.split('-').nth(1).unwrap_or("");
                let index = py_int(field, 10).ok_or_else(|| bad_number(op, n, field))?;
                // `index >= len(p)` (successful allocations so far), and negative indices are
                // below it: Python's dict lookup then fails with KeyError.
                if index >= p.len() as i128 {
                    o.out.write_all(b"Invalid Free: Skipping\n")?;
                    continue;
                }
                text.push_str(&format!("Free(ptr[{index}])\n"));
                let Some(&addr) = usize::try_from(index).ok().and_then(|i| p.get(&i)) else {
                    o.out.write_all(text.as_bytes())?;
                    return Err(Stop::Crash(format!(
                        "op {op:?} (#{n}): ptr[{index}] names an allocation that failed, so \
                         there is no block to free (malloc.py stops with KeyError)"
                    )));
                };
                text.clear();
                let freed = engine
                    .free(addr)
                    .map_err(|why| Stop::Crash(format!("op {op:?} (#{n}): {why}")))?;
                o.free_lines(&mut text, index as usize, freed);
                label = format!("Free(ptr[{index}])");
            }
            Some(_) => {
                return Err(Stop::Crash(format!(
                    "op {op:?} (#{n}): an op is +SIZE or -INDEX \
                     (malloc.py stops with NameError: name 'abort' is not defined)"
                )));
            }
        }
        o.op_done(&*engine, &mut text, label, false);
        o.out.write_all(text.as_bytes())?;
    }
    Ok(())
}

fn bad_number(op: &str, n: usize, field: &str) -> Stop {
    Stop::Crash(format!(
        "op {op:?} (#{n}): {field:?} is not an integer (malloc.py stops with ValueError)"
    ))
}

/// The random driver's parameters (`-s -n -r -P`).
#[derive(Debug, Clone, Copy)]
pub struct RandomParams {
    /// `-s`.
    pub seed: i128,
    /// `-n`: ops to perform.
    pub num_ops: i128,
    /// `-r`: sizes are drawn from `1..=r`.
    pub range: i128,
    /// `-P`: percent of ops that are allocations.
    pub percent: i128,
}

/// Runs the random generator, as section 3.2 of the reference describes.
pub fn random(engine: &mut dyn Engine, prm: RandomParams, o: &mut Output<'_>) -> Result<(), Stop> {
    let mut rng = PyRandom::new(prm.seed);
    let percent = prm.percent as f64 / 100.0;
    // ptr number -> address of live blocks; `live` holds their numbers in allocation order.
    let mut p: BTreeMap<usize, i128> = BTreeMap::new();
    let mut live: Vec<usize> = Vec::new();
    let (mut c, mut j) = (0usize, 0i128);
    while j < prm.num_ops {
        let mut text = String::new();
        let label;
        if rng.random() < percent {
            let size = (rng.random() * prm.range as f64) as i128 + 1;
            let r = engine.malloc(size).map_err(|why| {
                Stop::Crash(format!("random op {} (Alloc({size})): {why}", j + 1))
            })?;
            // As in explicit mode: a block at address -1 is taken for a failure.
            if let Some(a) = r.addr.filter(|&a| a != -1) {
                p.insert(c, a);
                live.push(c);
            }
            o.alloc_line(&*engine, &mut text, c, size, r, true);
            label = format!("ptr[{c}] = Alloc({size})");
            c += 1;
        } else if !p.is_empty() {
            let d = (rng.random() * live.len() as f64) as usize;
            let idx = live[d];
            let addr = p[&idx];
            let freed = engine
                .free(addr)
                .map_err(|why| Stop::Crash(format!("random op {} (Free): {why}", j + 1)))?;
            o.free_lines(&mut text, idx, freed);
            p.remove(&idx);
            live.remove(d);
            label = format!("Free(ptr[{idx}])");
        } else {
            continue;
        }
        j += 1;
        o.op_done(&*engine, &mut text, label, true);
        o.out.write_all(text.as_bytes())?;
    }
    Ok(())
}
