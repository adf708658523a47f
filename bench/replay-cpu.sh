#!/usr/bin/env bash
# Client CPU per query, mrte replay against sysbench's own, on a throwaway MariaDB on 127.0.0.1
# (no lab needed; bench/README "Client CPU per query").
#
# Starts a scratch mariadbd (own datadir and port, removed at exit), loads sysbench's tables,
# records DURATION s of sysbench oltp_read_only off lo with tcpdump, then ROUNDS times, one after
# the other: sysbench run (same threads, workload and ps-mode as captured) and
# `mrte replay --speed max --read-only` of the capture, both against that server. Prints, per
# run, queries, CPU seconds (user + system, from /usr/bin/time), CPU µs per query and its user /
# system split; with
# PERF=1 also `perf stat` task-clock, context switches, wake-ups of other tasks (sched_waking: the
# server's threads, woken by each query that finds them asleep) and IPIs sent (ipi_send_cpu: a
# wake-up or preemption on the other vCPU) of mrte per query. MRTE_ARGS: extra `mrte replay`
# flags for every mrte run (e.g. `--replay-threads 4`). With TURNAROUND=1, tcpdump records lo
# during the last round's runs (headers only) and bench/lib/turnaround.py prints each client's
# turnaround: server's answer → the same session's next command.
#
# Usage: bench/replay-cpu.sh [MRTE_BIN [MRTE_BIN2]]  (a second binary runs right after the first in
# each round, on the same capture: interleaved before/after figures)
# Env: DURATION (5), THREADS (4), PS_MODE (disable), ROUNDS (3), PORT (33099), OUT (/tmp/bench-cpu),
#      CPU (taskset list for both clients, e.g. 0; default: unpinned), PERF (0), MRTE_ARGS (),
#      TURNAROUND (0)
set -euo pipefail
MRTE=$(realpath "${1:-target/release/mrte}")
BINS=("$MRTE")
[ -n "${2:-}" ] && BINS+=("$(realpath "$2")")
DURATION=${DURATION:-5} THREADS=${THREADS:-4} PS_MODE=${PS_MODE:-disable} ROUNDS=${ROUNDS:-3}
PORT=${PORT:-33099} OUT=${OUT:-/tmp/bench-cpu} PERF=${PERF:-0} TURNAROUND=${TURNAROUND:-0}
read -r -a XARGS <<<"${MRTE_ARGS:-}"
PIN=()
[ -n "${CPU:-}" ] && PIN=(taskset -c "$CPU")
for t in mariadbd mariadb-install-db sysbench tcpdump; do
  command -v "$t" >/dev/null || { echo "replay-cpu.sh: $t not installed" >&2; exit 1; }
done
# shellcheck source=bench/lib/scratch-sysbench.sh
. "$(dirname "$0")/lib/scratch-sysbench.sh"

PERF_EVENTS=task-clock,context-switches,sched:sched_waking,ipi:ipi_send_cpu
# perf_lines QUERIES FILE: the perf stat counts in FILE per query.
perf_lines() {
  awk -F, -v q="$1" '$3 ~ /task-clock|context-switches|sched_waking|ipi_send_cpu/ && $1 ~ /^[0-9.]+$/ {
    if ($2 == "msec") printf "    perf %s: %.1f µs per query\n", $3, $1 * 1000 / q
    else printf "    perf %s: %.3f per query\n", $3, $1 / q }' "$2"
}

# turn_start NAME / turn_stop NAME: record lo around one run of the last round, then print.
TD=""
turn_start() {
  [ "$TURNAROUND" = 1 ] && [ "$r" = "$ROUNDS" ] || return 0
  tcpdump -i lo -s 96 -B 262144 -n -w "$OUT/turn.$1.pcap" "tcp port $PORT" 2>"$OUT/turn.log" &
  TD=$!
  for _ in $(seq 50); do grep -q "listening on" "$OUT/turn.log" 2>/dev/null && break; sleep 0.1; done
}
turn_stop() {
  [ -n "$TD" ] || return 0
  sleep 0.3; kill "$TD"; wait "$TD" 2>/dev/null || true; TD=""
  echo "    $1 $(python3 "$(dirname "$0")/lib/turnaround.py" "$OUT/turn.$1.pcap" "$PORT")"
}

printf '\n| run | client | queries | CPU s | CPU µs/query | user / system µs/query |\n'
printf '|---|---|---:|---:|---:|---:|\n'
for r in $(seq "$ROUNDS"); do
  SBPRE=("${PIN[@]}")
  [ "$PERF" = 1 ] && SBPRE=("${PIN[@]}" perf stat -x, -o "$OUT/perf.sb.$r" -e "$PERF_EVENTS")
  turn_start sysbench
  res=$("${SBPRE[@]}" /usr/bin/time -f 'cpu %U %S' "${SB[@]}" --time="$DURATION" run 2>&1)
  q=$(awk '/queries:/ {print $2; exit}' <<<"$res")
  read -r u s < <(awk '/^cpu / {print $2, $3}' <<<"$res")
  python3 -c "q=$q; u=$u; s=$s; c=u+s; print(f'| $r | sysbench | {q} | {c:.2f} | {c/q*1e6:.1f} | {u/q*1e6:.1f} / {s/q*1e6:.1f} |')"
  [ "$PERF" = 1 ] && perf_lines "$q" "$OUT/perf.sb.$r"
  turn_stop sysbench

  for b in "${!BINS[@]}"; do
  label="mrte replay"
  [ "${#BINS[@]}" -gt 1 ] && label="mrte replay ($((b + 1)))"
  PRE=("${PIN[@]}" /usr/bin/time -f 'cpu %U %S')
  [ "$PERF" = 1 ] && PRE=("${PIN[@]}" perf stat -x, -o "$OUT/perf.$r" -e "$PERF_EVENTS"
    /usr/bin/time -f 'cpu %U %S')
  turn_start "mrte$((b + 1))"
  res=$("${PRE[@]}" "${BINS[$b]}" replay -r "$PCAP" -p "$PORT" --target "mysql://sbtest:sbtest@127.0.0.1:$PORT/sbtest" \
    --read-only --speed max --quiet --report "$OUT/report.json" "${XARGS[@]}" 2>&1 >/dev/null)
  read -r u s < <(awk '/^cpu / {print $2, $3}' <<<"$res")
  python3 - "$OUT/report.json" "$u" "$s" "$r" "$label" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); u = float(sys.argv[2]); s = float(sys.argv[3]); cpu = u + s
q = r["replayed"]["commands"]; errs = sum(r["errors"].values())
print(f"| {sys.argv[4]} | {sys.argv[5]} | {q} | {cpu:.2f} | {cpu/q*1e6:.1f} | {u/q*1e6:.1f} / {s/q*1e6:.1f} |"
      + (f" ({errs} errors)" if errs else ""))
EOF
  if [ "$PERF" = 1 ]; then
    q=$(python3 -c "import json; print(json.load(open('$OUT/report.json'))['replayed']['commands'])")
    perf_lines "$q" "$OUT/perf.$r"
  fi
  turn_stop "mrte$((b + 1))"
  done
done
