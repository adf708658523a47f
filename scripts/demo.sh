#!/usr/bin/env bash
# The appliance on the built-in lab: installs, builds, brings the SPAN lab up (prod and test MariaDB
# seeded identically), runs sysbench on prod while `mrte run` captures the mirror port and replays
# every session on test, prints the report, and brings the lab down.
#
# Knobs: DURATION (30 s of sysbench), THREADS (4), WORKLOAD (oltp_read_only), PS_MODE (disable|auto),
#        TEST_BUFFER_POOL (e.g. 8M: make the test server slower than prod), READ_ONLY (1 for
#        oltp_read_only, else 0), SYNC (commit|none, for writes), OUT (./out), KEEP_LAB (0),
#        MODE (single|cluster).
# MODE=cluster scales out over NATS JetStream (issue 12): `scripts/lab.sh nats` starts NATS_NODES
# (3: an R3 cluster; or 1) nats-server nodes in mrte-cap and two replay-host namespaces; the
# collector `mrte publish -i` captures the mirror port into stream `demo` (4 partitions), one
# `mrte play` on each replay host replays its partitions (0,1 and 2,3) into test, and
# `mrte report` merges both players' parts into one report. KILL_NODE=K SIGKILLs NATS node K
# halfway through sysbench (R3: nothing may be lost).
# A workload that writes (WORKLOAD=oltp_read_write) starts test from a snapshot of prod taken
# just before the capture (scripts/snapshot.sh) and ends by comparing CHECKSUM TABLE of every
# sbtest table on prod and test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
mrte_install_deps
[ "${MODE:-single}" != cluster ] || mrte_install_nats

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
if [ "${MODE:-single}" = cluster ]; then
  NATS_NODES=${NATS_NODES:-3}
  echo "== NATS JetStream: $NATS_NODES node(s) in $CAP_NS, replay hosts (scripts/lab.sh nats)"
  scripts/lab.sh nats "$NATS_NODES"
  . /var/tmp/mrte-lab/env
  replicas=1
  [ "$NATS_NODES" = 1 ] || replicas=3
  [ "${READ_ONLY:-1}" = 1 ] || ro=(--sync none ${ro[@]:2})
  echo "== collector: mrte publish -i $MIRROR_IF (namespace $CAP_NS) -> $NATS_URL, stream demo (R$replicas)"
  ip netns exec "$CAP_NS" "$MRTE" publish -i "$MIRROR_IF" --nats "$NATS_URL" --stream demo \
    --partitions 4 --replicas "$replicas" --duration $((DURATION + 6)) \
    >"$OUT/publish.json" 2>"$OUT/publish.log" &
  pub_pid=$!
  for _ in $(seq 50); do grep -q "publish .*cmd/s" "$OUT/publish.log" 2>/dev/null && break; sleep 0.2; done
  play_pids=()
  k=0
  for ns in $REPLAY_NS; do
    parts=$((2 * k)),$((2 * k + 1))
    [ "$k" -lt 2 ] || break
    echo "== player on $ns: partitions $parts -> $TEST_ADDR:$TEST_PORT"
    ip netns exec "$ns" "$MRTE" play --nats "$NATS_URL" --stream demo --partitions "$parts" \
      --name "$ns" --replicas "$replicas" "${ro[@]}" \
      --target "mysql://$DB_USER:$DB_PASS@$TEST_ADDR:$TEST_PORT/sbtest" \
      >"$OUT/play-$ns.txt" 2>"$OUT/play-$ns.log" &
    play_pids+=($!)
    k=$((k + 1))
  done
  if [ -n "${KILL_NODE:-}" ]; then
    ( sleep $((DURATION / 2)); scripts/lab.sh nats-kill "$KILL_NODE" ) &
  fi
  echo "== sysbench $WORKLOAD on prod: $THREADS threads, ${DURATION}s"
  scripts/lab.sh load | tee "$OUT/sysbench.txt" | grep -E "queries:|transactions:|ignored errors:|95th"
  rc=0
  wait "$pub_pid" || rc=$?
  echo "== collector"
  tail -2 "$OUT/publish.log"
  for p in "${play_pids[@]}"; do wait "$p" || rc=$?; done
  for ns in $REPLAY_NS; do
    [ -f "$OUT/play-$ns.log" ] && { echo "== player $ns"; tail -2 "$OUT/play-$ns.log"; }
  done
  echo "== mrte report (merged)"
  ip netns exec "$CAP_NS" "$MRTE" report --nats "$NATS_URL" --stream demo -f json -o "$OUT/report.json" 2>>"$OUT/report.log"
  ip netns exec "$CAP_NS" "$MRTE" report --nats "$NATS_URL" --stream demo -f html -o "$OUT/report.html" 2>>"$OUT/report.log"
  ip netns exec "$CAP_NS" "$MRTE" report --nats "$NATS_URL" --stream demo >"$OUT/report.txt" 2>>"$OUT/report.log" || rc=$?
  cat "$OUT/report.txt"
  echo
  echo "sysbench reported: $(grep -E '^ +queries:' "$OUT/sysbench.txt" | awk '{print $2}') queries"
  echo "reports: $OUT/report.{txt,json,html}; collector $OUT/publish.{json,log}; players $OUT/play-*.{txt,log}"
  exit $rc
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
