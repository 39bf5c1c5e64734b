//! A driver for profilers (callgrind, perf): the benches' `pair/SIZE` and `churn/1000` loops
//! without criterion, so the instructions per operation can be counted.
//!
//! `cargo run --release -p segregated --example pairs -- pair 16 1000000` or `-- churn 1000000`;
//! then e.g. `valgrind --tool=callgrind target/release/examples/pairs pair 16 1000000`.

use std::hint::black_box;
use std::ptr::NonNull;

use allocator_traits::{BoxedRegion, FreeSpaceManager, Layout};
use buddy::Buddy;
use segregated::Segregated;

const REGION: usize = 1 << 26;

type Heap = Segregated<Buddy<BoxedRegion>>;

// Out of line, as in the benches (where the calls are not inlined into the loop either).
#[inline(never)]
fn alloc(h: &mut Heap, l: Layout) -> NonNull<u8> {
    h.allocate(l).expect("room").cast()
}

#[inline(never)]
fn free(h: &mut Heap, p: NonNull<u8>, l: Layout) {
    // SAFETY: the callers pass live blocks with their layouts.
    unsafe { h.deallocate(p, l) }.expect("valid free")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("pair", String::as_str);
    let mut h = Segregated::new(
        Buddy::try_new(
            BoxedRegion::new(REGION).expect("region"),
            buddy::Config::new(REGION),
        )
        .expect("pages"),
    );
    match what {
        "pair" => {
            let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
            let n: u64 = args
                .get(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000);
            let l = Layout::from_size_align(size, 8).expect("layout");
            for _ in 0..n {
                let p = alloc(&mut h, black_box(l));
                free(&mut h, black_box(p), l);
            }
        }
        _ => {
            let n: u64 = args
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000);
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut live: Vec<_> = (0..1000)
                .map(|_| {
                    let l = Layout::from_size_align(8 + (next() % 505) as usize, 8).expect("l");
                    (alloc(&mut h, l), l)
                })
                .collect();
            for _ in 0..n {
                let i = (next() % live.len() as u64) as usize;
                let (p, l) = live[i];
                free(&mut h, p, l);
                let nl = Layout::from_size_align(8 + (next() % 505) as usize, 8).expect("l");
                live[i] = (black_box(alloc(&mut h, nl)), nl);
            }
            for (p, l) in live {
                free(&mut h, p, l);
            }
        }
    }
    let s = h.stats();
    println!(
        "allocs {} frees {} live {}",
        s.allocs, s.frees, s.live_blocks
    );
}
