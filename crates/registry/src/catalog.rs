//! The catalog: one [`Descriptor`] per policy, and how each is built. This is the only file in
//! the workspace that names every policy.

use allocator_traits::{FreeSpaceManager, MemorySource, OsPages};

use crate::descriptor::{ClassRun, Descriptor, Family, Front, Memory, SimView, Suffix};
use crate::front::{SharedAlloc, SharedC};
use crate::spec::{Config, Instance, OffsetInstance, OffsetSpace, RegistryError, Spec};

/// Every policy, in the order reports list them.
pub fn all() -> &'static [Descriptor] {
    CATALOG
}

/// The named variants the matrix runs by default (full names), in report order.
pub fn variants() -> Vec<&'static str> {
    CATALOG
        .iter()
        .flat_map(|d| d.variants.iter().copied())
        .collect()
}

/// The fit policies' suffixes: fit's own list (`fit::Config::SUFFIXES`, what its parser takes),
/// so a suffix fit adds is listed, built and tested here with no change.
const FIT_SUFFIXES: [Suffix; fit::Config::SUFFIXES.len()] = {
    let from = fit::Config::SUFFIXES;
    let mut out = [Suffix {
        name: "",
        about: "",
        default: false,
    }; fit::Config::SUFFIXES.len()];
    let mut i = 0;
    while i < from.len() {
        out[i] = Suffix {
            name: from[i].name,
            about: from[i].about,
            default: from[i].is_default,
        };
        i += 1;
    }
    out
};

/// What `fsm sim` shows of every fit policy.
const FIT_SIM: SimView = SimView {
    min_heap: 0,
    tunables: "",
    shows: "the free list in its order, boundary tags, coalescing",
};

const SEGREGATED_SUFFIXES: &[Suffix] = &[
    Suffix {
        name: "buddy",
        about: "spans and large objects from the buddy system (default: best fit)",
        default: false,
    },
    Suffix {
        name: "no-tiny",
        about: "no tiny-object combining (requests under 16 B get their own 16 B block)",
        default: false,
    },
    Suffix {
        name: "unchecked",
        about: "small frees trusted: no allocation bitmaps, no double-free detection (fewer \
                instructions per operation; statistics still exact)",
        default: false,
    },
];

