#!/usr/bin/env bash
# Capture loss and CPU per frame at fixed offered rates on the lab's mirror port (issue 3).
#
# `mrte-bench send` pushes a capture's frames out of mir0 (mrte-prod) with AF_XDP; they arrive on
# span0 (mrte-cap), where each capturer runs in turn at each rate. For every run it prints the
# frames sent, the frames the capturer kept, what it says it dropped, the veth's own drops (mir0
# TX dropped: loss before any socket), and the capturer's CPU (task-clock from `perf stat`: see
# `cpu` below) per frame sent. tcpreplay's top speed is printed as the reference sender. Each capturer also runs
# once with no traffic for as long (IDLE=0 skips it): its set-up and idle CPU, subtracted in the
# marginal column (what each frame costs once the capturer is running).
#
# Work done for a capturer outside its own process is counted too, the same way for every
# capturer: on a veth the receive path (generic XDP and the AF_XDP copy, or the packet socket's
# TPACKET copy and BPF filter, plus the stack behind it) runs in the NET_RX softirq raised by the
# sender's transmit, on the sender's CPU, and the kernel (tick accounting, no
# IRQ_TIME_ACCOUNTING) charges it to whichever task it interrupted, the sender itself, or to
# ksoftirqd when it is deferred. So each run also prints the sender's own CPU (same
# measure) and the ksoftirqd threads' CPU over the run, per frame sent, and the total
# (capturer + sender + ksoftirqd). The capturer `none` runs the sender alone (the frames go to
# span0's stack and are dropped there): the total of a capturer minus the total of `none` in the
# same run is everything that capturer costs the machine per frame.
#
# Usage: bench/capture.sh [TARGET_DIR]   (lab must be up: scripts/lab.sh up)
# Issue 13's comparison (live decode vs tcpdump at the sender's top rate, read-write sysbench):
#   PCAP=/tmp/bench/rw_text.pcap LOOPS=10 RATES=max CAPTURERS="inspect-xdp tcpdump" bench/capture.sh
# Env: PCAP (/tmp/bench/sysbench.pcap), LOOPS (5), RATES ("max 300000 100000"),
#      CAPTURERS ("xdp-skb xdp-drv pcap inspect-xdp tcpdump"; `none`: the sender alone; a mrte
#      capturer written NAME@DIR runs DIR/mrte instead of TARGET_DIR's, to compare two builds in
#      one run: CAPTURERS="inspect-xdp@/tmp/old inspect-xdp tcpdump"), OUT (/tmp/bench: scratch files),
#      CAP_CPU / SEND_CPU (pin the capturer / the sender to that CPU with taskset), HOGS (0: that many
#      CPU-bound `sh` loops on CAP_CPU during each measured run, ended by pid after it: a loaded
#      machine, reproducibly; the sender slows too, so lower WINDOW_PPS (50000: the slowest top rate
#      each run waits for) when kept + drops falls short of sent)
set -euo pipefail
BIN=${1:-target/release}
PCAP=${PCAP:-/tmp/bench/sysbench.pcap}
LOOPS=${LOOPS:-5}
RATES=${RATES:-max 300000 100000}
CAPTURERS=${CAPTURERS:-xdp-skb xdp-drv pcap inspect-xdp tcpdump}
OUT=${OUT:-/tmp/bench}
IDLE=${IDLE:-1}
HOGS=${HOGS:-0}
# The slowest top rate a run waits for (its window is frames / WINDOW_PPS + 5 s).
WINDOW_PPS=${WINDOW_PPS:-50000}
CAP_CPU=${CAP_CPU:-}
SEND_CPU=${SEND_CPU:-}
[ "$HOGS" = 0 ] || [ -n "$CAP_CPU" ] || { echo "capture.sh: HOGS needs CAP_CPU" >&2; exit 1; }
cap_pin=() send_pin=()
[ -z "$CAP_CPU" ] || cap_pin=(taskset -c "$CAP_CPU")
[ -z "$SEND_CPU" ] || send_pin=(taskset -c "$SEND_CPU")
declare -A idle_cpu
mkdir -p "$OUT"
[ -f "$PCAP" ] || { echo "capture.sh: $PCAP missing (see bench/README.md, Inputs)" >&2; exit 1; }

