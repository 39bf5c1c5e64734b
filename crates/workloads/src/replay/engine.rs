//! The one event loop: a compiled trace through any [`Target`] (a manager or a `GlobalAlloc`),
//! with one way of handling refusals and errors and one way of sampling.
//!
//! ```text
//!   Program ──replay──> Target (alloc / realloc / free), calling back per step with where
//!        slot table: [Some((ptr, layout)), None, ...]     the block went (its Placement)
//!        after the loop: the counters are read, then every block still live is freed
//! ```
//!
//! **C's semantics.** `calloc` asks for a zeroed block; `realloc(p, 0)` frees `p` and leaves
//! NULL (glibc's behaviour); a realloc of NULL allocates. A refused request (out of memory, a
//! size no layout can hold) leaves NULL, as a C program would see, and counts as a failed
//! allocation: a free of NULL does nothing, a realloc of NULL allocates. With
//! [`Options::strict`] a refusal is an error instead.
//!
//! **Errors.** An allocator misbehaving on valid input (refusing a valid free, a short or
//! misaligned block) stops the replay with a [`ReplayError`] naming the event and its trace
//! line; the blocks still live are freed either way.
//!
//! **Sampling.** When tracking, the target's counters are read after every step (exact peaks and
//! the split at the footprint's peak) and a series of about `series_points` points keeps the
//! highest footprint of each bucket; a target whose footprint is costly to read (a peer's
//! resident memory) reads it before the first step and then once a bucket ([`Target::sample`]).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use std::time::{Duration, Instant};

use allocator_traits::{FreeSpaceManager, OffsetManager, Placement, Stats};

use super::error::ReplayError;
use super::program::{Program, Step, layout_of};
use super::target::{GlobalTarget, ManagerTarget, OffsetTarget, Target};
use crate::trace::Op;

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
    /// Read the counters after every step (exact peaks, the split at the footprint peak, and a
    /// series of about `series_points` points). Off for timing runs.
    pub track: bool,
    /// Points in the footprint series (when tracking).
    pub series_points: usize,
    /// Write one byte in every 4 KiB page of each new block, so resident memory reflects the
    /// blocks as a real program's use would (for measuring peers by resident memory).
    pub touch: bool,
    /// A refused request is an error (`fsm replay --strict`) instead of a NULL the replay goes
    /// on with.
    pub strict: bool,
    /// Run the allocator's invariant walk after every step (`fsm replay --check`): a failure is
    /// the replay's error, naming the event. Slow: for tests and debugging.
    pub check: bool,
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
    /// The counters at the end of the trace (before the leftovers were freed). A request no
    /// layout can hold never reaches the allocator; it is counted in `failed_allocs` here.
    pub stats: Stats,
    /// Wall time of the replay loop.
    pub elapsed: Duration,
    /// Steps replayed.
    pub steps: usize,
    /// Requests refused (they left NULL).
    pub refused: usize,
    /// The first refusal: the event, what was asked and why the allocator could not serve it
    /// (its free space and size class, where the target can look inside itself).
    pub first_refusal: Option<String>,
    /// Footprint over time (when tracking).
    pub series: Vec<Sample>,
    /// The moment the footprint peaked (when tracking).
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
            self.out.push(Sample {
                event: s.event,
                ..p
            });
        }
    }
    fn finish(mut self) -> Vec<Sample> {
        if let Some(p) = self.pending.take() {
            self.out.push(p);
        }
        self.out
    }
}

/// Called after each allocation, calloc, memalign and realloc step with where the block went
/// (`None`: the step left NULL).
pub type BlockObserver<'a> = dyn FnMut(&Step, Option<Placement>) + 'a;

/// What one step left in its slot: a live block, or NULL (and, for a refusal, why, for
/// `--strict`, and whether the allocator saw the request at all).
enum Done {
    Block(NonNull<u8>),
    Null,
    Refused {
        why: String,
        seen: bool,
        layout: Option<Layout>,
    },
}

