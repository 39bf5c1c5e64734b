//! The policy registry: every landed policy by its name, as a `Box<dyn FreeSpaceManager>`.
//!
//! ```text
//!   "best-fit:addr" ──lookup──> Policy { name, about, build } ──build(&Config)──> Instance
//!                                                                  manager: Box<dyn FreeSpaceManager>
//!                                                                  offset:  address -> heap offset | MMAP
//! ```
//!
//! Each manager gets memory from a `brk`-like reservation ([`allocator_traits::BrkRegion`]) of
//! [`Config::reserve`] bytes: address space only, pages are committed as the policy asks for them,
//! so the footprint is what the policy took. Names follow DESIGN.md; fit policies take an order
//! suffix. An unknown name gives one line listing the valid ones.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use allocator_traits::{
    AllocError, BrkRegion, Detects, FreeError, FreeSpaceManager, Inspector, Locked, OsPages, Stats,
};

/// How to build a policy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address space each manager may grow into.
    pub reserve: usize,
    /// The capacity to give a policy whose metadata is sized up front (the buddy system's
    /// bitmaps): the matrix sets it from the trace's peak live bytes.
    pub capacity: usize,
    /// A `GLIBC_TUNABLES`-style string (`glibc.malloc.tcache_count=0:...`) for ptmalloc2.
    pub tunables: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reserve: 64 << 30,
            capacity: 1 << 30,
            tunables: None,
        }
    }
}

impl Config {
    /// The default configuration with a capacity fitted to a workload whose live bytes peak at
    /// `peak_live`: eight times that, rounded up to a power of two, at least 64 MiB.
    pub fn for_peak(peak_live: u64) -> Self {
        let want = usize::try_from(peak_live.saturating_mul(8)).unwrap_or(usize::MAX >> 1);
        Config {
            capacity: want
                .max(64 << 20)
                .checked_next_power_of_two()
                .unwrap_or(1 << 40),
            ..Config::default()
        }
    }
}

/// A manager that can also say where a block lies: its offset from the start of its first
/// (main) heap, or `None` for a block in a separate OS mapping (printed `MMAP`). `Send`, so that
/// the threaded replay can put one behind a lock.
pub trait Placed: FreeSpaceManager + Send {
    /// The block at `addr`'s offset, or `None` if it is in a separate mapping.
    fn offset(&self, addr: usize) -> Option<usize>;
}

/// A manager with its offset function.
struct Entry<M> {
    m: M,
    offset: fn(&M, usize) -> Option<usize>,
}

impl<M: FreeSpaceManager> FreeSpaceManager for Entry<M> {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.m.allocate(layout)
    }
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.m.deallocate(ptr, layout) }
    }
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.m.resize_in_place(ptr, old, new) }
    }
    unsafe fn grow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.m.grow(ptr, old, new) }
    }
    unsafe fn shrink(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded caller contract.
        unsafe { self.m.shrink(ptr, old, new) }
    }
    fn stats(&self) -> Stats {
        self.m.stats()
    }
    fn record_moved_resize(&mut self) {
        self.m.record_moved_resize()
    }
    fn inspect(&self, out: &mut dyn Inspector) {
        self.m.inspect(out)
    }
    fn detects(&self) -> Detects {
        self.m.detects()
    }
    fn check_invariants(&self) -> Result<(), allocator_traits::Corruption> {
        self.m.check_invariants()
    }
}

impl<M: FreeSpaceManager + Send> Placed for Entry<M> {
    fn offset(&self, addr: usize) -> Option<usize> {
        (self.offset)(&self.m, addr)
    }
}

/// A built policy.
pub struct Instance {
    /// The manager (upcast with `as_mut()` to `&mut dyn FreeSpaceManager`).
    pub manager: Box<dyn Placed>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

/// A registered policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Its name, as DESIGN.md spells it (with an order suffix for fit variants).
    pub name: &'static str,
    /// One line about it.
    pub about: &'static str,
    build: fn(&str, &Config) -> Result<Instance, String>,
}

impl Policy {
    /// Builds a fresh instance.
    pub fn build(&self, cfg: &Config) -> Result<Instance, String> {
        (self.build)(self.name, cfg)
    }
}

/// Offsets from the first region the manager reports through `inspect`; an address outside it is
/// in a separate mapping. (Walks the manager's structures: meant for `--offsets`, not for speed.)
pub fn first_region_offset<M: FreeSpaceManager + ?Sized>(m: &M, addr: usize) -> Option<usize> {
    #[derive(Default)]
    struct First(Option<(usize, usize)>);
    impl Inspector for First {
        fn region(&mut self, start: usize, len: usize) {
            if self.0.is_none() {
                self.0 = Some((start, len));
            }
        }
    }
    let mut f = First::default();
    m.inspect(&mut f);
    let (start, len) = f.0?;
    (addr >= start && addr < start.saturating_add(len.max(1))).then(|| addr - start)
}

