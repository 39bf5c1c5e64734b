//! The trace: a list of allocation events, in the project's text format, gzip, or a compact binary
//! form.
//!
//! ```text
//!   # comment                      text format (DESIGN.md), one event a line
//!   a 1 100                        malloc(100)               -> block 1
//!   t2 c 2 48                      calloc, 48 bytes total, on thread 2
//!   m 3 64 200                     memalign(64, 200)
//!   r 1 300                        realloc(block 1, 300): block 1 keeps its name
//!   f 2                            free(block 2)
//! ```
//!
//! A block's ID names it from its allocation to its free; after the free the ID may be used again.
//! Readers check that: allocating a live ID, or resizing or freeing one that is not live, is an
//! error naming the line.

use std::fmt;
use std::io::{self, BufRead, Write};

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `malloc(size)`.
    Malloc {
        /// Bytes asked for.
        size: u64,
    },
    /// `calloc` of `size` bytes in total (the memory must read as zero).
    Calloc {
        /// Bytes asked for (count times element size).
        size: u64,
    },
    /// `memalign(align, size)`, `posix_memalign`, `aligned_alloc`.
    Memalign {
        /// Alignment asked for (any value, as memalign takes any: a replay rounds it up to a
        /// power of two, and to at least malloc's, as glibc does).
        align: u64,
        /// Bytes asked for.
        size: u64,
    },
    /// `realloc(block, size)` of a live block; the ID keeps naming the (maybe moved) block.
    Realloc {
        /// New size in bytes.
        size: u64,
    },
    /// `free(block)`.
    Free,
}

impl Op {
    /// The letter of the text format.
    pub const fn letter(&self) -> char {
        match self {
            Op::Malloc { .. } => 'a',
            Op::Calloc { .. } => 'c',
            Op::Memalign { .. } => 'm',
            Op::Realloc { .. } => 'r',
            Op::Free => 'f',
        }
    }

    /// Whether the event makes a new block live.
    pub const fn is_alloc(&self) -> bool {
        matches!(
            self,
            Op::Malloc { .. } | Op::Calloc { .. } | Op::Memalign { .. }
        )
    }

    /// The size the block has after the event (`None` for a free).
    pub const fn size(&self) -> Option<u64> {
        match *self {
            Op::Malloc { size } | Op::Calloc { size } | Op::Realloc { size } => Some(size),
            Op::Memalign { size, .. } => Some(size),
            Op::Free => None,
        }
    }
}

/// One event of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// The thread that made the call, when known (`tTHREAD` in the text format).
    pub thread: Option<u32>,
    /// The block's name.
    pub id: u64,
    /// What happened.
    pub op: Op,
}

impl Event {
    /// An event on no particular thread.
    pub const fn new(id: u64, op: Op) -> Self {
        Event {
            thread: None,
            id,
            op,
        }
    }
}

impl fmt::Display for Event {
    /// The event as one line of the text format (without the newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(t) = self.thread {
            write!(f, "t{t} ")?;
        }
        match self.op {
            Op::Malloc { size } => write!(f, "a {} {size}", self.id),
            Op::Calloc { size } => write!(f, "c {} {size}", self.id),
            Op::Memalign { align, size } => write!(f, "m {} {align} {size}", self.id),
            Op::Realloc { size } => write!(f, "r {} {size}", self.id),
            Op::Free => write!(f, "f {}", self.id),
        }
    }
}

/// A malformed line (or record) of a trace: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (for the binary form: the 1-based event number); 0 for an error
    /// about the file as a whole (unreadable, truncated gzip data).
    pub line: usize,
    /// What is wrong, in a few words.
    pub message: String,
}

