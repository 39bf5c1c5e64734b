//! Replaying a trace through the model, one event at a time, printing what glibc's replayer
//! prints: `OP ID SIZE OFFSET` for every `a`/`c`/`m`/`r` event, OFFSET being the user pointer
//! minus the start of the main heap (decimal), `MMAP` for a mapped chunk, `NULL` for a NULL
//! result. This is what `fsm replay --policy ptmalloc2 --offsets` prints.
//!
//! ```text
//!   a 1 24      ->  a 1 24 672        (malloc: the 0x290 tcache chunk comes first)
//!   r 1 5000    ->  r 1 5000 704
//!   f 1         ->  (nothing)
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ptr::NonNull;

use allocator_traits::MemorySource;
#[cfg(unix)]
use allocator_traits::{BrkRegion, OsPages};

use crate::{Arena, MallocError, Placement, Tunables};

/// One event of the project's text trace format (the thread field is not used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `a ID SIZE`: malloc.
    Malloc {
        /// Block name.
        id: u64,
        /// Bytes.
        size: usize,
    },
    /// `c ID SIZE`: calloc of SIZE bytes in total.
    Calloc {
        /// Block name.
        id: u64,
        /// Bytes.
        size: usize,
    },
    /// `m ID ALIGN SIZE`: memalign.
    Memalign {
        /// Block name.
        id: u64,
        /// Alignment.
        align: usize,
        /// Bytes.
        size: usize,
    },
    /// `r ID SIZE`: realloc of block ID (an unknown ID reallocs NULL, i.e. mallocs).
    Realloc {
        /// Block name.
        id: u64,
        /// Bytes.
        size: usize,
    },
    /// `f ID`: free.
    Free {
        /// Block name.
        id: u64,
    },
}

impl Event {
    /// Parses one line; `Ok(None)` for a blank or `#` comment line. An optional leading
    /// `tTHREAD ` field is skipped.
    pub fn parse(line: &str) -> Result<Option<Event>, String> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let mut f = line.split(' ').filter(|s| !s.is_empty()).peekable();
        if f.peek().is_some_and(|s| s.starts_with('t')) {
            f.next();
        }
        let op = f.next().ok_or("empty line")?;
        let mut num = |what: &str| -> Result<u64, String> {
            let s = f.next().ok_or_else(|| format!("missing {what}"))?;
            s.parse::<u64>()
                .map_err(|_| format!("{what} `{s}` is not a number"))
        };
        let ev = match op {
            "a" => Event::Malloc {
                id: num("ID")?,
                size: num("SIZE")? as usize,
            },
            "c" => Event::Calloc {
                id: num("ID")?,
                size: num("SIZE")? as usize,
            },
            "m" => Event::Memalign {
                id: num("ID")?,
                align: num("ALIGN")? as usize,
                size: num("SIZE")? as usize,
            },
            "r" => Event::Realloc {
                id: num("ID")?,
                size: num("SIZE")? as usize,
            },
            "f" => Event::Free { id: num("ID")? },
            other => {
                return Err(format!(
                    "unknown event `{other}` (expected a, c, m, r or f)"
                ));
            }
        };
        if let Some(extra) = f.next() {
            return Err(format!("unexpected field `{extra}`"));
        }
        Ok(Some(ev))
    }
}

/// Why an event could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// A free or realloc named a block that is not live.
    UnknownId(u64),
    /// An allocation named a block that is already live.
    LiveId(u64),
    /// The model diagnosed the operation (glibc would abort with this message).
    Malloc(String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::UnknownId(id) => write!(f, "block {id} is not live"),
            ReplayError::LiveId(id) => write!(f, "block {id} is already live"),
            ReplayError::Malloc(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Replays events through an [`Arena`], remembering which block each ID names.
pub struct Replayer<S: MemorySource, M: MemorySource> {
    arena: Arena<S, M>,
    live: HashMap<u64, (NonNull<u8>, usize)>,
}

#[cfg(unix)]
impl Replayer<BrkRegion, OsPages> {
    /// A replayer over a real brk-like heap (64 GiB of reserved address space) with real
    /// mappings: what glibc runs on.
    pub fn new(tunables: &Tunables) -> Self {
        Replayer::with_arena(Arena::new(
            BrkRegion::new(64 << 30),
            OsPages::new(),
            tunables,
        ))
    }
}

impl<S: MemorySource, M: MemorySource> Replayer<S, M> {
    /// A replayer over a given arena.
    pub fn with_arena(arena: Arena<S, M>) -> Self {
        Replayer {
            arena,
            live: HashMap::new(),
        }
    }

    /// The arena (for statistics and inspection).
    pub fn arena(&self) -> &Arena<S, M> {
        &self.arena
    }

    /// Applies one event; returns the output line for allocation events (`None` for a free).
    pub fn apply(&mut self, ev: Event) -> Result<Option<String>, ReplayError> {
        let err = |e: MallocError| ReplayError::Malloc(e.to_string());
        let (op, id, size, r) = match ev {
            Event::Malloc { id, size }
            | Event::Calloc { id, size }
            | Event::Memalign { id, size, .. } => {
                if self.live.contains_key(&id) {
                    return Err(ReplayError::LiveId(id));
                }
                let (op, r) = match ev {
                    Event::Malloc { .. } => ('a', self.arena.malloc(size)),
                    Event::Calloc { .. } => ('c', self.arena.calloc(size)),
                    Event::Memalign { align, .. } => ('m', self.arena.memalign(align, size)),
                    _ => unreachable!(),
                };
                let r = match r {
                    Ok(p) => Some(p),
                    Err(MallocError::OutOfMemory) => None,
                    Err(e) => return Err(err(e)),
                };
                (op, id, size, r)
            }
            Event::Realloc { id, size } => {
                let old = self.live.remove(&id);
                // SAFETY: `old` is a live block of this arena (tracked by ID).
                let r = unsafe {
                    self.arena
                        .realloc_sized(old.map(|o| o.0), old.map_or(0, |o| o.1), size)
                };
                let r = match r {
                    Ok(p) => p,
                    Err(MallocError::OutOfMemory) => {
                        if let Some(o) = old {
                            self.live.insert(id, o);
                        }
                        None
                    }
                    Err(e) => return Err(err(e)),
                };
                ('r', id, size, r)
            }
            Event::Free { id } => {
                let (p, size) = self.live.remove(&id).ok_or(ReplayError::UnknownId(id))?;
                // SAFETY: `p` is a live block of this arena (tracked by ID).
                unsafe { self.arena.free_sized(p, size) }
                    .map_err(|e| ReplayError::Malloc(e.to_string()))?;
                return Ok(None);
            }
        };
        let off = match r {
            Some(p) => {
                self.live.insert(id, (p, size));
                self.arena.placement(p).to_string()
            }
            None => "NULL".to_string(),
        };
        Ok(Some(format!("{op} {id} {size} {off}")))
    }

    /// Where the live block `id` is.
    pub fn placement(&self, id: u64) -> Option<Placement> {
        self.live.get(&id).map(|&(p, _)| self.arena.placement(p))
    }
}
