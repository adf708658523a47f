#!/usr/bin/env bash
# Scale-out figures (issue 12, bench/README "Scale-out over NATS"), all in one run on the lab:
#  1. records a sysbench oltp_read_only capture off the mirror port (FRAMES frames);
#  2. per round: `mrte publish -r` of it at --speed max into a one-node JetStream (nats-server
#     pinned to core 1), the publisher pinned to core 0 (taskset: capture, decode and the NATS
#     client share that one core) -> commands/s and MB/s acknowledged; beside it
#     `mrte-bench decode` of the same file on core 0;
#  3. per round: end-to-end replay of the published stream into the lab's test server at
#     --speed max by one player (replay host mrte-rh1, core 0, all 4 partitions) and by two players
#     (mrte-rh1 on core 0 with partitions 0,1, mrte-rh2 on core 1 with 2,3): replayed QPS =
#     commands replayed (merged `mrte report`) / wall time from start to the last player's end.
# Not run in CI. Needs root and the release builds of mrte and mrte-bench. Takes the lab lock.
# Usage: flock /tmp/mrte-lab.lock bench/dist.sh   Env: FRAMES (150000), REC_S (30), ROUNDS (3), OUT (/tmp/bench/dist)
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${FRAMES:-150000} ROUNDS=${ROUNDS:-3} OUT=${OUT:-/tmp/bench/dist}
MRTE=$PWD/target/release/mrte BENCH=$PWD/target/release/mrte-bench
[ -x "$MRTE" ] && [ -x "$BENCH" ] || { echo "dist: cargo build --release -p mrte -p mrte-bench first" >&2; exit 1; }
mkdir -p "$OUT"
. scripts/lib/deps.sh
mrte_install_nats
LAB_LOCK=/var/tmp/mrte-lab.lock
for _ in $(seq 1800); do (set -o noclobber; echo $$ >"$LAB_LOCK") 2>/dev/null && break; sleep 0.5; done
[ "$(cat "$LAB_LOCK" 2>/dev/null)" = $$ ] || { echo "dist: $LAB_LOCK held for 15 min" >&2; exit 1; }
cleanup() { scripts/lab.sh down >/dev/null 2>&1 || true; rm -f "$LAB_LOCK"; }
trap cleanup EXIT
scripts/lab.sh down >/dev/null 2>&1 || true
scripts/lab.sh up
scripts/lab.sh nats 1
. /var/tmp/mrte-lab/env
# The one node on core 1: the publisher and the first player own core 0.
taskset -apc 1 "$(cat "$LAB_DIR/nats-n1.pid")" >/dev/null
CAP=$OUT/ro.pcap

echo "== recording $FRAMES frames of oltp_read_only off $MIRROR_IF"
err=$OUT/tcpdump.err
ip netns exec "$CAP_NS" tcpdump -i "$MIRROR_IF" -B 262144 -s 0 -U -n -c "$FRAMES" -w "$CAP" \
  "tcp port $PROD_PORT" >/dev/null 2>"$err" &
tpid=$!
for _ in $(seq 100); do grep -q "listening on" "$err" 2>/dev/null && break; sleep 0.1; done
# REC_S (30) of sysbench must give FRAMES frames (about 9000 a second here).
WORKLOAD=oltp_read_only DURATION=${REC_S:-30} THREADS=4 scripts/lab.sh load >/dev/null 2>&1 || true
sleep 1
kill "$tpid" 2>/dev/null || true
wait "$tpid" 2>/dev/null || true
capinfos -c -s "$CAP" | tail -2

