//! Bad frees through `Tcmalloc`'s `GlobalAlloc` and `Allocator` fronts abort the process with a
//! message naming the pointer (issue 16 item 2: before, a foreign pointer was taken and handed
//! out again, an interior pointer handed out over a live block, a double free handed the same
//! block out twice, and a null pointer was a SIGSEGV).
//!
//! Death tests: each test re-runs this test binary on itself with `TCMALLOC_DEATH` naming the
//! case; the child prints the pointer it is about to free and does the bad free; the parent
//! checks that the child was killed by SIGABRT and that its stderr names that pointer and what
//! was wrong. (Processes cannot be spawned under Miri: the file is not built there.)
#![cfg(all(not(loom), not(miri)))]

use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use tcmalloc::Tcmalloc;
use tcmalloc::size_map::SIZE_MAP;

const ENV: &str = "TCMALLOC_DEATH";

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// In the parent: runs `test` (this file's test of that name) in a child with the case set and
/// checks that it aborted saying `what` about the pointer it printed. In the child: runs `bad`.
fn death(test: &str, what: &str, bad: fn(&Tcmalloc)) {
    if std::env::var(ENV).as_deref() == Ok(test) {
        let tc = Tcmalloc::new(allocator_traits::OsPages::new());
        bad(&tc);
        // Reached only if the bad free was taken.
        println!("SURVIVED");
        std::process::exit(0);
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, test)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{test}: the bad free must abort the process (status {:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let ptr = stdout
        .lines()
        .find_map(|l| l.split("PTR ").nth(1))
        .unwrap_or_else(|| panic!("{test}: the child printed no pointer\n{stdout}"));
    let want = format!("free of {ptr}: {what}");
    assert!(
        stderr.contains(&want),
        "{test}: expected \"{want}\" on stderr, got:\n{stderr}"
    );
}

/// Prints the pointer the child is about to free (the parent looks for it in the message).
fn announce(p: *const u8) {
    println!("PTR {:#x}", p as usize);
}

#[test]
fn a_foreign_pointer_aborts() {
    death(
        "a_foreign_pointer_aborts",
        "pointer not from this heap",
        |tc| {
            // SAFETY: a valid allocation, so the heap exists.
            let live = unsafe { tc.alloc(layout(64)) };
            let foreign = Box::into_raw(Box::new([0u64; 8])).cast::<u8>();
            announce(foreign);
            // SAFETY: none: the bad free under test (it must abort).
            unsafe { tc.dealloc(foreign, layout(64)) };
            // Before the check, the next allocation handed the foreign block out.
            // SAFETY: as above.
            let again = unsafe { tc.alloc(layout(64)) };
            println!("handed out {again:p} (live {live:p})");
        },
    );
}

#[test]
fn a_foreign_pointer_before_any_allocation_aborts() {
    death(
        "a_foreign_pointer_before_any_allocation_aborts",
        "pointer not from this heap",
        |tc| {
            let foreign = Box::into_raw(Box::new([0u64; 8])).cast::<u8>();
            announce(foreign);
            // SAFETY: none: the bad free under test.
            unsafe { tc.dealloc(foreign, layout(64)) };
        },
    );
}

#[test]
fn a_null_pointer_aborts() {
    death(
        "a_null_pointer_aborts",
        "pointer not from this heap",
        |tc| {
            // SAFETY: a valid allocation, so the heap exists.
            let _live = unsafe { tc.alloc(layout(16)) };
            announce(std::ptr::null());
            // SAFETY: none: the bad free under test (was a SIGSEGV).
            unsafe { tc.dealloc(std::ptr::null_mut(), layout(8)) };
        },
    );
}

#[test]
fn an_interior_pointer_aborts() {
    death(
        "an_interior_pointer_aborts",
        "not the start of an allocated block",
        |tc| {
            // SAFETY: valid allocations.
            let p = unsafe { tc.alloc(layout(64)) };
            let inner = p.wrapping_add(16);
            announce(inner);
            // SAFETY: none: the bad free under test.
            unsafe { tc.dealloc(inner, layout(48)) };
            // Before the check, this allocation overlapped the live block `p`.
            // SAFETY: as above.
            let q = unsafe { tc.alloc(layout(48)) };
            println!("handed out {q:p} inside live {p:p}");
        },
    );
}

#[test]
fn an_interior_pointer_of_a_multi_page_span_aborts() {
    // 1152 B objects have two-page spans: the check uses the page's index in its span.
    death(
        "an_interior_pointer_of_a_multi_page_span_aborts",
        "not the start of an allocated block",
        |tc| {
            let blocks: Vec<_> = (0..8)
                // SAFETY: valid allocations.
                .map(|_| unsafe { tc.alloc(layout(1100)) })
                .collect();
            // An address on the span's second page that is a multiple of the object size from
            // that page's start but not from the span's.
            let base = blocks.iter().map(|&p| p as usize).min().unwrap() & !8191;
            let inner = (base + 8192 + 1152) as *mut u8;
            announce(inner);
            // SAFETY: none: the bad free under test.
            unsafe { tc.dealloc(inner, layout(1100)) };
        },
    );
}

#[test]
fn a_pointer_into_a_class_spans_tail_aborts() {
    // 48 B objects: a one-page span holds 170 of them (8160 B); offset 8160 is a multiple of the
    // object size but past the last object, in the span's tail.
    death(
        "a_pointer_into_a_class_spans_tail_aborts",
        "not the start of an allocated block",
        |tc| {
            let c = SIZE_MAP.class(48);
            assert_eq!((SIZE_MAP.class_size(c), SIZE_MAP.class_pages(c)), (48, 1));
            assert_eq!(SIZE_MAP.objects_per_span(c), 170);
            // SAFETY: a valid allocation.
            let p = unsafe { tc.alloc(layout(48)) };
            let tail = ((p as usize & !8191) + 170 * 48) as *mut u8;
            announce(tail);
            // SAFETY: none: the bad free under test.
            unsafe { tc.dealloc(tail, layout(48)) };
        },
    );
}

#[test]
fn a_double_free_aborts() {
    death("a_double_free_aborts", "double free", |tc| {
        // SAFETY: valid allocations and one valid free of each.
        let (p, other) = unsafe { (tc.alloc(layout(64)), tc.alloc(layout(64))) };
        // SAFETY: as above.
        unsafe {
            tc.dealloc(p, layout(64));
            tc.dealloc(other, layout(64));
        }
        announce(p);
        // SAFETY: none: the bad free under test.
        unsafe { tc.dealloc(p, layout(64)) };
        // Before the check, the same block came out twice.
        // SAFETY: as above.
        let (a, b, c) = unsafe {
            (
                tc.alloc(layout(64)),
                tc.alloc(layout(64)),
                tc.alloc(layout(64)),
            )
        };
        println!("handed out {a:p} {b:p} {c:p}");
    });
}

#[test]
fn a_double_free_of_a_large_block_aborts() {
    death(
        "a_double_free_of_a_large_block_aborts",
        "not the start of an allocated block",
        |tc| {
            // SAFETY: a valid allocation and one valid free.
            let p = unsafe { tc.alloc(layout(300_000)) };
            // SAFETY: as above.
            unsafe { tc.dealloc(p, layout(300_000)) };
            announce(p);
            // SAFETY: none: the bad free under test.
            unsafe { tc.dealloc(p, layout(300_000)) };
        },
    );
}

#[test]
fn an_interior_pointer_through_the_allocator_api_aborts() {
    death(
        "an_interior_pointer_through_the_allocator_api_aborts",
        "not the start of an allocated block",
        |tc| {
            use allocator_api2::alloc::Allocator;
            let p = tc.allocate(layout(300_000)).unwrap().cast::<u8>();
            // SAFETY: inside the block.
            let inner = unsafe { p.add(8192) };
            announce(inner.as_ptr());
            // SAFETY: none: the bad free under test.
            unsafe { tc.deallocate(inner, layout(300_000)) };
        },
    );
}

#[test]
fn a_realloc_of_a_foreign_pointer_aborts_before_reading_it() {
    death(
        "a_realloc_of_a_foreign_pointer_aborts_before_reading_it",
        "pointer not from this heap",
        |tc| {
            // SAFETY: a valid allocation, so the heap exists.
            let _live = unsafe { tc.alloc(layout(16)) };
            // An address with nothing mapped: a copy from it would be a SIGSEGV.
            let foreign = 0x10_0000 as *mut u8;
            announce(foreign);
            // SAFETY: none: the bad realloc under test.
            unsafe { tc.realloc(foreign, layout(64), 128) };
        },
    );
}

/// A live block whose second word happens to equal the key is freed normally (the walk of the
/// list finds it absent) and handed out once.
#[test]
fn a_live_block_carrying_the_key_is_freed_normally() {
    let tc = Tcmalloc::new(allocator_traits::OsPages::new());
    let l = layout(64);
    // SAFETY: valid allocations and frees; the key is written inside the block.
    unsafe {
        let p = tc.alloc(l);
        let q = tc.alloc(l);
        tc.dealloc(q, l);
        p.add(8).cast::<usize>().write(tcmalloc::key::process_key());
        tc.dealloc(p, l);
        let a = tc.alloc(l);
        let b = tc.alloc(l);
        assert_ne!(a, b);
        assert!([a, b].contains(&p) && [a, b].contains(&q));
        // Handed out again, its key is cleared: a second free of it is a first free.
        assert_ne!(
            p.add(8).cast::<usize>().read(),
            tcmalloc::key::process_key()
        );
        tc.dealloc(a, l);
        tc.dealloc(b, l);
    }
    tc.check_invariants().unwrap();
}
