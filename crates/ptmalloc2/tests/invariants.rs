//! The invariant walk holds after every operation of long random workloads: the generated traces
//! of the glibc comparison (every bin range, realloc, calloc, memalign, mapped chunks), under
//! every compared configuration of the tunables. (The planted corruptions it must report are in
//! `src/invariants.rs`; the conformance kit also runs it after each of its operations.)

use allocator_traits::{BoxedRegion, FreeSpaceManager};
use ptmalloc2::{Arena, Event, Replayer, SystemPages, Tunables};

mod common;
use common::{CONFIGS, generated};

#[test]
fn the_walk_holds_after_every_operation() {
    // Miri (where each operation is slow, and copying or zeroing a megabyte takes seconds) runs
    // the small-chunk churn only, shorter, under two configurations.
    let (scale, configs, region) = if cfg!(miri) {
        (20, &CONFIGS[..2], 2 << 20)
    } else {
        (2, CONFIGS, 256 << 20)
    };
    let (mut ops, mut walks) = (0usize, 0usize);
    for (ci, cfg) in configs.iter().enumerate() {
        let traces = generated(ci as u64 * 31 + 5, scale);
        let traces = if cfg!(miri) {
            &traces[5..]
        } else {
            &traces[..]
        };
        for t in traces {
            let arena = Arena::new(
                BoxedRegion::new(region).expect("region"),
                SystemPages::new(),
                &Tunables::parse(cfg).expect("tunables"),
            );
            let mut rep = Replayer::with_arena(arena);
            for (n, line) in t.text.lines().enumerate() {
                let Some(ev) = Event::parse(line).expect("generated line") else {
                    continue;
                };
                rep.apply(ev)
                    .unwrap_or_else(|e| panic!("`{cfg}`, line {}: {e}", n + 1));
                ops += 1;
                if let Err(c) = rep.arena().check_invariants() {
                    panic!(
                        "`{cfg}`, {} trace, after line {} (`{line}`): {c}",
                        t.text.lines().next().unwrap_or(""),
                        n + 1
                    );
                }
                walks += 1;
            }
        }
    }
    println!("{ops} operations, {walks} walks, all passed");
    assert_eq!(ops, walks);
}
