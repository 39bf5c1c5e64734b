//! The ptmalloc2 model as the process's `#[global_allocator]`: arenas per thread, tcache,
//! glibc's defaults (`Ptmalloc::with_tunables` takes others).
//!
//! Run with `cargo run -p ptmalloc2 --example ptmalloc2_global`.

use std::collections::BTreeMap;

use ptmalloc2::Ptmalloc;

#[global_allocator]
static MALLOC: Ptmalloc = Ptmalloc::new();

fn main() {
    let workers: Vec<_> = (0..4u32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut words: BTreeMap<String, usize> = BTreeMap::new();
                for i in 0..20_000u32 {
                    *words.entry(format!("t{t}-w{}", i % 3_001)).or_default() += 1;
                }
                words.len()
            })
        })
        .collect();
    let counts: Vec<usize> = workers
        .into_iter()
        .map(|w| w.join().expect("a worker"))
        .collect();
    println!(
        "words per thread: {counts:?}; ptmalloc2 used {} arenas",
        MALLOC.arenas()
    );
}
