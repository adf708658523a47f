#!/usr/bin/env bash
# The appliance on the built-in lab: installs, builds, brings the SPAN lab up (prod and test MariaDB
# seeded identically), runs sysbench on prod while `mrte run` captures the mirror port and replays
# every session on test, prints the report, and brings the lab down.
#
# Knobs: DURATION (30 s of sysbench), THREADS (4), WORKLOAD (oltp_read_only), PS_MODE (disable|auto),
#        TEST_BUFFER_POOL (e.g. 8M: make the test server slower than prod), READ_ONLY (1 for
#        oltp_read_only, else 0), SYNC (commit|none, for writes), OUT (./out), KEEP_LAB (0).
# A workload that writes (WORKLOAD=oltp_read_write) starts test from a snapshot of prod taken
# just before the capture (scripts/snapshot.sh) and ends by comparing CHECKSUM TABLE of every
# sbtest table on prod and test.
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
[ "$WORKLOAD" = oltp_read_only ] || READ_ONLY=${READ_ONLY:-0}
[ "${READ_ONLY:-1}" = 1 ] || ro=(--sync "${SYNC:-commit}")
if [ "${READ_ONLY:-1}" != 1 ]; then
  echo "== snapshot of prod (scripts/snapshot.sh), restored into test"
  pos=$(OUT="$OUT/snapshot.sql" scripts/snapshot.sh dump)
  OUT="$OUT/snapshot.sql" scripts/snapshot.sh restore
  ro+=(--snapshot-pos "$pos")
fi
echo "== mrte run on $MIRROR_IF (namespace $CAP_NS), replaying into $TEST_ADDR:$TEST_PORT"
ip netns exec "$CAP_NS" "$MRTE" run -i "$MIRROR_IF" \
  --target "mysql://$DB_USER:$DB_PASS@$TEST_ADDR:$TEST_PORT/sbtest" "${ro[@]}" \
  --duration $((DURATION + 6)) --report "$OUT/report.json" --html "$OUT/report.html" \
  >"$OUT/report.txt" 2>"$OUT/live.log" &
mrte_pid=$!
sleep 2
if [ "${READ_ONLY:-1}" != 1 ]; then
  now=$(scripts/snapshot.sh pos)
  if [ "$now" = "$pos" ]; then
    echo "== capture started where the snapshot was taken ($pos)"
  else
    echo "== WARNING: prod moved from $pos to $now between the snapshot and the capture's start"
  fi
fi

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
if [ "${READ_ONLY:-1}" != 1 ]; then
  echo
  echo "== CHECKSUM TABLE, prod vs test"
  tables=$(seq -s, -f 'sbtest.sbtest%g' 1 "$TABLES")
  cks() { mariadb --no-defaults -S "$1" -uroot -N -e "CHECKSUM TABLE $tables"; }
  paste <(cks "$PROD_SOCK") <(cks "$TEST_SOCK" | awk '{print $2}') |
    awk '{ d = ($2 == $3) ? "equal" : "DIFFER"; if (d != "equal") bad++; printf "%-16s prod %-12s test %-12s %s\n", $1, $2, $3, d }
         END { if (bad) print bad " table(s) differ"; else print "every table equals prod'"'"'s" }'
fi
exit $rc
