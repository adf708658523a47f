#!/usr/bin/env bash
# --sync none vs --sync commit (issue 11): record sysbench oltp_read_write off the lab's mirror
# port, with a snapshot of prod taken just before; then, for each mode, restore test from the
# snapshot, `mrte replay --speed max --sync MODE` the capture, and compare CHECKSUM TABLE of every
# sbtest table with prod's (which ended where the capture ended). Prints one row per mode: tables
# that differ, divergences (test-only/prod-only errors, row or affected-row mismatches), sync
# timeouts, replayed commands, wall time and QPS.
#
#   bench/sync.sh [MRTE]     (default target/release/mrte; the lab must be down or free)
# Env: THREADS (8), SECS (10), ROUNDS (1), MODES ("none commit"), OUT (/tmp/mrte-sync-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
MRTE=$(realpath "${1:-target/release/mrte}")
THREADS=${THREADS:-8} SECS=${SECS:-10} ROUNDS=${ROUNDS:-1} MODES=${MODES:-"none commit"}
OUT=${OUT:-/tmp/mrte-sync-bench}
mkdir -p "$OUT"
exec 9>/tmp/mrte-lab.lock; flock 9
until (set -C; : >/var/tmp/mrte-lab.lock) 2>/dev/null; do sleep 1; done
trap 'scripts/lab.sh down >/dev/null 2>&1; rm -f /var/tmp/mrte-lab.lock' EXIT
scripts/lab.sh down >/dev/null 2>&1 || true
scripts/lab.sh up >/dev/null 2>&1
. /var/tmp/mrte-lab/env
tables=$(seq -s, -f 'sbtest.sbtest%g' 1 "$TABLES")
cks() { mariadb --no-defaults -S "$1" -uroot -N -e "CHECKSUM TABLE $tables" | awk '{print $2}'; }

OUT="$OUT/snapshot.sql" scripts/snapshot.sh dump >/dev/null
ip netns exec "$CAP_NS" "$MRTE" record -i "$MIRROR_IF" --source pcap --duration $((SECS + 4)) \
  -w "$OUT/rw.pcap" >/dev/null 2>"$OUT/record.log" &
rec=$!
sleep 2
DURATION=$SECS THREADS=$THREADS WORKLOAD=oltp_read_write scripts/lab.sh load >"$OUT/sysbench.txt" 2>&1
wait $rec
prod=$(cks "$PROD_SOCK")
echo "capture: $(grep -E '^ +queries:' "$OUT/sysbench.txt" | awk '{print $2}') queries, $(grep -E '^ +transactions:' "$OUT/sysbench.txt" | awk '{print $2}') transactions, $THREADS threads, ${SECS}s"
printf '%-7s %5s %10s %8s %8s %10s %10s %7s %10s %8s %8s\n' mode round tbl_differ test_only prod_only rows_mism results_mm timeouts replayed wall_s qps
for r in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    OUT="$OUT/snapshot.sql" scripts/snapshot.sh restore 2>/dev/null
    t0=$(date +%s.%N)
    ip netns exec "$CAP_NS" "$MRTE" replay -r "$OUT/rw.pcap" --speed max --sync "$mode" --quiet \
      --target "mysql://$DB_USER:$DB_PASS@$TEST_ADDR:$TEST_PORT/sbtest" \
      --report "$OUT/$mode-$r.json" >"$OUT/$mode-$r.txt" 2>&1 || true
    t1=$(date +%s.%N)
    differ=$(paste <(echo "$prod") <(cks "$TEST_SOCK") | awk '$1 != $2' | wc -l)
    python3 - "$OUT/$mode-$r.json" "$mode" "$r" "$differ" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mode, rnd, differ, t0, t1 = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
e = r["errors"]
g = (r.get("sync") or {}).get("gate") or {}
n = r["replayed"]["commands"]
wall = r.get("duration_s") or (t1 - t0)
mm = r.get("results", {}).get("mismatch", 0)
print(f'{mode:<7} {rnd:>5} {differ:>10} {e["test_only"]:>8} {e["prod_only"]:>8} {r["rows_mismatch"]:>10} {mm:>10} {g.get("sync_timeouts", "-"):>7} {n:>10} {wall:>8.2f} {n / wall:>8.0f}')
PY
  done
done
