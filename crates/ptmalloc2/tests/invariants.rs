//! The invariant walk holds after every operation of long random workloads: the generated traces
//! of the glibc comparison (every bin range, realloc, calloc, memalign, mapped chunks), under
//! every compared configuration of the tunables. (The planted corruptions it must report are in
//! `src/invariants.rs`; the conformance kit also runs it after each of its operations.)

use allocator_traits::BoxedRegion;
use ptmalloc2::{Arena, SystemPages, Tunables};
use workloads::replay::{Options, Program, replay_manager};

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
    let mut ops = 0usize;
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
            let mut arena = arena;
            let trace = workloads::Trace::read_text(t.text.as_bytes()).expect("generated trace");
            let prog = Program::compile(&trace).expect("generated trace");
            // The engine runs the walk after every event; a failure names the event and line.
            let opts = Options {
                check: true,
                ..Options::default()
            };
            replay_manager(&mut arena, &prog, opts, None).unwrap_or_else(|e| {
                panic!(
                    "`{cfg}`, {} trace: {e}",
                    t.text.lines().next().unwrap_or("")
                )
            });
            ops += prog.steps.len();
        }
    }
    println!("{ops} operations, the walk after each, all passed");
    assert!(ops > 0, "no trace was replayed");
}
