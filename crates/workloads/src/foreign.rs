//! Readers for real tools' logs: Valgrind `--trace-malloc=yes` and glibc `mtrace`.
//!
//! Both logs name blocks by address. [`PointerTracer`] turns address events into the trace's
//! block IDs: an address gets a fresh ID when it is returned, and the ID ends at its free.
//!
//! ```text
//!   --7912-- malloc(5) = 0x4A40040              a 1 5
//!   --7912-- realloc(0x4A40040,100) = 0x4A400E0 r 1 100     (0x4A400E0 now names block 1)
//!   --7912-- free(0x4A400E0)                    f 1
//!
//!   @ ./t:[0x11c0] + 0x55d26f9502a0 0x5         a 1 5
//!   @ ./t:[0x11e8] < 0x55d26f9502a0             r 1 100     (the pair < then > is one realloc)
//!   @ ./t:[0x11e8] > 0x55d26f9504c0 0x64
//!   @ ./t:[0x1234] - 0x55d26f9504c0             f 1
//! ```
//!
//! Frees of addresses never seen allocated (memory allocated before tracing started) are skipped
//! and counted; a line that names a known call but cannot be parsed is an error naming the line.

use std::collections::HashMap;

use crate::trace::{Event, Op, ParseError, Trace};

/// What a log turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The project's text format.
    Text,
    /// A Valgrind `--trace-malloc=yes` log.
    Valgrind,
    /// A glibc `mtrace` log.
    Mtrace,
}

fn valgrind_prefix(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("--")?;
    let end = rest.find("--")?;
    if end == 0 || !rest[..end].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        rest[end + 2..]
            .strip_prefix(' ')
            .unwrap_or(&rest[end + 2..]),
    )
}

/// Guesses the kind of a log from its first lines.
pub fn sniff(bytes: &[u8]) -> Kind {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head);
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(200) {
        if line.starts_with("= Start") || line.starts_with("@ ") {
            return Kind::Mtrace;
        }
        if valgrind_prefix(line).is_some() || line.starts_with("==") {
            return Kind::Valgrind;
        }
        let t = line.trim_start();
        if !t.starts_with('#') {
            return Kind::Text;
        }
    }
    Kind::Text
}

/// Counts of log entries that could not become events (not errors: they happen in real logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Oddities {
    /// Frees (or reallocs) of addresses never seen allocated, skipped.
    pub unknown_frees: usize,
    /// Allocations returning an address that was still live (a free was missed): the old block
    /// is freed first.
    pub reused_live: usize,
    /// Failed allocations (a null result), skipped.
    pub failed: usize,
    /// Times the process replaced itself with `exec` (interposer logs): the blocks live at each
    /// were freed there, as the kernel takes them back.
    pub execs: usize,
    /// The log's last line was cut short (the process was killed while writing it): dropped.
    pub cut_line: bool,
}

/// Turns address-named events into a trace with block IDs.
#[derive(Debug, Default)]
pub struct PointerTracer {
    live: HashMap<u64, u64>,
    next_id: u64,
    events: Vec<Event>,
    /// What could not become an event.
    pub oddities: Oddities,
}

impl PointerTracer {
    /// An empty tracer.
    pub fn new() -> Self {
        Self::default()
    }

    fn fresh(&mut self, thread: Option<u32>, ptr: u64, op: Op) {
        if ptr == 0 {
            self.oddities.failed += 1;
            return;
        }
        if let Some(old) = self.live.remove(&ptr) {
            self.oddities.reused_live += 1;
            self.events.push(Event {
                thread,
                id: old,
                op: Op::Free,
            });
        }
        self.next_id += 1;
        self.live.insert(ptr, self.next_id);
        self.events.push(Event {
            thread,
            id: self.next_id,
            op,
        });
    }

    /// `malloc(size) = ptr`.
    pub fn malloc(&mut self, thread: Option<u32>, ptr: u64, size: u64) {
        self.fresh(thread, ptr, Op::Malloc { size });
    }

    /// `calloc` of `size` bytes in total `= ptr`.
    pub fn calloc(&mut self, thread: Option<u32>, ptr: u64, size: u64) {
        self.fresh(thread, ptr, Op::Calloc { size });
    }

    /// `memalign(align, size) = ptr`; an alignment that is not a power of two is rounded up.
    pub fn memalign(&mut self, thread: Option<u32>, ptr: u64, align: u64, size: u64) {
        let align = align.max(1).checked_next_power_of_two().unwrap_or(1 << 63);
        self.fresh(thread, ptr, Op::Memalign { align, size });
    }

