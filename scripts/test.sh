#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then fmt, clippy, every test of the
# workspace (unit, fixtures, real-MariaDB replay tests, and the root/lab end-to-end tests), and each
# fuzz target for a bounded time. Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
mrte_install_deps chromium
mrte_install_nats
export CARGO_TERM_COLOR=never

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# tests/lab.rs drives the AF_XDP sender, target/debug/mrte-bench: build it first.
cargo build -p mrte-bench
# The lab tests bring the namespaces up and down themselves; one test binary at a time keeps
# them from fighting over the lab.
cargo test --workspace --no-fail-fast -- --test-threads=2
echo "== fuzz (bounded)"
scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
echo "== all tests passed"
