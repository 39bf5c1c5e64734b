//! Multi-threaded stress of `Tcmalloc`: producer/consumer with every free on another thread
//! (xmalloc-test's shape), larson-like churn with arrays handed from exiting threads to new ones,
//! threads that exit while their objects live on, and the thread-cache budget. Each test owns its
//! allocator and runs its threads in a scope, so the allocator (and its source) is dropped at the
//! end: Miri's leak check then vouches that nothing else was left behind.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

use tcmalloc::Tcmalloc;

/// OS mappings normally; under Miri (no mmap) a region from the global allocator.
#[cfg(not(miri))]
type Source = allocator_traits::OsPages;
#[cfg(miri)]
type Source = allocator_traits::BoxedRegion;

fn source() -> Source {
    #[cfg(not(miri))]
    return allocator_traits::OsPages::new();
    #[cfg(miri)]
    return allocator_traits::BoxedRegion::new(24 << 20).unwrap();
}

/// A block and its layout, sent between threads.
struct Block(*mut u8, Layout);
// SAFETY: the block is owned by whoever holds this value.
unsafe impl Send for Block {}

fn fill(b: &Block, seed: u8) {
    // SAFETY: the block has `b.1.size()` writable bytes.
    unsafe { std::ptr::write_bytes(b.0, seed, b.1.size()) }
}

fn check(b: &Block, seed: u8) {
    // SAFETY: the block has `b.1.size()` initialised bytes.
    let s = unsafe { std::slice::from_raw_parts(b.0, b.1.size()) };
    assert!(
        s.iter().all(|&x| x == seed),
        "block {:p} was overwritten",
        b.0
    );
}

fn alloc(t: &Tcmalloc<Source>, size: usize, align: usize) -> Block {
    let l = Layout::from_size_align(size, align).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { t.alloc(l) };
    assert!(!p.is_null());
    assert_eq!(p as usize % align, 0);
    Block(p, l)
}

fn free(t: &Tcmalloc<Source>, b: Block) {
    // SAFETY: a live block of `t`, freed once.
    unsafe { t.dealloc(b.0, b.1) }
}

const SCALE: usize = if cfg!(miri) { 1 } else { 20 };

