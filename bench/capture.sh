#!/usr/bin/env bash
# Capture loss and CPU per frame at fixed offered rates on the lab's mirror port (issue 3).
#
# `mrte-bench send` pushes a capture's frames out of mir0 (mrte-prod) with AF_XDP; they arrive on
# span0 (mrte-cap), where each capturer runs in turn at each rate. For every run it prints the
# frames sent, the frames the capturer kept, what it says it dropped, the veth's own drops (mir0
# TX dropped: loss before any socket), and the capturer's CPU (user + sys, /usr/bin/time) per
# frame sent. tcpreplay's top speed is printed as the reference sender. Each capturer also runs
# once with no traffic for as long (IDLE=0 skips it): its set-up and idle CPU, subtracted in the
# last column (marginal CPU per frame: what each frame costs once the capturer is running).
#
# Usage: bench/capture.sh [TARGET_DIR]   (lab must be up: scripts/lab.sh up)
# Issue 13's comparison (live decode vs tcpdump at the sender's top rate, read-write sysbench):
#   PCAP=/tmp/bench/rw_text.pcap LOOPS=10 RATES=max CAPTURERS="inspect-xdp tcpdump" bench/capture.sh
# Env: PCAP (/tmp/bench/sysbench.pcap), LOOPS (5), RATES ("max 300000 100000"),
#      CAPTURERS ("xdp-skb xdp-drv pcap inspect-xdp tcpdump")
set -euo pipefail
BIN=${1:-target/release}
PCAP=${PCAP:-/tmp/bench/sysbench.pcap}
LOOPS=${LOOPS:-5}
RATES=${RATES:-max 300000 100000}
CAPTURERS=${CAPTURERS:-xdp-skb xdp-drv pcap inspect-xdp tcpdump}
OUT=${OUT:-/tmp/bench}
IDLE=${IDLE:-1}
declare -A idle_cpu
mkdir -p "$OUT"
[ -f "$PCAP" ] || { echo "capture.sh: $PCAP missing (see bench/README.md, Inputs)" >&2; exit 1; }

mir_drops() { ip netns exec mrte-prod cat /sys/class/net/mir0/statistics/tx_dropped; }

echo "== tcpreplay --topspeed, same file, same interface"
ip netns exec mrte-prod tcpreplay --topspeed -i mir0 --loop "$LOOPS" "$PCAP" 2>&1 | grep -E "Rated:" || true
echo "== mrte-bench send, same file, same interface"
ip netns exec mrte-prod "$BIN/mrte-bench" send -i mir0 "$PCAP" --loops "$LOOPS"

printf '\n| rate (offered) | capturer | sent | sent pps | kept | capturer drops | veth drops | CPU s | CPU µs/frame | idle CPU s | marginal µs/frame |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for rate in $RATES; do
  for cap in $CAPTURERS; do
    pps_arg=()
    [ "$rate" = max ] || pps_arg=(--pps "$rate")
    frames=$(( $(capinfos -c -M "$PCAP" | awk '/Number of packets/ {print $NF}') * LOOPS ))

    # Long enough for a sender slowed down by a loaded machine (at max it fell to ~80 kpps):
    # a capturer stopped before the last frame would count it as neither kept nor dropped.
    if [ "$rate" = max ]; then secs=$(( frames / 50000 + 5 )); else secs=$(( frames / rate + 3 )); fi
    case $cap in
      xdp-skb) cmd=("$BIN/mrte" record -i span0 --source xdp --xdp-mode skb -w /dev/null --duration "$secs") ;;
      xdp-drv) cmd=("$BIN/mrte" record -i span0 --source xdp --xdp-mode drv -w /dev/null --duration "$secs") ;;
      pcap) cmd=("$BIN/mrte" record -i span0 --source pcap -w /dev/null --duration "$secs") ;;
      inspect-xdp) cmd=("$BIN/mrte" inspect -i span0 --source xdp --xdp-mode skb -f summary --duration "$secs") ;;
      tcpdump) cmd=(timeout "$secs" tcpdump -i span0 -B 65536 -s 0 -n -w /dev/null tcp port 3306) ;;
    esac
    key="$cap/$secs"
    if [ "$IDLE" = 1 ] && [ -z "${idle_cpu[$key]:-}" ]; then
      ip netns exec mrte-cap /usr/bin/time -f 'cpu %U %S' "${cmd[@]}" >/dev/null 2>"$OUT/idle.err" || true
      idle_cpu[$key]=$(awk '/^cpu / {print $2 + $3}' "$OUT/idle.err")
    fi
    d0=$(mir_drops)
    ip netns exec mrte-cap /usr/bin/time -f 'cpu %U %S' "${cmd[@]}" >"$OUT/cap.out" 2>"$OUT/cap.err" &
    cpid=$!
    sleep 1
    sent=$(ip netns exec mrte-prod "$BIN/mrte-bench" send -i mir0 "$PCAP" --loops "$LOOPS" "${pps_arg[@]}" --json)
    wait "$cpid" || true
    d1=$(mir_drops)
    python3 - "$cap" "$rate" "$sent" "$((d1 - d0))" "$OUT/cap.out" "$OUT/cap.err" "${idle_cpu[$key]:-}" <<'EOF'
import json, re, sys
cap, rate, sent, veth = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
idle = float(sys.argv[7]) if sys.argv[7] else None
out, err = open(sys.argv[5]).read(), open(sys.argv[6]).read()
cpu = sum(map(float, re.search(r"^cpu (\S+) (\S+)", err, re.M).groups()))
if cap == "tcpdump":
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
print(f"| {rate} | {cap} | {n} | {sent['pps']:,.0f} | {kept} | {drops} | {veth} | {cpu:.2f} | {cpu / n * 1e6:.2f} | {marg} |")
EOF
  done
done
