#!/usr/bin/env python3
"""Client turnaround per session from a capture: the time from the server's last payload segment
of a response to the client's next payload segment on the same connection (what the client took
to read the answer and send its next command), as percentiles in µs. A long turnaround leaves the
server's thread asleep when the next command arrives, and each such command costs the client a
wake-up (and, when the server's vCPU is idle, an IPI) inside its send.

Usage: bench/lib/turnaround.py CAPTURE SERVER_PORT  (needs tshark)"""
import subprocess
import sys

cap, port = sys.argv[1], sys.argv[2]
out = subprocess.run(
    ["tshark", "-r", cap, "-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.stream",
     "-e", "tcp.srcport", "-e", "tcp.len"],
    capture_output=True, text=True, check=True).stdout
last, gaps = {}, []
for line in out.splitlines():
    t, stream, sport, length = line.split("\t")
    if int(length or 0) == 0:
        continue
    if sport == port:
        last[stream] = float(t)
    elif stream in last:
        gaps.append((float(t) - last.pop(stream)) * 1e6)
if not gaps:
    sys.exit("turnaround.py: no response followed by a command in " + cap)
gaps.sort()
n = len(gaps)
print(f"turnaround µs over {n} commands: p10 {gaps[n // 10]:.1f}, p50 {gaps[n // 2]:.1f}, "
      f"p90 {gaps[9 * n // 10]:.1f}, mean {sum(gaps) / n:.1f}")