mir_drops() { ip netns exec mrte-prod cat /sys/class/net/mir0/statistics/tx_dropped; }
# CPU clock ticks (user + sys) of every ksoftirqd thread.
SOFTIRQD=$(pgrep '^ksoftirqd/' || true)
softirqd_ticks() {
  local t=0 p line
  for p in $SOFTIRQD; do
    read -r line <"/proc/$p/stat" || continue
    set -- ${line#*) }
    t=$((t + ${12} + ${13}))
  done
  echo "$t"
}
TICK=$(getconf CLK_TCK)
# CPU time of a command and its children: `perf stat`'s task-clock (the scheduler's exact
# run time) when perf is installed, else /usr/bin/time's user + sys (sampled at the tick, 10 ms
# resolution). Usage: "${cpu[@]}" FILE CMD...; cpu_s FILE prints seconds.
# cpu_sys FILE: the system part (perf's system_time, tick-sampled; /usr/bin/time's sys);
# cpu_cs FILE: context switches (perf only; empty without it).
if command -v perf >/dev/null; then
  cpu=(perf stat -x, -e task-clock,system_time,context-switches -o)
  cpu_s() { awk -F, '/task-clock/ {print $1 / 1000}' "$1"; }
  cpu_sys() { awk -F, '/system_time/ {print ($1 ~ /^[0-9.]+$/ ? $1 / 1e9 : 0)}' "$1"; }
  cpu_cs() { awk -F, '/context-switches/ {print $1}' "$1"; }
else
  cpu=(/usr/bin/time -f 'cpu %U %S' -o)
  cpu_s() { awk '/^cpu / {print $2 + $3}' "$1"; }
  cpu_sys() { awk '/^cpu / {print $3}' "$1"; }
  cpu_cs() { echo; }
fi

echo "== tcpreplay --topspeed, same file, same interface"
ip netns exec mrte-prod tcpreplay --topspeed -i mir0 --loop "$LOOPS" "$PCAP" 2>&1 | grep -E "Rated:" || true
echo "== mrte-bench send, same file, same interface"
ip netns exec mrte-prod "$BIN/mrte-bench" send -i mir0 "$PCAP" --loops "$LOOPS"

printf '\n| rate (offered) | capturer | sent | sent pps | kept | capturer drops | veth drops | CPU s | CPU µs/frame | of which sys | switches | idle CPU s | marginal µs/frame | sender µs/frame | ksoftirqd µs/frame | total µs/frame |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for rate in $RATES; do
  for spec in $CAPTURERS; do
    cap=${spec%%@*}
    mb=$BIN
    [ "$spec" = "$cap" ] || mb=${spec#*@}
    pps_arg=()
    [ "$rate" = max ] || pps_arg=(--pps "$rate")
    frames=$(( $(capinfos -c -M "$PCAP" | awk '/Number of packets/ {print $NF}') * LOOPS ))

    # Long enough for a sender slowed down by a loaded machine (at max it fell to ~80 kpps):
    # a capturer stopped before the last frame would count it as neither kept nor dropped.
    if [ "$rate" = max ]; then secs=$(( frames / WINDOW_PPS + 5 )); else secs=$(( frames / rate + 3 )); fi
    case $cap in
      none) cmd=(sleep "$secs") ;;
      xdp-skb) cmd=("$mb/mrte" record -i span0 --source xdp --xdp-mode skb -w /dev/null --duration "$secs") ;;
      xdp-drv) cmd=("$mb/mrte" record -i span0 --source xdp --xdp-mode drv -w /dev/null --duration "$secs") ;;
      pcap) cmd=("$mb/mrte" record -i span0 --source pcap -w /dev/null --duration "$secs") ;;
      inspect-xdp) cmd=("$mb/mrte" inspect -i span0 --source xdp --xdp-mode skb -f summary --duration "$secs") ;;
      tcpdump) cmd=(timeout "$secs" tcpdump -i span0 -B 65536 -s 0 -n -w /dev/null tcp port 3306) ;;
    esac
    key="$spec/$secs"
    if [ "$IDLE" = 1 ] && [ -z "${idle_cpu[$key]:-}" ]; then
      ip netns exec mrte-cap "${cpu[@]}" "$OUT/idle.cpu" "${cap_pin[@]}" "${cmd[@]}" >/dev/null 2>"$OUT/idle.err" || true
      idle_cpu[$key]=$(cpu_s "$OUT/idle.cpu")
    fi
    d0=$(mir_drops)
    hogs=()
    for _ in $(seq "$HOGS"); do
      timeout $((secs + 5)) taskset -c "$CAP_CPU" nice -n 0 sh -c 'while :; do :; done' &
      hogs+=($!)
    done
    ip netns exec mrte-cap "${cpu[@]}" "$OUT/cap.cpu" "${cap_pin[@]}" "${cmd[@]}" >"$OUT/cap.out" 2>"$OUT/cap.err" &
    cpid=$!
    sleep 1
    k0=$(softirqd_ticks)
    sent=$(ip netns exec mrte-prod "${cpu[@]}" "$OUT/send.cpu" "${send_pin[@]}" "$BIN/mrte-bench" send -i mir0 "$PCAP" --loops "$LOOPS" "${pps_arg[@]}" --json)
    k1=$(softirqd_ticks)
    wait "$cpid" || true
    if [ ${#hogs[@]} -gt 0 ]; then kill "${hogs[@]}" 2>/dev/null || true; wait "${hogs[@]}" 2>/dev/null || true; fi
    d1=$(mir_drops)
    run=$((${run:-0} + 1))
    cp "$OUT/cap.err" "$OUT/cap-$run.err"
    ksoft=$(awk -v t="$((k1 - k0))" -v hz="$TICK" 'BEGIN {print t / hz}')
    python3 - "$spec" "$rate" "$sent" "$((d1 - d0))" "$OUT/cap.out" "$OUT/cap.err" "${idle_cpu[$key]:-}" \
      "$(cpu_s "$OUT/cap.cpu")" "$(cpu_s "$OUT/send.cpu")" "$ksoft" "$(cpu_sys "$OUT/cap.cpu")" \
      "$(cpu_cs "$OUT/cap.cpu")" <<'EOF'
import json, re, sys
spec, rate, sent, veth = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
cap = spec.split("@")[0]
idle = float(sys.argv[7]) if sys.argv[7] else None
out, err = open(sys.argv[5]).read(), open(sys.argv[6]).read()
cpu, send_cpu, ksoft = float(sys.argv[8]), float(sys.argv[9]), float(sys.argv[10])
sys_s, switches = float(sys.argv[11] or 0), sys.argv[12]
if cap == "none":
    kept, drops = 0, 0
elif cap == "tcpdump":
    kept = int(re.search(r"(\d+) packets captured", err).group(1))
    drops = int(re.search(r"(\d+) packets dropped by kernel", err).group(1))
elif cap == "inspect-xdp":
    s = json.loads(out)
    kept, drops = s["packets"], s.get("kernel_drops", 0)
else:
    s = json.loads(out.splitlines()[0])
    kept, drops = s["frames"], s["kernel_drops"]
n = sent["sent"]
marg = f"{idle:.2f} | {max(cpu - idle, 0) / n * 1e6:.2f}" if idle is not None else " | "
us = lambda s: f"{s / n * 1e6:.2f}"
print(f"| {rate} | {spec} | {n} | {sent['pps']:,.0f} | {kept} | {drops} | {veth} | {cpu:.2f} | {us(cpu)} | {us(sys_s)} "
      f"| {switches} | {marg} "
      f"| {us(send_cpu)} | {us(ksoft)} | {us(cpu + send_cpu + ksoft)} |")
EOF
  done
done
