#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each (default 20), from the committed
# seeds (fuzz/seeds) and the corpus it grows in fuzz/corpus/<target> (not committed). Needs
# nightly and cargo-fuzz (`cargo install cargo-fuzz`). A finding fails the script, with the input
# in fuzz/artifacts/<target>/ (replay it: `cargo +nightly fuzz run TARGET fuzz/artifacts/...`).
#   fuzz/run.sh                  # what CI runs: 20 s each
#   fuzz/run.sh 3600 buddy       # one target for an hour
#   FUZZ_ARGS="-jobs=2 -workers=2" fuzz/run.sh 600   # more libFuzzer flags
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-20}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(best_fit fit_configs buddy segregated segregated_configs ptmalloc2 tcmalloc)
cargo +nightly fuzz build -O
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${secs} s"
  # Inputs up to 2 KiB (500 operations): the policy's walk runs after every operation, and
  # shorter inputs give more runs in a bounded time.
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" seeds -- -max_total_time="$secs" \
      -max_len=2048 -print_final_stats=1 ${FUZZ_ARGS:-} >"logs/$t.log" 2>&1; then
    tail -n 60 "logs/$t.log"
    echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  grep -E '^Done [0-9]+ runs|^stat::(number_of_executed_units|peak_rss_mb)' "logs/$t.log" || true
done