target="mysql://$DB_USER:$DB_PASS@$TEST_ADDR:$TEST_PORT/sbtest"
now() { date +%s.%N; }
one_player() { # all partitions on core 0
  t0=$(now)
  ip netns exec mrte-rh1 taskset -c 0 "$MRTE" play -q --nats "$NATS_URL" --stream "$s" \
    --partitions 0,1,2,3 --name one --read-only --target "$target" >/dev/null 2>"$OUT/play1-$r.log"
  t1=$(now)
  one_s=$(echo "$t1 - $t0" | bc -l)
}
two_players() { # cores 0 and 1, on a second stream of the same content (own consumers and report)
  ip netns exec "$CAP_NS" "$MRTE" publish -q -r "$CAP" --nats "$NATS_URL" --stream "${s}x" \
    --partitions 4 --speed max >/dev/null 2>&1
  t0=$(now)
  ip netns exec mrte-rh1 taskset -c 0 "$MRTE" play -q --nats "$NATS_URL" --stream "${s}x" \
    --partitions 0,1 --name two-a --read-only --target "$target" >/dev/null 2>"$OUT/play2a-$r.log" &
  pa=$!
  ip netns exec mrte-rh2 taskset -c 1 "$MRTE" play -q --nats "$NATS_URL" --stream "${s}x" \
    --partitions 2,3 --name two-b --read-only --target "$target" >/dev/null 2>"$OUT/play2b-$r.log" &
  pb=$!
  wait "$pa" "$pb"
  t1=$(now)
  two_s=$(echo "$t1 - $t0" | bc -l)
}
rm -f "$OUT/figures.txt"
for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  s=b$r
  t0=$(now)
  ip netns exec "$CAP_NS" taskset -c 0 "$MRTE" publish -q -r "$CAP" --nats "$NATS_URL" --stream "$s" \
    --partitions 4 --speed max >"$OUT/publish-$r.json" 2>"$OUT/publish-$r.log"
  t1=$(now)
  pub_s=$(echo "$t1 - $t0" | bc -l)
  cat "$OUT/publish-$r.log"
  # the decode thread on core 0, its discarding consumer on core 1 (mrte-bench's set-up)
  "$BENCH" decode "$CAP" --repeat 5 --core 0 --json >"$OUT/decode-$r.json"
  # the two set-ups alternate which goes first, round by round
  if [ $((r % 2)) = 1 ]; then one_player; two_players; else two_players; one_player; fi
  ip netns exec "$CAP_NS" "$MRTE" report --nats "$NATS_URL" --stream "$s" -f json -o "$OUT/report1-$r.json"
  ip netns exec "$CAP_NS" "$MRTE" report --nats "$NATS_URL" --stream "${s}x" -f json -o "$OUT/report2-$r.json"
  one_n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['accounting']['replayed'])" "$OUT/report1-$r.json")
  two_n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['accounting']['replayed'])" "$OUT/report2-$r.json")
  python3 - "$OUT" "$r" "$pub_s" "$one_n" "$one_s" "$two_n" "$two_s" "$CAP" <<'EOF' | tee -a "$OUT/figures.txt"
import json, os, re, sys
out, r, pub_s, one_n, one_s, two_n, two_s, cap = sys.argv[1:]
pub = json.loads(open(f"{out}/publish-{r}.json").read().strip().splitlines()[-1])
line = open(f"{out}/publish-{r}.log").read()
m = re.search(r"in ([0-9.]+) s: ([0-9]+) commands/s, ([0-9.]+) MB/s", line)
d = json.load(open(f"{out}/decode-{r}.json"))
size = os.path.getsize(cap)
print(f"round {r}: publish on core 0: {pub['acked_commands']} commands in {m.group(1)} s = {m.group(2)} commands/s, "
      f"{m.group(3)} MB/s to NATS ({size / float(m.group(1)) / 1e6:.1f} MB/s of capture; process wall {float(pub_s):.2f} s); "
      f"decode: {d['commands'] / d['best_s']:.0f} commands/s, {d['bytes'] / d['best_s'] / 1e6:.1f} MB/s ({d['mpps']:.2f} Mpps); "
      f"1 player: {one_n} replayed in {float(one_s):.2f} s = {int(one_n) / float(one_s):.0f} QPS; "
      f"2 players: {two_n} in {float(two_s):.2f} s = {int(two_n) / float(two_s):.0f} QPS")
EOF
done
echo "== figures ($OUT/figures.txt)"
cat "$OUT/figures.txt"
