//! `Ptmalloc`: glibc's multi-threaded front. Each thread has its own tcache and is attached to
//! an arena; the main arena grows like `brk`, thread arenas live on 64 MiB-aligned heaps that
//! start with a `heap_info` header and are chained when one is full.
//!
//! ```text
//!  one address-space reservation (PROT_NONE until used), 64 MiB aligned:
//!  | header window: this allocator's state | main heap (brk-like) ......... | heap | heap | ...
//!                                                                            ^ 64 MiB each
//!  thread heap:  [heap_info 48 B][malloc_state 2200 B][chunks ... top]     (first heap of an arena)
//!                [heap_info 48 B][chunks ... top]                          (later heaps, ->prev)
//!
//!  malloc: thread's tcache (no lock) -> lock the thread's arena -> _int_malloc
//!          (on failure: the main arena, or another arena: arena_get_retry)
//!  free:   mapped? munmap : thread's tcache (no lock) -> lock the chunk's arena (NON_MAIN_ARENA ?
//!          heap_info(chunk & ~(64 MiB - 1)).ar_ptr : main) -> _int_free
//!  thread exit: free every cached chunk and the tcache itself, detach from the arena (an arena
//!          with no thread goes on the free list, reused first by new threads)
//! ```
//!
//! Arena choice for a new thread (`arena_get2`): the free list first; else a new arena while
//! fewer than the limit exist (`arena_max`, or unlimited until `arena_test` arenas exist and
//! then 8 x CPUs; at most 64 here); else the next arena round-robin that is not locked.
//!
//! Differences from glibc (documented in `docs/ptmalloc2.md`): each arena keeps its own copy of
//! the parameters (so the dynamic mmap threshold moves per arena), a deleted thread heap's window
//! is not reused, a realloc of a mapped chunk allocates, copies and frees (no
//! `mremap`), and the main heap is a window of the reservation rather than the real `brk`.

// One file per concept, lower floors first (no module uses one listed after it):
// `lock` (the arena lock: waiters sleep on a futex), `reservation` (the address space,
// commit/decommit, the main heap's window), `heap_info`
// (thread heaps: new_heap, grow_heap, their sysmalloc and heap_trim), `arena_table` (the shared
// state, arena_get2, arena_for_chunk, the walk), `tls` (a thread's slots, thread exit), `front`
// (`Ptmalloc`: malloc, free, realloc), `fork` (the locks across `fork`), `interfaces`
// (`GlobalAlloc`, `Allocator`), `c_api` (C's size-less calls: `MallocApi`).
mod arena_table;
mod c_api;
mod fork;
mod front;
mod heap_info;
mod interfaces;
mod lock;
mod reservation;
mod tls;

pub use arena_table::MAX_ARENAS;
pub use front::Ptmalloc;
