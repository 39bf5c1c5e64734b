//! Criterion view of the matrix: one synthetic workload (larson-like churn, 20 000 events)
//! replayed through every registered policy and through the system allocator, so a change to a
//! policy's speed shows up in `cargo bench -p benches --bench matrix` with criterion's statistics.
//! The full comparison (real traces, fragmentation, peers) is `cargo xtask bench`.
//!
//! **Instructions per event on a recorded trace**: with `MATRIX_TRACE_PROFILE=ALLOCATOR:TRACE`
//! set (a registered policy name or `system`, and a trace file), the binary replays the trace
//! once to warm up and once inside `measured_replay`, the matrix's cell in miniature (the
//! policy's instance reused, as the matrix does), and exits; for callgrind:
//!
//! ```text
//! MATRIX_TRACE_PROFILE=best-fit:traces/python3.trace.gz valgrind --tool=callgrind \
//!     --toggle-collect='*measured_replay*' target/release/deps/matrix-HASH
//! ```

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use registry::Config;
use workloads::replay::{Options, Program, replay_global, replay_manager};

fn matrix(c: &mut Criterion) {
    let trace = workloads::synth::larson(20_000, 4, 6);
    let prog = Program::compile(&trace).expect("a generated trace is valid");
    let cfg = Config::for_peak(prog.live_profile().1);
    let mut group = c.benchmark_group("larson-20k");
    group.throughput(Throughput::Elements(prog.steps.len() as u64));
    group.sample_size(20);
    for name in registry::variants() {
        let spec = registry::lookup(name).expect("a registered variant");
        group.bench_with_input(BenchmarkId::new("policy", name), &prog, |b, prog| {
            b.iter(|| {
                let mut inst = spec.build(&cfg).expect("policy builds");
                black_box(replay_manager(
                    &mut *inst.manager,
                    prog,
                    Options::default(),
                    None,
                ))
                .expect("replay");
            });
        });
    }
    group.bench_with_input(BenchmarkId::new("peer", "system"), &prog, |b, prog| {
        b.iter(|| replay_system(prog));
    });
    group.finish();
}

/// One replay through the system allocator.
fn replay_system(prog: &Program) {
    black_box(replay_global(
        &std::alloc::System,
        prog,
        Options::default(),
        None,
    ))
    .expect("replay");
}

/// The timed half of `MATRIX_TRACE_PROFILE` (callgrind collects inside it only).
#[inline(never)]
fn measured_replay(replay: &mut dyn FnMut()) {
    replay();
}

/// `ALLOCATOR:TRACE`, see the module docs.
fn profile(spec: &str) {
    let (name, path) = spec
        .split_once(':')
        .expect("MATRIX_TRACE_PROFILE wants ALLOCATOR:TRACE");
    let trace = workloads::trace::Trace::load(path).expect("a readable trace");
    let prog = Program::compile(&trace).expect("a valid trace");
    let mut replay: Box<dyn FnMut()> = if name == "system" {
        let prog = &prog;
        Box::new(move || replay_system(prog))
    } else {
        // Valgrind cannot reserve the default 64 GiB of address space: 1 GiB holds every trace.
        let cfg = Config {
            reserve: 1 << 30,
            ..Config::for_peak(prog.live_profile().1)
        };
        let spec = registry::lookup(name).expect("a registered policy");
        let mut inst = spec.build(&cfg).expect("policy builds");
        let prog = &prog;
        Box::new(move || {
            let out =
                replay_manager(&mut *inst.manager, prog, Options::default(), None).expect("replay");
            assert_eq!(out.refused, 0, "{:?}", out.first_refusal);
        })
    };
    replay();
    measured_replay(&mut replay);
    println!("{name}: {} events replayed", prog.steps.len());
}

criterion_group!(benches, matrix);

fn main() {
    if let Ok(spec) = std::env::var("MATRIX_TRACE_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