    /// The process replaced itself with `exec`: every live block is gone (freed here, oldest
    /// first) and addresses start afresh.
    pub fn exec(&mut self, thread: Option<u32>) {
        let mut ids: Vec<u64> = self.live.drain().map(|(_, id)| id).collect();
        ids.sort_unstable();
        self.events.extend(ids.into_iter().map(|id| Event {
            thread,
            id,
            op: Op::Free,
        }));
        self.oddities.execs += 1;
    }

    /// `free(ptr)`.
    pub fn free(&mut self, thread: Option<u32>, ptr: u64) {
        if ptr == 0 {
            return;
        }
        match self.live.remove(&ptr) {
            Some(id) => self.events.push(Event {
                thread,
                id,
                op: Op::Free,
            }),
            None => self.oddities.unknown_frees += 1,
        }
    }

    /// `realloc(old, size) = new`, with C's special cases: a null `old` is a malloc, a zero size
    /// with a null result is a free, a null result otherwise is a failure (nothing changes).
    pub fn realloc(&mut self, thread: Option<u32>, old: u64, new: u64, size: u64) {
        if old == 0 {
            return self.malloc(thread, new, size);
        }
        if new == 0 {
            if size == 0 {
                self.free(thread, old);
            } else {
                self.oddities.failed += 1;
            }
            return;
        }
        match self.live.remove(&old) {
            Some(id) => {
                if let Some(other) = self.live.remove(&new) {
                    self.oddities.reused_live += 1;
                    self.events.push(Event {
                        thread,
                        id: other,
                        op: Op::Free,
                    });
                }
                self.live.insert(new, id);
                self.events.push(Event {
                    thread,
                    id,
                    op: Op::Realloc { size },
                });
            }
            None => {
                self.oddities.unknown_frees += 1;
                self.malloc(thread, new, size);
            }
        }
    }

    /// The trace so far and the oddities met.
    pub fn finish(self) -> (Trace, Oddities) {
        (Trace::from_events(self.events), self.oddities)
    }
}

/// A trace read from a foreign log, with what could not be used.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The events.
    pub trace: Trace,
    /// What was skipped.
    pub oddities: Oddities,
}

fn hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
    match digits {
        Some(d) => u64::from_str_radix(d, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `al 64, size 100` or `64,100` -> (align, size).
fn align_size(args: &str) -> Option<(u64, u64)> {
    let mut parts = args.split(',').map(str::trim);
    let a = parts.next()?;
    let s = parts.next()?;
    let a = hex(a.strip_prefix("al ").unwrap_or(a))?;
    let s = hex(s.strip_prefix("size ").unwrap_or(s))?;
    Some((a, s))
}

/// Reads a Valgrind `--trace-malloc=yes` log (lines not from the allocator trace are ignored).
pub fn import_valgrind(bytes: &[u8]) -> Result<Imported, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    let mut t = PointerTracer::new();
    // A realloc whose result comes on a later line (` = 0` after a nested free).
    let mut pending: Option<(usize, u64, u64)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| ParseError {
            line: line_no,
            message,
        };
        let Some(body) = valgrind_prefix(raw) else {
            continue;
        };
        let body_t = body.trim_start();
        if let Some(res) = body_t.strip_prefix("= ") {
            let Some((_, old, size)) = pending.take() else {
                continue;
            };
            let new = hex(res).ok_or_else(|| err(format!("bad result '{}'", res.trim())))?;
            t.realloc(None, old, new, size);
            continue;
        }
        let Some(open) = body_t.find('(') else {
            continue;
        };
        let name = &body_t[..open];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let kind = classify(name);
        let Some(kind) = kind else { continue };
        if let Some((l, ..)) = pending {
            return Err(err(format!("realloc on line {l} has no result")));
        }
        let close = body_t[open..]
            .find(')')
            .map(|c| c + open)
            .ok_or_else(|| err(format!("{name}: unclosed argument list")))?;
        let args = &body_t[open + 1..close];
        let result = body_t[close..]
            .rfind(" = ")
            .map(|p| &body_t[close + p + 3..]);
        let result = match result {
            Some(r) => {
                Some(hex(r).ok_or_else(|| err(format!("{name}: bad result '{}'", r.trim())))?)
            }
            None => None,
        };
        let bad = || err(format!("{name}: cannot parse arguments '{args}'"));
        let need = |r: Option<u64>| r.ok_or_else(|| err(format!("{name}: missing ' = RESULT'")));
        match kind {
            Call::Free => t.free(
                None,
                hex(args.split(',').next().unwrap_or("")).ok_or_else(bad)?,
            ),
            Call::Malloc => {
                if args.contains("al ") {
                    let (a, s) = align_size(args).ok_or_else(bad)?;
                    t.memalign(None, need(result)?, a, s);
                } else {
                    let s = hex(args.split(',').next().unwrap_or("")).ok_or_else(bad)?;
                    t.malloc(None, need(result)?, s);
                }
            }
            Call::Calloc => {
                let mut p = args.split(',');
                let n = p.next().and_then(hex).ok_or_else(bad)?;
                let s = p.next().and_then(hex).ok_or_else(bad)?;
                t.calloc(None, need(result)?, n.saturating_mul(s));
            }
            Call::Memalign => {
                let (a, s) = align_size(args).ok_or_else(bad)?;
                t.memalign(None, need(result)?, a, s);
            }
            Call::Realloc => {
                let mut p = args.split(',');
                let old = p.next().and_then(hex).ok_or_else(bad)?;
                let s = p.next().and_then(hex).ok_or_else(bad)?;
                match result {
                    Some(new) => t.realloc(None, old, new, s),
                    None => pending = Some((line_no, old, s)),
                }
            }
        }
    }
    if let Some((l, ..)) = pending {
        return Err(ParseError {
            line: l,
            message: "realloc has no result".into(),
        });
    }
    let (trace, oddities) = t.finish();
    Ok(Imported { trace, oddities })
}