/// Runs one step against `t`, updating its slot.
fn execute<T: Target + ?Sized>(
    t: &mut T,
    step: &Step,
    slot: &mut Option<(NonNull<u8>, Layout)>,
    opts: Options,
) -> Result<Done, String> {
    let fresh = |t: &mut T, slot: &mut Option<(NonNull<u8>, Layout)>, op: Op| {
        let layout = match layout_of(op, None) {
            Ok(l) => l,
            Err(why) => {
                return Ok(Done::Refused {
                    why,
                    seen: false,
                    layout: None,
                });
            }
        };
        Ok(match t.alloc(layout, matches!(op, Op::Calloc { .. }))? {
            Some(p) => {
                if opts.touch {
                    touch(p.as_ptr(), 0, layout.size());
                }
                *slot = Some((p, layout));
                Done::Block(p)
            }
            None => Done::Refused {
                why: format!(
                    "allocation of {} bytes aligned to {} refused",
                    layout.size(),
                    layout.align()
                ),
                seen: true,
                layout: Some(layout),
            },
        })
    };
    match (step.op, *slot) {
        (Op::Free, None) => Ok(Done::Null), // free(NULL)
        (Op::Free, Some((p, l))) => {
            *slot = None;
            // SAFETY: `p` was allocated by `t` with `l` (or last resized to it) and is freed
            // once: the slot is emptied here.
            unsafe { t.free(p, l) }?;
            Ok(Done::Null)
        }
        (Op::Realloc { size }, None) => fresh(t, slot, Op::Malloc { size }), // realloc(NULL, n)
        (Op::Realloc { size: 0 }, Some((p, l))) => {
            // glibc's realloc(p, 0): frees p, returns NULL.
            *slot = None;
            // SAFETY: as for a free.
            unsafe { t.free(p, l) }?;
            Ok(Done::Null)
        }
        (op @ Op::Realloc { .. }, Some((p, old))) => {
            let new = match layout_of(op, Some(old)) {
                Ok(l) => l,
                Err(why) => {
                    return Ok(Done::Refused {
                        why,
                        seen: false,
                        layout: None,
                    });
                }
            };
            // SAFETY: `p` is live in `t` with `old`; on success the slot takes the new pointer,
            // on a refusal the old block is unchanged and stays in the slot.
            Ok(match unsafe { t.realloc(p, old, new) }? {
                Some((q, new)) => {
                    if opts.touch {
                        touch(q.as_ptr(), old.size().min(new.size()), new.size());
                    }
                    *slot = Some((q, new));
                    Done::Block(q)
                }
                None => Done::Refused {
                    why: format!("realloc to {} bytes refused", new.size()),
                    seen: true,
                    layout: Some(new),
                },
            })
        }
        (op, _) => fresh(t, slot, op),
    }
}