fn instance<M: FreeSpaceManager + Send + 'static>(m: M) -> Instance {
    Instance {
        manager: Box::new(Entry {
            m,
            offset: first_region_offset::<M>,
        }),
    }
}

fn no_tunables(cfg: &Config, name: &str) -> Result<(), String> {
    match &cfg.tunables {
        Some(t) if !t.is_empty() => Err(format!("{name} takes no tunables (got '{t}')")),
        _ => Ok(()),
    }
}

fn ptmalloc2(_name: &str, cfg: &Config) -> Result<Instance, String> {
    let t = ptmalloc2::Tunables::parse(cfg.tunables.as_deref().unwrap_or(""))
        .map_err(|e| format!("ptmalloc2 tunables: {e}"))?;
    let arena = ptmalloc2::Arena::new(BrkRegion::new(cfg.reserve), OsPages::new(), &t);
    Ok(Instance {
        manager: Box::new(Entry {
            m: arena,
            offset: |a, addr| match NonNull::new(addr as *mut u8).map(|p| a.placement(p)) {
                Some(ptmalloc2::Placement::Heap(o)) => Some(o),
                _ => None,
            },
        }),
    })
}

fn buddy(_name: &str, cfg: &Config) -> Result<Instance, String> {
    no_tunables(cfg, "buddy")?;
    let conf = buddy::Config::new(cfg.capacity).grow_by(1 << 20);
    Ok(instance(buddy::Buddy::new(
        BrkRegion::new(cfg.reserve),
        conf,
    )))
}

fn tcmalloc(_name: &str, cfg: &Config) -> Result<Instance, String> {
    no_tunables(cfg, "tcmalloc")?;
    Ok(instance(tcmalloc::Core::new(BrkRegion::new(cfg.reserve))))
}

fn fit(name: &str, cfg: &Config) -> Result<Instance, String> {
    no_tunables(cfg, name)?;
    let conf: fit::Config = name
        .parse()
        .map_err(|e: fit::ParseConfigError| e.to_string())?;
    Ok(instance(fit::FitHeap::new(
        BrkRegion::new(cfg.reserve),
        conf,
    )))
}

fn segregated(_name: &str, cfg: &Config) -> Result<Instance, String> {
    no_tunables(cfg, "segregated")?;
    // The page level (spans and large objects): best fit over a brk-like region.
    let pages = fit::FitHeap::new(BrkRegion::new(cfg.reserve), fit::Config::best_fit());
    Ok(instance(segregated::Segregated::new(pages)))
}

fn segregated_buddy(_name: &str, cfg: &Config) -> Result<Instance, String> {
    no_tunables(cfg, "segregated")?;
    let conf = buddy::Config::new(cfg.capacity).grow_by(1 << 20);
    let pages = buddy::Buddy::new(BrkRegion::new(cfg.reserve), conf);
    Ok(instance(segregated::Segregated::new(pages)))
}

/// Every registered policy, in the order reports list them. Any other fit name
/// (`POLICY[:ORDER][:COALESCE]`, e.g. `best-fit:size-asc:no-coalesce`) is accepted by [`lookup`].
pub fn all() -> Vec<Policy> {
    vec![
        Policy {
            name: "first-fit",
            about: "first fit, address-ordered free list, boundary-tag coalescing",
            build: fit,
        },
        Policy {
            name: "first-fit:lifo",
            about: "first fit, LIFO free list (freed blocks go to the front)",
            build: fit,
        },
        Policy {
            name: "next-fit",
            about: "next fit (roving pointer), address-ordered free list",
            build: fit,
        },
        Policy {
            name: "best-fit",
            about: "best fit, address-ordered free list",
            build: fit,
        },
        Policy {
            name: "worst-fit",
            about: "worst fit, address-ordered free list",
            build: fit,
        },
        Policy {
            name: "segregated",
            about: "Go's size classes over spans; spans and large objects from best fit",
            build: segregated,
        },
        Policy {
            name: "segregated:buddy",
            about: "Go's size classes over spans; spans and large objects from the buddy system",
            build: segregated_buddy,
        },
        Policy {
            name: "buddy",
            about: "binary buddy system (16 B minimum block, grows 1 MiB at a time)",
            build: buddy,
        },
        Policy {
            name: "ptmalloc2",
            about: "model of glibc 2.36's malloc (main arena, tcache, fastbins, bins, mmap)",
            build: ptmalloc2,
        },
        Policy {
            name: "tcmalloc",
            about: "gperftools-style size classes, central lists and page heap (one thread)",
            build: tcmalloc,
        },
    ]
}

/// The names of every registered policy.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name).collect()
}

