//! A trace compiled for replay: dense slots instead of IDs, layouts as a C program asks.
//!
//! ```text
//!   Trace ──compile──> Program: steps with dense slots (an ID's live span gets a slot;
//!                      freed slots are reused, so the table is as big as the peak live count)
//! ```
//!
//! Requests become layouts as a C program's would: `malloc`, `calloc` and `realloc` ask for
//! [`MALLOC_ALIGN`] (the x86-64 `max_align_t`), `memalign` for the larger of its alignment and
//! that.

use core::alloc::Layout;
use std::collections::HashMap;

use super::error::ReplayError;
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
    /// The trace's source lines ([`Trace::lines`]): errors name them.
    pub lines: Vec<u32>,
}

impl Program {
    /// Compiles `trace`, checking it (the error names the event and its line).
    pub fn compile(trace: &Trace) -> Result<Program, ReplayError> {
        let mut map: HashMap<u64, u32> = HashMap::new();
        let mut free_slots: Vec<u32> = Vec::new();
        let mut slots = 0u32;
        let mut steps = Vec::with_capacity(trace.events.len());
        for (i, ev) in trace.events.iter().enumerate() {
            let err = |message: String| ReplayError::at(&trace.lines, i, message);
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
            lines: trace.lines.clone(),
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

    /// An error at step `index` (0-based), naming its line when known.
    pub fn error(&self, index: usize, message: String) -> ReplayError {
        ReplayError::at(&self.lines, index, message)
    }
}

/// The layout a step asks for, as C's call would (`old`: the block's layout, for a free), or why
/// there is none. `memalign`'s alignment is rounded up to a power of two and to at least
/// [`MALLOC_ALIGN`] (glibc's `_mid_memalign`); a `realloc` asks for [`MALLOC_ALIGN`] whatever
/// the block had (C's realloc guarantees malloc's alignment only).
pub fn layout_of(op: Op, old: Option<Layout>) -> Result<Layout, String> {
    let (size, align) = match op {
        Op::Malloc { size } | Op::Calloc { size } | Op::Realloc { size } => {
            (size, MALLOC_ALIGN as u64)
        }
        Op::Memalign { align, size } => {
            let a = align
                .max(MALLOC_ALIGN as u64)
                .checked_next_power_of_two()
                .ok_or_else(|| format!("alignment {align} too large"))?;
            (size, a)
        }
        Op::Free => return old.ok_or_else(|| "free of an empty slot".to_string()),
    };
    let size = usize::try_from(size).map_err(|_| format!("size {size} too large"))?;
    let align = usize::try_from(align).map_err(|_| format!("alignment {align} too large"))?;
    Layout::from_size_align(size, align)
        .map_err(|_| format!("no layout for {size} bytes aligned to {align}"))
}
