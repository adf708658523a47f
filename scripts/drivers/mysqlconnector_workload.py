"""mysql-connector-python (pure Python, use_pure=True) workload for record-fixtures.sh: prepared
cursor (COM_STMT_RESET before each re-execute), a compressed connection, cmd_statistics,
cmd_reset_connection, cmd_change_user.

Usage: python mysqlconnector_workload.py HOST USER PASS
Prints, as JSON, the commands the driver wrote on its sockets: each packet sent with sequence
number 0 (a command) counted by its first byte, hidden ones (SET NAMES, autocommit) included.
"""

import json
import os
import sys
from collections import Counter

import mysql.connector
from mysql.connector import network

NAMES = {
    0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY", 0x09: "COM_STATISTICS",
    0x0E: "COM_PING", 0x11: "COM_CHANGE_USER", 0x16: "COM_STMT_PREPARE",
    0x17: "COM_STMT_EXECUTE", 0x18: "COM_STMT_SEND_LONG_DATA", 0x19: "COM_STMT_CLOSE",
    0x1A: "COM_STMT_RESET", 0x1F: "COM_RESET_CONNECTION",
}
SENT = Counter()
PORT = int(os.environ.get("DB_PORT", "3306"))
_send = network.MySQLSocket.send


def _tap(self, payload, packet_number=None, *args, **kwargs):
    if packet_number == 0 and len(payload) > 0:
        SENT[NAMES.get(payload[0], f"COM_0x{payload[0]:02x}")] += 1
    return _send(self, payload, packet_number, *args, **kwargs)


network.MySQLSocket.send = _tap


def workload(c, base):
    cur = c.cursor(prepared=True)
    for i in range(1, 11):
        cur.execute("INSERT INTO orders (id, item, amount) VALUES (%s, %s, %s)",
                    (base + i, f"item-{i}", i * 2.5))
    for i in range(1, 6):
        cur.execute("SELECT id, item, amount FROM orders WHERE id = %s", (base + i,))
        cur.fetchall()
    cur.execute("UPDATE orders SET amount = amount + %s WHERE id <= %s", (1, base + 3))
    cur.close()
    txt = c.cursor()
    txt.execute("SELECT COUNT(*), SUM(amount) FROM orders")
    txt.fetchall()
    txt.close()
    c.commit()


def main():
    host, user, password = sys.argv[1:4]
    # The lab's prod offers TLS and the driver would take it: plain text, so that the capture decodes.
    c = mysql.connector.connect(host=host, port=PORT, user=user, password=password, database="drv_mycpy",
                                use_pure=True, ssl_disabled=True)
    workload(c, 0)
    c.cmd_statistics()
    c.cmd_reset_connection()
    cur = c.cursor()
    cur.execute("INSERT INTO orders (id, item, amount) VALUES (100, 'after reset', 1)")
    c.commit()
    c.cmd_change_user(username=user, password=password, database="drv_mycpy_b")
    cur = c.cursor()
    cur.execute("INSERT INTO audit (id, note) VALUES (1, 'after change_user')")
    c.commit()
    c.close()

    z = mysql.connector.connect(host=host, port=PORT, user=user, password=password, database="drv_mycpy",
                                use_pure=True, compress=True, ssl_disabled=True)
    workload(z, 200)
    cur = z.cursor()
    cur.execute("SELECT REPEAT('compressible ', 2000)")
    cur.fetchall()
    z.cmd_statistics()
    z.close()
    print(json.dumps(dict(sorted(SENT.items()))))


if __name__ == "__main__":
    main()
