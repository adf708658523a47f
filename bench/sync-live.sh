#!/usr/bin/env bash
# Live --sync none / commit / commit-nohint on the lab (issue 11): for each mode, test becomes a
# copy of prod, `mrte run --sync MODE` replays sysbench (WORKLOAD, THREADS, SECS, SBARGS) as it runs
# on prod, then CHECKSUM TABLE of every sbtest table is compared and the report lines printed.
#   bench/sync-live.sh [MODE...]   (default: none commit commit-nohint); MRTE (target/release/mrte)
# Reports in OUT (/tmp/mrte-sync-live).
set -uo pipefail
cd "$(dirname "$0")/.."
MRTE=${MRTE:-$PWD/target/release/mrte}
OUT=${OUT:-/tmp/mrte-sync-live}; mkdir -p "$OUT"
[ $# -gt 0 ] || set -- none commit commit-nohint
exec 9>/tmp/mrte-lab.lock; flock 9
until (set -C; : > /var/tmp/mrte-lab.lock) 2>/dev/null; do sleep 1; done
trap 'scripts/lab.sh down >/dev/null 2>&1; rm -f /var/tmp/mrte-lab.lock' EXIT
scripts/lab.sh down >/dev/null 2>&1
scripts/lab.sh up >/dev/null 2>&1 || { echo lab up failed; exit 1; }
. /var/tmp/mrte-lab/env
cks() { mariadb --no-defaults -S "$1" -uroot -N -e "CHECKSUM TABLE $(seq -s, -f 'sbtest.sbtest%g' 1 $TABLES)" | awk '{print $2}' | tr '\n' ' '; }
for mode in "$@"; do
  mariadb --no-defaults -S $TEST_SOCK -uroot -e "DROP DATABASE IF EXISTS sbtest"
  mariadb-dump --no-defaults -S $PROD_SOCK -uroot --databases sbtest --single-transaction | mariadb --no-defaults -S $TEST_SOCK -uroot
  extra=(--sync ${mode%-nohint})
  [ "$mode" = commit-nohint ] && extra+=(--sync-no-hint)
  ip netns exec $CAP_NS $MRTE run -i $MIRROR_IF --source pcap --target "mysql://$DB_USER:$DB_PASS@$TEST_ADDR:$TEST_PORT/sbtest" \
    --ring 1048576 --quiet --duration $(( ${SECS:-8} + 6 )) "${extra[@]}" --report $OUT/$mode.json >$OUT/$mode.txt 2>$OUT/$mode.err &
  p=$!
  sleep 2
  DURATION=${SECS:-8} THREADS=${THREADS:-8} WORKLOAD=${WORKLOAD:-oltp_read_write} scripts/lab.sh load ${SBARGS:-} > $OUT/$mode.sb 2>&1
  wait $p
  a=$(cks $PROD_SOCK); b=$(cks $TEST_SOCK)
  echo "== $mode: prod [$a] test [$b] $( [ "$a" = "$b" ] && echo EQUAL || echo DIFFER)"
  grep -E "queries:|ignored errors" $OUT/$mode.sb
  grep -E "divergence|sync:|timeout:|accounting|books|replayed" $OUT/$mode.txt | head -20
done
