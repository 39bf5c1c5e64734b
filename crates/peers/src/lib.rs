//! The peers: allocators people use, each as a [`GlobalAlloc`] the replay can drive. The matrix
//! (`cargo xtask bench`) runs all of them; `fsm compare` the ones this build has in process,
//! each with its own footprint reading ([`build_measured`]).
//!
//! ```text
//!   system ─ glibc malloc (std::alloc::System)      talc ──────────────┐
//!   mimalloc ─ mimalloc::MiMalloc                   rlsf ──────────────┤ each over its own
//!   jemalloc ─ tikv_jemallocator::Jemalloc          buddy_system_alloc ┤ 8 GiB MAP_NORESERVE
//!   gperftools ─ tc_malloc & co. from               linked_list_alloc ─┘ arena (pages become
//!       libtcmalloc_minimal.so.4 (dlopen)                                resident when touched)
//! ```
//!
//! The region peers run without a lock (the single-threaded replay), like the policies, so the
//! comparison is between placement algorithms, not locks. The threaded replay uses the
//! concurrent peers only ([`concurrent`]).
//!
//! | feature | what it adds |
//! |---|---|
//! | `mimalloc` | the `mimalloc` peer (compiles mimalloc from C) |
//! | `jemalloc` | the `jemalloc` peer (compiles jemalloc from C) |
//!
//! Without them the two names are still known and [`build`] says which feature they need.
//!
//! MSRV: Rust 1.88 (the workspace's `rust-version`). Licence: MIT or Apache-2.0.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::NonNull;

use workloads::mapping::Mapping;

/// A `GlobalAlloc` several threads can share, boxed.
pub type SharedAlloc = Box<dyn GlobalAlloc + Sync + Send>;

/// Every peer name, in report order.
pub const NAMES: &[&str] = &[
    "system",
    "mimalloc",
    "jemalloc",
    "gperftools",
    "talc",
    "rlsf",
    "buddy_system_allocator",
    "linked_list_allocator",
];

/// The peer that is glibc's allocator: charted beside the glibc-like policies.
pub const GLIBC: &str = "system";

/// Bytes of address space each region peer gets.
pub const ARENA: usize = 8 << 30;

/// A single-threaded `GlobalAlloc` over a heap with `&mut` methods.
pub struct Unlocked<H> {
    heap: UnsafeCell<H>,
    _arena: Mapping,
}

/// The `&mut` interface of a region heap.
pub trait RegionHeap {
    /// Allocates, or null.
    fn alloc(&mut self, layout: Layout) -> *mut u8;
    /// Frees a live block.
    ///
    /// # Safety
    /// `ptr` is live in this heap with `layout`.
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout);
    /// Resizes: in place where the heap can, else allocate, copy and free.
    ///
    /// # Safety
    /// `ptr` is live in this heap with `layout`; `new_size` is non-zero.
    unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let p = self.alloc(new);
        if !p.is_null() {
            // SAFETY: both blocks are live and distinct; copying the smaller size.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        p
    }
}

// SAFETY: every method forwards to the heap, whose blocks lie in the arena this value owns; the
// value is used from one thread at a time (it is not `Sync`), so the `&mut` is exclusive.
unsafe impl<H: RegionHeap> GlobalAlloc for Unlocked<H> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: not Sync, and no call re-enters: this is the only reference.
        unsafe { (*self.heap.get()).alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above; the caller's contract is the heap's.
        unsafe { (*self.heap.get()).dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe { (*self.heap.get()).realloc(ptr, layout, new_size) }
    }
}

struct Talc(talc::TalcCell<talc::source::Claim>);

impl RegionHeap for Talc {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        // SAFETY: a valid, non-zero layout (the replay never asks for zero bytes).
        unsafe { GlobalAlloc::alloc(&self.0, layout) }
    }
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { GlobalAlloc::dealloc(&self.0, ptr, layout) }
    }
    unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract (talc resizes in place where it can).
        unsafe { GlobalAlloc::realloc(&self.0, ptr, layout, new_size) }
    }
}

