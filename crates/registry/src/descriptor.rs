//! What the registry knows of one policy.

use allocator_traits::BoxedRegion;
use allocator_traits::BrkRegion;

use crate::spec::{Config, Instance, OffsetInstance, OffsetSpace, RegistryError, Spec};

/// One policy: everything a shell needs to name, build, run, list and show it.
#[derive(Debug)]
pub struct Descriptor {
    /// Its name, as DESIGN.md spells it (`best-fit`, `segregated`, `ptmalloc2`).
    pub name: &'static str,
    /// One line about it.
    pub about: &'static str,
    /// The suffixes it accepts after its name (`best-fit:lifo:no-coalesce`). Each one changes
    /// what is built; any other is refused with this list.
    pub suffixes: &'static [Suffix],
    /// The named variants (full names, suffixes included) the matrix runs by default.
    pub variants: &'static [&'static str],
    /// Which family of policies it belongs to (the report charts each family on its own).
    pub family: Family,
    /// Whether it takes a `GLIBC_TUNABLES`-style string ([`Config::tunables`]).
    pub takes_tunables: bool,
    /// How several threads share it.
    pub front: Front,
    /// Its size classes as runs, where it has them (`fsm classes`).
    pub classes: Option<fn() -> Vec<ClassRun>>,
    /// How `fsm sim` builds and shows it.
    pub sim: SimView,
    /// Builds it (the full name is in the [`Spec`], already checked against `suffixes`).
    pub(crate) build: fn(&Spec, &Config, Memory) -> Result<Instance, RegistryError>,
    /// Builds its offset manager (the same policy over a space it never touches), where it has
    /// one: see [`Spec::build_offsets`].
    pub(crate) offsets: Option<OffsetsBuilder>,
}

/// Builds a policy's offset manager over a space.
pub(crate) type OffsetsBuilder = fn(&Spec, &OffsetSpace) -> Result<OffsetInstance, RegistryError>;

impl Descriptor {
    /// Whether the policy has an offset manager ([`Spec::build_offsets`]).
    pub fn has_offsets(&self) -> bool {
        self.offsets.is_some()
    }
}

/// A suffix a policy accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suffix {
    /// The suffix without its colon (`lifo`).
    pub name: &'static str,
    /// What it changes, in a few words.
    pub about: &'static str,
    /// It names what the bare name builds anyway (`best-fit:addr` is `best-fit`): accepted, so
    /// that a setting can be spelled out, and changing nothing.
    pub default: bool,
}

/// Where a built manager gets its memory.
#[derive(Debug)]
pub enum Memory {
    /// A `brk`-like reservation of [`Config::reserve`] bytes of address space, committed as the
    /// policy asks (the footprint is what it took): replay and the matrix.
    Growing(BrkRegion),
    /// A region the caller made, of fixed size (`fsm sim`, tests).
    Region(BoxedRegion),
}

/// Builds a policy's own front as C's allocation API.
pub type MakeC = fn(&Spec, &Config) -> Result<crate::front::SharedC, RegistryError>;

/// How several threads share a policy.
#[derive(Debug, Clone, Copy)]
pub enum Front {
    /// Its own concurrent front (arenas per thread, thread caches).
    Own {
        /// What runs, in a few words (`tcmalloc::Tcmalloc (thread caches)`).
        runs_as: &'static str,
        /// Builds it.
        make: fn(&Spec, &Config) -> Result<crate::front::SharedAlloc, RegistryError>,
        /// Builds it as C's allocation API, where it can free without a size; `None`: C
        /// programs get the manager behind [`allocator_traits::CHeap`].
        c_api: Option<MakeC>,
    },
    /// One shared manager behind [`allocator_traits::Locked`]'s lock.
    Locked,
}

/// Every request size from `from` to `to` (inclusive) is rounded to `rounded` bytes.
pub type ClassRun = (usize, usize, usize);

/// How `fsm sim -p NAME` builds a policy over the simulator's heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimView {
    /// The smallest heap that can show it (a smaller `-S` is raised to this, and the simulator
    /// says so).
    pub min_heap: usize,
    /// Tunables the view builds it with (`""` for none): ptmalloc2 sets `top_pad=0` so the heap
    /// grows a page at a time and the chunks stay visible beside the top chunk.
    pub tunables: &'static str,
    /// What the view shows, for `-p list`.
    pub shows: &'static str,
}

/// A family of policies: the report draws each family's footprints in a chart of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Sequential fits over one free list (first, next, best, worst fit).
    Fits,
    /// Size classes: segregated lists, the buddy system, thread-caching allocators.
    Classes,
    /// Models of glibc's allocator (bins, tcache, top chunk), charted beside glibc itself.
    GlibcLike,
}

impl Family {
    /// Every family, in the order reports show them.
    pub const ALL: [Family; 3] = [Family::Fits, Family::Classes, Family::GlibcLike];

    /// Its name in reports (`fits`, `classes`, `glibc-like`).
    pub const fn label(self) -> &'static str {
        match self {
            Family::Fits => "fits",
            Family::Classes => "classes",
            Family::GlibcLike => "glibc-like",
        }
    }
}
