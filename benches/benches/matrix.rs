//! Criterion view of the matrix: one synthetic workload (larson-like churn, 20 000 events)
//! replayed through every registered policy and through the system allocator, so a change to a
//! policy's speed shows up in `cargo bench -p benches --bench matrix` with criterion's statistics.
//! The full comparison (real traces, fragmentation, peers) is `cargo xtask bench`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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
        b.iter(|| {
            black_box(replay_global(
                &std::alloc::System,
                prog,
                Options::default(),
                None,
            ))
            .expect("replay");
        });
    });
    group.finish();
}

criterion_group!(benches, matrix);
criterion_main!(benches);