type TlsfHeap = rlsf::Tlsf<'static, u32, u32, 28, 32>;
struct Rlsf(TlsfHeap);

impl RegionHeap for Rlsf {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0
            .allocate(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: forwarded caller contract.
            unsafe { self.0.deallocate(p, layout.align()) }
        }
    }
    unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (Some(p), Ok(new)) = (
            NonNull::new(ptr),
            Layout::from_size_align(new_size, layout.align()),
        ) else {
            return core::ptr::null_mut();
        };
        // SAFETY: forwarded caller contract; rlsf keeps the block on failure.
        unsafe { self.0.reallocate(p, new) }.map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
}

struct Bsa(buddy_system_allocator::Heap<34>);

impl RegionHeap for Bsa {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0
            .alloc(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: forwarded caller contract.
            unsafe { self.0.dealloc(p, layout) }
        }
    }
}

struct Lla(linked_list_allocator::Heap);

impl RegionHeap for Lla {
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: forwarded caller contract.
            unsafe { self.0.deallocate(p, layout) }
        }
    }
}

type Malloc = unsafe extern "C" fn(usize) -> *mut c_void;
type Free = unsafe extern "C" fn(*mut c_void);
type Realloc = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type Calloc = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type Memalign = unsafe extern "C" fn(usize, usize) -> *mut c_void;

/// gperftools' tcmalloc through its `tc_*` entry points, loaded with `dlopen` (`RTLD_LOCAL`, so
/// it replaces nothing else in the process).
pub struct Gperftools {
    malloc: Malloc,
    free: Free,
    realloc: Realloc,
    calloc: Calloc,
    memalign: Memalign,
}

/// Where gperftools' library is looked for.
pub const GPERFTOOLS_LIB: &str = "libtcmalloc_minimal.so.4";

impl Gperftools {
    /// Loads the library, or says why not.
    pub fn load() -> Result<Self, String> {
        let name = c"libtcmalloc_minimal.so.4";
        // SAFETY: dlopen with a NUL-terminated name.
        let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            return Err(format!(
                "{GPERFTOOLS_LIB} not found (install libtcmalloc-minimal4)"
            ));
        }
        let sym = |s: &core::ffi::CStr| {
            // SAFETY: a symbol lookup in a handle we opened.
            let p = unsafe { libc::dlsym(h, s.as_ptr()) };
            if p.is_null() {
                Err(format!("{GPERFTOOLS_LIB} lacks {}", s.to_string_lossy()))
            } else {
                Ok(p)
            }
        };
        // SAFETY: the tc_* symbols have these C signatures (gperftools' tcmalloc.h).
        unsafe {
            Ok(Gperftools {
                malloc: core::mem::transmute::<*mut c_void, Malloc>(sym(c"tc_malloc")?),
                free: core::mem::transmute::<*mut c_void, Free>(sym(c"tc_free")?),
                realloc: core::mem::transmute::<*mut c_void, Realloc>(sym(c"tc_realloc")?),
                calloc: core::mem::transmute::<*mut c_void, Calloc>(sym(c"tc_calloc")?),
                memalign: core::mem::transmute::<*mut c_void, Memalign>(sym(c"tc_memalign")?),
            })
        }
    }
}

const MIN_ALIGN: usize = 16;

/// The size to ask `tc_malloc` for so the block is aligned to `align` (at most [`MIN_ALIGN`]):
/// gperftools puts requests of up to 8 bytes in its 8-byte class, aligned to 8 only (sizes from
/// 9 up get classes aligned to 16), so a request under 16 bytes that needs 16 asks for 16, as
/// mimalloc and jemalloc do for such a `Layout`.
fn c_size(align: usize, size: usize) -> usize {
    if align > 8 { size.max(MIN_ALIGN) } else { size }
}