impl fmt::Display for ParseError {
    /// `line N: what`; an error about the file as a whole (line 0: unreadable, bad gzip data)
    /// is just `what`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Why a trace could not be loaded: one line, naming the file and, for a bad line, its number.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be opened or read.
    Io {
        /// The file.
        path: String,
        /// The OS error.
        error: io::Error,
    },
    /// A line of the file is malformed.
    Parse {
        /// The file.
        path: String,
        /// The line and what is wrong with it.
        error: ParseError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "{path}: {error}"),
            LoadError::Parse { path, error } => write!(f, "{path}: {error}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// A trace: events in the order they happened.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The events.
    pub events: Vec<Event>,
    /// The 1-based source line of each event (`lines[i]` is `events[i]`'s), where the trace was
    /// read from the text format; empty otherwise. Errors name the line when it is known.
    pub lines: Vec<u32>,
}

/// Two traces are equal when their events are (where they were read from does not matter).
impl PartialEq for Trace {
    fn eq(&self, other: &Self) -> bool {
        self.events == other.events
    }
}

impl Eq for Trace {}

/// Tracks which IDs are live while a trace is read, so a reader can name the line of an event
/// that makes no sense.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    live: std::collections::HashSet<u64>,
}

impl Liveness {
    /// Checks `ev` against the live set and applies it; `Err` says what is wrong.
    pub(crate) fn apply(&mut self, ev: &Event) -> Result<(), String> {
        match ev.op {
            op if op.is_alloc() => {
                if !self.live.insert(ev.id) {
                    return Err(format!("block {} is allocated while still live", ev.id));
                }
            }
            Op::Realloc { .. } => {
                if !self.live.contains(&ev.id) {
                    return Err(format!("realloc of block {} which is not live", ev.id));
                }
            }
            _ => {
                if !self.live.remove(&ev.id) {
                    return Err(format!("free of block {} which is not live", ev.id));
                }
            }
        }
        Ok(())
    }
}

fn parse_u64(field: Option<&str>, what: &str) -> Result<u64, String> {
    let f = field.ok_or_else(|| format!("missing {what}"))?;
    f.parse::<u64>().map_err(|_| {
        format!(
            "{what} '{}' is not a non-negative integer below 2^64",
            quote(f)
        )
    })
}

/// A field as an error may show it: at most 40 characters (a 10 MB field is not echoed whole).
pub(crate) fn quote(field: &str) -> String {
    const MAX: usize = 40;
    if field.len() <= MAX {
        return field.to_string();
    }
    let mut end = MAX;
    while !field.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &field[..end], field.len())
}

/// Parses one line of the text format. `Ok(None)` for a blank or comment line.
pub fn parse_line(line: &str) -> Result<Option<Event>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut fields = trimmed.split_ascii_whitespace();
    let mut first = fields.next().unwrap_or_default();
    let mut thread = None;
    if let Some(t) = first.strip_prefix('t') {
        thread = Some(
            t.parse::<u32>()
                .map_err(|_| format!("thread field '{}' is not tN", quote(first)))?,
        );
        first = fields
            .next()
            .ok_or_else(|| "missing operation after the thread field".to_string())?;
    }
    let id = |fields: &mut std::str::SplitAsciiWhitespace<'_>| parse_u64(fields.next(), "ID");
    let op_letter = first;
    let (id, op) = match op_letter {
        "a" => {
            let id = id(&mut fields)?;
            (
                id,
                Op::Malloc {
                    size: parse_u64(fields.next(), "SIZE")?,
                },
            )
        }
        "c" => {
            let id = id(&mut fields)?;
            (
                id,
                Op::Calloc {
                    size: parse_u64(fields.next(), "SIZE")?,
                },
            )
        }
        "m" => {
            let id = id(&mut fields)?;
            // Any alignment, as memalign takes any: a replay rounds it up to a power of two.
            let align = parse_u64(fields.next(), "ALIGN")?;
            let size = parse_u64(fields.next(), "SIZE")?;
            (id, Op::Memalign { align, size })
        }
        "r" => {
            let id = id(&mut fields)?;
            (
                id,
                Op::Realloc {
                    size: parse_u64(fields.next(), "SIZE")?,
                },
            )
        }
        "f" => (id(&mut fields)?, Op::Free),
        other => {
            return Err(format!(
                "unknown operation '{}' (expected a, c, m, r or f)",
                quote(other)
            ));
        }
    };
    if let Some(extra) = fields.next() {
        return Err(format!(
            "unexpected field '{}' after the event",
            quote(extra)
        ));
    }
    Ok(Some(Event { thread, id, op }))
}