enum Call {
    Malloc,
    Calloc,
    Memalign,
    Realloc,
    Free,
}

fn classify(name: &str) -> Option<Call> {
    Some(match name {
        "malloc" | "valloc" | "pvalloc" => Call::Malloc,
        "calloc" => Call::Calloc,
        "realloc" => Call::Realloc,
        "free" | "cfree" => Call::Free,
        "memalign" | "posix_memalign" | "aligned_alloc" => Call::Memalign,
        n if n.starts_with("_Znw") || n.starts_with("_Zna") || n.contains("builtin_new") => {
            Call::Malloc
        }
        n if n.contains("builtin_vec_new") => Call::Malloc,
        n if n.starts_with("_Zdl") || n.starts_with("_Zda") || n.contains("delete") => Call::Free,
        _ => return None,
    })
}

/// Reads a Valgrind `--trace-malloc=yes` log into a trace.
pub fn read_valgrind(bytes: &[u8]) -> Result<Trace, ParseError> {
    import_valgrind(bytes).map(|i| i.trace)
}

/// Reads a glibc `mtrace` log (`= Start` ... `= End`).
pub fn import_mtrace(bytes: &[u8]) -> Result<Imported, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    let mut t = PointerTracer::new();
    let mut pending_old: Option<(usize, u64)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| ParseError {
            line: line_no,
            message,
        };
        let line = raw.trim_end();
        if line.is_empty() || line.starts_with("= ") {
            continue;
        }
        let Some(rest) = line.strip_prefix("@ ") else {
            return Err(err(format!(
                "expected '@ CALLER OP ...' or '= Start/End', got '{line}'"
            )));
        };
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let Some(op_at) = fields
            .iter()
            .position(|f| matches!(*f, "+" | "-" | "<" | ">" | "!"))
        else {
            return Err(err("no operation (+ - < > !) on the line".into()));
        };
        let args = &fields[op_at + 1..];
        let arg = |k: usize, what: &str| {
            args.get(k)
                .and_then(|a| hex(a))
                .ok_or_else(|| err(format!("missing or bad {what}")))
        };
        let op = fields[op_at];
        if op != ">"
            && let Some((l, _)) = pending_old
        {
            {
                return Err(err(format!(
                    "realloc '<' on line {l} is not followed by '>'"
                )));
            }
        }
        match op {
            "+" => t.malloc(None, arg(0, "address")?, arg(1, "size")?),
            "-" => t.free(None, arg(0, "address")?),
            "<" => pending_old = Some((line_no, arg(0, "address")?)),
            ">" => {
                let (_, old) = pending_old
                    .take()
                    .ok_or_else(|| err("realloc '>' without a preceding '<'".into()))?;
                t.realloc(None, old, arg(0, "address")?, arg(1, "size")?);
            }
            _ => t.oddities.failed += 1,
        }
    }
    if let Some((l, _)) = pending_old {
        return Err(ParseError {
            line: l,
            message: "realloc '<' is not followed by '>'".into(),
        });
    }
    let (trace, oddities) = t.finish();
    Ok(Imported { trace, oddities })
}

