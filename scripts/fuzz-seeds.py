#!/usr/bin/env python3
"""Seed the fuzz corpora (fuzz/corpus/TARGET/seed-*) from the committed captures in tests/fixtures:
frames, whole small files, MySQL payloads, server responses and SQL texts, each in the input format
of its target (see fuzz/fuzz_targets/). Idempotent; scripts/fuzz.sh runs it before fuzzing."""
import glob
import hashlib
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests/fixtures")
CORPUS = os.path.join(ROOT, "fuzz/corpus")
LINK_SEL = {1: 0, 113: 1, 276: 2}  # pcap link type -> the `frame` target's selector
LINK_REASM = {1: 0, 276: 2, 113: 3}  # -> the `reassembly` target's 2-bit link field


def records(data):
    """(link type, frame) of a little-endian classic pcap; [] for anything else."""
    if len(data) < 24 or data[:4] != b"\xd4\xc3\xb2\xa1":
        return []
    link = struct.unpack("<I", data[20:24])[0]
    out, at = [], 24
    while at + 16 <= len(data):
        incl = struct.unpack("<I", data[at + 8 : at + 12])[0]
        out.append((link, data[at + 16 : at + 16 + incl]))
        at += 16 + incl
    return out


def tcp_payload(link, frame):
    """(to_server, payload) of an IPv4 TCP frame on port 3306, else None."""
    if link == 1:
        at, et = 14, frame[12:14]
        while et in (b"\x81\x00", b"\x88\xa8"):
            et, at = frame[at + 2 : at + 4], at + 4
    elif link == 276:
        at, et = 20, frame[0:2]
    elif link == 113:
        at, et = 16, frame[14:16]
    else:
        return None
    if et != b"\x08\x00" or len(frame) < at + 20 or frame[at] >> 4 != 4 or frame[at + 9] != 6:
        return None
    ip_total = struct.unpack(">H", frame[at + 2 : at + 4])[0]
    tcp = at + (frame[at] & 15) * 4
    if len(frame) < tcp + 20:
        return None
    sport, dport = struct.unpack(">HH", frame[tcp : tcp + 4])
    data = frame[tcp + (frame[tcp + 12] >> 4) * 4 : at + ip_total]
    if 3306 not in (sport, dport):
        return None
    return dport == 3306, data


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


sql_texts = {b"/*\xe4\xb8\xad*/ SET @x=1", b"USE `db`", b"use \xe4\xb8\xad\xe6\x96\x87", b"SELECT 1"}
for path in sorted(glob.glob(os.path.join(FIX, "*.pcap"))):
    data = open(path, "rb").read()
    recs = records(data)
    small = len(data) <= 64 << 10
    if small:
        write("pcap_reader", data)
    reasm = b""
    stream = []  # (to_server, payload) in capture order
    for i, (link, frame) in enumerate(recs):
        if i < 40 and link in LINK_SEL:
            write("frame", bytes([LINK_SEL[link]]) + frame)
        if i < 8 and link == 1 and frame[12:14] == b"\x08\x00":
            ip = frame[14:]  # the same packet under the other link types
            write("frame", b"\x01" + b"\0" * 14 + b"\x08\x00" + ip)
            write("frame", b"\x02" + b"\x08\x00" + b"\0" * 18 + ip)
            write("frame", b"\x03" + ip)
            write("frame", b"\x04" + struct.pack("<I", 2) + ip)
        if small and link in LINK_REASM and len(frame) <= 1023:
            reasm += bytes([len(frame) >> 2, (len(frame) & 3) | (LINK_REASM[link] << 6) | 4]) + frame
        p = tcp_payload(link, frame)
        if p and p[1]:
            stream.append(p)
    if reasm:
        write("reassembly", reasm)
    if small and stream:
        write("framing", b"\xff" + b"".join(p for _, p in stream))
    # Client commands (sequence id 0) and the server bytes that answer each.
    for k, (to_server, p) in enumerate(stream[:400]):
        if not to_server or len(p) < 5 or p[3] != 0:
            continue
        body = p[4:]
        write("command", struct.pack("<I", 0x000FA68D) + body)
        if body[0] in (0x03, 0x16) and len(sql_texts) < 300:
            sql_texts.add(body[1:])
        sel = {0x03: 0, 0x16: 1, 0x04: 3, 0x0E: 4}.get(body[0])
        if sel is not None and k < 60:
            resp = b""
            for ts, q in stream[k + 1 :]:
                if ts:
                    break
                resp += q
            if resp:
                write("response", bytes([sel, 0xFF]) + resp)
for f in glob.glob(os.path.join(FIX, "hostile", "*.pcap*")):
    write("pcap_reader", open(f, "rb").read())
for s in sql_texts:
    for t in ("fingerprint", "classify", "use_detection"):
        write(t, s)
# Reassembly ops: config byte, then 5-byte ops (offset/8 as 3 bytes, length/8, kind).
ops_in_order = bytes([3]) + b"".join(struct.pack("<I", k * 16)[:3] + bytes([16, 2]) for k in range(20))
ops_reversed = bytes([9]) + b"".join(struct.pack("<I", k * 16)[:3] + bytes([16, 3]) for k in reversed(range(40)))
ops_lossy = bytes([1]) + b"".join(struct.pack("<I", k * 40)[:3] + bytes([20, 2 + k % 6]) for k in range(30) if k % 4)
for s in (ops_in_order, ops_reversed, ops_lossy):
    write("stream", s)
print("seeds:", {t: len(os.listdir(os.path.join(CORPUS, t))) for t in sorted(os.listdir(CORPUS))})
