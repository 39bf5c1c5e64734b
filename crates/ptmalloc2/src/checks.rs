//! glibc 2.36's integrity checks: the exact messages `malloc_printerr` prints before aborting.
//!
//! The model runs each check where glibc runs it. A failed check makes the operation return the
//! message (as [`crate::MallocError::Corrupted`] or [`allocator_traits::FreeError::Corrupted`]);
//! like glibc after `abort()`, the arena then refuses every further operation with the same
//! message, so a detected corruption is never followed by silent damage.

#![allow(missing_docs)]

// unlink_chunk
pub const UNLINK_SIZE: &str = "corrupted size vs. prev_size";
pub const UNLINK_LIST: &str = "corrupted double-linked list";
pub const UNLINK_NOT_SMALL: &str = "corrupted double-linked list (not small)";
// malloc
pub const TCACHE_UNALIGNED: &str = "malloc(): unaligned tcache chunk detected";
pub const FAST_UNALIGNED_2: &str = "malloc(): unaligned fastbin chunk detected 2";
pub const FAST_UNALIGNED_3: &str = "malloc(): unaligned fastbin chunk detected 3";
pub const FAST_CORRUPT: &str = "malloc(): memory corruption (fast)";
pub const SMALL_LIST: &str = "malloc(): smallbin double linked list corrupted";
pub const UNSORTED_SIZE: &str = "malloc(): invalid size (unsorted)";
pub const UNSORTED_NEXT_SIZE: &str = "malloc(): invalid next size (unsorted)";
pub const UNSORTED_PREV_SIZE: &str = "malloc(): mismatching next->prev_size (unsorted)";
pub const UNSORTED_LIST: &str = "malloc(): unsorted double linked list corrupted";
pub const UNSORTED_PREV_INUSE: &str = "malloc(): invalid next->prev_inuse (unsorted)";
pub const UNSORTED_3: &str = "malloc(): corrupted unsorted chunks 3";
pub const LARGE_NEXTSIZE: &str = "malloc(): largebin double linked list corrupted (nextsize)";
pub const LARGE_BK: &str = "malloc(): largebin double linked list corrupted (bk)";
pub const UNSORTED_1: &str = "malloc(): corrupted unsorted chunks";
pub const UNSORTED_2: &str = "malloc(): corrupted unsorted chunks 2";
pub const TOP_SIZE: &str = "malloc(): corrupted top size";
// free
pub const FREE_INVALID_POINTER: &str = "free(): invalid pointer";
pub const FREE_INVALID_SIZE: &str = "free(): invalid size";
pub const TCACHE_TOO_MANY: &str = "free(): too many chunks detected in tcache";
pub const TCACHE_UNALIGNED_2: &str = "free(): unaligned chunk detected in tcache 2";
pub const TCACHE_DOUBLE_FREE: &str = "free(): double free detected in tcache 2";
pub const FREE_NEXT_SIZE_FAST: &str = "free(): invalid next size (fast)";
pub const FASTTOP: &str = "double free or corruption (fasttop)";
pub const FAST_ENTRY: &str = "invalid fastbin entry (free)";
pub const DF_TOP: &str = "double free or corruption (top)";
pub const DF_OUT: &str = "double free or corruption (out)";
pub const DF_PREV: &str = "double free or corruption (!prev)";
pub const FREE_NEXT_SIZE_NORMAL: &str = "free(): invalid next size (normal)";
pub const CONSOLIDATE_PREV: &str = "corrupted size vs. prev_size while consolidating";
pub const FREE_UNSORTED: &str = "free(): corrupted unsorted chunks";
pub const MUNMAP_INVALID: &str = "munmap_chunk(): invalid pointer";
pub const MREMAP_INVALID: &str = "mremap_chunk(): invalid pointer";
// malloc_consolidate
pub const CONS_UNALIGNED: &str = "malloc_consolidate(): unaligned fastbin chunk detected";
pub const CONS_SIZE: &str = "malloc_consolidate(): invalid chunk size";
pub const CONS_PREV: &str = "corrupted size vs. prev_size in fastbins";
// realloc
pub const REALLOC_POINTER: &str = "realloc(): invalid pointer";
pub const REALLOC_OLD_SIZE: &str = "realloc(): invalid old size";
pub const REALLOC_NEXT_SIZE: &str = "realloc(): invalid next size";
// sysmalloc
pub const BREAK_ADJUSTED: &str = "break adjusted to free malloc space";
// thread exit
pub const SHUTDOWN_UNALIGNED: &str = "tcache_thread_shutdown(): unaligned tcache chunk detected";

/// Not glibc's: the model reports a double free of a chunk that sits deeper in a fastbin (glibc
/// 2.36 only compares with the bin's head and would corrupt the bin).
pub const FAST_DOUBLE_FREE: &str = "double free or corruption (fasttop): chunk already in its fastbin (model check; glibc 2.36 does not detect this)";
/// Not glibc's: the model reports a second free of a chunk that is free already although it
/// carries no tcache key and no fastbin mark: the chunk after it does not mark it in use. glibc
/// 2.36 checks that only on the path that coalesces; a chunk merged with a free successor has a
/// new, larger size whose tcache bin (or fastbin) may have room, and glibc would cache it there
/// while it sits in the unsorted bin.
pub const FREE_NOT_INUSE: &str = "double free or corruption (!prev): chunk not in use (model check; glibc 2.36 does not detect this before caching it)";
/// The word the model writes in a fastbin chunk's `bk` slot to find double frees.
pub const FASTBIN_MARK: usize = 0x6661_7374_6269_6e21; // "fastbin!"

/// Whether a failed check fires before the operation changed anything, so the heap is still
/// consistent and may be used on (the model's refused frees); other failures leave it unusable.
pub fn leaves_heap_consistent(what: &str) -> bool {
    [
        FREE_INVALID_POINTER,
        FREE_INVALID_SIZE,
        TCACHE_DOUBLE_FREE,
        TCACHE_TOO_MANY,
        TCACHE_UNALIGNED_2,
        FREE_NEXT_SIZE_FAST,
        FASTTOP,
        FAST_DOUBLE_FREE,
        FREE_NOT_INUSE,
        DF_TOP,
        DF_OUT,
        DF_PREV,
        FREE_NEXT_SIZE_NORMAL,
        CONSOLIDATE_PREV,
        MUNMAP_INVALID,
        MREMAP_INVALID,
        REALLOC_POINTER,
    ]
    .contains(&what)
}