/// Reads a glibc `mtrace` log into a trace.
pub fn read_mtrace(bytes: &[u8]) -> Result<Trace, ParseError> {
    import_mtrace(bytes).map(|i| i.trace)
}

/// Reads the log of the `LD_PRELOAD` recorder (`crates/interposer`): lines
/// `a TID PTR SIZE`, `c TID PTR SIZE`, `m TID PTR ALIGN SIZE`, `r TID OLD NEW SIZE`, `f TID PTR`,
/// `x TID` (the process exec'd: see [`PointerTracer::exec`]), numbers in hexadecimal. Kernel
/// thread ids become small thread numbers (0 for the first seen). The log of a process that was
/// killed ends in zeros (the rest of the recorder's mapped window), maybe after a line cut
/// short: both are dropped ([`Oddities::cut_line`]).
pub fn import_interposer(bytes: &[u8]) -> Result<Imported, ParseError> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut bytes = &bytes[..end];
    let mut cut_line = false;
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        let last = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes = &bytes[..last];
        cut_line = true;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut t = PointerTracer::new();
    t.oddities.cut_line = cut_line;
    let mut threads: HashMap<u64, u32> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let mut f = raw.split_ascii_whitespace();
        let Some(op) = f.next() else { continue };
        let nums: Vec<u64> = f
            .map(|x| {
                u64::from_str_radix(x, 16).map_err(|_| err(format!("'{x}' is not hexadecimal")))
            })
            .collect::<Result<_, _>>()?;
        let want = match op {
            "a" | "c" => 3,
            "m" | "r" => 4,
            "f" => 2,
            "x" => 1,
            _ => return Err(err(format!("unknown record '{op}'"))),
        };
        if nums.len() != want {
            return Err(err(format!(
                "'{op}' takes {} numbers, found {}",
                want - 1,
                nums.len().saturating_sub(1)
            )));
        }
        let n = threads.len() as u32;
        let th = Some(*threads.entry(nums[0]).or_insert(n));
        match op {
            "a" => t.malloc(th, nums[1], nums[2]),
            "c" => t.calloc(th, nums[1], nums[2]),
            "m" => t.memalign(th, nums[1], nums[2], nums[3]),
            "r" => t.realloc(th, nums[1], nums[2], nums[3]),
            "x" => t.exec(th),
            _ => t.free(th, nums[1]),
        }
    }
    let (trace, oddities) = t.finish();
    Ok(Imported { trace, oddities })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &Trace) -> String {
        let mut out = Vec::new();
        t.write_text(&mut out, "").unwrap();
        String::from_utf8(out).unwrap()
    }

    // Taken from a real run of valgrind 3.19 on a small C program.
    const VG: &str = "==7912== Memcheck, a memory error detector
