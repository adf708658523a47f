#!/usr/bin/env bash
# Replay throughput against sysbench's own QPS on the same test server (issue 4).
#
# Records a sysbench capture off the lab's mirror port with `mrte record`, then, for each layout,
# runs sysbench directly against the lab's test server and `mrte replay --speed max` of the capture
# against the same server, and prints QPS, the ratio, and CPU per query of client and server.
#
# Layouts:
#   shared  everything floats on both cores (replayer, kernel and mariadbd compete)
#   split   the test server pinned to CPU 1, the client (sysbench or mrte) to CPU 0: the test server
#           on its own core, as when the replayer runs on its own host
#
# Usage: bench/replay.sh [MRTE_BIN]   (lab must be up: scripts/lab.sh up)
# Env: DURATION (10), THREADS (4), PS_MODE (disable), ROUNDS (2), LAYOUTS ("shared split")
set -euo pipefail
MRTE=${1:-target/release/mrte}
DURATION=${DURATION:-10} THREADS=${THREADS:-4} PS_MODE=${PS_MODE:-disable} ROUNDS=${ROUNDS:-2}
LAYOUTS=${LAYOUTS:-shared split}
# shellcheck disable=SC1091
. /var/tmp/mrte-lab/env
OUT=${OUT:-/tmp/bench}
mkdir -p "$OUT"
PCAP=$OUT/replay-$PS_MODE.pcap
CPUS=$(nproc)
[ "$CPUS" -ge 2 ] || { echo "replay.sh: needs 2 CPUs" >&2; exit 1; }
SRV_PID=$(cat "$LAB_DIR/test.pid")
TARGET="mysql://$DB_USER:$DB_PASS@$TEST_ADDR:$TEST_PORT/sbtest"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pin_server() { for t in /proc/"$SRV_PID"/task/*; do taskset -p -c "$1" "${t##*/}" >/dev/null; done; }
client_cpu() { [ "$1" = split ] && echo 0 || echo "0-$((CPUS - 1))"; }

echo "== recording ${DURATION}s of sysbench oltp_read_only ($THREADS threads, ps-mode $PS_MODE) off $MIRROR_IF"
ip netns exec "$CAP_NS" "$MRTE" record -i "$MIRROR_IF" -w "$PCAP" --duration $((DURATION + 3)) 2>/dev/null &
rec=$!
sleep 1
DURATION=$DURATION THREADS=$THREADS PS_MODE=$PS_MODE scripts/lab.sh load >/dev/null 2>&1
wait "$rec"
captured=$("$MRTE" inspect -r "$PCAP" -f summary | python3 -c \
  'import json,sys; c=json.load(sys.stdin)["commands"]; print(c.get("COM_QUERY",0)+c.get("COM_STMT_EXECUTE",0))')
echo "captured $captured queries in $PCAP"

printf '\n| layout | client | queries | wall s | QPS | client CPU µs/query | server CPU µs/query |\n|---|---|---:|---:|---:|---:|---:|\n'
trap 'pin_server 0-$((CPUS - 1))' EXIT
for layout in $LAYOUTS; do
  if [ "$layout" = split ]; then pin_server 1; else pin_server "0-$((CPUS - 1))"; fi
  cc=$(client_cpu "$layout")
  for _ in $(seq "$ROUNDS"); do
    s0=$(ticks "$SRV_PID")
    t0=$(date +%s.%N)
    res=$(ip netns exec "$CAP_NS" taskset -c "$cc" /usr/bin/time -f 'cpu %U %S' sysbench oltp_read_only \
      --db-driver=mysql --mysql-host="$TEST_ADDR" --mysql-port="$TEST_PORT" --mysql-user="$DB_USER" \
      --mysql-password="$DB_PASS" --tables="$TABLES" --table-size="$TABLE_SIZE" --threads="$THREADS" \
      --time="$DURATION" --db-ps-mode="$PS_MODE" run 2>&1)
    t1=$(date +%s.%N)
    s1=$(ticks "$SRV_PID")
    q=$(awk '/queries:/ {print $2; exit}' <<<"$res")
    secs=$(awk '/total time:/ {sub("s","",$3); print $3; exit}' <<<"$res")
    cpu=$(awk '/^cpu / {print $2 + $3}' <<<"$res")
    python3 -c "q=$q; s=$secs; c=$cpu; sv=($s1-$s0)/100; print(f'| {\"$layout\"} | sysbench | {q} | {s:.2f} | {q/s:,.0f} | {c/q*1e6:.1f} | {sv/q*1e6:.1f} |')"

    s0=$(ticks "$SRV_PID")
    res=$(ip netns exec "$CAP_NS" taskset -c "$cc" /usr/bin/time -f 'cpu %U %S' "$MRTE" replay -r "$PCAP" \
      --target "$TARGET" --read-only --speed max --quiet --report "$OUT/replay-report.json" 2>&1 >/dev/null)
    s1=$(ticks "$SRV_PID")
    cpu=$(awk '/^cpu / {print $2 + $3}' <<<"$res")
    python3 - "$OUT/replay-report.json" "$cpu" "$((s1 - s0))" "$layout" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); cpu = float(sys.argv[2]); sv = int(sys.argv[3]) / 100
q = r["replayed"]["commands"]; secs = r["duration_s"]
errs = sum(r["errors"].values())
print(f"| {sys.argv[4]} | mrte replay | {q} | {secs:.2f} | {q/secs:,.0f} | {cpu/q*1e6:.1f} | {sv/q*1e6:.1f} |"
      + (f" ({errs} errors)" if errs else ""))
EOF
  done
done
