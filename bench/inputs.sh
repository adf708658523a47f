#!/usr/bin/env bash
# Records the decode benchmark's sysbench inputs off the lab's mirror port (bench/README "Inputs"):
# oltp_read_write with the text protocol and with prepared statements, OUT/rw_text.pcap and
# OUT/rw_ps.pcap, each bounded by a frame count. Takes the lab lock like scripts/record-fixtures.sh.
# Usage: flock /tmp/mrte-lab.lock bench/inputs.sh [OUT]   (default /tmp/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/bench}
FRAMES=${FRAMES:-75000}
mkdir -p "$OUT"
LAB_LOCK=/var/tmp/mrte-lab.lock
for _ in $(seq 1800); do (set -o noclobber; echo $$ >"$LAB_LOCK") 2>/dev/null && break; sleep 0.5; done
[ "$(cat "$LAB_LOCK" 2>/dev/null)" = $$ ] || { echo "inputs: $LAB_LOCK held for 15 min" >&2; exit 1; }
brought_up=0
cleanup() { [ "$brought_up" = 1 ] && scripts/lab.sh down; rm -f "$LAB_LOCK"; }
trap cleanup EXIT
if [ ! -f /var/tmp/mrte-lab/env ]; then scripts/lab.sh up; brought_up=1; fi
. /var/tmp/mrte-lab/env
record() { # name ps-mode
  local err=/tmp/mrte-inputs-tcpdump.$$
  ip netns exec "$CAP_NS" tcpdump -i "$MIRROR_IF" -B 262144 -s 0 -U -n -c "$FRAMES" -w "$OUT/$1.pcap" \
    "tcp port $PROD_PORT" >/dev/null 2>"$err" &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$err" 2>/dev/null && break; sleep 0.1; done
  rm -f "$err"
  WORKLOAD=oltp_read_write PS_MODE=$2 DURATION=${DURATION:-20} THREADS=4 scripts/lab.sh load >/dev/null || true
  sleep 1; kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
record rw_text disable
record rw_ps auto
capinfos -c "$OUT"/rw_text.pcap "$OUT"/rw_ps.pcap
