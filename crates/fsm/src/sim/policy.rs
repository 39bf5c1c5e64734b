//! `fsm sim -p NAME`: any policy of the registry, run with the same op language, showing its
//! own structures after each op through the [`Inspector`](allocator_traits::Inspector)
//! interface.
//!
//! ```text
//!   registry::lookup(NAME) --build_in(BoxedRegion of -S bytes, its SimView)--> Built
//!                                                                                |
//!   driver --malloc/free--> PolicyEngine --allocate/deallocate--> Box<dyn FreeSpaceManager>
//!                              |  dump(): manager.inspect() --> view::Collected::write_text
//!                              +- snapshot(): the same blocks, for the SVG
//! ```
//!
//! With `--offsets-only`, [`OffsetEngine`] drives the policy's offset manager
//! ([`registry::Spec::build_offsets`]) over the offsets of a space of `-S` bytes with nothing
//! behind them, shown through the same view.
//!
//! Every policy comes from the registry: its descriptor's [`registry::SimView`] says the
//! smallest heap that can show it and the tunables it is shown with. The generic text view and
//! the SVG come from the manager's `inspect`, so a new policy needs nothing here.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use allocator_traits::{BoxedRegion, FreeSpaceManager, OffsetManager};

use super::driver::{Engine, Malloc};
use super::svg::Snapshot;
use super::view::{AddrMap, Collected};

/// A manager built for the simulator, and where its heap starts.
pub struct Built {
    /// The manager, owning its memory.
    pub manager: Box<dyn FreeSpaceManager>,
    /// Address of the heap's first byte (shown as `-b`).
    pub heap_start: usize,
    /// The heap's length in bytes.
    pub heap_len: usize,
    /// Said on stderr when the heap was raised to what the policy needs.
    pub note: Option<String>,
}

/// The registry's policy `name` (suffixes included). `Ok(None)`: no policy has this base name;
/// an error names a suffix the policy does not take.
pub fn lookup(name: &str) -> Result<Option<registry::Spec>, String> {
    match registry::lookup(name) {
        Ok(s) => Ok(Some(s)),
        Err(registry::RegistryError::UnknownPolicy { .. }) => Ok(None),
        Err(e) => Err(format!("-p {e}")),
    }
}

/// Builds the policy over a heap of `heap` bytes (raised to the smallest it can show).
pub fn build(spec: &registry::Spec, heap: usize) -> Result<Built, String> {
    let view = spec.descriptor.sim;
    let len = heap.max(view.min_heap);
    let note = (len > heap).then(|| {
        format!(
            "-p {}: the heap is raised from {heap} to {len} bytes, the smallest that can show it",
            spec.descriptor.name
        )
    });
    let region =
        BoxedRegion::new(len).map_err(|e| format!("cannot make a heap of {len} bytes: {e}"))?;
    let heap_start = region.start();
    let cfg = registry::Config {
        tunables: Some(view.tunables.to_string()).filter(|t| !t.is_empty()),
        ..registry::Config::default()
    };
    let inst = spec.build_in(region, &cfg).map_err(|e| format!("-p {e}"))?;
    // A policy that manages less than its region from the start (the buddy system's region
    // rounded to its blocks, its bitmaps at the end) says so beside the size.
    let mut shown = Collected::default();
    inst.manager.inspect(&mut shown);
    let managed = shown.regions.first().map_or(0, |r| r.1);
    let note = if managed > 0 && managed < len {
        let said =
            note.unwrap_or_else(|| format!("-p {}: the heap is {len} bytes", spec.descriptor.name));
        Some(format!(
            "{said}; {} manages {managed} of them (the rest: alignment and rounding to its blocks)",
            spec.descriptor.name
        ))
    } else {
        note
    };
    Ok(Built {
        manager: inst.manager,
        heap_start,
        heap_len: len,
        note,
    })
}

/// The text of `-p list`.
pub fn list_text() -> String {
    let mut s = String::from(
        "malloc.py's policies over fit's range manager (malloc.py's output):\n  BEST, WORST, FIRST, \
         NEXT (next fit; also prints its rover)\n\nPolicies over real memory (-p NAME[:SUFFIX], \
         shown through their own structures):\n",
    );
    for d in registry::all() {
        s.push_str(&format!("  {:<12}{}\n", d.name, d.about));
        s.push_str(&format!("  {:<12}shows: {}\n", "", d.sim.shows));
        if !d.suffixes.is_empty() {
            let suffixes: Vec<String> = d.suffixes.iter().map(|x| format!(":{}", x.name)).collect();
            s.push_str(&format!("  {:<12}suffixes: {}\n", "", suffixes.join(" ")));
        }
        if d.has_offsets() {
            s.push_str(&format!(
                "  {:<12}--offsets-only: its offset manager (a space with nothing behind it)\n",
                ""
            ));
        }
    }
    s
}

/// A live block: what the driver knows it by, and what the manager needs back.
#[derive(Debug, Clone, Copy)]
struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
}

/// Any manager, driven by the op language.
pub struct PolicyEngine {
    manager: Box<dyn FreeSpaceManager>,
    map: AddrMap,
    align: usize,
    live: BTreeMap<i128, Live>,
}

impl PolicyEngine {
    /// The engine over `built`, showing addresses from `base`, allocating with alignment
    /// `align` (a power of two).
    pub fn new(built: Built, base: i128, align: usize) -> Self {
        PolicyEngine {
            manager: built.manager,
            map: AddrMap {
                heap_start: built.heap_start,
                heap_len: built.heap_len,
                base,
            },
            align,
            live: BTreeMap::new(),
        }
    }

