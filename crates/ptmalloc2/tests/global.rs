//! `Ptmalloc` as the process's global allocator: everything this test binary allocates (the
//! test harness, threads, strings, collections) goes through it.
#![cfg(all(unix, not(miri)))]

use ptmalloc2::Ptmalloc;

#[global_allocator]
static GLOBAL: Ptmalloc = Ptmalloc::new();

#[test]
fn std_runs_on_ptmalloc() {
    let mut v: Vec<String> = (0..50_000).map(|i| format!("item {i}")).collect();
    v.retain(|s| s.len() % 2 == 0);
    let mut m = std::collections::HashMap::new();
    for (i, s) in v.iter().enumerate() {
        m.insert(s.clone(), i);
    }
    let hs: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut acc = Vec::new();
                for i in 0..20_000 {
                    acc.push(vec![t as u8; i % 3000]);
                    if i % 3 == 0 {
                        acc.swap_remove(i % acc.len());
                    }
                }
                acc.len()
            })
        })
        .collect();
    let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    assert!(GLOBAL.arenas() >= 2);
    assert_eq!(m.len(), v.len());
}
