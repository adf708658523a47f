#!/usr/bin/env python3
"""Regenerate tests/fixtures/hostile/: broken captures cut and patched from the real capture
tests/fixtures/client_session.pcap, plus expected.json (what `mrte inspect -r FILE` must say).

Each entry of expected.json: exit code, the byte offset the error must name (null when the file
must decode), a word of the reason, and `prefix`: the length of the intact start of the file (a
valid capture by itself) whose decode the damaged file must still report. Run from anywhere;
tests/hostile.rs checks every file.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "tests/fixtures/client_session.pcap")
OUT = os.path.join(ROOT, "tests/fixtures/hostile")
CUT = 20  # the record (or packet block) where the damage starts

src = open(SRC, "rb").read()
magic, _, _, _, _, snaplen, linktype = struct.unpack("<IHHiIII", src[:24])
assert magic == 0xA1B2C3D4, "little-endian µs pcap expected"
header = src[:24]
records = []
at = 24
while at < len(src):
    sec, usec, incl, orig = struct.unpack("<IIII", src[at : at + 16])
    records.append((sec, usec, src[at + 16 : at + 16 + incl], orig))
    at += 16 + incl
assert len(records) > CUT + 5


def rec(r, incl=None, orig=None):
    sec, usec, data, o = r
    return struct.pack("<IIII", sec, usec, len(data) if incl is None else incl, o if orig is None else orig) + data


def pcap(recs):
    return header + b"".join(rec(r) for r in recs)


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def block(kind, body):
    n = 12 + len(pad4(body))
    return struct.pack("<II", kind, n) + pad4(body) + struct.pack("<I", n)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(lt):
    return block(1, struct.pack("<HHI", lt, 0, 0))


def epb(r, iface=0):
    sec, usec, data, orig = r
    ts = sec * 1_000_000 + usec
    return block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), orig) + data)


UNKNOWN = [
    block(0x00000BAD, b"not a block we know"),
    block(0x40000BAD, struct.pack("<I", 32473) + b"custom block"),  # custom block, with a PEN
    block(4, struct.pack("<HH", 0, 0)),  # name resolution (empty)
    block(5, struct.pack("<III", 0, 0, 0)),  # interface statistics
]

files = {}


def add(name, data, exit_code, offset, reason, prefix):
    files[name] = (data, {"exit": exit_code, "offset": offset, "reason": reason, "prefix": prefix})


before = pcap(records[:CUT])  # the intact start: header and the records before the damage
r = records[CUT]

add("bad_magic.pcap", b"GARB" + src[4:], 2, 0, "magic", None)
add("truncated_global_header.pcap", src[:13], 2, 0, "header", None)
add("truncated_record_header.pcap", before + rec(r)[:7], 2, len(before), "record header", len(before))
add("truncated_record_data.pcap", before + rec(r)[: 16 + len(r[2]) // 2], 2, len(before), "truncated record", len(before))
add("caplen_beyond_snaplen.pcap", before + rec(r, incl=snaplen + 100) + pcap(records[CUT + 1 :])[24:], 2, len(before), "snapshot length", len(before))
add("huge_caplen.pcap", before + rec(r, incl=0xFFFFFFF0) + pcap(records[CUT + 1 :])[24:], 2, len(before), "snapshot length", len(before))
zero = struct.pack("<IIII", 0, 0, 0, 0)
add("zero_length_records.pcap", before + zero * 5 + pcap(records[CUT:])[24:], 2, len(before), "zero-length", len(before))
unknown_lt = header[:20] + struct.pack("<I", 147) + pcap(records)[24:]
add("unknown_linktype.pcap", unknown_lt, 2, 20, "link type", None)

ng_before = SHB + idb(linktype) + b"".join(epb(x) for x in records[:CUT])
ng_after = b"".join(epb(x) for x in records[CUT:])
add("pcapng_clean.pcapng", ng_before + ng_after, 0, None, None, None)
mixed = SHB + UNKNOWN[0] + idb(linktype) + UNKNOWN[1]
for i, x in enumerate(records):
    mixed += epb(x)
    if i % 7 == 3:
        mixed += UNKNOWN[2 + i % 2]
add("pcapng_unknown_blocks.pcapng", mixed, 0, None, None, None)
bad = bytearray(epb(r))
struct.pack_into("<I", bad, 4, len(bad) + 4)  # start length disagrees with the end
add("pcapng_damaged_block_length.pcapng", ng_before + bytes(bad) + ng_after[len(bad) :], 2, len(ng_before), "length", len(ng_before))
odd = bytearray(epb(r))
struct.pack_into("<I", odd, 4, 13)  # not a multiple of 4
add("pcapng_odd_block_length.pcapng", ng_before + bytes(odd) + ng_after[len(odd) :], 2, len(ng_before), "13 bytes", len(ng_before))
add("pcapng_truncated_block.pcapng", ng_before + epb(r)[:30], 2, len(ng_before), "truncated block", len(ng_before))
ng_lt = SHB + idb(147) + b"".join(epb(x) for x in records)
add("pcapng_unknown_linktype.pcapng", ng_lt, 2, len(SHB) + len(idb(147)), "link type", None)
undefined = ng_before + epb(r, iface=5) + ng_after[len(epb(r)) :]
add("pcapng_undefined_interface.pcapng", undefined, 2, len(ng_before), "interface", len(ng_before))

os.makedirs(OUT, exist_ok=True)
for name, (data, _) in files.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump({n: e for n, (_, e) in sorted(files.items())}, f, indent=1)
    f.write("\n")
print(f"{len(files)} files in {os.path.relpath(OUT)}")