static CATALOG: &[Descriptor] = &[
    Descriptor {
        name: "first-fit",
        about: "first fit: the lowest-placed free block in list order that fits",
        suffixes: &FIT_SUFFIXES,
        variants: &["first-fit", "first-fit:lifo"],
        family: Family::Fits,
        takes_tunables: false,
        front: Front::Locked,
        classes: None,
        sim: FIT_SIM,
        build: fit,
        offsets: Some(fit_offsets),
    },
    Descriptor {
        name: "next-fit",
        about: "next fit: first fit from a roving position that wraps around",
        suffixes: &FIT_SUFFIXES,
        variants: &["next-fit"],
        family: Family::Fits,
        takes_tunables: false,
        front: Front::Locked,
        classes: None,
        sim: SimView {
            shows: "the free list, boundary tags and the rover",
            ..FIT_SIM
        },
        build: fit,
        offsets: Some(fit_offsets),
    },
    Descriptor {
        name: "best-fit",
        about: "best fit: the smallest free block that fits",
        suffixes: &FIT_SUFFIXES,
        variants: &["best-fit"],
        family: Family::Fits,
        takes_tunables: false,
        front: Front::Locked,
        classes: None,
        sim: FIT_SIM,
        build: fit,
        offsets: Some(fit_offsets),
    },
    Descriptor {
        name: "worst-fit",
        about: "worst fit: the largest free block",
        suffixes: &FIT_SUFFIXES,
        variants: &["worst-fit"],
        family: Family::Fits,
        takes_tunables: false,
        front: Front::Locked,
        classes: None,
        sim: FIT_SIM,
        build: fit,
        offsets: Some(fit_offsets),
    },
    Descriptor {
        name: "segregated",
        about: "segregated free lists: Go's 67 size classes over spans, tiny-object combining; \
                spans and large objects from best fit",
        suffixes: SEGREGATED_SUFFIXES,
        variants: &["segregated", "segregated:buddy"],
        family: Family::Classes,
        takes_tunables: false,
        front: Front::Locked,
        classes: Some(segregated_classes),
        sim: SimView {
            min_heap: 1 << 20,
            tunables: "",
            shows: "spans by class, tiny blocks, the page level's free list",
        },
        build: segregated,
        offsets: Some(segregated_offsets),
    },
    Descriptor {
        name: "buddy",
        about: "binary buddy system: one free list per order (16 B << k), bitmaps for the \
                buddy test",
        suffixes: &[],
        variants: &["buddy"],
        family: Family::Classes,
        takes_tunables: false,
        front: Front::Locked,
        classes: None,
        sim: SimView {
            min_heap: 1024,
            tunables: "",
            shows: "one free list per order, the blocks' split tree",
        },
        build: buddy,
        offsets: Some(buddy_offsets),
    },
    Descriptor {
        name: "ptmalloc2",
        about: "model of glibc 2.36's malloc: tcache, fastbins, unsorted, small and large bins, \
                top, mmapped chunks",
        suffixes: &[],
        variants: &["ptmalloc2"],
        family: Family::GlibcLike,
        takes_tunables: true,
        front: Front::Own {
            runs_as: "ptmalloc2::Ptmalloc (arenas per thread)",
            make: ptmalloc2_front,
            c_api: Some(ptmalloc2_c),
        },
        classes: Some(ptmalloc2_classes),
        sim: SimView {
            min_heap: 1 << 20,
            tunables: "glibc.malloc.top_pad=0",
            shows: "tcache, fastbins, unsorted, small and large bins, top \
                    (top_pad=0: the heap grows a page at a time)",
        },
        build: ptmalloc2,
        offsets: None,
    },
    Descriptor {
        name: "tcmalloc",
        about: "gperftools-style thread-caching allocator: size classes, transfer and central \
                lists, page heap of 8 KiB pages",
        suffixes: &[],
        variants: &["tcmalloc"],
        family: Family::Classes,
        takes_tunables: false,
        front: Front::Own {
            runs_as: "tcmalloc::Tcmalloc (thread caches)",
            make: tcmalloc_front,
            c_api: Some(tcmalloc_c),
        },
        classes: Some(tcmalloc_classes),
        sim: SimView {
            min_heap: 1 << 20,
            tunables: "",
            shows: "thread cache lists, transfer caches, central lists by fullness, page heap",
        },
        build: tcmalloc,
        offsets: None,
    },
];

/// Builds `$body` over the memory `$mem` holds, with `$src` bound to the source (a growing
/// reservation or a caller's region) and `$growing` to which of the two it is, and boxes the
/// manager it makes. `$body` gives `(manager, what was built)`.
macro_rules! over {
    ($mem:expr, |$src:ident, $growing:ident| $body:expr) => {
        match $mem {
            Memory::Growing($src) => {
                let $growing = true;
                let (m, built) = $body;
                instance(m, built, "a growing reservation")
            }
            Memory::Region($src) => {
                let $growing = false;
                let (m, built) = $body;
                instance(m, built, "a fixed region")
            }
        }
    };
}

fn instance<M: FreeSpaceManager + Send + 'static>(
    m: M,
    built: String,
    over: &str,
) -> Result<Instance, RegistryError> {
    Ok(Instance {
        manager: Box::new(m),
        built: format!("{built} over {over}"),
    })
}

/// The fit configuration a fit name spells.
fn fit_config(spec: &Spec) -> Result<fit::Config, RegistryError> {
    spec.name
        .parse()
        .map_err(|e: fit::ParseConfigError| RegistryError::BadCombination {
            name: spec.name.clone(),
            reason: e.to_string(),
        })
}

fn fit(spec: &Spec, _cfg: &Config, mem: Memory) -> Result<Instance, RegistryError> {
    let conf = fit_config(spec)?;
    over!(mem, |src, _growing| {
        let h = fit::FitHeap::new(src, conf);
        let built = format!("FitHeap {}", h.config());
        (h, built)
    })
}

