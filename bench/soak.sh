#!/usr/bin/env bash
# Soak test: DURATION seconds of `mrte run` on the SPAN lab under sysbench oltp_read_write with
# connection churn (each sysbench thread reconnects every RECONNECT events, bench/soak_churn.lua).
# mrte's RSS and CPU are sampled each second into $OUT/soak.csv and plotted to $OUT/soak.png
# (gnuplot, else python3 matplotlib); the script prints the RSS trend after warm-up. Beside them,
# from mrte's /metrics (port METRICS, inside the capture namespace), the sizes that could grow:
# sessions open in the capture table, sessions being replayed, test connections open, commands
# captured but neither taken by the player nor dropped by a ring (queued in the rings; ring drops
# are counted in events, so this is approximate), lag behind schedule.
# Not run in CI. Needs root; the lab is shared, so run it under its lock (the script also takes
# /var/tmp/mrte-lab.lock, as the Rust lab tests do):
#   flock /tmp/mrte-lab.lock bench/soak.sh
# Env: DURATION (600), WARMUP (60), THREADS (4), RECONNECT (20), OUT (target/soak),
#      MRTE (target/release/mrte, built if missing), RUN_ARGS (extra `mrte run` flags),
#      METRICS (9465).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600} WARMUP=${WARMUP:-60} THREADS=${THREADS:-4} RECONNECT=${RECONNECT:-20}
OUT=${OUT:-target/soak} MRTE=${MRTE:-target/release/mrte} METRICS=${METRICS:-9465}
[ "$(id -u)" = 0 ] || { echo "soak: needs root (lab namespaces)" >&2; exit 2; }
[ -x "$MRTE" ] || cargo build --release -p mrte
mkdir -p "$OUT"
CSV=$OUT/soak.csv PNG=$OUT/soak.png

command -v gnuplot >/dev/null || { . scripts/lib/deps.sh; mrte_install_plot_deps || true; }

# tests/lab.rs and capture/tests/live_xdp.rs serialise on this file (created exclusively).
LAB_LOCK=/var/tmp/mrte-lab.lock
for i in $(seq 1800); do (set -o noclobber; echo $$ >"$LAB_LOCK") 2>/dev/null && break; sleep 0.5; done
[ "$(cat "$LAB_LOCK" 2>/dev/null)" = $$ ] || { echo "soak: $LAB_LOCK held for 15 min" >&2; exit 1; }
MRTE_PID=
cleanup() {
  [ -n "$MRTE_PID" ] && kill "$MRTE_PID" 2>/dev/null || true
  scripts/lab.sh down || true
  rm -f "$LAB_LOCK"
}
trap cleanup EXIT
scripts/lab.sh up

# The password goes through the environment, never the command line.
MRTE_TARGET_PASSWORD=sbtest ip netns exec mrte-cap "$MRTE" run -i span0 --source pcap \
  --target mysql://sbtest@198.18.1.2:3306/sbtest --ring 1048576 --quiet \
  --duration $(( DURATION + 15 )) --report "$OUT/report.json" --metrics "$METRICS" ${RUN_ARGS:-} \
  >"$OUT/mrte.out" 2>"$OUT/mrte.err" &
MRTE_PID=$!
sleep 2