impl Trace {
    /// A trace of `events` (not checked; see [`Trace::check`]).
    pub fn from_events(events: Vec<Event>) -> Self {
        Trace {
            events,
            lines: Vec::new(),
        }
    }

    /// Where event `index` (0-based) came from: its 1-based source line when the trace was read
    /// from text, else `None`.
    pub fn line_of(&self, index: usize) -> Option<usize> {
        self.lines.get(index).map(|&l| l as usize)
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the trace has no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Checks that every event makes sense given the ones before it; the error names the
    /// 1-based event number.
    pub fn check(&self) -> Result<(), ParseError> {
        let mut live = Liveness::default();
        for (i, ev) in self.events.iter().enumerate() {
            live.apply(ev).map_err(|message| ParseError {
                line: i + 1,
                message,
            })?;
        }
        Ok(())
    }

    /// Reads the text format from `input`, checking each event against the live blocks.
    pub fn read_text(input: impl BufRead) -> Result<Trace, ParseError> {
        let mut events = Vec::new();
        let mut lines = Vec::new();
        let mut live = Liveness::default();
        for (i, line) in input.lines().enumerate() {
            let err = |message: String| ParseError {
                line: i + 1,
                message,
            };
            let line = line.map_err(|e| err(format!("cannot read: {e}")))?;
            if let Some(ev) = parse_line(&line).map_err(err)? {
                live.apply(&ev).map_err(err)?;
                events.push(ev);
                lines.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
            }
        }
        Ok(Trace { events, lines })
    }

    /// Writes the text format, one event a line, after an optional `#` comment header.
    pub fn write_text(&self, mut out: impl Write, header: &str) -> io::Result<()> {
        for line in header.lines() {
            writeln!(out, "# {line}")?;
        }
        for ev in &self.events {
            writeln!(out, "{ev}")?;
        }
        out.flush()
    }

    /// The events `skip .. skip+len`, made self-contained: frees, reallocs of blocks allocated
    /// before the window are dropped (a realloc becomes an allocation of the new size); blocks
    /// still live at the end stay live.
    pub fn window(&self, skip: usize, len: usize) -> Trace {
        let mut before = std::collections::HashSet::new();
        for ev in self.events.iter().take(skip) {
            match ev.op {
                Op::Free => {
                    before.remove(&ev.id);
                }
                op if op.is_alloc() => {
                    before.insert(ev.id);
                }
                _ => {}
            }
        }
        let mut events = Vec::new();
        for ev in self.events.iter().skip(skip).take(len) {
            if before.contains(&ev.id) {
                match ev.op {
                    Op::Free => {
                        before.remove(&ev.id);
                    }
                    Op::Realloc { size } => {
                        before.remove(&ev.id);
                        events.push(Event {
                            op: Op::Malloc { size },
                            ..*ev
                        });
                    }
                    _ => {
                        before.remove(&ev.id);
                        events.push(*ev);
                    }
                }
            } else {
                events.push(*ev);
            }
        }
        Trace::from_events(events)
    }

    /// Counts of each operation and the largest request: a one-line summary.
    pub fn summary(&self) -> String {
        let mut n = [0usize; 5];
        let mut max = 0;
        for ev in &self.events {
            let k = match ev.op {
                Op::Malloc { .. } => 0,
                Op::Calloc { .. } => 1,
                Op::Memalign { .. } => 2,
                Op::Realloc { .. } => 3,
                Op::Free => 4,
            };
            n[k] += 1;
            max = max.max(ev.op.size().unwrap_or(0));
        }
        format!(
            "{} events: {} malloc, {} calloc, {} memalign, {} realloc, {} free; largest {} B",
            self.events.len(),
            n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form_of_line() {
        let text =
            "# header\n\na 1 100\nt3 c 2 48\nm 3 64 200\nr 1 300\n  # indented comment\nf 2\n";
        let t = Trace::read_text(text.as_bytes()).unwrap();
        assert_eq!(
            t.events,
            vec![
                Event::new(1, Op::Malloc { size: 100 }),
                Event {
                    thread: Some(3),
                    id: 2,
                    op: Op::Calloc { size: 48 }
                },
                Event::new(
                    3,
                    Op::Memalign {
                        align: 64,
                        size: 200
                    }
                ),
                Event::new(1, Op::Realloc { size: 300 }),
                Event::new(2, Op::Free),
            ]
        );
    }

    #[test]
    fn writes_what_it_reads() {
        let text = "a 1 100\nt3 c 2 48\nm 3 64 200\nr 1 300\nf 2\n";
        let t = Trace::read_text(text.as_bytes()).unwrap();
        let mut out = Vec::new();
        t.write_text(&mut out, "").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), text);
    }

    fn err_of(text: &str) -> ParseError {
        Trace::read_text(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn names_the_line_and_the_fault() {
        let e = err_of("a 1 10\nx 2 10\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown operation 'x'"), "{e}");
        let e = err_of("a 1 10\na 2 ten\n");
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "SIZE 'ten' is not a non-negative integer below 2^64")
        );
        assert_eq!(err_of("a 1\n").message, "missing SIZE");
        // A huge field is not echoed whole.
        let e = err_of(&format!("a 1 {}\n", "9".repeat(10_000_000)));
        assert!(e.message.len() < 120, "{} bytes", e.message.len());
        assert!(e.message.contains("(10000000 bytes)"), "{}", e.message);
        // memalign takes any alignment (glibc rounds 48 up to 64): so does the format.
        let t = Trace::read_text("m 1 48 10\n".as_bytes()).unwrap();
        assert_eq!(
            t.events[0].op,
            Op::Memalign {
                align: 48,
                size: 10
            }
        );
        assert_eq!(
            err_of("a 1 1 1\n").message,
            "unexpected field '1' after the event"
        );
        assert_eq!(err_of("tx a 1 1\n").message, "thread field 'tx' is not tN");
        let e = err_of("a 1 10\n# c\na 1 5\n");
        assert_eq!(
            (e.line, e.message.as_str()),
            (3, "block 1 is allocated while still live")
        );
        assert_eq!(err_of("f 7\n").message, "free of block 7 which is not live");
        assert_eq!(
            err_of("a 1 1\nf 1\nr 1 5\n").message,
            "realloc of block 1 which is not live"
        );
        assert_eq!(err_of("a 1 1\nf 1\nf 1\n").line, 3);
        assert_eq!(
            err_of("f 7\n").to_string(),
            "line 1: free of block 7 which is not live"
        );
    }

    #[test]
    fn an_id_may_be_reused_after_its_free() {
        let t = Trace::read_text("a 1 10\nf 1\na 1 20\nf 1\n".as_bytes()).unwrap();
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn gzip_is_recognised() {
        let t = Trace::read_text("a 1 10\nf 1\n".as_bytes()).unwrap();
        let dir = std::env::temp_dir().join(format!("wl-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.trace.gz");
        t.save(&p, "made by a test").unwrap();
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[..2], &[0x1f, 0x8b]);
        assert_eq!(Trace::load(&p).unwrap(), t);
        let p2 = dir.join("t.bin.gz");
        t.save(&p2, "").unwrap();
        assert_eq!(Trace::load(&p2).unwrap(), t);
        let missing = Trace::load(dir.join("nope")).unwrap_err().to_string();
        assert!(
            missing.contains("nope") && !missing.contains('\n'),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn window_is_self_contained() {
        let t =
            Trace::read_text("a 1 10\na 2 20\nf 1\nr 2 30\na 3 5\nf 3\nf 2\n".as_bytes()).unwrap();
        let w = t.window(2, 4);
        let mut out = Vec::new();
        w.write_text(&mut out, "").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a 2 30\na 3 5\nf 3\n");
        w.check().unwrap();
    }
}
