#!/usr/bin/env bash
# Instructions per replayed query, per thread, under valgrind's callgrind: the user-side work of
# `mrte replay` counted exactly, so a change can be judged on a busy machine where CPU time moves
# by a third between runs (bench/README "Issue 9, fourth pass").
#
# Starts a scratch mariadbd (own datadir and port, removed at exit), loads sysbench's tables,
# records DURATION s of sysbench oltp_read_only off lo with tcpdump, then, for each binary given,
# ROUNDS times: `mrte replay --speed max --read-only` of that capture under callgrind. Prints per
# run the commands replayed and the instructions of the replay thread and of the pcap reader
# thread, in total and per replayed query. Kernel work (system calls) is not counted.
#
# Usage: bench/replay-instr.sh MRTE_BIN [MRTE_BIN...]
# Env: DURATION (1), THREADS (4), PS_MODE (disable), ROUNDS (1), PORT (33098), OUT (/tmp/bench-instr)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 MRTE_BIN [MRTE_BIN...]" >&2; exit 2; }
BINS=()
for b in "$@"; do BINS+=("$(realpath "$b")"); done
DURATION=${DURATION:-1} THREADS=${THREADS:-4} PS_MODE=${PS_MODE:-disable} ROUNDS=${ROUNDS:-1}
PORT=${PORT:-33098} OUT=${OUT:-/tmp/bench-instr}
for t in mariadbd mariadb-install-db sysbench tcpdump valgrind callgrind_annotate; do
  command -v "$t" >/dev/null || { echo "replay-instr.sh: $t not installed" >&2; exit 1; }
done
# shellcheck source=bench/lib/scratch-sysbench.sh
. "$(dirname "$0")/lib/scratch-sysbench.sh"

printf '\n| run | binary | queries | replay thread instr. | per query | reader thread instr. | per query |\n'
printf '|---|---|---:|---:|---:|---:|---:|\n'
for r in $(seq "$ROUNDS"); do
  for b in "${!BINS[@]}"; do
    rm -f "$OUT"/cg.*
    # The password goes through the environment: with it in --target, mrte re-executes itself.
    MRTE_TARGET_PASSWORD=sbtest valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
      --dump-instr=no --separate-threads=yes "${BINS[$b]}" replay -r "$PCAP" -p "$PORT" \
      --target "mysql://sbtest@127.0.0.1:$PORT/sbtest" --read-only --speed max --quiet \
      --report "$OUT/report.json" >/dev/null 2>"$OUT/valgrind.log"
    # Kept per binary: the last round's reports can be compared (prod's side is the same capture).
    cp "$OUT/report.json" "$OUT/report.$((b + 1)).json"
    python3 - "$OUT" "$r" "$((b + 1)) $(basename "${BINS[$b]}")" <<'EOF'
import glob, json, re, sys
out, run, label = sys.argv[1:4]
r = json.load(open(f"{out}/report.json"))
q = r["replayed"]["commands"]
errs = sum(r["errors"].values())
threads = {}
for f in glob.glob(f"{out}/cg.*-*"):
    n = int(f.rsplit("-", 1)[1])
    total = next((int(l.split()[1]) for l in open(f) if l.startswith("summary:")), 0)
    threads[n] = total
# Thread 1 runs the replay runtime; the busiest other thread is the pcap reader.
main = threads.get(1, 0)
reader = max((v for k, v in threads.items() if k != 1), default=0)
print(f"| {run} | ({label}) | {q} | {main:,} | {main / q:,.0f} | {reader:,} | {reader / q:,.0f} |"
      + (f" ({errs} errors)" if errs else ""))
EOF
  done
done