--7912-- malloc(5) = 0x4A40040
--7912-- calloc(3,4) = 0x4A40090
--7912-- realloc(0x4A40040,100) = 0x4A400E0
--7912-- memalign(al 64, size 100) = 0x4A40200
some program output
--7912-- free(0x4A400E0)
--7912-- free(0x4A40090)
--7912-- free(0x4A40200)
--7912-- free(0x0)
--7912-- free(0x1234)
--7912-- malloc(7) = 0x4A403A0
--7912-- realloc(0x4A403A0,0)free(0x4A403A0)
--7912--  = 0
--7912-- _Znwm(8) = 0x4A40500
--7912-- _ZdlPv(0x4A40500)
";

    #[test]
    fn valgrind_by_hand() {
        assert_eq!(sniff(VG.as_bytes()), Kind::Valgrind);
        let i = import_valgrind(VG.as_bytes()).unwrap();
        assert_eq!(
            text(&i.trace),
            "a 1 5\nc 2 12\nr 1 100\nm 3 64 100\nf 1\nf 2\nf 3\na 4 7\nf 4\na 5 8\nf 5\n"
        );
        assert_eq!(i.oddities.unknown_frees, 1);
        assert_eq!(Trace::from_bytes(VG.as_bytes()).unwrap(), i.trace);
    }

    #[test]
    fn valgrind_names_the_bad_line() {
        let e = import_valgrind(b"--1-- malloc(5) = 0x10\n--1-- malloc(x) = 0x20\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("malloc: cannot parse arguments 'x'"),
            "{e}"
        );
        let e = import_valgrind(b"--1-- malloc(5) = zz\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (1, "malloc: bad result 'zz'"));
        let e = import_valgrind(b"--1-- realloc(0x10,5)free(0x10)\n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    // Taken from a real run of glibc 2.36's mtrace on the same program.
    const MT: &str = "= Start
@ ./t:[0x11c0] + 0x55d26f9502a0 0x5
@ ./t:[0x11d3] + 0x55d26f9504a0 0xc
@ ./t:[0x11e8] < 0x55d26f9502a0
@ ./t:[0x11e8] > 0x55d26f9504c0 0x64
@ ./t:[0x11fb] + 0x55d26f950580 0x64
@ ./t:[0x1234] - 0x55d26f9504c0
@ ./t:[0x1240] - 0x55d26f9504a0
@ /lib/libc.so.6:(clearenv+0x5d)[0x7f] - 0x999
= End
";

    #[test]
    fn mtrace_by_hand() {
        assert_eq!(sniff(MT.as_bytes()), Kind::Mtrace);
        let i = import_mtrace(MT.as_bytes()).unwrap();
        assert_eq!(
            text(&i.trace),
            "a 1 5\na 2 12\nr 1 100\na 3 100\nf 1\nf 2\n"
        );
        assert_eq!(i.oddities.unknown_frees, 1);
    }

    #[test]
    fn mtrace_names_the_bad_line() {
        let e = import_mtrace(b"= Start\n@ x + 0x10\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "missing or bad size"));
        let e = import_mtrace(b"= Start\n@ x < 0x10\n@ x + 0x20 0x1\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = import_mtrace(b"= Start\nhello\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = import_mtrace(b"@ x > 0x10 0x5\n").unwrap_err();
        assert!(e.message.contains("without a preceding"), "{e}");
    }

    #[test]
    fn interposer_log_by_hand() {
        // The start of a real recording of the test program above.
        let log = "a 4d69 5558d89642a0 5\nc 4d69 5558d89642c0 c\nr 4d69 5558d89642a0 5558d89642e0 64\n\
                   m 77 5558d8964380 40 64\nf 77 5558d89642e0\nr 4d69 5558d89642c0 0 0\n";
        let i = import_interposer(log.as_bytes()).unwrap();
        assert_eq!(
            text(&i.trace),
            "t0 a 1 5\nt0 c 2 12\nt0 r 1 100\nt1 m 3 64 100\nt1 f 1\nt0 f 2\n"
        );
        let e = import_interposer(b"a 1 10 5\nq 1 2\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "unknown record 'q'"));
        let e = import_interposer(b"a 1 10\n").unwrap_err();
        assert_eq!(e.message, "'a' takes 2 numbers, found 1");
        let e = import_interposer(b"f 1 xyz\n").unwrap_err();
        assert_eq!(e.message, "'xyz' is not hexadecimal");
    }

    #[test]
    fn interposer_log_of_a_killed_program_and_an_exec() {
        // Killed in the middle of a line: the window's zeros and the cut line are dropped.
        let mut log = b"a 1 10 5\na 1 20 6\nf 1 1".to_vec();
        log.extend([0u8; 300]);
        let i = import_interposer(&log).unwrap();
        assert_eq!(text(&i.trace), "t0 a 1 5\nt0 a 2 6\n");
        assert!(i.oddities.cut_line);
        let i = import_interposer(b"a 1 10 5\n\0\0").unwrap();
        assert!(!i.oddities.cut_line);
        // exec: the old image's live blocks end there, its addresses are new again.
        let i = import_interposer(b"a 1 10 5\na 1 20 6\nf 1 10\nx 1\na 1 20 7\nf 1 20\n").unwrap();
        assert_eq!(
            text(&i.trace),
            "t0 a 1 5\nt0 a 2 6\nt0 f 1\nt0 f 2\nt0 a 3 7\nt0 f 3\n"
        );
        assert_eq!((i.oddities.execs, i.oddities.reused_live), (1, 0));
        let e = import_interposer(b"x 1 2\n").unwrap_err();
        assert_eq!(e.message, "'x' takes 0 numbers, found 1");
    }

    #[test]
    fn tracer_handles_c_corner_cases() {
        let mut t = PointerTracer::new();
        t.realloc(Some(1), 0, 0x10, 5); // realloc(NULL, 5) = malloc
        t.realloc(Some(1), 0x10, 0, 9); // failed: nothing changes
        t.malloc(Some(2), 0x10, 3); // address still live: a free was missed
        t.realloc(Some(2), 0x10, 0, 0); // realloc(p, 0) frees
        let (trace, odd) = t.finish();
        assert_eq!(text(&trace), "t1 a 1 5\nt2 f 1\nt2 a 2 3\nt2 f 2\n");
        assert_eq!((odd.failed, odd.reused_live), (1, 1));
        trace.check().unwrap();
    }
}