/// Replays `prog` through `t` (see the module docs). `on_block` is told where each allocated or
/// reallocated block went. After the loop the counters are read, then every block still live is
/// freed (also when an error stopped the replay), so the same target can replay again from an
/// empty, warm heap.
pub fn replay<T: Target + ?Sized>(
    t: &mut T,
    prog: &Program,
    opts: Options,
    mut on_block: Option<&mut BlockObserver<'_>>,
) -> Result<Outcome, ReplayError> {
    let mut table: Vec<Option<(NonNull<u8>, Layout)>> = vec![None; prog.slots];
    let mut series = Series::new(prog.steps.len(), opts.series_points);
    let every = series.every;
    let mut at_peak = AtPeak::default();
    let (mut refused, mut unseen) = (0usize, 0u64);
    let mut first_refusal = None;
    if opts.track {
        t.sample();
    }
    let start = Instant::now();
    let mut result = Ok(());
    for (i, step) in prog.steps.iter().enumerate() {
        let done = execute(t, step, &mut table[step.slot as usize], opts);
        let placed = match done {
            Ok(Done::Block(p)) => Some(p),
            Ok(Done::Null) => None,
            Ok(Done::Refused { why, seen, layout }) => {
                // Why, read from the allocator now (a refusal leaves it unchanged): for the
                // strict error, and for the first refusal of a replay that goes on.
                if opts.strict || first_refusal.is_none() {
                    let why = match layout.and_then(|l| t.explain(l)) {
                        Some(explained) => format!("{why}: {explained}"),
                        None => why,
                    };
                    if opts.strict {
                        result = Err(prog.error(i, why));
                        break;
                    }
                    first_refusal = Some(prog.error(i, why).to_string());
                }
                refused += 1;
                if !seen {
                    unseen += 1; // the allocator never saw it: count it here
                }
                None
            }
            Err(message) => {
                result = Err(prog.error(i, message));
                break;
            }
        };
        if step.op != Op::Free
            && let Some(f) = on_block.as_deref_mut()
        {
            f(step, placed.map(|p| t.placement(p)));
        }
        if opts.check
            && let Err(message) = t.check()
        {
            result = Err(prog.error(i, message));
            break;
        }
        if opts.track {
            if (i + 1).is_multiple_of(every) {
                t.sample();
            }
            let s = t.stats();
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
    let mut stats = t.stats();
    stats.failed_allocs += unseen;
    for (ptr, layout) in table.into_iter().flatten() {
        // SAFETY: every block left in the table is live in `t` with its layout; each is freed
        // once (the table is consumed).
        let _ = unsafe { t.free(ptr, layout) };
    }
    result?;
    Ok(Outcome {
        stats,
        elapsed,
        steps: prog.steps.len(),
        refused,
        first_refusal,
        series: if opts.track {
            series.finish()
        } else {
            Vec::new()
        },
        at_peak: opts.track.then_some(at_peak),
    })
}

/// `OP ID SIZE WHERE` for an allocating step: WHERE is the block's offset from the main heap's
/// start, `MMAP` for a block in a mapping of its own, or `NULL` where the step left NULL (what
/// `fsm replay --offsets` prints, and glibc's replayer in ptmalloc2's comparison).
pub fn offset_line(step: &Step, at: Option<Placement>) -> String {
    let size = step.op.size().unwrap_or(0);
    match at {
        Some(p) => format!("{} {} {size} {p}", step.op.letter(), step.id),
        None => format!("{} {} {size} NULL", step.op.letter(), step.id),
    }
}

/// Replays `prog` through `m` and gives its [`offset_line`]s, one per allocating step, each
/// ending in a newline.
pub fn replay_offsets(
    m: &mut dyn FreeSpaceManager,
    prog: &Program,
    opts: Options,
) -> Result<(String, Outcome), ReplayError> {
    let mut text = String::new();
    let mut note = |s: &Step, at: Option<Placement>| {
        text.push_str(&offset_line(s, at));
        text.push('\n');
    };
    let out = replay_manager(m, prog, opts, Some(&mut note))?;
    Ok((text, out))
}

/// Replays `prog` through the manager `m` (its own counters are the outcome's).
pub fn replay_manager(
    m: &mut dyn FreeSpaceManager,
    prog: &Program,
    opts: Options,
    on_block: Option<&mut BlockObserver<'_>>,
) -> Result<Outcome, ReplayError> {
    replay(&mut ManagerTarget(m), prog, opts, on_block)
}

/// Replays `prog` through the offset manager `m` (see [`OffsetTarget`]: its own counters are
/// the outcome's, `realloc` places anew and frees the old range). Blocks are never touched
/// (`opts.touch` is ignored: there is no memory behind an offset).
pub fn replay_offset_manager(
    m: &mut dyn OffsetManager,
    prog: &Program,
    opts: Options,
    on_block: Option<&mut BlockObserver<'_>>,
) -> Result<Outcome, ReplayError> {
    let opts = Options {
        touch: false,
        ..opts
    };
    replay(&mut OffsetTarget(m), prog, opts, on_block)
}

/// Replays `prog` through a `GlobalAlloc` (a peer). Its counters are kept by the replay (see
/// [`GlobalTarget`]); when tracking, `footprint()` (an absolute reading, such as the process's
/// resident bytes) is read before the first step and then once every `steps / series_points`
/// steps, the footprint being the readings minus the first.
pub fn replay_global(
    g: &dyn GlobalAlloc,
    prog: &Program,
    opts: Options,
    footprint: Option<&mut dyn FnMut() -> usize>,
) -> Result<Outcome, ReplayError> {
    replay(
        &mut GlobalTarget::new(g, opts.track, footprint),
        prog,
        opts,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Bump;
    use crate::trace::Trace;

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
        let mut cb = |s: &Step, at: Option<Placement>| seen.push((s.id, at));
        let out = replay_manager(
            &mut m,
            &p,
            Options {
                track: true,
                series_points: 100,
                touch: true,
                ..Options::default()
            },
            Some(&mut cb),
        )
        .unwrap();
        // footprint: 112 + 64 + (pad to 64: 176 -> 192) 16 + realloc moves: 208 + 208 = 416
        assert_eq!(out.stats.peak_footprint, 416);
        assert_eq!(out.stats.peak_live_requested, 360); // 200 + 50 + 10... at the realloc
        let at = |o| Some(Placement::Heap(o));
        assert_eq!(
            seen,
            vec![(1, at(0)), (2, at(112)), (3, at(192)), (1, at(208))]
        );
        let at = out.at_peak.unwrap();
        assert_eq!((at.footprint, at.live, at.held), (416, 260, 208 + 64 + 16));
        assert_eq!(out.series.last().unwrap().footprint, 416);
        // The outcome's counters are the trace's end; then the leftover (block 1) was freed.
        assert_eq!(out.stats.live_blocks, 1);
        assert_eq!(m.stats().live_blocks, 0);
    }

    #[test]
    fn replay_through_an_offset_manager_by_hand() {
        // OffsetBump: as Bump, over offsets 0..4096. A realloc places the new size first, then
        // frees the old range (no resize in place), and calloc is a plain allocation.
        let mut m = crate::testing::OffsetBump::new(4096);
        let p = prog("a 1 100\nc 2 50\nm 3 64 10\nr 1 200\nf 2\nf 3\n");
        let mut seen = Vec::new();
        let mut cb = |s: &Step, at: Option<Placement>| seen.push((s.id, at));
        let opts = Options {
            track: true,
            series_points: 100,
            check: true,
            // Ignored: there is no memory behind an offset.
            touch: true,
            ..Options::default()
        };
        let out = replay_offset_manager(&mut m, &p, opts, Some(&mut cb)).unwrap();
        let at = |o| Some(Placement::Heap(o));
        assert_eq!(
            seen,
            vec![(1, at(0)), (2, at(112)), (3, at(192)), (1, at(208))]
        );
        assert_eq!(out.stats.peak_footprint, 416);
        assert_eq!(out.stats.resizes, 0);
        assert_eq!((out.stats.allocs, out.stats.frees), (4, 3));
        // The leftover range (block 1) was freed after the counters were read.
        assert_eq!(out.stats.live_blocks, 1);
        assert_eq!(allocator_traits::OffsetManager::stats(&m).live_blocks, 0);
    }

    #[test]
    fn an_offset_manager_that_misplaces_a_range_stops_the_replay() {
        // A planted fault: every offset is 8 bytes past the range placed, so the 16-aligned
        // malloc gets a misaligned offset, which the target names.
        let mut m = crate::testing::OffsetBump::new(4096);
        m.skew = 8;
        let e = replay_offset_manager(&mut m, &prog("a 1 100\n"), Options::default(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offset 8 is not aligned to 16"), "{e}");
    }

    #[test]
    fn a_refusal_leaves_null_and_the_replay_goes_on() {
        // 256 bytes: the third 100-byte block does not fit. As C sees it, block 3 is NULL: its
        // free does nothing, a realloc of it allocates (and is refused again).
        let p = prog("a 1 100\na 2 100\na 3 100\nr 3 50\nf 3\nf 1\na 4 16\n");
        let mut m = Bump::new(256);
        let mut seen = Vec::new();
        let mut cb = |s: &Step, at: Option<Placement>| seen.push((s.id, at.is_some()));
        let out = replay_manager(&mut m, &p, Options::default(), Some(&mut cb)).unwrap();
        assert_eq!(out.refused, 2, "{out:?}"); // the realloc of NULL did not fit either
        assert_eq!(
            out.first_refusal.as_deref(),
            Some(
                "line 3: allocation of 100 bytes aligned to 16 refused: the largest free block \
                 is 32 B, 32 B free in all in 1 block; footprint 224 B"
            )
        );
        assert_eq!(
            seen,
            vec![(1, true), (2, true), (3, false), (3, false), (4, true)]
        );
        assert!(out.stats.failed_allocs >= 1);
        // --strict: the refusal is the error, naming the event (no line: not read from text).
        let mut m = Bump::new(256);
        let e = replay_manager(
            &mut m,
            &p,
            Options {
                strict: true,
                ..Options::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!((e.event, e.line), (3, Some(3)));
        assert!(
            e.to_string().starts_with("line 3: allocation of 100 bytes"),
            "{e}"
        );
        assert_eq!(m.stats().live_blocks, 0, "the blocks still live were freed");
    }

    #[test]
    fn sizes_no_layout_holds_are_refused_and_counted() {
        let p = prog("a 1 100\na 2 18446744073709551615\nr 1 9223372036854775808\nf 2\n");
        let mut m = Bump::new(1 << 16);
        let out = replay_manager(&mut m, &p, Options::default(), None).unwrap();
        assert_eq!(out.refused, 2);
        assert_eq!(
            out.stats.failed_allocs, 2,
            "never seen by the manager: counted here"
        );
        assert_eq!(
            out.stats.live_blocks, 1,
            "block 1 is unchanged by the refused realloc"
        );
    }

    #[test]
    fn check_runs_the_walk_after_every_step() {
        // Bump's walk fails once its pointer passes the region's end, which never happens; a
        // walk that fails is reported at its event.
        let p = prog("a 1 100\na 2 100\n");
        let mut m = Bump::new(1 << 16);
        let opts = Options {
            check: true,
            ..Options::default()
        };
        replay_manager(&mut m, &p, opts, None).unwrap();
        let mut m = Bump::new(1 << 16);
        m.corrupt_after(1);
        let e = replay_manager(&mut m, &p, opts, None).unwrap_err();
        assert_eq!(e.event, 2, "{e}");
        assert!(e.message.contains("invariant walk"), "{e}");
    }

    #[test]
    fn realloc_to_zero_frees_as_glibc_does() {
        let p = prog("a 1 100\nr 1 0\nf 1\n");
        let mut m = Bump::new(1 << 16);
        let mut seen = Vec::new();
        let mut cb = |s: &Step, at: Option<Placement>| seen.push((s.op, at.is_some()));
        let out = replay_manager(&mut m, &p, Options::default(), Some(&mut cb)).unwrap();
        assert_eq!(
            seen,
            vec![
                (Op::Malloc { size: 100 }, true),
                (Op::Realloc { size: 0 }, false)
            ]
        );
        assert_eq!((out.stats.frees, out.stats.live_blocks), (1, 0));
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
                ..Options::default()
            },
            Some(&mut probe),
        )
        .unwrap();
        assert_eq!(out.stats.peak_live_requested, 200_060);
        assert_eq!(out.stats.live_requested, 1); // block 4: a zero-byte block counts one byte
        // Readings 1500 (the baseline, before the first step), then after steps 2, 4, 6, 8:
        // 2500 .. 5500, so the series is 1000 ..= 4000.
        assert_eq!(out.series.len(), 4);
        assert_eq!(out.series[0].footprint, 1000);
        assert_eq!(out.stats.peak_footprint, 4000);
    }
}