fn fit_offsets(spec: &Spec, space: &OffsetSpace) -> Result<OffsetInstance, RegistryError> {
    let conf = fit_config(spec)?;
    let m = fit::offsets::FitOffsets::new(space.range.clone(), conf, space.granule)
        .map_err(|e| spec.error(e))?;
    Ok(OffsetInstance {
        built: format!(
            "FitOffsets {conf}, granule {} B, over {:?}",
            space.granule, space.range
        ),
        manager: Box::new(m),
    })
}

/// Segregated over offsets: Go's classes, one empty span kept per class, over best fit's offset
/// manager with the space's granule, or the buddy system's (smallest block = the granule) with
/// `:buddy`. Over offsets there is no tiny combining (`:no-tiny` says what is built anyway) and
/// every free is checked (`:unchecked` is refused).
fn segregated_offsets(spec: &Spec, space: &OffsetSpace) -> Result<OffsetInstance, RegistryError> {
    if spec.has("unchecked") {
        return Err(spec.error(
            "segregated's offset manager always checks its frees (its bitmaps are out of band)",
        ));
    }
    fn over<L: allocator_traits::OffsetManager + Send + 'static>(
        spec: &Spec,
        page: L,
        page_built: String,
    ) -> Result<OffsetInstance, RegistryError> {
        let m = segregated::offsets::SegregatedOffsets::with_page_level(page, &segregated::GO, 1)
            .map_err(|e| spec.error(e))?;
        Ok(OffsetInstance {
            built: format!("SegregatedOffsets (Go's classes, no tiny blocks) over {page_built}"),
            manager: Box::new(m),
        })
    }
    if spec.has("buddy") {
        let page = buddy_offsets_over(spec, space)?;
        let built = format!(
            "BuddyOffsets, smallest block {} B, over {:?}",
            space.granule, space.range
        );
        return over(spec, page, built);
    }
    let page =
        fit::offsets::FitOffsets::new(space.range.clone(), fit::Config::best_fit(), space.granule)
            .map_err(|e| spec.error(e))?;
    let built = format!(
        "FitOffsets best-fit, granule {} B, over {:?}",
        space.granule, space.range
    );
    over(spec, page, built)
}

/// The buddy system over `space`, its smallest block the space's granule.
fn buddy_offsets_over(
    spec: &Spec,
    space: &OffsetSpace,
) -> Result<buddy::offsets::BuddyOffsets, RegistryError> {
    buddy::offsets::BuddyOffsets::new(space.range.clone(), space.granule).map_err(|e| spec.error(e))
}

fn buddy_offsets(spec: &Spec, space: &OffsetSpace) -> Result<OffsetInstance, RegistryError> {
    let m = buddy_offsets_over(spec, space)?;
    Ok(OffsetInstance {
        built: format!(
            "BuddyOffsets, smallest block {} B, over {:?}",
            space.granule, space.range
        ),
        manager: Box::new(m),
    })
}

/// The capacity a buddy heap over `mem` gets: the whole of a fixed region, or `cfg.capacity` of a
/// growing reservation.
fn buddy_capacity(cfg: &Config, mem: &Memory) -> usize {
    match mem {
        Memory::Region(r) => r.capacity(),
        Memory::Growing(_) => cfg.capacity,
    }
}

/// Segregated over a page level: best fit, or the buddy system with `:buddy`; checked, or
/// unchecked with `:unchecked`.
fn segregated(spec: &Spec, cfg: &Config, mem: Memory) -> Result<Instance, RegistryError> {
    if spec.has("unchecked") {
        segregated_as::<false>(spec, cfg, mem)
    } else {
        segregated_as::<true>(spec, cfg, mem)
    }
}

fn segregated_as<const CHECKED: bool>(
    spec: &Spec,
    cfg: &Config,
    mem: Memory,
) -> Result<Instance, RegistryError> {
    let conf = segregated::Config {
        tiny: !spec.has("no-tiny"),
        ..segregated::Config::DEFAULT
    };
    fn over_pages<L: FreeSpaceManager + Send + 'static, const CHECKED: bool>(
        pages: L,
        conf: segregated::Config,
        pages_built: String,
    ) -> (segregated::Segregated<L, CHECKED>, String) {
        let s = segregated::Segregated::<L, CHECKED>::build(&segregated::GO, conf, pages);
        let kind = if CHECKED { "" } else { ", unchecked" };
        let built = format!(
            "Segregated (tiny {}{kind}) over {pages_built}",
            s.config().tiny
        );
        (s, built)
    }
    if spec.has("buddy") {
        let capacity = buddy_capacity(cfg, &mem);
        over!(mem, |src, growing| {
            let (pages, built) = buddy_over(src, growing, capacity, spec)?;
            over_pages::<_, CHECKED>(pages, conf, built)
        })
    } else {
        over!(mem, |src, _growing| {
            let pages = fit::FitHeap::new(src, fit::Config::best_fit());
            let built = format!("FitHeap {}", pages.config());
            over_pages::<_, CHECKED>(pages, conf, built)
        })
    }
}

