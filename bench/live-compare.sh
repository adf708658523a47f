#!/usr/bin/env bash
# Usage: bench/live-compare.sh [TARGET_DIR]  (lab up). mrte inspect -i span0 (AF_XDP) vs tshark on a tcpdump of the same frames (mir0, the veth's far end), same sysbench run.
set -e
T=${1:-target/release}
ip netns exec mrte-prod tcpdump -i mir0 -B 262144 -s 0 -U -n -w /tmp/bench/live-td.pcap tcp port 3306 2>/tmp/bench/live-td.err &
td=$!
ip netns exec mrte-cap $T/mrte inspect -i span0 --source xdp --duration 13 -f summary > /tmp/bench/live-xdp.json 2>/tmp/bench/live-xdp.err &
m=$!
sleep 2
DURATION=${DURATION:-8} THREADS=4 scripts/lab.sh load 2>&1 | grep -E "queries:"
wait $m
sleep 1; kill $td; wait $td 2>/dev/null || true
tail -3 /tmp/bench/live-td.err
python3 -c 'import json; d=json.load(open("/tmp/bench/live-xdp.json")); print("mrte inspect -i span0 --source xdp: COM_QUERY", d["commands"].get("COM_QUERY"), "packets", d["packets"], "kernel_drops", d["kernel_drops"], "gaps", d["gaps"])'
echo "tshark -Y mysql.command==3 on the tcpdump of mir0: $(tshark -r /tmp/bench/live-td.pcap -Y 'mysql.command == 3' 2>/dev/null | wc -l)"