#[test]
fn producer_consumer_every_free_on_another_thread() {
    let tc = Tcmalloc::new(source());
    let t = &tc;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<(Block, u8)>>(64);
        let producers: Vec<_> = (0..2)
            .map(|id| {
                let tx = tx.clone();
                scope.spawn(move || {
                    let mut rng = 0x1234_5678u32 + id;
                    for _ in 0..(if cfg!(miri) { 2 } else { 100 * SCALE }) {
                        let batch = (0..(if cfg!(miri) { 20 } else { 100 }))
                            .map(|i| {
                                rng ^= rng << 13;
                                rng ^= rng >> 17;
                                rng ^= rng << 5;
                                let size = 8 + (rng as usize % 505);
                                let b = alloc(t, size, 8);
                                let seed = (i as u8) ^ (id as u8);
                                fill(&b, seed);
                                (b, seed)
                            })
                            .collect();
                        tx.send(batch).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let consumer = scope.spawn(move || {
            let mut n = 0;
            for (k, batch) in rx.into_iter().enumerate() {
                for (b, seed) in batch {
                    check(&b, seed);
                    free(t, b);
                    n += 1;
                }
                // The walk under the locks while the producers run.
                if k % 50 == 0 {
                    t.check_invariants().unwrap();
                }
            }
            n
        });
        for p in producers {
            p.join().unwrap();
        }
        let per = if cfg!(miri) {
            2 * 20
        } else {
            100 * SCALE * 100
        };
        assert_eq!(consumer.join().unwrap(), 2 * per);
    });
    assert_eq!(tc.threads(), 0, "every thread's cache was released at exit");
    tc.check_invariants().unwrap();
}

#[test]
fn larson_like_churn_with_arrays_handed_to_new_threads() {
    let tc = Tcmalloc::new(source());
    let t = &tc;
    const SLOTS: usize = if cfg!(miri) { 16 } else { 500 };
    let mut arrays: Vec<Vec<(Block, u8)>> = (0..2)
        .map(|a| {
            (0..SLOTS)
                .map(|i| {
                    let b = alloc(t, 8 + i % 400, 8);
                    let seed = (i + a) as u8;
                    fill(&b, seed);
                    (b, seed)
                })
                .collect()
        })
        .collect();
    // Under Miri (stacked borrows makes every access slow) two rounds still hand every array
    // from exited threads to new ones.
    for round in 0..(if cfg!(miri) { 2 } else { 5 * SCALE }) {
        arrays = std::thread::scope(|scope| {
            let workers: Vec<_> = arrays
                .drain(..)
                .enumerate()
                .map(|(w, mut arr)| {
                    scope.spawn(move || {
                        let mut rng = (round * 7 + w + 1) as u64;
                        for _ in 0..(if cfg!(miri) { 40 } else { 2000 }) {
                            rng = rng
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            let i = (rng >> 33) as usize % SLOTS;
                            let size = 8 + (rng >> 20) as usize % 600;
                            let (old, seed) =
                                std::mem::replace(&mut arr[i], (alloc(t, size, 8), 0));
                            check(&old, seed);
                            free(t, old);
                            let s = (rng >> 40) as u8;
                            fill(&arr[i].0, s);
                            arr[i].1 = s;
                        }
                        arr
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
    }
    for arr in arrays {
        for (b, seed) in arr {
            check(&b, seed);
            free(t, b);
        }
    }
    assert_eq!(
        t.threads(),
        1,
        "only this test's own thread still holds a cache"
    );
}

#[test]
fn objects_outlive_the_threads_that_allocated_them() {
    let tc = Tcmalloc::new(source());
    let t = &tc;
    let mut kept = Vec::new();
    for round in 0..(4 * SCALE) {
        let mine = std::thread::scope(|scope| {
            let h = scope.spawn(move || {
                let mut mine = Vec::new();
                for i in 0..(if cfg!(miri) { 30 } else { 300usize }) {
                    let size = [8, 24, 100, 1000, 5000, 40_000, 300_000][i % 7];
                    let size = if cfg!(miri) { size.min(5000) } else { size };
                    let b = alloc(t, size, if i % 5 == 0 { 64 } else { 8 });
                    let seed = (i + round) as u8;
                    fill(&b, seed);
                    // Free a third at once so the cache holds something when the thread exits.
                    if i % 3 == 0 {
                        free(t, b);
                    } else {
                        mine.push((b, seed));
                    }
                }
                mine
            });
            h.join().unwrap()
        });
        kept.extend(mine);
        assert_eq!(t.threads(), 0, "the exited thread's cache was released");
        t.check_invariants().unwrap();
    }
    let (central, transfer, _) = t.cached_bytes();
    assert!(
        central + transfer > 0,
        "the exited threads' cached objects went back to central"
    );
    for (b, seed) in kept {
        check(&b, seed);
        free(t, b);
    }
    t.check_invariants().unwrap();
}

#[test]
fn thread_budgets_stay_within_the_overall_limit() {
    let limit = 1 << 20;
    let tc = Tcmalloc::with_overall_thread_cache_size(source(), limit);
    let t = &tc;
    std::thread::scope(|scope| {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let done_tx = done_tx.clone();
                let go_rx = go_rx.clone();
                scope.spawn(move || {
                    // Allocate and free enough 4 KiB blocks to overflow any budget: scavenges and
                    // steals happen.
                    for _ in 0..(SCALE * 5) {
                        let blocks: Vec<_> = (0..(if cfg!(miri) { 40 } else { 300 }))
                            .map(|_| alloc(t, 4096, 8))
                            .collect();
                        for b in blocks {
                            free(t, b);
                        }
                    }
                    done_tx.send(()).unwrap();
                    go_rx.lock().unwrap().recv().unwrap();
                })
            })
            .collect();
        for _ in 0..4 {
            done_rx.recv().unwrap();
        }
        let (sum, unclaimed) = t.budget();
        assert_eq!(t.threads(), 4);
        assert_eq!(
            sum as isize + unclaimed,
            limit as isize,
            "budget is conserved"
        );
        assert!(sum >= 4 * 64 * 1024);
        for _ in 0..4 {
            go_tx.send(()).unwrap();
        }
        for h in threads {
            h.join().unwrap();
        }
    });
    let (sum, unclaimed) = t.budget();
    assert_eq!(
        (sum, unclaimed),
        (0, limit as isize),
        "exited threads return their budget"
    );
}

#[test]
fn allocator_api_and_realloc() {
    let tc = Tcmalloc::new(source());
    let t = &tc;
    let mut v = allocator_api2::vec::Vec::new_in(t);
    for i in 0..(if cfg!(miri) { 1000 } else { 100_000u32 }) {
        v.push(i);
    }
    let n = v.len() as u64;
    assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), (n - 1) * n / 2);
    let b = alloc(t, 100, 8);
    fill(&b, 9);
    // SAFETY: `b` is live with layout `b.1`.
    let p = unsafe { t.realloc(b.0, b.1, 110) };
    assert_eq!(
        p, b.0,
        "100 and 110 bytes share the 112-byte class: in place"
    );
    // SAFETY: `p` is live with 110 bytes.
    let q = unsafe { t.realloc(p, Layout::from_size_align(110, 8).unwrap(), 5000) };
    let moved = Block(q, Layout::from_size_align(100, 8).unwrap());
    check(&moved, 9);
    free(t, Block(q, Layout::from_size_align(5000, 8).unwrap()));
    let big = alloc(t, 1 << 20, 1 << 16);
    free(t, big);
}
