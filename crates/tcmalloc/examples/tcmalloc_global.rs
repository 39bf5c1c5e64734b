//! tcmalloc as the process's `#[global_allocator]`: a thread cache per thread in front of the
//! central lists and the page heap, pages from the OS.
//!
//! Run with `cargo run -p tcmalloc --example tcmalloc_global`.

use std::collections::BTreeMap;

use allocator_traits::OsPages;
use tcmalloc::Tcmalloc;

#[global_allocator]
static MALLOC: Tcmalloc = Tcmalloc::new(OsPages::new());

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
        "words per thread: {counts:?}; tcmalloc's footprint {} B",
        MALLOC.footprint()
    );
}