// SAFETY: C's allocator contract: malloc/calloc/realloc give blocks of 16 bytes or more aligned
// to 16 on x86-64 (smaller requests that need 16 ask for 16: `c_size`), memalign to what is
// asked; realloc keeps the contents; free takes what they returned.
unsafe impl GlobalAlloc for Gperftools {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C calls.
        unsafe {
            if layout.align() <= MIN_ALIGN {
                (self.malloc)(c_size(layout.align(), layout.size())).cast()
            } else {
                (self.memalign)(layout.align(), layout.size()).cast()
            }
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: a plain C call.
            unsafe { (self.calloc)(1, c_size(layout.align(), layout.size())).cast() }
        } else {
            // SAFETY: alloc then zero the block it returned.
            unsafe {
                let p = self.alloc(layout);
                if !p.is_null() {
                    p.write_bytes(0, layout.size());
                }
                p
            }
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this library.
        unsafe { (self.free)(ptr.cast()) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: `ptr` came from this library.
            unsafe { (self.realloc)(ptr.cast(), c_size(layout.align(), new_size)).cast() }
        } else {
            // SAFETY: allocate aligned, copy, free: C has no aligned realloc.
            unsafe {
                let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
                    return core::ptr::null_mut();
                };
                let p = self.alloc(new);
                if !p.is_null() {
                    core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                p
            }
        }
    }
}

/// The peer `name` as an allocator several threads can share, with what runs, for the threaded
/// replay: `system`, `mimalloc`, `jemalloc` and `gperftools` are concurrent (thread caches or
/// arenas); the region peers run here without a lock, so they have no threaded measurement
/// (`None`).
pub fn concurrent(name: &str) -> Option<Result<(String, SharedAlloc), String>> {
    let g: SharedAlloc = match name {
        "system" => Box::new(std::alloc::System),
        #[cfg(feature = "mimalloc")]
        "mimalloc" => Box::new(mimalloc::MiMalloc),
        #[cfg(feature = "jemalloc")]
        "jemalloc" => Box::new(tikv_jemallocator::Jemalloc),
        #[cfg(not(feature = "mimalloc"))]
        "mimalloc" => return Some(Err(not_built(name))),
        #[cfg(not(feature = "jemalloc"))]
        "jemalloc" => return Some(Err(not_built(name))),
        "gperftools" => match Gperftools::load() {
            Ok(g) => Box::new(g),
            Err(e) => return Some(Err(e)),
        },
        _ => return None,
    };
    Some(Ok((name.to_string(), g)))
}

/// Why a peer whose feature this build lacks cannot run.
#[cfg(not(all(feature = "mimalloc", feature = "jemalloc")))]
fn not_built(name: &str) -> String {
    format!("the {name} peer is not in this build (the `peers` crate's feature `{name}`)")
}

/// Builds the peer called `name` (a fresh heap of [`ARENA`] bytes for the region peers).
pub fn build(name: &str) -> Result<Box<dyn GlobalAlloc>, String> {
    build_measured(name, ARENA).map(|m| m.alloc)
}

/// How a peer's own footprint is read in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footprint {
    /// The resident pages of the arena a region peer owns (`mincore`).
    Resident {
        /// The arena's first byte.
        base: usize,
        /// Its length.
        len: usize,
    },
    /// glibc's own count of what it took from the system (`mallinfo2`: the heap's `arena`
    /// bytes and the mapped chunks' `hblkhd`): includes what the rest of the process allocates.
    GlibcHeap,
    /// Not readable from inside the process (the matrix measures such a peer by the growth of a
    /// fresh process's resident memory).
    Unknown,
}

impl Footprint {
    /// The footprint now in bytes, `None` when it cannot be read here.
    pub fn read(&self) -> Option<usize> {
        match *self {
            Footprint::Resident { base, len } => resident(base, len),
            Footprint::GlibcHeap => {
                // SAFETY: mallinfo2 only reads glibc's counters.
                let m = unsafe { libc::mallinfo2() };
                Some(m.arena + m.hblkhd)
            }
            Footprint::Unknown => None,
        }
    }
}

/// Resident bytes of the mapping at `base` (page-aligned) of `len` bytes (`mincore`).
fn resident(base: usize, len: usize) -> Option<usize> {
    let page = 4096;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `base..base + len` is a mapping this crate made (page-aligned); `vec` has a byte
    // per page of it.
    let r = unsafe { libc::mincore(base as *mut c_void, len, vec.as_mut_ptr()) };
    (r == 0).then(|| vec.iter().filter(|&&b| b & 1 == 1).count() * page)
}

