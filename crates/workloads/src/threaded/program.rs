//! A trace compiled for a threaded replay: each thread's events, each block's lifetimes.

use core::alloc::Layout;
use std::collections::HashMap;

use crate::replay::{ReplayError, layout_of};
use crate::trace::{Op, Trace};

/// The size (at least 1) and alignment an allocation asks for. A request no layout can hold
/// is kept as `usize::MAX` bytes: the replay's call is refused (NULL), as C's would be.
fn request(op: Op) -> (usize, usize) {
    layout_of(op, None).map_or((usize::MAX, crate::replay::MALLOC_ALIGN), |l| {
        (l.size().max(1), l.align())
    })
}

/// At most this many threads are replayed (one OS thread each).
pub const MAX_THREADS: usize = 256;

/// What one event of a thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `malloc` (or `memalign`) of `size` bytes.
    Alloc,
    /// `calloc`: the block must read as zero.
    AllocZeroed,
    /// `realloc` from the block's previous size to `size`.
    Realloc {
        /// The block's size before.
        old_size: usize,
    },
    /// `free`.
    Free,
}

/// One event of a thread's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadStep {
    /// What happens.
    pub action: Action,
    /// The block's lifetime (index into [`ThreadedProgram::lives`]).
    pub life: u32,
    /// The event's place in its lifetime (0 = the allocation).
    pub seq: u32,
    /// Whether the previous event of this lifetime ran on another thread (so this one may wait).
    pub cross: bool,
    /// The block's size after the event (for a free: its size before), at least 1.
    pub size: usize,
    /// 1-based event number in the trace (for errors).
    pub event: usize,
}

/// One block's lifetime: from its allocation to its free (or the end of the trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Life {
    /// Its alignment (a realloc keeps it).
    pub align: usize,
    /// The thread index that allocated it.
    pub thread: u32,
}

/// A trace compiled for a threaded replay.
#[derive(Debug, Clone, Default)]
pub struct ThreadedProgram {
    /// Each thread's events in trace order; thread index `i` is the trace's
    /// `thread_ids[i]` (`None`: events without a thread field).
    pub threads: Vec<Vec<ThreadStep>>,
    /// The trace's thread IDs, in order of first appearance.
    pub thread_ids: Vec<Option<u32>>,
    /// Every block lifetime.
    pub lives: Vec<Life>,
    /// Events in the trace.
    pub events: usize,
    /// The trace's source lines ([`Trace::lines`]): errors name them.
    pub lines: Vec<u32>,
}

impl ThreadedProgram {
    /// Compiles `trace`, checking it: the error names the 1-based event (a free or realloc of a
    /// block that is not live, an allocation of a live ID, a size with no layout, more than
    /// [`MAX_THREADS`] threads).
    pub fn compile(trace: &Trace) -> Result<ThreadedProgram, ReplayError> {
        let mut tindex: HashMap<Option<u32>, u32> = HashMap::new();
        let mut p = ThreadedProgram {
            events: trace.events.len(),
            lines: trace.lines.clone(),
            ..ThreadedProgram::default()
        };
        // ID -> (lifetime, events so far, size now, thread of the last event).
        let mut live: HashMap<u64, (u32, u32, usize, u32)> = HashMap::new();
        for (i, ev) in trace.events.iter().enumerate() {
            let err = |message: String| ReplayError::at(&trace.lines, i, message);
            let t = match tindex.get(&ev.thread) {
                Some(&t) => t,
                None => {
                    if p.threads.len() == MAX_THREADS {
                        return Err(err(format!(
                            "more than {MAX_THREADS} threads (a threaded replay runs one OS thread each)"
                        )));
                    }
                    let t = p.threads.len() as u32;
                    tindex.insert(ev.thread, t);
                    p.thread_ids.push(ev.thread);
                    p.threads.push(Vec::new());
                    t
                }
            };
            let step = match ev.op {
                op if op.is_alloc() => {
                    if live.contains_key(&ev.id) {
                        return Err(err(format!("block {} allocated while live", ev.id)));
                    }
                    let (size, align) = request(op);
                    let life = u32::try_from(p.lives.len())
                        .map_err(|_| err("more than 2^32 block lifetimes".into()))?;
                    p.lives.push(Life { align, thread: t });
                    live.insert(ev.id, (life, 1, size, t));
                    ThreadStep {
                        action: if matches!(op, Op::Calloc { .. }) {
                            Action::AllocZeroed
                        } else {
                            Action::Alloc
                        },
                        life,
                        seq: 0,
                        cross: false,
                        size,
                        event: i + 1,
                    }
                }
                Op::Free => {
                    let (life, seq, size, last) = live
                        .remove(&ev.id)
                        .ok_or_else(|| err(format!("free of block {} which is not live", ev.id)))?;
                    ThreadStep {
                        action: Action::Free,
                        life,
                        seq,
                        cross: last != t,
                        size,
                        event: i + 1,
                    }
                }
                op => {
                    let e = live.get_mut(&ev.id).ok_or_else(|| {
                        err(format!("realloc of block {} which is not live", ev.id))
                    })?;
                    let (life, seq, old_size, last) = *e;
                    let align = p.lives[life as usize].align;
                    let old = Layout::from_size_align(old_size, align)
                        .map_err(|_| err("bad layout".into()))?;
                    let next = seq
                        .checked_add(1)
                        .ok_or_else(|| err("too many reallocs of one block".into()))?;
                    if op.size() == Some(0) {
                        // glibc's realloc(p, 0) frees p: the ID names NULL from here on.
                        *e = (life, next, 1, t);
                        ThreadStep {
                            action: Action::Free,
                            life,
                            seq,
                            cross: last != t,
                            size: old_size,
                            event: i + 1,
                        }
                    } else {
                        let size = match layout_of(op, Some(old)) {
                            Ok(new) => new.size().max(1),
                            // No layout holds it: the realloc will be refused (NULL).
                            Err(_) => usize::MAX,
                        };
                        *e = (life, next, size, t);
                        ThreadStep {
                            action: Action::Realloc { old_size },
                            life,
                            seq,
                            cross: last != t,
                            size,
                            event: i + 1,
                        }
                    }
                }
            };
            p.threads[t as usize].push(step);
        }
        Ok(p)
    }

