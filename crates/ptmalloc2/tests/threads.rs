//! `Ptmalloc` under threads: arenas per thread, cross-thread frees, thread-exit flushes, and
//! collections through allocator-api2.
#![cfg(all(unix, not(miri)))]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Arc, Mutex};

use allocator_api2::vec::Vec as AVec;
use ptmalloc2::{Ptmalloc, Tunables};

struct Block {
    ptr: usize,
    size: usize,
    seed: u8,
}

fn fill(p: *mut u8, size: usize, seed: u8) {
    for i in 0..size {
        // SAFETY: the block has `size` bytes.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(b: &Block) {
    let p = b.ptr as *const u8;
    for i in 0..b.size {
        // SAFETY: the block is live with `size` bytes.
        let v = unsafe { p.add(i).read() };
        assert_eq!(
            v,
            b.seed.wrapping_add(i as u8),
            "block {:#x}+{} damaged",
            b.ptr,
            b.size
        );
    }
}

fn stress(heap: &'static Ptmalloc, threads: usize, rounds: usize) {
    let shared: Arc<Mutex<Vec<Block>>> = Arc::new(Mutex::new(Vec::new()));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut x = 0x1234_5678u64 + t as u64 * 7919;
                let mut rnd = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let mut mine: Vec<Block> = Vec::new();
                for round in 0..rounds {
                    // The walk runs beside the other threads (each arena under its lock).
                    if round % 2500 == 0 {
                        heap.check_invariants().expect("invariant walk");
                    }
                    let r = rnd();
                    let size = match r % 10 {
                        0..=5 => (r >> 8) as usize % 200 + 1,
                        6..=8 => (r >> 8) as usize % 5000 + 1,
                        _ => (r >> 8) as usize % 300_000 + 1,
                    };
                    let align = if r % 17 == 0 { 64 } else { 8 };
                    let layout = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { heap.alloc(layout) };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0);
                    let seed = r as u8;
                    fill(p, size, seed);
                    mine.push(Block {
                        ptr: p as usize,
                        size,
                        seed,
                    });
                    match rnd() % 4 {
                        // Hand a block to another thread.
                        0 => shared
                            .lock()
                            .unwrap()
                            .push(mine.swap_remove(rnd() as usize % mine.len())),
                        // Free one of another thread's blocks here.
                        1 => {
                            let b = shared.lock().unwrap().pop();
                            if let Some(b) = b {
                                check(&b);
                                // SAFETY: live block of `heap`.
                                unsafe {
                                    heap.dealloc(
                                        b.ptr as *mut u8,
                                        Layout::from_size_align(b.size, 8).unwrap(),
                                    )
                                };
                            }
                        }
                        // Realloc one of ours.
                        2 if !mine.is_empty() => {
                            let i = rnd() as usize % mine.len();
                            let b = &mut mine[i];
                            check(b);
                            let new = (rnd() as usize) % 3000 + 1;
                            // SAFETY: live block, 8-aligned layout when reallocating.
                            let q = unsafe {
                                heap.realloc(
                                    b.ptr as *mut u8,
                                    Layout::from_size_align(b.size, 1).unwrap(),
                                    new,
                                )
                            };
                            assert!(!q.is_null());
                            let keep = b.size.min(new);
                            for k in 0..keep {
                                // SAFETY: `q` has `new` bytes.
                                let v = unsafe { q.add(k).read() };
                                assert_eq!(v, b.seed.wrapping_add(k as u8));
                            }
                            b.ptr = q as usize;
                            b.size = new;
                            fill(q, new, b.seed);
                        }
                        _ => {
                            if mine.len() > 50 {
                                let b = mine.swap_remove(rnd() as usize % mine.len());
                                check(&b);
                                // SAFETY: live block of `heap`.
                                unsafe {
                                    heap.dealloc(
                                        b.ptr as *mut u8,
                                        Layout::from_size_align(b.size, 8).unwrap(),
                                    )
                                };
                            }
                        }
                    }
                }
                for b in mine {
                    check(&b);
                    // SAFETY: live block of `heap`.
                    unsafe {
                        heap.dealloc(
                            b.ptr as *mut u8,
                            Layout::from_size_align(b.size, 8).unwrap(),
                        )
                    };
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    heap.check_invariants().expect("invariant walk");
    for b in shared.lock().unwrap().drain(..) {
        check(&b);
        // SAFETY: live block of `heap`.
        unsafe {
            heap.dealloc(
                b.ptr as *mut u8,
                Layout::from_size_align(b.size, 8).unwrap(),
            )
        };
    }
}

#[test]
fn threads_with_cross_thread_frees() {
    static HEAP: Ptmalloc = Ptmalloc::new();
    // This thread takes the main arena first (as a program's main thread does).
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: non-zero size; freed at once.
    unsafe { HEAP.dealloc(HEAP.alloc(l), l) };
    stress(&HEAP, 4, 10_000);
    let after_first = HEAP.arenas();
    assert_eq!(after_first, 5, "each thread got an arena of its own");
    // Exited threads left their arenas on the free list: new threads reuse them.
    stress(&HEAP, 4, 5_000);
    assert_eq!(
        HEAP.arenas(),
        after_first,
        "arenas of exited threads are reused"
    );
}

#[test]
fn one_arena_when_arena_max_is_1() {
    static HEAP: Ptmalloc = Ptmalloc::with_tunables(Tunables {
        arena_max: Some(1),
        ..Tunables::new()
    });
    stress(&HEAP, 3, 5_000);
    assert_eq!(HEAP.arenas(), 1);
}

#[test]
fn collections_through_allocator_api2() {
    let heap = Ptmalloc::new();
    let mut v: AVec<u64, &Ptmalloc> = AVec::new_in(&heap);
    for i in 0..200_000u64 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 199_999 * 200_000 / 2);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.len(), 10);
    let mut m = hashbrown::HashMap::new_in(&heap);
    for i in 0..50_000u32 {
        m.insert(i, i.wrapping_mul(31));
    }
    assert_eq!(m.get(&777), Some(&(777 * 31)));
}

