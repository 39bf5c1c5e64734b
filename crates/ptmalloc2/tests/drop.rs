//! A `Ptmalloc` dropped while the threads that used it are still exiting: their thread-exit
//! flushes (run by thread-local destructors after the scope has ended) must not touch memory the
//! drop gave back. Issue 16, item 1: this crashed (SIGSEGV) in most runs of 2,000 iterations.
#![cfg(all(unix, not(miri)))]

use std::alloc::{GlobalAlloc, Layout};

use ptmalloc2::Ptmalloc;

#[test]
fn dropping_while_threads_exit_is_safe() {
    for i in 0..2000 {
        let heap = Ptmalloc::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let heap = &heap;
                s.spawn(move || {
                    // Blocks of many tcache bins, freed to fill them: the thread's exit flush
                    // then has work to do.
                    for size in (8..1000).step_by(16 * (t + 1)) {
                        let l = Layout::from_size_align(size, 8).unwrap();
                        // SAFETY: non-zero sizes; each block is written and freed once.
                        unsafe {
                            let ps: Vec<*mut u8> = (0..4).map(|_| heap.alloc(l)).collect();
                            for p in ps {
                                assert!(!p.is_null(), "iteration {i}");
                                p.write(t as u8);
                                heap.dealloc(p, l);
                            }
                        }
                    }
                });
            }
        });
        drop(heap);
    }
}
