"""Counts the commands a client program writes, for drivers that offer no hook to tap their socket
(PHP mysqlnd, Go): a TCP relay between the program and the server that frames the client's bytes
and counts each packet with sequence number 0 by its first byte. The bytes go through unchanged,
so the server (and a capture of relay <-> server) sees exactly what the program sent.

Usage: python3 tapproxy.py LISTEN_PORT SERVER_HOST SERVER_PORT -- PROGRAM ARGS...
Runs PROGRAM (its stdout goes to stderr), then prints the counts as JSON on stdout.
Plain connections only (no TLS, no compression).
"""

import json
import socket
import subprocess
import sys
import threading
from collections import Counter

NAMES = {
    0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY", 0x04: "COM_FIELD_LIST",
    0x09: "COM_STATISTICS", 0x0E: "COM_PING", 0x11: "COM_CHANGE_USER", 0x16: "COM_STMT_PREPARE",
    0x17: "COM_STMT_EXECUTE", 0x18: "COM_STMT_SEND_LONG_DATA", 0x19: "COM_STMT_CLOSE",
    0x1A: "COM_STMT_RESET", 0x1B: "COM_SET_OPTION", 0x1C: "COM_STMT_FETCH",
    0x1F: "COM_RESET_CONNECTION", 0xFA: "COM_STMT_BULK_EXECUTE",
}
SENT = Counter()
LOCK = threading.Lock()


def pump(src, dst, count):
    buf = b""
    first = True
    while True:
        data = src.recv(65536)
        if not data:
            break
        dst.sendall(data)
        if not count:
            continue
        buf += data
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:3], "little"):
            n = int.from_bytes(buf[:3], "little")
            # The first client packet is the handshake response (sequence 1), never a command.
            if buf[3] == 0 and n > 0 and not first:
                with LOCK:
                    SENT[NAMES.get(buf[4], f"COM_0x{buf[4]:02x}")] += 1
            first = False
            buf = buf[4 + n:]
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(lsock, host, port, threads):
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        s = socket.create_connection((host, port))
        for a, b, count in ((c, s, True), (s, c, False)):
            t = threading.Thread(target=pump, args=(a, b, count), daemon=True)
            t.start()
            threads.append(t)


def main():
    sep = sys.argv.index("--")
    listen, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", listen))
    lsock.listen(64)
    threads = []
    threading.Thread(target=serve, args=(lsock, host, port, threads), daemon=True).start()
    rc = subprocess.call(sys.argv[sep + 1:], stdout=sys.stderr)
    lsock.close()
    for t in list(threads):
        t.join(timeout=5)
    if rc != 0:
        sys.exit(f"tapproxy: {sys.argv[sep + 1]} exited {rc}")
    print(json.dumps(dict(sorted(SENT.items()))))


if __name__ == "__main__":
    main()