#[test]
fn thread_arena_layout_matches_glibc() {
    // Verified on glibc 2.36 (reference 1.9): a new thread's first chunk (its tcache) is at
    // heap+0x8d0, its first user chunk at heap+0xb60 (user pointer +0xb70) with size word 0x25.
    static HEAP: Ptmalloc = Ptmalloc::new();
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: this thread takes the main arena; freed at once.
    unsafe { HEAP.dealloc(HEAP.alloc(l), l) };
    let (off, head) = std::thread::spawn(move || {
        // SAFETY: non-zero size; the block is read and freed here.
        unsafe {
            let p = HEAP.alloc(l);
            let off = p as usize & (64 * 1024 * 1024 - 1);
            let head = p.cast::<usize>().sub(1).read();
            HEAP.dealloc(p, l);
            (off, head)
        }
    })
    .join()
    .unwrap();
    assert_eq!((off, head), (0xb70, 0x25));
}

#[test]
fn thread_heaps_chain_and_go_away() {
    static HEAP: Ptmalloc = Ptmalloc::new();
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: this thread takes the main arena; freed at once.
    unsafe { HEAP.dealloc(HEAP.alloc(l), l) };
    let peak = std::thread::spawn(|| {
        let big = Layout::from_size_align(100_000, 16).unwrap();
        // 100 KB blocks (below the mmap threshold) overflow the first 64 MiB heap.
        // SAFETY: non-zero sizes; every block is written, checked and freed here.
        let blocks: Vec<*mut u8> = (0..900)
            .map(|i| unsafe {
                let p = HEAP.alloc(big);
                assert!(!p.is_null());
                p.write(i as u8);
                p.add(99_999).write(i as u8);
                p
            })
            .collect();
        // Two chained heaps: the first ends in fenceposts, the second holds the top.
        HEAP.check_invariants().expect("invariant walk");
        let peak = HEAP.arena_system_mem(1).unwrap();
        // Oldest first: the first heap becomes one free chunk before its fenceposts, so when
        // the second heap's top covers that whole heap, heap_trim deletes it and shrinks the
        // first (freed newest first, glibc would keep both heaps: heap_trim only looks at the
        // top's heap and its neighbour's tail).
        for (i, &p) in blocks.iter().enumerate() {
            // SAFETY: live blocks, freed once.
            unsafe {
                assert_eq!((p.read(), p.add(99_999).read()), (i as u8, i as u8));
                HEAP.dealloc(p, big);
            }
        }
        peak
    })
    .join()
    .unwrap();
    // The leftover of the first heap's top went to the thread's tcache when the second heap was
    // made; only the thread-exit flush frees it, and that free lets heap_trim delete the second
    // heap and shrink the first.
    let after = HEAP.arena_system_mem(1).unwrap();
    HEAP.check_invariants().expect("invariant walk");
    assert!(peak > 64 << 20, "the arena grew past one heap ({peak})");
    assert!(
        after < 1 << 20,
        "emptied heaps went away and the last one shrank ({after})"
    );
}

#[test]
fn the_walk_reports_a_corrupted_thread_arena() {
    static HEAP: Ptmalloc = Ptmalloc::with_tunables(Tunables {
        tcache_count: Some(0),
        mxfast: Some(0),
        ..Tunables::new()
    });
    let l = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: this thread takes the main arena; freed at once.
    unsafe { HEAP.dealloc(HEAP.alloc(l), l) };
    std::thread::spawn(move || {
        // SAFETY: blocks of this thread's arena; the planted word is restored before anything
        // else runs on the arena.
        unsafe {
            let a = HEAP.alloc(l);
            let b = HEAP.alloc(l);
            HEAP.dealloc(a, l);
            HEAP.check_invariants().expect("healthy");
            let size = a.cast::<usize>().sub(1);
            let good = size.read();
            size.write(good + 0x10);
            let c = HEAP
                .check_invariants()
                .expect_err("a bad size in a free chunk");
            assert_eq!(c.problem, "free chunk's footer is not its size", "{c}");
            size.write(good);
            HEAP.check_invariants().expect("restored");
            HEAP.dealloc(b, l);
        }
    })
    .join()
    .unwrap();
}
