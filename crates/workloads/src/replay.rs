//! Replay: drive a trace through a [`FreeSpaceManager`] or any [`GlobalAlloc`].
//!
//! ```text
//!   Trace ──compile──> Program: steps with dense slots (an ID's live span gets a slot;
//!                      freed slots are reused, so the table is as big as the peak live count)
//!   Program ──replay──> manager / GlobalAlloc, calling back per step with the block's address
//!        slot table: [Some((ptr, layout)), None, ...]
//! ```
//!
//! Requests become layouts as a C program's would: `malloc`, `calloc` and `realloc` ask for
//! [`MALLOC_ALIGN`] (the x86-64 `max_align_t`), `memalign` for the larger of its alignment and
//! that. `calloc` zeroes the block; `realloc` grows or shrinks (keeping the alignment). Frees pass
//! the layout the block was last given, as Rust allocators require.
//!
//! Everything a trace or manager can do wrong is an [`ReplayError`] naming the event, never a
//! panic.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use allocator_traits::{FreeSpaceManager, Stats};

use crate::trace::{Op, Trace};

/// The alignment `malloc` guarantees on x86-64 (and what a replayed `malloc` asks for).
pub const MALLOC_ALIGN: usize = 16;

/// One step of a compiled trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// What happens.
    pub op: Op,
    /// The block's ID in the trace.
    pub id: u64,
    /// Where the replay keeps the block (dense, reused after a free).
    pub slot: u32,
}

/// A trace compiled for replay.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// The steps, in trace order.
    pub steps: Vec<Step>,
    /// Slots needed (the peak number of live blocks).
    pub slots: usize,
}

/// What went wrong in a replay, at which (1-based) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    /// 1-based event number.
    pub event: usize,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}: {}", self.event, self.message)
    }
}

impl std::error::Error for ReplayError {}

impl Program {
    /// Compiles `trace`, checking it (the error names the 1-based event).
    pub fn compile(trace: &Trace) -> Result<Program, ReplayError> {
        let mut map: HashMap<u64, u32> = HashMap::new();
        let mut free_slots: Vec<u32> = Vec::new();
        let mut slots = 0u32;
        let mut steps = Vec::with_capacity(trace.events.len());
        for (i, ev) in trace.events.iter().enumerate() {
            let err = |message: String| ReplayError {
                event: i + 1,
                message,
            };
            let slot = match ev.op {
                op if op.is_alloc() => {
                    if map.contains_key(&ev.id) {
                        return Err(err(format!("block {} allocated while live", ev.id)));
                    }
                    let s = free_slots.pop().unwrap_or_else(|| {
                        slots += 1;
                        slots - 1
                    });
                    map.insert(ev.id, s);
                    s
                }
                Op::Free => {
                    let s = map
                        .remove(&ev.id)
                        .ok_or_else(|| err(format!("free of block {} which is not live", ev.id)))?;
                    free_slots.push(s);
                    s
                }
                _ => *map
                    .get(&ev.id)
                    .ok_or_else(|| err(format!("realloc of block {} which is not live", ev.id)))?,
            };
            steps.push(Step {
                op: ev.op,
                id: ev.id,
                slot,
            });
        }
        Ok(Program {
            steps,
            slots: slots as usize,
        })
    }

    /// Live requested bytes after each step, and their peak.
    pub fn live_profile(&self) -> (Vec<u64>, u64) {
        let mut sizes = vec![0u64; self.slots];
        let mut live = 0u64;
        let mut peak = 0;
        let mut out = Vec::with_capacity(self.steps.len());
        for s in &self.steps {
            let slot = &mut sizes[s.slot as usize];
            live -= *slot;
            *slot = s.op.size().unwrap_or(0);
            live += *slot;
            peak = peak.max(live);
            out.push(live);
        }
        (out, peak)
    }
}

