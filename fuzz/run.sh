#!/usr/bin/env bash
# Coverage-guided fuzzing of the packet decoder and the brain's receive path
# on stable Rust, without cargo-fuzz: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
    cargo build --release --target "$target"
mkdir -p corpus
exec "target/$target/release/decode" corpus -max_total_time="${1:-60}" -max_len=1600
