//! `Locked` serves threads in the order they asked (issue 16 item 6: under a test-and-set lock,
//! a thread could wait while the others took the lock again and again).
//!
//! The experiment: the main thread holds the lock; a second thread asks for it and waits; the
//! main thread lets go and at once tries to take the lock again. A fair lock refuses it (the
//! waiter is next); an unfair one lets it barge ahead of the waiter. Each round the waiter gets
//! time to queue (a sleep: a round where it had not queued yet counts against the lock, so the
//! bound below leaves room for a loaded machine).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allocator_traits::{BoxedRegion, Locked};

#[test]
#[cfg_attr(miri, ignore)] // sleeps and threads: slow under Miri, and nothing unsafe is new here
fn a_waiting_thread_is_served_before_a_barging_one() {
    let heap = Locked::new(BoxedRegion::new(4096).expect("a small region"));
    let rounds = 20;
    let mut barged = 0;
    for round in 0..rounds {
        let held = heap.lock();
        let asked = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                asked.store(true, Ordering::Release);
                drop(heap.lock());
            });
            while !asked.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(2 + round));
            drop(held);
            if let Some(g) = heap.try_lock() {
                barged += 1;
                drop(g);
            }
            waiter.join().expect("the waiter finishes");
        });
    }
    assert!(
        barged <= 3,
        "the lock let a newcomer barge ahead of a waiting thread in {barged} of {rounds} rounds"
    );
}
