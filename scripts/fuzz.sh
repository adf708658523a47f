#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 20 s each) with cargo-fuzz on the stable
# toolchain (RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags). Fails on any crash.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in framing command reassembly; do
  echo "fuzz: $t for ${secs}s"
  mkdir -p "corpus/$t"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 2>&1 | tail -3
done