/// The layout a step asks for, or why there is none.
pub fn layout_of(op: Op, old: Option<Layout>) -> Result<Layout, String> {
    let (size, align) = match op {
        Op::Malloc { size } | Op::Calloc { size } => (size, MALLOC_ALIGN as u64),
        Op::Memalign { align, size } => (size, align.max(MALLOC_ALIGN as u64)),
        Op::Realloc { size } => (size, old.map_or(MALLOC_ALIGN, |l| l.align()) as u64),
        Op::Free => return old.ok_or_else(|| "free of an empty slot".to_string()),
    };
    let size = usize::try_from(size).map_err(|_| format!("size {size} too large"))?;
    let align = usize::try_from(align).map_err(|_| format!("alignment {align} too large"))?;
    Layout::from_size_align(size, align)
        .map_err(|_| format!("no layout for {size} bytes aligned to {align}"))
}

/// One point of the footprint-over-time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Events done.
    pub event: usize,
    /// Footprint in bytes at that point.
    pub footprint: usize,
    /// Live requested bytes at that point.
    pub live: usize,
}

/// How to replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Read the manager's stats after every step (exact peaks, the split at the footprint peak,
    /// and a series of about `series_points` points). Off for timing runs.
    pub track: bool,
    /// Points in the footprint series (when tracking).
    pub series_points: usize,
    /// Write one byte in every 4 KiB page of each new block, so resident memory reflects the
    /// blocks as a real program's use would (for measuring peers by resident memory).
    pub touch: bool,
    /// After the (timed) loop, free the blocks the trace left live, so the same manager can
    /// replay the trace again from an empty but warm heap. (A `GlobalAlloc` replay always does.)
    pub free_leftovers: bool,
}

/// What a tracked replay saw at the footprint's peak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtPeak {
    /// Footprint.
    pub footprint: usize,
    /// Bytes held by live blocks.
    pub held: usize,
    /// Live requested bytes.
    pub live: usize,
}

/// What a replay produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The manager's counters at the end (for a `GlobalAlloc`: live bytes only, see
    /// [`replay_global`]).
    pub stats: Stats,
    /// Wall time of the replay loop.
    pub elapsed: Duration,
    /// Steps replayed.
    pub steps: usize,
    /// Footprint over time (when tracking).
    pub series: Vec<Sample>,
    /// The moment the footprint peaked (when tracking a manager).
    pub at_peak: Option<AtPeak>,
}

fn touch(ptr: *mut u8, from: usize, to: usize) {
    let mut off = from;
    while off < to {
        // SAFETY: `off < to <= size of the block at ptr`, which is live and writable.
        unsafe { ptr.add(off).write_volatile(0) };
        off += 4096;
    }
}

struct Series {
    every: usize,
    out: Vec<Sample>,
    pending: Option<Sample>,
}

impl Series {
    fn new(steps: usize, points: usize) -> Self {
        Series {
            every: (steps / points.max(1)).max(1),
            out: Vec::with_capacity(points + 2),
            pending: None,
        }
    }
    /// Keeps the highest footprint within each bucket of `every` events.
    fn offer(&mut self, s: Sample) {
        match &mut self.pending {
            Some(p) if p.footprint >= s.footprint => {}
            p => *p = Some(s),
        }
        if s.event.is_multiple_of(self.every)
            && let Some(p) = self.pending.take()
        {
            {
                self.out.push(Sample {
                    event: s.event,
                    ..p
                });
            }
        }
    }
    fn finish(mut self) -> Vec<Sample> {
        if let Some(p) = self.pending.take() {
            self.out.push(p);
        }
        self.out
    }
}

/// Called with each step that leaves a block live and the block's address.
pub type BlockObserver<'a> = dyn FnMut(&Step, usize) + 'a;

