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
    // Each thread keeps blocks whose bytes say which thread and which step wrote them, checks
    // every one before dropping it and at the end, and reports its total length.
    let pattern = |t: u8, i: usize| t.wrapping_mul(61).wrapping_add(i as u8);
    let hs: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut acc: Vec<(usize, Vec<u8>)> = Vec::new();
                for i in 0..20_000 {
                    acc.push((i, vec![pattern(t, i); i % 3000]));
                    if i % 3 == 0 {
                        let (j, v) = acc.swap_remove(i % acc.len());
                        assert_eq!(v.len(), j % 3000);
                        assert!(
                            v.iter().all(|&b| b == pattern(t, j)),
                            "thread {t}, block {j}"
                        );
                    }
                }
                for (j, v) in &acc {
                    assert_eq!(v.len(), j % 3000);
                    assert!(
                        v.iter().all(|&b| b == pattern(t, *j)),
                        "thread {t}, block {j}"
                    );
                }
                acc.iter().map(|(_, v)| v.len()).sum::<usize>()
            })
        })
        .collect();
    let totals: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    // The same steps on lengths alone (no thread, no block): what each thread must have kept.
    let mut lens: Vec<usize> = Vec::new();
    for i in 0..20_000 {
        lens.push(i % 3000);
        if i % 3 == 0 {
            lens.swap_remove(i % lens.len());
        }
    }
    let want: usize = lens.iter().sum();
    assert_eq!(totals, [want; 4]);
    for (i, s) in v.iter().enumerate() {
        assert_eq!(m[s], i);
        assert!(s.starts_with("item "));
    }
    assert!(GLOBAL.arenas() >= 2);
    assert_eq!(m.len(), v.len());
}
