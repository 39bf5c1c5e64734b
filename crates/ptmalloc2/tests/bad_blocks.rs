//! How `Arena` reports blocks that are not its own, through the workspace's interface: a
//! refused resize of such a block counts as a bad block (`bad_frees`), not as a failed
//! allocation (that counter is for requests the heap could not serve); a second free of a mapped
//! chunk is a double free (it was reported as a pointer not from this heap). Issue 16, item 5.

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_traits::{AllocError, BoxedRegion, FreeError, FreeSpaceManager};
use ptmalloc2::{Arena, SystemPages, Tunables};

fn arena() -> Arena<BoxedRegion, SystemPages> {
    Arena::new(
        BoxedRegion::new(4 << 20).expect("region"),
        SystemPages::new(),
        &Tunables::new(),
    )
}

#[test]
fn a_refused_resize_counts_as_a_bad_block() {
    let mut a = arena();
    let l = Layout::from_size_align(100, 8).unwrap();
    let _live = a.allocate(l).unwrap();
    let mut outside = [0u64; 8];
    let foreign = NonNull::from(&mut outside[0]).cast::<u8>();
    let before = a.stats();
    for new in [
        Layout::from_size_align(200, 8).unwrap(),
        Layout::from_size_align(200, 64).unwrap(),
    ] {
        // SAFETY: the arena detects foreign pointers and changes nothing.
        let r = unsafe { a.grow(foreign, Layout::new::<u64>(), new) };
        assert!(
            matches!(r, Err(AllocError::InvalidBlock(FreeError::Foreign { .. }))),
            "{r:?}"
        );
    }
    let after = a.stats();
    assert_eq!(after.failed_allocs, before.failed_allocs, "{after:?}");
    assert_eq!(after.bad_frees, before.bad_frees + 2, "{after:?}");
}

#[test]
fn a_grow_without_memory_counts_as_a_failed_allocation() {
    let mut a = Arena::over(
        BoxedRegion::new(1 << 20).expect("region"),
        &Tunables::parse("glibc.malloc.top_pad=0").unwrap(),
    );
    let l = Layout::from_size_align(100, 8).unwrap();
    let b = a.allocate(l).unwrap();
    let before = a.stats();
    let big = Layout::from_size_align(8 << 20, 8).unwrap();
    // SAFETY: a live block of `a`.
    let r = unsafe { a.grow(b.cast(), l, big) };
    assert!(matches!(r, Err(AllocError::OutOfMemory { .. })), "{r:?}");
    let after = a.stats();
    assert_eq!(after.failed_allocs, before.failed_allocs + 1, "{after:?}");
    assert_eq!(after.bad_frees, before.bad_frees, "{after:?}");
}

#[test]
fn a_mapped_chunk_freed_twice_is_a_double_free() {
    let mut a = arena();
    let l = Layout::from_size_align(300_000, 8).unwrap();
    let p = a.allocate(l).unwrap().cast::<u8>();
    assert_eq!(a.placement(p), ptmalloc2::Placement::Mapped);
    // SAFETY: live, freed once.
    unsafe { a.deallocate(p, l) }.unwrap();
    let before = a.stats();
    // SAFETY: the arena detects the double free and changes nothing.
    let r = unsafe { a.deallocate(p, l) };
    assert_eq!(
        r,
        Err(FreeError::DoubleFree {
            ptr: p.as_ptr() as usize
        })
    );
    assert_eq!(a.stats().bad_frees, before.bad_frees + 1);
    a.check_invariants().unwrap();
    // A new mapping may take the same address: its block is live again, freed once.
    let q = a.allocate(l).unwrap().cast::<u8>();
    // SAFETY: live, freed once.
    unsafe { a.deallocate(q, l) }.unwrap();
}

#[test]
fn the_old_pointer_of_a_moved_mapped_chunk_is_freed() {
    let mut a = arena();
    let l = Layout::from_size_align(300_000, 8).unwrap();
    let p = a.allocate(l).unwrap().cast::<u8>();
    let big = Layout::from_size_align(900_000, 8).unwrap();
    // SAFETY: live; moved to a larger mapping.
    let q = unsafe { a.grow(p, l, big) }.unwrap().cast::<u8>();
    assert_ne!(p, q);
    // SAFETY: `p` was freed by the move: detected.
    let r = unsafe { a.deallocate(p, l) };
    assert!(matches!(r, Err(FreeError::DoubleFree { .. })), "{r:?}");
    // SAFETY: live, freed once.
    unsafe { a.deallocate(q, big) }.unwrap();
}
