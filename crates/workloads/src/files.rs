//! Trace files: loading and saving a [`Trace`] in any form this crate knows, recognised by
//! content (gzip of any of them, the binary form, Valgrind and mtrace logs, the text format).
//!
//! ```text
//!   bytes ──gzip?──> inflate ──> binary MAGIC? ──> binary::decode
//!                                Valgrind log? ──> foreign::read_valgrind
//!                                mtrace log?   ──> foreign::read_mtrace
//!                                else          ──> Trace::read_text
//! ```
//!
//! This module sits above the format modules: `trace` knows none of them.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::trace::{LoadError, ParseError, Trace};

impl Trace {
    /// Reads a trace in any of the forms this crate knows, recognised by content: gzip (of any
    /// of these), the binary form, a Valgrind `--trace-malloc=yes` log, a glibc `mtrace` log, or
    /// the text format.
    pub fn read_any(mut input: impl Read) -> Result<Trace, ParseError> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).map_err(|e| ParseError {
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Self::from_bytes(&bytes)
    }

    /// As [`Trace::read_any`], from bytes in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Trace, ParseError> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut plain)
                .map_err(|e| ParseError {
                    line: 0,
                    message: format!("bad gzip data: {e}"),
                })?;
            return Self::from_bytes(&plain);
        }
        if bytes.starts_with(crate::binary::MAGIC) {
            return crate::binary::decode(bytes);
        }
        match crate::foreign::sniff(bytes) {
            crate::foreign::Kind::Valgrind => crate::foreign::read_valgrind(bytes),
            crate::foreign::Kind::Mtrace => crate::foreign::read_mtrace(bytes),
            crate::foreign::Kind::Text => Self::read_text(bytes),
        }
    }

    /// Loads a trace file in any known form (see [`Trace::read_any`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Trace, LoadError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| LoadError::Io {
            path: name.clone(),
            error,
        })?;
        Self::from_bytes(&bytes).map_err(|error| LoadError::Parse { path: name, error })
    }

    /// Saves the trace: the binary form if the name ends in `.bin` or `.bin.gz`, text otherwise;
    /// gzip-compressed if it ends in `.gz`.
    pub fn save(&self, path: impl AsRef<Path>, header: &str) -> io::Result<()> {
        let path = path.as_ref();
        let name = path.to_string_lossy();
        let gz = name.ends_with(".gz");
        let bin = name.trim_end_matches(".gz").ends_with(".bin");
        let file = io::BufWriter::new(std::fs::File::create(path)?);
        let mut out: Box<dyn Write> = if gz {
            Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::best(),
            ))
        } else {
            Box::new(file)
        };
        if bin {
            out.write_all(&crate::binary::encode(self))?;
        } else {
            self.write_text(&mut out, header)?;
        }
        out.flush()?;
        drop(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::trace::Trace;

    #[test]
    fn a_truncated_gzip_is_named_by_file_not_by_a_line_0() {
        let text: String = (1..=3000).map(|i| format!("a {i} 40\n")).collect();
        let t = Trace::read_text(text.as_bytes()).unwrap();
        let dir = std::env::temp_dir().join(format!("wl-cut-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("cut.trace.gz");
        t.save(&p, "").unwrap();
        let raw = std::fs::read(&p).unwrap();
        std::fs::write(&p, &raw[..raw.len() / 2]).unwrap();
        let e = Trace::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("cut.trace.gz") && e.contains("bad gzip data"),
            "{e}"
        );
        assert!(!e.contains("line 0"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
