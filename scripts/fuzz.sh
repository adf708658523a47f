#!/usr/bin/env bash
# Fuzz every target of fuzz/ (one per layer: frame slicer, pcap reader, TCP stream, pipeline,
# MySQL framing, commands, responses, USE detection, fingerprint, classifier) with cargo-fuzz on
# the stable toolchain (RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags). Corpora are seeded
# from tests/fixtures by scripts/fuzz-seeds.py. Fails on the first crash (input in
# fuzz/artifacts/TARGET/).
#   scripts/fuzz.sh [SECONDS]  each target for SECONDS (default 20; scripts/test.sh uses 15)
#   scripts/fuzz.sh LONG       each target for at least 10 M executions (hours; outside CI)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-20}
if [ "$mode" = LONG ]; then
  limit=(-runs=10000000)
elif [[ "$mode" =~ ^[0-9]+$ ]]; then
  limit=(-max_total_time="$mode")
else
  echo "usage: $0 [SECONDS|LONG]" >&2
  exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
python3 scripts/fuzz-seeds.py
cd fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for t in $(cargo fuzz list); do
  echo "fuzz: $t (${limit[*]})"
  cargo fuzz run "$t" "corpus/$t" -- "${limit[@]}" -rss_limit_mb=2048 -max_len=65536 2>&1 | tail -3
done