/// Replays `prog` through `m`. `on_block(step, address)` is called after every step that leaves a
/// block live (allocations and reallocs) with the block's address.
pub fn replay_manager(
    m: &mut dyn FreeSpaceManager,
    prog: &Program,
    opts: Options,
    mut on_block: Option<&mut BlockObserver<'_>>,
) -> Result<Outcome, ReplayError> {
    let mut table: Vec<Option<(NonNull<u8>, Layout)>> = vec![None; prog.slots];
    let mut series = Series::new(prog.steps.len(), opts.series_points);
    let mut at_peak = AtPeak::default();
    let start = Instant::now();
    for (i, step) in prog.steps.iter().enumerate() {
        let err = |message: String| ReplayError {
            event: i + 1,
            message,
        };
        let slot = &mut table[step.slot as usize];
        match step.op {
            Op::Free => {
                let (ptr, layout) = slot
                    .take()
                    .ok_or_else(|| err("free of an empty slot".into()))?;
                // SAFETY: `ptr` was allocated by `m` with `layout` (or last resized to it) and
                // is freed once: the slot is emptied here.
                unsafe { m.deallocate(ptr, layout) }
                    .map_err(|e| err(format!("the policy refused a valid free: {e}")))?;
            }
            Op::Realloc { .. } => {
                let (ptr, old) = slot.ok_or_else(|| err("realloc of an empty slot".into()))?;
                let new = layout_of(step.op, Some(old)).map_err(err)?;
                // SAFETY: `ptr` is live in `m` with layout `old`; on success the slot takes
                // the new pointer, on failure the old block is unchanged and still in the slot.
                let r = unsafe {
                    if new.size() >= old.size() {
                        m.grow(ptr, old, new)
                    } else {
                        m.shrink(ptr, old, new)
                    }
                };
                let block = r.map_err(|e| err(format!("realloc to {} bytes: {e}", new.size())))?;
                let p = block.cast::<u8>();
                if block.len() < new.size() {
                    return Err(err(format!(
                        "realloc returned {} bytes, {} asked",
                        block.len(),
                        new.size()
                    )));
                }
                if opts.touch {
                    touch(p.as_ptr(), old.size().min(new.size()), new.size());
                }
                *slot = Some((p, new));
                if let Some(f) = on_block.as_deref_mut() {
                    f(step, p.as_ptr() as usize);
                }
            }
            op => {
                let layout = layout_of(op, None).map_err(err)?;
                let block = m
                    .allocate(layout)
                    .map_err(|e| err(format!("allocation of {} bytes: {e}", layout.size())))?;
                if block.len() < layout.size() {
                    return Err(err(format!(
                        "allocation returned {} bytes, {} asked",
                        block.len(),
                        layout.size()
                    )));
                }
                let p = block.cast::<u8>();
                if matches!(op, Op::Calloc { .. }) {
                    // SAFETY: the block is live, ours, and at least `layout.size()` long.
                    unsafe { p.as_ptr().write_bytes(0, layout.size()) };
                } else if opts.touch {
                    touch(p.as_ptr(), 0, layout.size());
                }
                *slot = Some((p, layout));
                if let Some(f) = on_block.as_deref_mut() {
                    f(step, p.as_ptr() as usize);
                }
            }
        }
        if opts.track {
            let s = m.stats();
            if s.footprint > at_peak.footprint {
                at_peak = AtPeak {
                    footprint: s.footprint,
                    held: s.live_held,
                    live: s.live_requested,
                };
            } else if s.footprint == at_peak.footprint && s.live_requested > at_peak.live {
                // The peak holds while more is live: the favourable reading, as Stats takes it.
                at_peak.held = s.live_held;
                at_peak.live = s.live_requested;
            }
            series.offer(Sample {
                event: i + 1,
                footprint: s.footprint,
                live: s.live_requested,
            });
        }
    }
    let elapsed = start.elapsed();
    let stats = m.stats();
    if opts.free_leftovers {
        for (ptr, layout) in table.into_iter().flatten() {
            // SAFETY: every block left in the table is live in `m` with its layout; each is
            // freed once (the table is consumed).
            let _ = unsafe { m.deallocate(ptr, layout) };
        }
    }
    Ok(Outcome {
        stats,
        elapsed,
        steps: prog.steps.len(),
        series: if opts.track {
            series.finish()
        } else {
            Vec::new()
        },
        at_peak: opts.track.then_some(at_peak),
    })
}

