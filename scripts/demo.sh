#!/usr/bin/env bash
# The appliance on the built-in lab: installs, builds, brings the SPAN lab up (prod and test MariaDB
# seeded identically), runs sysbench on prod while `mrte run` captures the mirror port and replays
# every session on test, prints the report, and brings the lab down.
#
# Knobs: DURATION (30 s of sysbench), THREADS (4), WORKLOAD (oltp_read_only), PS_MODE (disable|auto),
#        TEST_BUFFER_POOL (e.g. 8M: make the test server slower than prod), READ_ONLY (1),
#        OUT (./out), KEEP_LAB (0).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
mrte_install_deps

DURATION=${DURATION:-30} THREADS=${THREADS:-4} WORKLOAD=${WORKLOAD:-oltp_read_only}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export DURATION THREADS WORKLOAD

echo "== building mrte (release)"
cargo build --release -q -p mrte
MRTE=$PWD/target/release/mrte

echo "== bringing the lab up (TEST_BUFFER_POOL=${TEST_BUFFER_POOL:-128M})"
scripts/lab.sh down >/dev/null 2>&1 || true
[ "${KEEP_LAB:-0}" = 1 ] || trap 'scripts/lab.sh down >/dev/null 2>&1 || true' EXIT
scripts/lab.sh up
. /var/tmp/mrte-lab/env

ro=(--read-only)
[ "${READ_ONLY:-1}" = 1 ] || ro=()
echo "== mrte run on $MIRROR_IF (namespace $CAP_NS), replaying into $TEST_ADDR:$TEST_PORT"
ip netns exec "$CAP_NS" "$MRTE" run -i "$MIRROR_IF" \
  --target "mysql://$DB_USER:$DB_PASS@$TEST_ADDR:$TEST_PORT/sbtest" "${ro[@]}" \
  --duration $((DURATION + 6)) --report "$OUT/report.json" --html "$OUT/report.html" \
  >"$OUT/report.txt" 2>"$OUT/live.log" &
mrte_pid=$!
sleep 2

echo "== sysbench $WORKLOAD on prod: $THREADS threads, ${DURATION}s"
scripts/lab.sh load | tee "$OUT/sysbench.txt" | grep -E "queries:|transactions:|ignored errors:|95th"
wait "$mrte_pid"
rc=$?

echo "== live line (last 5 s)"
tail -5 "$OUT/live.log"
echo
cat "$OUT/report.txt"
echo
echo "sysbench reported: $(grep -E '^ +queries:' "$OUT/sysbench.txt" | awk '{print $2}') queries"
echo "JSON report: $OUT/report.json"
echo "HTML report: $OUT/report.html"
echo "text report: $OUT/report.txt, live line log: $OUT/live.log"
exit $rc
