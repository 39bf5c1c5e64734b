//! The compact binary form of a trace, for big traces.
//!
//! ```text
//!   "FSMTRACE1\n"                        magic
//!   then per event:  TAG [THREAD] ID [ALIGN] [SIZE]
//!   TAG: one byte, bits 0-2 the operation (0 a, 1 c, 2 m, 3 r, 4 f), bit 3 set if THREAD follows
//!   numbers: unsigned LEB128 (7 bits a byte, low first, high bit = more)
//! ```
//! A typical event takes 4 to 6 bytes (the text form takes 10 to 15), and it gzips well.

use crate::trace::{Event, Liveness, Op, ParseError, Trace};

/// The first bytes of a binary trace.
pub const MAGIC: &[u8] = b"FSMTRACE1\n";

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encodes `trace` in the binary form.
pub fn encode(trace: &Trace) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + trace.events.len() * 6);
    out.extend_from_slice(MAGIC);
    for ev in &trace.events {
        let (tag, align, size) = match ev.op {
            Op::Malloc { size } => (0u8, None, Some(size)),
            Op::Calloc { size } => (1, None, Some(size)),
            Op::Memalign { align, size } => (2, Some(align), Some(size)),
            Op::Realloc { size } => (3, None, Some(size)),
            Op::Free => (4, None, None),
        };
        out.push(tag | if ev.thread.is_some() { 8 } else { 0 });
        if let Some(t) = ev.thread {
            put(&mut out, u64::from(t));
        }
        put(&mut out, ev.id);
        if let Some(a) = align {
            put(&mut out, a);
        }
        if let Some(s) = size {
            put(&mut out, s);
        }
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn get(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| "truncated number".to_string())?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("number longer than 64 bits".to_string())
    }
}

/// Decodes the binary form; an error names the 1-based event number as its `line`.
pub fn decode(bytes: &[u8]) -> Result<Trace, ParseError> {
    let body = bytes.strip_prefix(MAGIC).ok_or_else(|| ParseError {
        line: 0,
        message: "not a binary trace (bad magic)".into(),
    })?;
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let mut events = Vec::new();
    let mut live = Liveness::default();
    while r.pos < body.len() {
        let n = events.len() + 1;
        let err = |message: String| ParseError { line: n, message };
        let tag = body[r.pos];
        r.pos += 1;
        if tag & !0xf != 0 || tag & 7 > 4 {
            return Err(err(format!("bad tag byte {tag:#x}")));
        }
        let thread = if tag & 8 != 0 {
            let t = r.get().map_err(err)?;
            Some(u32::try_from(t).map_err(|_| err(format!("thread {t} too large")))?)
        } else {
            None
        };
        let id = r.get().map_err(err)?;
        let op = match tag & 7 {
            0 => Op::Malloc {
                size: r.get().map_err(err)?,
            },
            1 => Op::Calloc {
                size: r.get().map_err(err)?,
            },
            2 => {
                let align = r.get().map_err(err)?;
                Op::Memalign {
                    align,
                    size: r.get().map_err(err)?,
                }
            }
            3 => Op::Realloc {
                size: r.get().map_err(err)?,
            },
            _ => Op::Free,
        };
        let ev = Event { thread, id, op };
        live.apply(&ev).map_err(err)?;
        events.push(ev);
    }
    Ok(Trace::from_events(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_exact_bytes() {
        let t = Trace::read_text("a 1 100\nt3 c 2 300\nm 3 64 1\nr 1 5\nf 2\n".as_bytes()).unwrap();
        let b = encode(&t);
        // a 1 100 -> tag 0, id 1, size 100 (one byte each); t3 c 2 300 -> tag 9, 3, 2, 300 = ac 02.
        assert_eq!(
            &b[MAGIC.len()..MAGIC.len() + 8],
            &[0, 1, 100, 9, 3, 2, 0xac, 0x02]
        );
        assert_eq!(decode(&b).unwrap(), t);
        assert_eq!(Trace::from_bytes(&b).unwrap(), t);
    }

    #[test]
    fn names_the_bad_record() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[0, 1, 10, 7, 1]);
        let e = decode(&b).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("bad tag"), "{e}");
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[0, 1, 0x80]);
        assert_eq!(decode(&b).unwrap_err().message, "truncated number");
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[4, 9]);
        assert_eq!(
            decode(&b).unwrap_err().message,
            "free of block 9 which is not live"
        );
    }
}
