//! A policy as an allocator several threads share.

use core::alloc::GlobalAlloc;

use allocator_traits::{CHeap, Locked, MallocApi};

use crate::descriptor::Front;
use crate::spec::{Config, RegistryError, Spec};

/// A concurrent allocator, boxed.
pub type SharedAlloc = Box<dyn GlobalAlloc + Sync + Send>;

/// A concurrent allocator with C's size-less calls, boxed.
pub type SharedC = Box<dyn MallocApi>;

/// A policy as a concurrent `GlobalAlloc`, for the threaded replay.
pub struct Concurrent {
    /// What runs, in a few words (`tcmalloc::Tcmalloc (thread caches)`, `Locked<best-fit>`).
    pub runs_as: String,
    /// The allocator.
    pub alloc: SharedAlloc,
}

impl std::fmt::Debug for Concurrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concurrent")
            .field("runs_as", &self.runs_as)
            .finish_non_exhaustive()
    }
}

/// The front the descriptor names: its own, or the growing build behind `Locked`.
pub(crate) fn concurrent(spec: &Spec, cfg: &Config) -> Result<Concurrent, RegistryError> {
    Ok(match spec.descriptor.front {
        Front::Own { runs_as, make, .. } => Concurrent {
            runs_as: runs_as.to_string(),
            alloc: make(spec, cfg)?,
        },
        Front::Locked => Concurrent {
            runs_as: format!("Locked<{}>", spec.name),
            alloc: Box::new(Locked::new(spec.build(cfg)?.manager)),
        },
    })
}

/// The policy as C's allocation API (the preload library): its own front where it frees without
/// a size, else the growing build behind [`CHeap`] (a fair lock and the table of live blocks).
pub(crate) fn c_api(spec: &Spec, cfg: &Config) -> Result<(String, SharedC), RegistryError> {
    if let Front::Own {
        runs_as,
        c_api: Some(make),
        ..
    } = spec.descriptor.front
    {
        return Ok((runs_as.to_string(), make(spec, cfg)?));
    }
    Ok((
        format!("CHeap<{}>", spec.name),
        Box::new(CHeap::new(spec.build(cfg)?.manager)),
    ))
}
