#!/usr/bin/env bash
# Coverage-guided fuzzing on stable Rust, without cargo-fuzz:
#   fuzz/run.sh [SECONDS] [TARGET...]
# runs each target (default: all of them) for SECONDS (default 60), each
# with its own corpus in fuzz/corpus/TARGET. Targets: decode (the packet
# decoder up to the MAC, and the brain), signed (past the MAC: fuzzed TLV
# bodies signed with the test key), config, heartbeat_files, arbiter,
# volume (the replication engine fed arbitrary peer messages), control (the
# control socket's requests and answers), nbd (the NBD export's negotiation
# and requests), volume_frames (a volume peer's hello and signed frames).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode signed config heartbeat_files arbiter volume control nbd volume_frames)
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
    cargo build --release --target "$target"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t ($secs s)"
    "target/$target/release/$t" "corpus/$t" -max_total_time="$secs" -max_len=1600 2>&1 | tail -3
done
