//! What went wrong in a replay, and where in the trace.

use std::fmt;

/// What went wrong in a replay, at which event (and, for a trace read from text, which line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    /// 1-based event number (0: not about one event, e.g. a thread that could not start).
    pub event: usize,
    /// 1-based line of the trace file the event came from, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl ReplayError {
    /// An error at event `index` (0-based) of a program, naming its source line when known.
    pub(crate) fn at(lines: &[u32], index: usize, message: String) -> Self {
        ReplayError {
            event: index + 1,
            line: lines.get(index).map(|&l| l as usize),
            message,
        }
    }
}

impl fmt::Display for ReplayError {
    /// `line N: what` where the line is known, else `event N: what`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None if self.event == 0 => f.write_str(&self.message),
            None => write!(f, "event {}: {}", self.event, self.message),
        }
    }
}

impl std::error::Error for ReplayError {}