    fn collect(&self) -> Collected {
        let mut c = Collected::default();
        self.manager.inspect(&mut c);
        c.known = self
            .live
            .values()
            .map(|l| (l.ptr.as_ptr() as usize, l.layout.size()))
            .collect();
        c
    }
}

/// Where an [`OffsetEngine`]'s space starts: far above any count the view prints as a number
/// (a named value inside the space is shown as an address), aligned to every alignment `-a`
/// allows.
const OFFSETS_START: usize = 1 << 40;

/// A policy's offset manager, driven by the op language.
pub struct OffsetEngine {
    manager: Box<dyn OffsetManager + Send>,
    map: AddrMap,
    align: usize,
    /// Printed address -> (offset, bytes asked) of each live range.
    live: BTreeMap<i128, (usize, usize)>,
}

impl OffsetEngine {
    /// The offset manager of `spec` over `len` bytes of offsets with smallest unit `granule`,
    /// showing offsets from `base`, allocating with alignment `align` (a power of two).
    pub fn new(
        spec: &registry::Spec,
        len: usize,
        granule: usize,
        base: i128,
        align: usize,
    ) -> Result<Self, String> {
        let end = OFFSETS_START.checked_add(len).ok_or_else(|| {
            format!(
                "-S {len}: too large for a space of offsets (at most {} bytes)",
                usize::MAX - OFFSETS_START
            )
        })?;
        let space = registry::OffsetSpace {
            range: OFFSETS_START..end,
            granule,
        };
        let inst = spec.build_offsets(&space).map_err(|e| format!("-p {e}"))?;
        Ok(OffsetEngine {
            manager: inst.manager,
            map: AddrMap {
                heap_start: OFFSETS_START,
                heap_len: len,
                base,
            },
            align,
            live: BTreeMap::new(),
        })
    }

    fn collect(&self) -> Collected {
        let mut c = Collected::default();
        self.manager.inspect(&mut c);
        c.known = self.live.values().copied().collect();
        c
    }
}

impl Engine for OffsetEngine {
    fn malloc(&mut self, size: i128) -> Result<Malloc, String> {
        let Ok(size) = usize::try_from(size) else {
            return Err(format!("Alloc({size}): a negative size is not supported"));
        };
        let Ok(offset) = self.manager.allocate(size, self.align) else {
            return Ok(Malloc {
                addr: None,
                searched: None,
            });
        };
        let addr = self.map.show(offset);
        if self.live.insert(addr, (offset, size)).is_some() {
            return Err(format!(
                "Alloc({size}) returned address {addr}, which is still live: the policy \
                 handed out one range twice"
            ));
        }
        Ok(Malloc {
            addr: Some(addr),
            searched: None,
        })
    }

    fn free(&mut self, addr: i128) -> Result<bool, String> {
        // As for a heap: only live ranges reach the manager.
        let Some((offset, _)) = self.live.remove(&addr) else {
            return Ok(false);
        };
        match self.manager.free(offset) {
            Ok(()) => Ok(true),
            Err(e) => Err(format!(
                "Free of the live range at {addr}: the policy refused it: {e}"
            )),
        }
    }

    fn dump(&self, out: &mut String) {
        self.collect().write_text(&self.map, out);
    }

    fn snapshot(&self) -> Snapshot {
        self.collect().to_snapshot(&self.map)
    }
}

impl Engine for PolicyEngine {
    fn malloc(&mut self, size: i128) -> Result<Malloc, String> {
        let failed = Malloc {
            addr: None,
            searched: None,
        };
        let Ok(size) = usize::try_from(size) else {
            return Err(format!("Alloc({size}): a negative size is not supported"));
        };
        let Ok(layout) = Layout::from_size_align(size, self.align) else {
            return Ok(failed);
        };
        match self.manager.allocate(layout) {
            Ok(block) => {
                let ptr = block.cast::<u8>();
                let addr = self.map.show(ptr.as_ptr() as usize);
                if self.live.insert(addr, Live { ptr, layout }).is_some() {
                    return Err(format!(
                        "Alloc({size}) returned address {addr}, which is still live: the \
                         policy handed out one block twice"
                    ));
                }
                Ok(Malloc {
                    addr: Some(addr),
                    searched: None,
                })
            }
            Err(_) => Ok(failed),
        }
    }

    fn free(&mut self, addr: i128) -> Result<bool, String> {
        // Only live blocks reach the manager: a double or stale free is answered here, as
        // malloc.py answers it (-1), whatever the policy would detect.
        let Some(live) = self.live.remove(&addr) else {
            return Ok(false);
        };
        // SAFETY: `live.ptr` was returned by this manager's `allocate` with `live.layout`, has
        // not been freed since (it is removed from `live` exactly once, here), and the simulator
        // never touches a block's bytes.
        match unsafe { self.manager.deallocate(live.ptr, live.layout) } {
            Ok(()) => Ok(true),
            Err(e) => Err(format!(
                "Free of the live block at {addr}: the policy refused it: {e}"
            )),
        }
    }

    fn dump(&self, out: &mut String) {
        self.collect().write_text(&self.map, out);
    }

    fn snapshot(&self) -> Snapshot {
        self.collect().to_snapshot(&self.map)
    }
}