# capture_sessions,replay_sessions,test_connections,queued_commands,lag_s from /metrics.
sizes() {
  ip netns exec mrte-cap curl -s --max-time 1 "http://127.0.0.1:$METRICS/metrics" 2>/dev/null | awk '
    /^mrte_capture_active_sessions / { cs = $2 } /^mrte_replay_active_sessions / { rs = $2 }
    /^mrte_replay_connections_open / { co = $2 } /^mrte_replay_lag_seconds / { lag = $2 }
    /^mrte_books_commands_total\{fate="captured"\}/ { cap = $2 }
    /^mrte_books_commands_total\{fate="taken"\}/ { tk = $2 } /^mrte_ring_drops_total / { rd = $2 }
    END { printf "%d,%d,%d,%d,%.2f", cs, rs, co, cap - tk - rd, lag }'
}
sample() {
  local pid=$1 hz t0 prev_ticks prev_t now ticks rss cpu
  hz=$(getconf CLK_TCK)
  t0=$(date +%s.%N) prev_t=$t0
  prev_ticks=$(awk '{print $14+$15}' "/proc/$pid/stat")
  echo "t_s,rss_mib,cpu_pct,capture_sessions,replay_sessions,test_connections,queued_commands,lag_s" >"$CSV"
  while [ -r "/proc/$pid/stat" ]; do
    sleep 1
    now=$(date +%s.%N)
    ticks=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null) || break
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
    cpu=$(echo "($ticks - $prev_ticks) / $hz / ($now - $prev_t) * 100" | bc -l)
    printf '%.1f,%.1f,%.1f,%s\n' "$(echo "$now - $t0" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$cpu" \
      "$(sizes)" >>"$CSV"
    prev_ticks=$ticks prev_t=$now
  done
}
sample "$MRTE_PID" &
SAMPLER=$!

ip netns exec mrte-app sysbench bench/soak_churn.lua --db-driver=mysql \
  --mysql-host=198.18.0.2 --mysql-port=3306 --mysql-user=sbtest --mysql-password=sbtest \
  --tables="${TABLES:-4}" --table-size="${TABLE_SIZE:-10000}" --threads="$THREADS" \
  --time="$DURATION" --reconnect="$RECONNECT" --report-interval=60 run | tee "$OUT/sysbench.out"

wait "$MRTE_PID" || echo "soak: mrte run exited with $?" >&2
MRTE_PID=
wait "$SAMPLER" || true
tail -n 12 "$OUT/mrte.out"

if command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal png size 1000,800
set output "$PNG"
set datafile separator ","
set key autotitle columnhead
set multiplot layout 2,1
set xlabel "seconds"
set ylabel "RSS MiB"
set y2label "CPU %"
set y2tics
set title "mrte run soak: ${DURATION} s, ${THREADS} threads, reconnect every ${RECONNECT} events"
plot "$CSV" using 1:2 with lines axes x1y1 title "RSS MiB", "$CSV" using 1:3 with lines axes x1y2 title "CPU %"
set title "what could grow (from /metrics)"
set ylabel "sessions, connections"
set y2label "queued commands (thousands)"
plot "$CSV" using 1:5 with lines axes x1y1 title "replay sessions", \
  "$CSV" using 1:6 with lines axes x1y1 title "test connections", \
  "$CSV" using 1:(\$7/1000) with lines axes x1y2 title "queued commands / 1000"
unset multiplot
GP
elif python3 -c 'import matplotlib' 2>/dev/null; then
  python3 - "$CSV" "$PNG" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
t = [float(r["t_s"]) for r in rows]
fig, ax = plt.subplots(figsize=(10, 5))
ax.plot(t, [float(r["rss_mib"]) for r in rows], label="RSS MiB")
ax.set_xlabel("seconds"); ax.set_ylabel("RSS MiB")
ax2 = ax.twinx(); ax2.plot(t, [float(r["cpu_pct"]) for r in rows], color="tab:red", label="CPU %")
ax2.set_ylabel("CPU %")
fig.savefig(sys.argv[2])
PY
else
  echo "soak: no gnuplot nor matplotlib (apt-get install gnuplot-nox): CSV only" >&2
fi

# RSS trend after warm-up: least-squares slope, MiB per hour.
awk -F, -v w="$WARMUP" 'NR > 1 && $1 >= w { n++; sx += $1; sy += $2; sxx += $1*$1; sxy += $1*$2;
    if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
  END { if (n < 2) { print "soak: too few samples after warm-up"; exit }
    s = (n*sxy - sx*sy) / (n*sxx - sx*sx);
    printf "soak: %d samples after %d s warm-up: RSS %.1f..%.1f MiB, trend %+.2f MiB/hour\n", n, w, min, max, s*3600 }' "$CSV"
echo "soak: $CSV $PNG $OUT/report.json"
