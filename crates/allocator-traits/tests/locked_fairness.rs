//! `Locked` serves a waiting thread before one that barges in (issue 16 item 6: under a
//! test-and-set lock, a thread could wait while the others took the lock again and again).
//!
//! The experiment: the main thread holds the lock; a second thread asks for it and waits until
//! it has run out of patience and queued (`starving_waiters() == 1`: the lock's promise starts
//! there; before it, a running thread may take a free lock, which is what keeps the fast path
//! fast). Then the main thread lets go and at once tries to take the lock again: the lock must
//! refuse it, every round, however loaded the machine is (nothing here depends on timing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocator_traits::{BoxedRegion, Locked};

#[test]
#[cfg_attr(miri, ignore)] // threads that yield hundreds of times: slow under Miri, nothing unsafe
fn a_starving_waiter_is_served_before_a_barging_thread() {
    let heap = Locked::new(BoxedRegion::new(4096).expect("a small region"));
    for round in 0..10 {
        let held = heap.lock();
        let served = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                drop(heap.lock());
                served.store(true, Ordering::Release);
            });
            // A deadline only so that a broken lock fails instead of hanging the suite.
            let deadline = Instant::now() + Duration::from_secs(120);
            while heap.starving_waiters() == 0 {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the waiter never queued as starving"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(held);
            let barged = heap.try_lock().is_some();
            waiter.join().expect("the waiter finishes");
            assert!(
                !barged,
                "round {round}: try_lock took the lock ahead of a starving waiter"
            );
            assert!(served.load(Ordering::Acquire));
        });
    }
}
