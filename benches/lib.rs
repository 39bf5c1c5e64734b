//! Criterion benchmarks across policies live in `benches/`.
