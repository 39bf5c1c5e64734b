//! Replay: drive a trace through a [`FreeSpaceManager`](allocator_traits::FreeSpaceManager) or
//! any [`GlobalAlloc`](core::alloc::GlobalAlloc), on one thread.
//!
//! ```text
//!   Trace ──compile──> Program ──replay──> Target ──> Outcome (stats, series, at the peak, time)
//!         (program)              (engine)  (target: ManagerTarget | GlobalTarget |
//!                                                    OffsetTarget)
//! ```
//!
//! * [`program`]: the compiled trace (dense slots, C's layouts);
//! * [`target`]: C's allocation calls over a manager, an offset manager or a `GlobalAlloc`;
//! * [`engine`]: the one event loop, with one handling of refusals and errors and one sampling;
//!   the threaded replay ([`crate::threaded`]) runs each thread's events through the same
//!   [`Target`] calls.

pub mod engine;
pub mod error;
pub mod program;
pub mod target;

pub use engine::{
    AtPeak, BlockObserver, Options, Outcome, Sample, offset_line, replay, replay_global,
    replay_manager, replay_offset_manager, replay_offsets,
};
pub use error::ReplayError;
pub use program::{MALLOC_ALIGN, Program, Step, layout_of};
pub use target::{GlobalTarget, ManagerTarget, OffsetTarget, Target};