/// A peer and how to read its footprint.
pub struct Measured {
    /// The allocator.
    pub alloc: Box<dyn GlobalAlloc>,
    /// Its footprint reading.
    pub footprint: Footprint,
}

impl core::fmt::Debug for Measured {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Measured")
            .field("footprint", &self.footprint)
            .finish_non_exhaustive()
    }
}

/// The peers this build can run in process with a footprint reading of their own: what
/// `fsm compare` runs beside the policies.
pub const MEASURED: &[&str] = &[
    "system",
    "talc",
    "rlsf",
    "buddy_system_allocator",
    "linked_list_allocator",
];

/// Builds the peer called `name`, a region peer over a fresh arena of `arena` bytes (address
/// space reserved without swap: pages become resident when touched), with its footprint reading.
pub fn build_measured(name: &str, arena_len: usize) -> Result<Measured, String> {
    let mut footprint = Footprint::Unknown;
    // A region peer's arena, and its resident pages as the footprint.
    let region = |footprint: &mut Footprint| -> Result<Mapping, String> {
        let m = Mapping::new(arena_len)?;
        *footprint = Footprint::Resident {
            base: m.base().as_ptr() as usize,
            len: arena_len,
        };
        Ok(m)
    };
    let alloc: Box<dyn GlobalAlloc> = match name {
        "system" => {
            footprint = Footprint::GlibcHeap;
            Box::new(std::alloc::System)
        }
        #[cfg(feature = "mimalloc")]
        "mimalloc" => Box::new(mimalloc::MiMalloc),
        #[cfg(feature = "jemalloc")]
        "jemalloc" => Box::new(tikv_jemallocator::Jemalloc),
        #[cfg(not(feature = "mimalloc"))]
        "mimalloc" => return Err(not_built(name)),
        #[cfg(not(feature = "jemalloc"))]
        "jemalloc" => return Err(not_built(name)),
        "gperftools" => Box::new(Gperftools::load()?),
        "talc" => {
            let arena = region(&mut footprint)?;
            // SAFETY: the arena is valid for its length, used by this heap alone, and outlives
            // it (both live in the same `Unlocked`, the heap's blocks die with it).
            let claim = unsafe { talc::source::Claim::new(arena.base().as_ptr(), arena_len) };
            Box::new(Unlocked {
                heap: UnsafeCell::new(Talc(talc::TalcCell::new(claim))),
                _arena: arena,
            })
        }
        "rlsf" => {
            let arena = region(&mut footprint)?;
            let mut t = TlsfHeap::new();
            let block = NonNull::slice_from_raw_parts(arena.base(), arena_len);
            // SAFETY: as for talc: the arena is the heap's alone and outlives it.
            unsafe { t.insert_free_block_ptr(block) };
            Box::new(Unlocked {
                heap: UnsafeCell::new(Rlsf(t)),
                _arena: arena,
            })
        }
        "buddy_system_allocator" => {
            let arena = region(&mut footprint)?;
            let mut h = buddy_system_allocator::Heap::<34>::new();
            // SAFETY: as for talc.
            unsafe { h.init(arena.base().as_ptr() as usize, arena_len) };
            Box::new(Unlocked {
                heap: UnsafeCell::new(Bsa(h)),
                _arena: arena,
            })
        }
        "linked_list_allocator" => {
            let arena = region(&mut footprint)?;
            // SAFETY: as for talc.
            let h = unsafe { linked_list_allocator::Heap::new(arena.base().as_ptr(), arena_len) };
            Box::new(Unlocked {
                heap: UnsafeCell::new(Lla(h)),
                _arena: arena,
            })
        }
        other => {
            return Err(format!(
                "unknown peer '{other}'; valid names: {}",
                NAMES.join(", ")
            ));
        }
    };
    Ok(Measured { alloc, footprint })
}