/// The buddy system over `src`: a growing source is taken 1 MiB at a time up to `capacity`; a
/// fixed region of `capacity` bytes is taken whole, now (its bitmaps included).
fn buddy_over<S: MemorySource>(
    src: S,
    growing: bool,
    capacity: usize,
    spec: &Spec,
) -> Result<(buddy::Buddy<S>, String), RegistryError> {
    let b = if growing {
        buddy::Buddy::new(src, buddy::Config::new(capacity).grow_by(1 << 20))
    } else {
        buddy::Buddy::try_new(src, buddy::Config::new(capacity)).map_err(|e| spec.error(e))?
    };
    let built = format!("Buddy {:?}", b.config());
    Ok((b, built))
}

fn buddy(spec: &Spec, cfg: &Config, mem: Memory) -> Result<Instance, RegistryError> {
    let capacity = buddy_capacity(cfg, &mem);
    over!(mem, |src, growing| buddy_over(
        src, growing, capacity, spec
    )?)
}

fn ptmalloc2_tunables(spec: &Spec, cfg: &Config) -> Result<ptmalloc2::Tunables, RegistryError> {
    ptmalloc2::Tunables::parse(cfg.tunables()).map_err(|e| RegistryError::Tunables {
        policy: spec.descriptor.name,
        reason: e.to_string(),
    })
}

fn ptmalloc2(spec: &Spec, cfg: &Config, mem: Memory) -> Result<Instance, RegistryError> {
    let t = ptmalloc2_tunables(spec, cfg)?;
    over!(mem, |src, _growing| {
        let a = ptmalloc2::Arena::new(src, OsPages::new(), &t);
        (
            a,
            format!("ptmalloc2::Arena (tunables '{}')", cfg.tunables()),
        )
    })
}

fn ptmalloc2_front(spec: &Spec, cfg: &Config) -> Result<SharedAlloc, RegistryError> {
    let t = ptmalloc2_tunables(spec, cfg)?;
    Ok(Box::new(ptmalloc2::Ptmalloc::with_tunables(t)))
}

fn ptmalloc2_c(spec: &Spec, cfg: &Config) -> Result<SharedC, RegistryError> {
    let t = ptmalloc2_tunables(spec, cfg)?;
    Ok(Box::new(ptmalloc2::Ptmalloc::with_tunables(t)))
}

fn ptmalloc2_classes() -> Vec<ClassRun> {
    // glibc has no size classes as such, but request2size rounds every request to a chunk;
    // ROUNDED is the usable size (chunk size - 8), up to the default mmap threshold.
    ptmalloc2::classes().collect()
}

fn tcmalloc(_spec: &Spec, _cfg: &Config, mem: Memory) -> Result<Instance, RegistryError> {
    over!(mem, |src, _growing| (
        tcmalloc::Core::new(src),
        "tcmalloc::Core".to_string()
    ))
}

fn tcmalloc_front(_spec: &Spec, _cfg: &Config) -> Result<SharedAlloc, RegistryError> {
    Ok(Box::new(tcmalloc::Tcmalloc::new(OsPages::new())))
}

fn tcmalloc_c(_spec: &Spec, _cfg: &Config) -> Result<SharedC, RegistryError> {
    Ok(Box::new(tcmalloc::Tcmalloc::new(OsPages::new())))
}

fn tcmalloc_classes() -> Vec<ClassRun> {
    tcmalloc::classes()
        .map(|r| (r.from, r.to, r.rounded))
        .collect()
}

fn segregated_classes() -> Vec<ClassRun> {
    segregated::GO.runs().collect()
}