/// Replays `prog` through a `GlobalAlloc` (a peer). A `GlobalAlloc` cannot take a zero size, so a
/// zero-byte request asks for one byte (what C's `malloc(0)` returns is as big). The outcome's
/// stats count live requested bytes (held bytes are not known: they equal requested). When
/// tracking, `footprint()` (an absolute reading, such as the process's resident bytes) is asked
/// once before the first step, as the baseline, and then every `steps / series_points` steps;
/// the series holds the readings minus the baseline.
/// A null result is an error naming the event; the blocks still live are freed before returning.
pub fn replay_global(
    g: &dyn GlobalAlloc,
    prog: &Program,
    opts: Options,
    mut footprint: Option<&mut dyn FnMut() -> usize>,
) -> Result<Outcome, ReplayError> {
    let mut table: Vec<Option<(NonNull<u8>, Layout)>> = vec![None; prog.slots];
    let mut stats = Stats::new();
    let every = (prog.steps.len() / opts.series_points.max(1)).max(1);
    let mut series = Vec::with_capacity(prog.steps.len() / every + 2);
    let base = match footprint.as_deref_mut() {
        Some(f) if opts.track => f(),
        _ => 0,
    };
    let start = Instant::now();
    let mut result = Ok(());
    for (i, step) in prog.steps.iter().enumerate() {
        let err = |message: String| ReplayError {
            event: i + 1,
            message,
        };
        let slot = &mut table[step.slot as usize];
        match step.op {
            Op::Free => {
                let Some((ptr, layout)) = slot.take() else {
                    result = Err(err("free of an empty slot".into()));
                    break;
                };
                // SAFETY: allocated by `g` with `layout`, freed once.
                unsafe { g.dealloc(ptr.as_ptr(), layout) };
                if opts.track {
                    stats.record_free(layout.size(), layout.size());
                }
            }
            Op::Realloc { .. } => {
                let Some((ptr, old)) = *slot else {
                    result = Err(err("realloc of an empty slot".into()));
                    break;
                };
                let new = match layout_of(step.op, Some(old)) {
                    Ok(l) => Layout::from_size_align(l.size().max(1), l.align()).unwrap_or(l),
                    Err(e) => {
                        result = Err(err(e));
                        break;
                    }
                };
                // SAFETY: `ptr` is live in `g` with `old`; `new.size()` is non-zero and valid
                // with `old.align()` (checked by `Layout::from_size_align`).
                let p = unsafe { g.realloc(ptr.as_ptr(), old, new.size()) };
                let Some(p) = NonNull::new(p) else {
                    result = Err(err(format!(
                        "realloc to {} bytes returned null",
                        new.size()
                    )));
                    break;
                };
                if opts.touch {
                    touch(p.as_ptr(), old.size().min(new.size()), new.size());
                }
                if opts.track {
                    stats.record_resize(old.size(), old.size(), new.size(), new.size(), p == ptr);
                }
                *slot = Some((p, new));
            }
            op => {
                let layout = match layout_of(op, None) {
                    Ok(l) => Layout::from_size_align(l.size().max(1), l.align()).unwrap_or(l),
                    Err(e) => {
                        result = Err(err(e));
                        break;
                    }
                };
                // SAFETY: `layout` has a non-zero size.
                let p = unsafe {
                    if matches!(op, Op::Calloc { .. }) {
                        g.alloc_zeroed(layout)
                    } else {
                        g.alloc(layout)
                    }
                };
                let Some(p) = NonNull::new(p) else {
                    result = Err(err(format!(
                        "allocation of {} bytes returned null",
                        layout.size()
                    )));
                    break;
                };
                if opts.touch {
                    // calloc too: an allocator may hand out fresh zero pages without writing
                    // them, and a program that asked for them will use them.
                    touch(p.as_ptr(), 0, layout.size());
                }
                if opts.track {
                    stats.record_alloc(layout.size(), layout.size());
                }
                *slot = Some((p, layout));
            }
        }
        if opts.track
            && (i + 1).is_multiple_of(every)
            && let Some(f) = footprint.as_deref_mut()
        {
            {
                let fp = f().saturating_sub(base);
                stats.set_footprint(fp);
                series.push(Sample {
                    event: i + 1,
                    footprint: fp,
                    live: stats.live_requested,
                });
            }
        }
    }
    let elapsed = start.elapsed();
    if opts.track
        && let Some(f) = footprint
    {
        {
            let fp = f().saturating_sub(base);
            stats.set_footprint(fp);
            series.push(Sample {
                event: prog.steps.len(),
                footprint: fp,
                live: stats.live_requested,
            });
        }
    }
    for (ptr, layout) in table.into_iter().flatten() {
        // SAFETY: every block left in the table is live in `g` with its layout.
        unsafe { g.dealloc(ptr.as_ptr(), layout) };
    }
    result?;
    Ok(Outcome {
        stats,
        elapsed,
        steps: prog.steps.len(),
        series,
        at_peak: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Bump;

    fn prog(text: &str) -> Program {
        Program::compile(&Trace::read_text(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn slots_are_reused() {
        let p = prog("a 1 10\na 2 10\nf 1\na 3 5\nf 2\nf 3\n");
        assert_eq!(p.slots, 2);
        assert_eq!(p.steps[3].slot, 0);
        let (live, peak) = p.live_profile();
        assert_eq!(live, vec![10, 20, 10, 15, 5, 0]);
        assert_eq!(peak, 20);
    }

    #[test]
    fn replay_through_a_manager_by_hand() {
        // Bump: each block takes its size rounded to 16, footprint grows by that and never
        // shrinks; frees only count.
        let mut m = Bump::new(1 << 16);
        let p = prog("a 1 100\nc 2 50\nm 3 64 10\nr 1 200\nf 2\nf 3\n");
        let mut seen = Vec::new();
        let mut cb = |s: &Step, addr: usize| seen.push((s.id, addr));
        let out = replay_manager(
            &mut m,
            &p,
            Options {
                track: true,
                series_points: 100,
                touch: true,
                free_leftovers: false,
            },
            Some(&mut cb),
        )
        .unwrap();
        // footprint: 112 + 64 + (pad to 64: 176 -> 192) 16 + realloc moves: 208 + 208 = 416
        assert_eq!(out.stats.peak_footprint, 416);
        assert_eq!(out.stats.peak_live_requested, 360); // 200 + 50 + 10... at the realloc
        let base = m.base();
        assert_eq!(
            seen,
            vec![(1, base), (2, base + 112), (3, base + 192), (1, base + 208)]
        );
        let at = out.at_peak.unwrap();
        assert_eq!((at.footprint, at.live, at.held), (416, 260, 208 + 64 + 16));
        assert_eq!(out.series.last().unwrap().footprint, 416);
    }

    #[test]
    fn leftovers_are_freed_on_request() {
        let mut m = Bump::new(1 << 16);
        let p = prog("a 1 100\na 2 50\nf 1\n");
        let opts = Options {
            free_leftovers: true,
            ..Options::default()
        };
        let out = replay_manager(&mut m, &p, opts, None).unwrap();
        assert_eq!(out.stats.live_blocks, 1); // as the trace left it
        assert_eq!(m.stats().live_blocks, 0); // then freed
        assert_eq!(m.stats().frees, 2);
    }

    #[test]
    fn a_failing_manager_names_the_event() {
        let mut m = Bump::new(256);
        let p = prog("a 1 100\na 2 100\na 3 100\n");
        let e = replay_manager(&mut m, &p, Options::default(), None).unwrap_err();
        assert_eq!(e.event, 3);
        assert!(e.message.contains("out of memory"), "{e}");
    }

    #[test]
    fn replay_through_the_system_allocator() {
        let p = prog("a 1 100\nc 2 50\nm 3 4096 10\nr 1 200000\nr 1 0\na 4 0\nf 2\nf 3\n");
        let mut calls = 0;
        let mut probe = || {
            calls += 1;
            calls * 1000 + 500
        };
        let out = replay_global(
            &std::alloc::System,
            &p,
            Options {
                track: true,
                series_points: 4,
                touch: true,
                free_leftovers: true,
            },
            Some(&mut probe),
        )
        .unwrap();
        assert_eq!(out.stats.peak_live_requested, 200_060);
        assert_eq!(out.stats.live_requested, 2); // the zero-byte blocks count one byte each
        assert_eq!(out.series.len(), 5);
        // Readings 1500 (the baseline), 2500, ..., 6500: the series is 1000 ..= 5000.
        assert_eq!(out.series[0].footprint, 1000);
        assert_eq!(out.stats.peak_footprint, 5000);
    }
}
