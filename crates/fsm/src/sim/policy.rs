//! `fsm sim -p NAME`: any policy of the workspace, run with the same op language, showing its
//! own structures after each op through the [`Inspector`](allocator_traits::Inspector)
//! interface.
//!
//! ```text
//!   POLICIES (name -> build) --build(name, heap bytes)--> Built { manager, heap_start }
//!                                                             |
//!   driver --malloc/free--> PolicyEngine --allocate/deallocate--> Box<dyn FreeSpaceManager>
//!                              |  dump(): manager.inspect() --> view::Collected::write_text
//!                              +- snapshot(): the same blocks, for the SVG
//! ```
//!
//! # Adding a policy's view
//!
//! Add one [`PolicyView`] to [`POLICIES`]: its name (the one DESIGN.md fixes), a line about it,
//! and a `build` function that makes the manager over a `BoxedRegion` of the requested size and
//! says where the heap starts. The generic text view and the SVG come from the manager's
//! `inspect`, so nothing else is needed; a policy that reports bins, trees or classes through
//! `begin_list`/`value` gets them printed too.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use allocator_traits::{BoxedRegion, FreeSpaceManager};

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
}

/// One entry of the registry.
pub struct PolicyView {
    /// The policy's name; the entry also answers to `NAME:SUFFIXES` (`best-fit:lifo`).
    pub name: &'static str,
    /// One line for `-p list`.
    pub about: &'static str,
    /// Builds the manager for the full name given (suffixes included) over `heap` bytes.
    pub build: fn(name: &str, heap: usize) -> Result<Built, String>,
}

/// A region of `heap` bytes for a manager to own, and where it starts.
pub fn region(heap: usize) -> Result<(BoxedRegion, usize), String> {
    let r =
        BoxedRegion::new(heap).map_err(|e| format!("cannot make a heap of {heap} bytes: {e}"))?;
    let start = r.start();
    Ok((r, start))
}

/// The four fit policies over real memory (`fit::FitHeap`): `NAME[:ORDER][:COALESCE]`.
fn build_fit(name: &str, heap: usize) -> Result<Built, String> {
    let cfg: fit::Config = name.parse().map_err(|e| format!("-p {name}: {e}"))?;
    let (region, heap_start) = region(heap)?;
    Ok(Built {
        manager: Box::new(fit::FitHeap::new(region, cfg)),
        heap_start,
        heap_len: heap,
    })
}

/// tcmalloc's single-threaded core (`tcmalloc::Core`): its thread cache's lists, transfer
/// caches, central lists by fullness and page heap. The heap is at least 1 MiB (tcmalloc grows
/// in 1 MiB steps); a smaller `-S` is raised to that.
fn build_tcmalloc(_name: &str, heap: usize) -> Result<Built, String> {
    let heap = heap.max(1 << 20);
    let (region, heap_start) = region(heap)?;
    Ok(Built {
        manager: Box::new(tcmalloc::Core::new(region)),
        heap_start,
        heap_len: heap,
    })
}

/// Every policy `fsm sim -p NAME` can show.
fn build_buddy(_name: &str, heap: usize) -> Result<Built, String> {
    // The bitmaps live in the region too: give the smallest heaps room for them.
    let heap = heap.max(1024);
    let (region, heap_start) = region(heap)?;
    let m = buddy::Buddy::try_new(region, buddy::Config::new(heap))
        .map_err(|e| format!("-p buddy over {heap} bytes: {e}"))?;
    Ok(Built {
        manager: Box::new(m),
        heap_start,
        heap_len: heap,
    })
}

fn build_segregated(_name: &str, heap: usize) -> Result<Built, String> {
    // Spans are 8 KiB and up: the heap is raised to at least 1 MiB.
    let heap = heap.max(1 << 20);
    let (region, heap_start) = region(heap)?;
    let pages = fit::FitHeap::new(region, fit::Config::best_fit());
    Ok(Built {
        manager: Box::new(segregated::Segregated::new(pages)),
        heap_start,
        heap_len: heap,
    })
}

fn build_ptmalloc2(_name: &str, heap: usize) -> Result<Built, String> {
    // glibc's defaults but top_pad=0: the main heap grows a page at a time (glibc's default
    // grows it by 128 KiB), so the top chunk stays small enough for the chunks to be seen.
    let heap = heap.max(1 << 20);
    let (region, heap_start) = region(heap)?;
    let t = ptmalloc2::Tunables::parse("glibc.malloc.top_pad=0")
        .map_err(|e| format!("-p ptmalloc2: {e}"))?;
    Ok(Built {
        manager: Box::new(ptmalloc2::Arena::new(
            region,
            allocator_traits::OsPages::new(),
            &t,
        )),
        heap_start,
        heap_len: heap,
    })
}

pub const POLICIES: &[PolicyView] = &[
    PolicyView {
        name: "first-fit",
        about: "first fit over an address-ordered list, boundary tags, coalescing \
                (suffixes: :addr :size-asc :size-desc :lifo :fifo, :coalesce :no-coalesce)",
        build: build_fit,
    },
    PolicyView {
        name: "next-fit",
        about: "next fit: first fit from a roving position that wraps around (rover shown)",
        build: build_fit,
    },
    PolicyView {
        name: "best-fit",
        about: "best fit: the smallest free block that fits",
        build: build_fit,
    },
    PolicyView {
        name: "worst-fit",
        about: "worst fit: the largest free block",
        build: build_fit,
    },
    PolicyView {
        name: "buddy",
        about: "binary buddy system: one free list per order (16 B << k), bitmaps for the buddy test",
        build: build_buddy,
    },
    PolicyView {
        name: "segregated",
        about: "Go's 67 size classes over spans, tiny blocks, best fit for spans and large sizes \
                (heap raised to >= 1 MiB)",
        build: build_segregated,
    },
    PolicyView {
        name: "ptmalloc2",
        about: "glibc 2.36's malloc: tcache, fastbins, unsorted, small and large bins, top \
                (glibc.malloc.top_pad=0, so the heap grows a page at a time)",
        build: build_ptmalloc2,
    },
    PolicyView {
        name: "tcmalloc",
        about: "gperftools-style size classes: thread cache, transfer and central lists, \
                page heap of 8 KiB pages (heap raised to >= 1 MiB)",
        build: build_tcmalloc,
    },
];

/// The registry entry for `name` (`best-fit:lifo` finds `best-fit`).
pub fn find(name: &str) -> Option<&'static PolicyView> {
    let base = name.split(':').next().unwrap_or(name);
    POLICIES.iter().find(|p| p.name == base)
}

/// The text of `-p list`.
pub fn list_text() -> String {
    let mut s = String::from(
        "malloc.py's policies over fit's range manager (malloc.py's output):\n  BEST, WORST, FIRST, \
         NEXT (next fit; also prints its rover)\n\nPolicies over real memory (-p NAME, shown \
         through their own structures):\n",
    );
    for p in POLICIES {
        s.push_str(&format!("  {:<12}{}\n", p.name, p.about));
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
        c
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
