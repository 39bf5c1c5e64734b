//! A best-fit heap over a static 1 MiB region, used with allocator-api2's `Vec` and `Box` and
//! with `hashbrown::HashMap`, then its statistics.
//!
//! Run with `cargo run -p fit --example fit_collections`.

use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use allocator_traits::{FixedRegion, Locked};
use fit::{Config, FitHeap};

/// The memory the heap manages: 1 MiB, page-aligned, in the program's data segment.
#[repr(C, align(4096))]
struct Arena([u8; 1 << 20]);
static mut ARENA: Arena = Arena([0; 1 << 20]);

fn main() {
    // SAFETY: ARENA is handed to this one region and touched by nothing else.
    let region = unsafe { FixedRegion::from_raw_parts((&raw mut ARENA).cast::<u8>(), 1 << 20) };
    // Any name from the docs works here: "best-fit:lifo", "first-fit:addr", "worst-fit:fifo" ...
    let config: Config = "best-fit".parse().expect("a fit policy name");
    let heap = Locked::new(FitHeap::new(region, config));

    let mut squares = Vec::new_in(&heap);
    for i in 0..10_000u64 {
        squares.push(i * i);
    }
    let boxed = Box::new_in([7u8; 300], &heap);

    let mut words = hashbrown::HashMap::new_in(&heap);
    for i in 0..5_000u32 {
        words.insert(i, format!("{i:x}").len());
    }
    squares.truncate(100);
    squares.shrink_to_fit();
    words.retain(|k, _| k % 3 == 0);
    words.shrink_to_fit();

    println!(
        "{} squares, a box of {} bytes, {} words",
        squares.len(),
        boxed.len(),
        words.len()
    );
    report(&heap, "while in use");
    drop((squares, boxed, words));
    report(&heap, "after dropping everything");
}

fn report(heap: &Locked<FitHeap<FixedRegion>>, when: &str) {
    let s = heap.stats();
    let h = heap.lock();
    println!("{} heap, {when}:", h.config());
    println!(
        "  live: {} blocks, {} B requested, {} B held (internal fragmentation {} B)",
        s.live_blocks,
        s.live_requested,
        s.live_held,
        s.internal_bytes()
    );
    println!(
        "  footprint {} B (peak {} B), free {} B in {} chunks",
        s.footprint,
        s.peak_footprint,
        s.external_bytes(),
        h.free_list().count()
    );
    println!(
        "  {} allocs, {} frees, {} resizes ({} in place), {} refused",
        s.allocs, s.frees, s.resizes, s.in_place_resizes, s.failed_allocs
    );
    if let Some(f4) = s.fragmentation_4() {
        println!("  Johnstone & Wilson measure #4 (peak footprint / peak live - 1): {f4:.3}");
    }
}
