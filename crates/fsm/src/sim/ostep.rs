//! The `malloc.py` engine: `fit`'s range manager ([`fit::ranges::RangeList`]) with malloc.py's
//! output. No placement logic lives here: search, split, list order and coalescing are the fit
//! crate's; this module converts numbers and prints.
//!
//! ```text
//!   driver --malloc(N)--> OstepEngine --RangeList::malloc(N)--> Placement { addr, searched }
//!                              |                                  or Failure { searched }
//!                              +-- dump(): "Free List [ Size n ]: [ addr:A sz:S ]..."
//! ```
//!
//! Addresses: the range manager works on `usize`; `-b` may be negative or huge, so the heap runs
//! at `origin` (the base itself when it fits, else 0) and every printed address is shifted by
//! `base - origin`. Placement never depends on where the heap starts (sizes are rounded,
//! addresses never), so the shift changes nothing else.

use std::fmt::Write as _;

use fit::ranges::{FailureReason, RangeList};
use fit::{Config, Order, Policy};

use super::driver::{Engine, Malloc};
use super::svg::Snapshot;
use super::view::{AddrMap, Collected};

/// `malloc.py`'s allocator, as a printer over [`RangeList`].
#[derive(Debug)]
pub struct OstepEngine {
    heap: RangeList,
    map: AddrMap,
    header: i128,
    show_rover: bool,
}

/// `-p` values that select the range manager: malloc.py's three and `NEXT` (next fit, this
/// tool's addition, which also prints its rover).
pub fn ostep_policy(name: &str) -> Option<Policy> {
    match name {
        "FIRST" => Some(Policy::FirstFit),
        "BEST" => Some(Policy::BestFit),
        "WORST" => Some(Policy::WorstFit),
        "NEXT" => Some(Policy::NextFit),
        _ => None,
    }
}

/// `-l` values.
pub fn ostep_order(name: &str) -> Option<Order> {
    Order::ALL.into_iter().find(|o| o.ostep_name() == name)
}

impl OstepEngine {
    /// The engine for `-S size -b base -H header -a align -p policy -l order [-C]`, with `policy`
    /// and `order` already validated. `Err` says which value this tool cannot run.
    pub fn new(
        size: i128,
        base: i128,
        header: i128,
        align: i128,
        policy: Policy,
        order: Order,
        coalesce: bool,
    ) -> Result<Self, String> {
        let size_u = usize::try_from(size)
            .map_err(|_| format!("-S {size}: a heap size must be 0 or more here"))?;
        let header_u = usize::try_from(header)
            .map_err(|_| format!("-H {header}: a header size must be 0 or more here"))?;
        let align_u = if align == -1 {
            None
        } else {
            Some(usize::try_from(align).map_err(|_| format!("-a {align}: too large"))?)
        };
        let origin = match usize::try_from(base) {
            Ok(b) if b.checked_add(size_u).is_some() => b,
            _ => 0,
        };
        let cfg = Config::ostep(policy, order, coalesce, header_u, align_u);
        let heap = RangeList::new(origin, size_u, cfg).map_err(|e| e.to_string())?;
        Ok(OstepEngine {
            heap,
            map: AddrMap {
                heap_start: origin,
                heap_len: size_u,
                base,
            },
            header,
            show_rover: policy == Policy::NextFit,
        })
    }
}

impl Engine for OstepEngine {
    fn malloc(&mut self, size: i128) -> Result<Malloc, String> {
        if size < 0 {
            return Err(format!(
                "Alloc({size}): a negative size is not supported (malloc.py runs it and \
                 corrupts its free list)"
            ));
        }
        // A request larger than the address space fits nowhere: every entry is examined.
        let no_fit = Malloc {
            addr: None,
            searched: Some(self.heap.free_len()),
        };
        let Ok(req) = usize::try_from(size) else {
            return Ok(no_fit);
        };
        match self.heap.malloc(req) {
            Ok(p) => Ok(Malloc {
                addr: Some(self.map.show(p.addr)),
                searched: Some(p.searched),
            }),
            Err(f) => match f.reason {
                FailureReason::NoFit { .. } => Ok(Malloc {
                    addr: None,
                    searched: Some(f.searched),
                }),
                FailureReason::Overflow { .. } => Ok(no_fit),
                FailureReason::DuplicateAddress { addr } => Err(format!(
                    "Alloc({size}) chose address {}, which a live zero-size block already has \
                     (malloc.py stops with AssertionError: addr not in self.sizemap)",
                    self.map.show(addr)
                )),
                _ => Err(format!("Alloc({size}): {f}")),
            },
        }
    }

    fn free(&mut self, addr: i128) -> Result<bool, String> {
        let local = addr - self.map.base + self.map.heap_start as i128;
        let Ok(local) = usize::try_from(local) else {
            return Ok(false);
        };
        Ok(self.heap.free(local).is_ok())
    }

    fn shown_address(&self, addr: Option<i128>, random_mode: bool) -> i128 {
        let a = addr.unwrap_or(-1);
        if random_mode { a + self.header } else { a }
    }

    fn dump(&self, out: &mut String) {
        let _ = write!(out, "Free List [ Size {} ]: ", self.heap.free_len());
        for c in self.heap.free_list() {
            let _ = write!(out, "[ addr:{} sz:{} ]", self.map.show(c.addr), c.size);
        }
        out.push('\n');
        if self.show_rover {
            match self.heap.rover() {
                Some(c) => {
                    let _ = writeln!(out, "Rover: {}", self.map.show(c.addr));
                }
                None => out.push_str("Rover: none\n"),
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut c = Collected::default();
        self.heap.inspect(&mut c);
        c.to_snapshot(&self.map)
    }
}
