//! Errors are values: a refused allocation, a bad free and an exhausted source each say what
//! happened and with which pointer or size, and the manager is left as it was.

/// Why an allocation (or a resize) was refused. The manager is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// No free block fits and the memory source would not (or could not) give more.
    #[error("out of memory: no room for {size} bytes aligned to {align}")]
    OutOfMemory {
        /// Requested size in bytes.
        size: usize,
        /// Requested alignment in bytes.
        align: usize,
    },
    /// The layout can never be served by this policy (for example an alignment above what it
    /// supports, or a size whose rounding would overflow).
    #[error("unsupported layout ({size} bytes aligned to {align}): {reason}")]
    Unsupported {
        /// Requested size in bytes.
        size: usize,
        /// Requested alignment in bytes.
        align: usize,
        /// Why the policy cannot serve it.
        reason: &'static str,
    },
    /// A resize was asked of a block the manager does not recognise as live.
    #[error("resize of an invalid block: {0}")]
    InvalidBlock(FreeError),
    /// The block cannot be resized where it is (returned by the in-place resize methods only).
    #[error("cannot resize in place")]
    NotInPlace,
}

impl AllocError {
    /// The out-of-memory error for `layout`.
    pub const fn out_of_memory(layout: core::alloc::Layout) -> Self {
        AllocError::OutOfMemory {
            size: layout.size(),
            align: layout.align(),
        }
    }

    /// An unsupported-layout error for `layout` with a reason.
    pub const fn unsupported(layout: core::alloc::Layout, reason: &'static str) -> Self {
        AllocError::Unsupported {
            size: layout.size(),
            align: layout.align(),
            reason,
        }
    }
}

/// What was wrong with a free (or with the block handed to a resize).
///
/// Each variant names the pointer as the caller passed it. A policy documents which of these it
/// can detect (see [`crate::Detects`]); a free it reports is not performed, so the heap stays
/// consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FreeError {
    /// The pointer is not inside any memory this manager handed out.
    #[error("free of {ptr:#x}: pointer not from this heap")]
    Foreign {
        /// The pointer passed to free.
        ptr: usize,
    },
    /// The pointer is inside the heap but not at the start of a block this manager handed out.
    #[error("free of {ptr:#x}: not the start of an allocated block")]
    NotABlock {
        /// The pointer passed to free.
        ptr: usize,
    },
    /// The block is already free.
    #[error("free of {ptr:#x}: double free")]
    DoubleFree {
        /// The pointer passed to free.
        ptr: usize,
    },
    /// The layout passed with the free does not match the block.
    #[error("free of {ptr:#x}: layout of {size} bytes aligned to {align} does not match the block")]
    LayoutMismatch {
        /// The pointer passed to free.
        ptr: usize,
        /// Size in the layout passed with the free.
        size: usize,
        /// Alignment in the layout passed with the free.
        align: usize,
    },
    /// The manager's metadata for this block is inconsistent. `what` is the policy's own
    /// diagnosis (ptmalloc2 uses glibc's message, e.g. `double free or corruption (fasttop)`).
    #[error("free of {ptr:#x}: {what}")]
    Corrupted {
        /// The pointer passed to free.
        ptr: usize,
        /// What check failed.
        what: &'static str,
    },
}

impl FreeError {
    /// The pointer the error is about.
    pub const fn ptr(&self) -> usize {
        match *self {
            FreeError::Foreign { ptr }
            | FreeError::NotABlock { ptr }
            | FreeError::DoubleFree { ptr }
            | FreeError::LayoutMismatch { ptr, .. }
            | FreeError::Corrupted { ptr, .. } => ptr,
        }
    }
}

/// Why a [`crate::MemorySource`] could not grant or take back memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source has no more memory to give (its region or reservation is used up, or the OS
    /// refused).
    #[error("memory source exhausted: {requested} more bytes asked, {available} available")]
    Exhausted {
        /// Bytes asked for (after rounding to the source's granularity).
        requested: usize,
        /// Bytes the source could still give.
        available: usize,
    },
    /// The size or alignment overflows the address space or is not a power of two.
    #[error("invalid request to memory source: {size} bytes aligned to {align}")]
    InvalidRequest {
        /// Bytes asked for.
        size: usize,
        /// Alignment asked for.
        align: usize,
    },
    /// A release named memory the source did not hand out, or (for a contiguous source)
    /// memory that is not at its end.
    #[error("invalid release of {size} bytes at {ptr:#x}")]
    InvalidRelease {
        /// Start of the range.
        ptr: usize,
        /// Length of the range.
        size: usize,
    },
    /// The operating system call failed; `errno` is its error number.
    #[error("{call} failed with errno {errno}")]
    Os {
        /// The system call.
        call: &'static str,
        /// `errno` after the call.
        errno: i32,
    },
}

/// What an invariant walk ([`crate::FreeSpaceManager::check_invariants`]) found wrong with a
/// manager's own structures: which structure, where, and which invariant failed.
///
/// `at` is an address for structures in memory (a chunk, a free-list node) and an index where the
/// structure is a table (a bin, a buddy order, a size class); `problem` states the invariant that
/// does not hold, in the words of the field docs it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{structure} at {at:#x}: {problem}")]
pub struct Corruption {
    /// The structure the walk was checking (`"free list"`, `"smallbin[5]"`, `"order 3 bitmap"`).
    pub structure: &'static str,
    /// The address (or index) of the element that breaks the invariant.
    pub at: usize,
    /// The invariant that does not hold.
    pub problem: &'static str,
}

impl Corruption {
    /// A corruption of `structure` at `at`: `problem`.
    pub const fn new(structure: &'static str, at: usize, problem: &'static str) -> Self {
        Corruption {
            structure,
            at,
            problem,
        }
    }

    /// `Ok(())` if `holds`, else the corruption: the one-line form walks are written in
    /// (`Corruption::ensure(size >= MIN, "free list", addr, "size below the minimum block")?`).
    #[inline]
    pub const fn ensure(
        holds: bool,
        structure: &'static str,
        at: usize,
        problem: &'static str,
    ) -> Result<(), Corruption> {
        if holds {
            Ok(())
        } else {
            Err(Corruption::new(structure, at, problem))
        }
    }
}