/// The policy called `name`, or a one-line error listing the valid names.
pub fn lookup(name: &str) -> Result<Policy, String> {
    if let Some(p) = all().into_iter().find(|p| p.name == name) {
        return Ok(p);
    }
    if name.contains("-fit") && name.parse::<fit::Config>().is_ok() {
        // Another order or coalescing suffix: the name lives as long as the program (a handful
        // of names per run).
        return Ok(Policy {
            name: Box::leak(name.to_string().into_boxed_str()),
            about: "fit policy with an order suffix",
            build: fit,
        });
    }
    Err(format!(
        "unknown policy '{name}'; valid names: {} (fit policies take :addr, :size-asc, :size-desc, :lifo or :fifo)",
        names().join(", ")
    ))
}

/// Builds the policy called `name`.
pub fn build(name: &str, cfg: &Config) -> Result<Instance, String> {
    lookup(name)?.build(cfg)
}

/// A policy as a concurrent `GlobalAlloc`, for the threaded replay ([`crate::threaded`]).
pub struct Concurrent {
    /// What runs, in a few words (`tcmalloc::Tcmalloc`, `Locked<best-fit>`, ...).
    pub runs_as: String,
    /// The allocator.
    pub alloc: Box<dyn GlobalAlloc + Sync>,
}

impl std::fmt::Debug for Concurrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concurrent")
            .field("runs_as", &self.runs_as)
            .finish_non_exhaustive()
    }
}

/// The policy `name` as an allocator several threads can share: `tcmalloc` as the concurrent
/// [`tcmalloc::Tcmalloc`] (thread caches over OS pages), `ptmalloc2` as [`ptmalloc2::Ptmalloc`]
/// (arenas per thread, tcache; `cfg.tunables` applied), every other policy as the instance
/// [`build`] makes behind [`Locked`]'s one spin lock (a single shared heap: the baseline that
/// shows what locking costs). An unknown name is the error [`lookup`] gives.
pub fn concurrent(name: &str, cfg: &Config) -> Result<Concurrent, String> {
    lookup(name)?;
    Ok(match name {
        "tcmalloc" => {
            no_tunables(cfg, "tcmalloc")?;
            Concurrent {
                runs_as: "tcmalloc::Tcmalloc (thread caches)".into(),
                alloc: Box::new(tcmalloc::Tcmalloc::new(OsPages::new())),
            }
        }
        "ptmalloc2" => {
            let t = ptmalloc2::Tunables::parse(cfg.tunables.as_deref().unwrap_or(""))
                .map_err(|e| format!("ptmalloc2 tunables: {e}"))?;
            Concurrent {
                runs_as: "ptmalloc2::Ptmalloc (arenas per thread)".into(),
                alloc: Box::new(ptmalloc2::Ptmalloc::with_tunables(t)),
            }
        }
        _ => Concurrent {
            runs_as: format!("Locked<{name}> (one spin lock)"),
            alloc: Box::new(Locked::new(build(name, cfg)?.manager)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_is_one_line_listing_the_valid_ones() {
        let e = lookup("no-such-fit").unwrap_err();
        assert!(e.starts_with("unknown policy 'no-such-fit'"), "{e}");
        assert!(!e.contains('\n'));
        for n in names() {
            assert!(e.contains(n), "{e} lacks {n}");
        }
    }

    #[test]
    fn fit_names_take_any_suffix() {
        assert_eq!(
            lookup("best-fit:size-asc").unwrap().name,
            "best-fit:size-asc"
        );
        assert!(lookup("best-fit:sideways").is_err());
        assert!(build("worst-fit:fifo:no-coalesce", &Config::default()).is_ok());
    }

    #[test]
    fn every_policy_builds_and_serves_a_block() {
        for p in all() {
            let mut inst = p
                .build(&Config::default())
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            let b = inst
                .manager
                .allocate(core::alloc::Layout::from_size_align(100, 16).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(b.len() >= 100);
        }
    }

    #[test]
    fn every_policy_replays_threaded_as_a_concurrent_allocator() {
        use crate::threaded::{ThreadedOptions, ThreadedProgram, replay_threaded};
        for t in [
            crate::synth::larson(6000, 4, 1),
            crate::synth::producer_consumer(6000, 3, 2),
        ] {
            let prog = ThreadedProgram::compile(&t).unwrap();
            let peak = crate::replay::Program::compile(&t)
                .unwrap()
                .live_profile()
                .1;
            for p in all() {
                let c = concurrent(p.name, &Config::for_peak(peak))
                    .unwrap_or_else(|e| panic!("{}: {e}", p.name));
                let out = replay_threaded(&*c.alloc, &prog, ThreadedOptions::default())
                    .unwrap_or_else(|e| panic!("{} ({}): {e}", p.name, c.runs_as));
                assert_eq!((out.steps, out.threads), (t.len(), 4), "{}", p.name);
            }
        }
        assert!(concurrent("no-such", &Config::default()).is_err());
    }
}
