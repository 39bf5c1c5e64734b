//! A loom model of the pagemap, the one structure read without a lock: a free on one thread
//! reads `(span, class)` entries while the page heap, on another, creates nodes for new pages
//! (published by compare-and-swap) and writes entries. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p tcmalloc --test loom_pagemap --release`.
//! (Under loom the tree is 2/2/2/2 bits: the same code over 256 pages.)
#![cfg(loom)]

use std::ptr::NonNull;

use allocator_traits::BoxedRegion;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use tcmalloc::metadata::MetaArena;
use tcmalloc::pagemap::PageMap;
use tcmalloc::span::Span;

fn span(n: usize) -> *mut Span {
    // Only compared, never dereferenced: distinct non-null pointers.
    NonNull::<Span>::dangling()
        .as_ptr()
        .wrapping_byte_add(64 * n)
}

/// The page heap maps a span while a reader looks up pages of a span published earlier and,
/// once told (as an object handed over through a lock or channel tells it), the new span.
#[test]
fn reader_sees_published_entries_while_nodes_are_created() {
    loom::model(|| {
        let pm = Arc::new(PageMap::new());
        let mut arena = MetaArena::new();
        let mut src = BoxedRegion::new(1 << 20).unwrap();
        // An earlier span at pages 1..=2 (root slot 0).
        assert!(pm.ensure(1, 2, &mut arena, &mut src));
        pm.set(1, span(1));
        pm.set(2, span(1));
        pm.set_class(1, 3, 0);
        let ready = Arc::new(AtomicBool::new(false));

        let writer = {
            let pm = pm.clone();
            let ready = ready.clone();
            loom::thread::spawn(move || {
                let mut arena = MetaArena::new();
                let mut src = BoxedRegion::new(1 << 20).unwrap();
                // New pages under another root slot: new nodes all the way down.
                assert!(pm.ensure(200, 3, &mut arena, &mut src));
                pm.set(200, span(2));
                pm.set_class(200, 7, 1);
                ready.store(true, Ordering::Release);
                // The nodes live in this region: it must outlive the map's readers.
                (arena, src)
            })
        };
        // Reads of the old span never see anything else, whatever the writer is doing.
        assert_eq!(pm.get(1), span(1));
        assert_eq!(pm.class(1), 3);
        // A page being mapped reads as either unmapped or its new span.
        let g = pm.get(200);
        assert!(g.is_null() || g == span(2));
        if ready.load(Ordering::Acquire) {
            assert_eq!(pm.get(200), span(2));
            assert_eq!(pm.class(200), 7);
            assert_eq!(pm.entry(200), 7 | 1 << 8);
        }
        let _kept = writer.join().unwrap();
        assert_eq!(pm.get(200), span(2));
    });
}

/// Two threads growing over the same new pages at once (the CAS in `ensure`): both end with the
/// same nodes, so an entry either writes is seen by the other.
#[test]
fn racing_ensures_agree_on_one_node() {
    loom::model(|| {
        let pm = Arc::new(PageMap::new());
        let t = {
            let pm = pm.clone();
            loom::thread::spawn(move || {
                let mut arena = MetaArena::new();
                let mut src = BoxedRegion::new(1 << 20).unwrap();
                assert!(pm.ensure(100, 1, &mut arena, &mut src));
                pm.set(100, span(5));
                (arena, src)
            })
        };
        let mut arena = MetaArena::new();
        let mut src = BoxedRegion::new(1 << 20).unwrap();
        assert!(pm.ensure(100, 2, &mut arena, &mut src));
        let _kept = t.join().unwrap();
        // The entry written through whichever node won is visible here.
        assert_eq!(pm.get(100), span(5));
    });
}
