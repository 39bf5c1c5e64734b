//! `Tcmalloc` as the process's `#[global_allocator]`: std's own collections, threads (whose
//! thread-local machinery allocates through us while a thread cache is being set up and torn
//! down), and strings built and dropped across threads. Not under Miri: the global allocator of
//! the whole test binary would need mmap.
#![cfg(not(any(loom, miri)))]

use std::collections::{BTreeMap, HashMap};

use allocator_traits::OsPages;
use tcmalloc::Tcmalloc;

#[global_allocator]
static GLOBAL: Tcmalloc = Tcmalloc::new(OsPages::new());

#[test]
fn std_collections_and_threads_on_tcmalloc() {
    let mut handles = Vec::new();
    for t in 0..8 {
        handles.push(std::thread::spawn(move || {
            let mut m = HashMap::new();
            let mut b = BTreeMap::new();
            for i in 0..20_000u64 {
                m.insert(i, format!("{t}-{i}"));
                if i % 3 == 0 {
                    b.insert(i, vec![i as u8; (i % 700) as usize]);
                }
            }
            for i in (0..20_000u64).step_by(2) {
                m.remove(&i);
            }
            (m, b)
        }));
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (t, (m, b)) in results.iter().enumerate() {
        assert_eq!(m.len(), 10_000);
        assert_eq!(m[&7], format!("{t}-7"));
        assert!(b[&699].iter().all(|&x| x == 699u64 as u8));
    }
    drop(results);
    let big: Vec<u64> = (0..1_000_000).collect();
    assert_eq!(big.iter().sum::<u64>(), 999_999 * 1_000_000 / 2);
    assert!(GLOBAL.footprint() > 8 << 20);
}