    /// An error at event `index` (0-based), naming its line when known.
    pub fn error(&self, index: usize, message: String) -> ReplayError {
        ReplayError::at(&self.lines, index, message)
    }

    /// Threads in the trace.
    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// Events on a block whose previous event ran on another thread (frees and reallocs).
    pub fn cross_thread_events(&self) -> usize {
        self.threads.iter().flatten().filter(|s| s.cross).count()
    }

    /// Bytes a [`BumpFloor`](super::BumpFloor) needs for one replay: every allocation and realloc's size plus its
    /// alignment (nothing is reused).
    pub fn bump_bytes(&self) -> usize {
        self.threads
            .iter()
            .flatten()
            .filter(|s| s.action != Action::Free)
            .map(|s| s.size.saturating_add(self.lives[s.life as usize].align))
            .fold(0usize, usize::saturating_add)
    }
}

/// The distinct thread IDs of a trace (events without one count as one thread).
pub fn thread_count(trace: &Trace) -> usize {
    let mut seen: Vec<Option<u32>> = Vec::new();
    for e in &trace.events {
        if !seen.contains(&e.thread) {
            seen.push(e.thread);
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(text: &str) -> Trace {
        Trace::read_text(text.as_bytes()).unwrap()
    }

    #[test]
    fn compile_splits_threads_and_marks_cross_thread_events() {
        let p = ThreadedProgram::compile(&trace(
            "t0 a 1 100\nt0 a 2 200\nt1 f 1\nt1 a 1 50\nt0 f 1\nt1 r 2 400\nt1 f 2\n",
        ))
        .unwrap();
        assert_eq!(p.thread_count(), 2);
        assert_eq!(p.thread_ids, vec![Some(0), Some(1)]);
        assert_eq!(p.lives.len(), 3); // ID 1 is reused: a new lifetime
        let t0: Vec<(Action, u32, u32, bool)> = p.threads[0]
            .iter()
            .map(|s| (s.action, s.life, s.seq, s.cross))
            .collect();
        assert_eq!(
            t0,
            vec![
                (Action::Alloc, 0, 0, false),
                (Action::Alloc, 1, 0, false),
                (Action::Free, 2, 1, true),
            ]
        );
        let t1: Vec<(Action, u32, u32, bool)> = p.threads[1]
            .iter()
            .map(|s| (s.action, s.life, s.seq, s.cross))
            .collect();
        assert_eq!(
            t1,
            vec![
                (Action::Free, 0, 1, true),
                (Action::Alloc, 2, 0, false),
                (Action::Realloc { old_size: 200 }, 1, 1, true),
                (Action::Free, 1, 2, false), // the realloc ran on this thread
            ]
        );
        assert_eq!(p.threads[1][2].size, 400);
        assert_eq!(p.threads[1][3].size, 400);
        assert_eq!(p.cross_thread_events(), 3);
        assert_eq!(p.threads[1][0].event, 3);
    }

    #[test]
    fn bad_traces_are_errors_naming_the_event() {
        let e = ThreadedProgram::compile(&Trace::from_events(vec![
            crate::trace::Event::new(1, Op::Malloc { size: 8 }),
            crate::trace::Event::new(2, Op::Free),
        ]))
        .unwrap_err();
        assert_eq!(e.event, 2);
        assert!(e.message.contains("free of block 2"), "{e}");
        let e = ThreadedProgram::compile(&Trace::from_events(vec![
            crate::trace::Event::new(1, Op::Malloc { size: 8 }),
            crate::trace::Event::new(1, Op::Calloc { size: 8 }),
        ]))
        .unwrap_err();
        assert_eq!(e.event, 2);
        let e = ThreadedProgram::compile(&Trace::from_events(vec![crate::trace::Event::new(
            7,
            Op::Realloc { size: 8 },
        )]))
        .unwrap_err();
        assert_eq!(
            (e.event, e.message.contains("realloc of block 7")),
            (1, true)
        );
        // memalign(24, 8) asks for 32-byte alignment, as glibc rounds it.
        let p = ThreadedProgram::compile(&Trace::from_events(vec![crate::trace::Event::new(
            7,
            Op::Memalign { align: 24, size: 8 },
        )]))
        .unwrap();
        assert_eq!(p.lives[0].align, 32);
        let many: Vec<crate::trace::Event> = (0..=MAX_THREADS as u32)
            .map(|t| crate::trace::Event {
                thread: Some(t),
                id: u64::from(t),
                op: Op::Malloc { size: 1 },
            })
            .collect();
        let e = ThreadedProgram::compile(&Trace::from_events(many)).unwrap_err();
        assert_eq!(e.event, MAX_THREADS + 1);
    }
}
