"""A second PyMySQL workload (same tap as pymysql_workload.py) for what the first leaves out: an
unbuffered SSCursor, a stored procedure (callproc: several result sets), executemany with ON
DUPLICATE KEY UPDATE, binary parameters, a transaction rolled back then committed, a statement that
fails on prod (duplicate key), warnings, dict parameters, and autocommit switched on and off.

Usage: python pymysql_x_workload.py HOST USER PASS
"""

import json
import sys

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from pymysql_workload import PORT, SENT  # installs the socket tap


def main():
    host, user, password = sys.argv[1:4]
    c = pymysql.connect(host=host, port=PORT, user=user, password=password, database="drv_pyx",
                        charset="utf8mb4", client_flag=CLIENT.MULTI_STATEMENTS, ssl_disabled=True)
    cur = c.cursor()
    cur.execute(
        "CREATE PROCEDURE restock(IN n INT) BEGIN "
        "UPDATE stock SET qty = qty + n WHERE sku LIKE 'sku-%'; "
        "SELECT sku, qty FROM stock ORDER BY sku; SELECT COUNT(*) AS skus FROM stock; END"
    )
    rows = [(f"sku-{i:03}", i, f"{i * 1.5:.2f}", f"2026-02-{1 + i % 28:02} 08:00:00",
             bytes((i * 7 + j) % 256 for j in range(64 + i))) for i in range(1, 41)]
    cur.executemany(
        "INSERT INTO stock (sku, qty, price, updated, img) VALUES (%s, %s, %s, %s, %s) "
        "ON DUPLICATE KEY UPDATE qty = qty + VALUES(qty)", rows)
    cur.executemany(
        "INSERT INTO stock (sku, qty, price, updated, img) VALUES (%s, %s, %s, %s, %s) "
        "ON DUPLICATE KEY UPDATE qty = qty + VALUES(qty)", rows[:10])
    c.commit()
    cur.callproc("restock", (5,))
    while cur.nextset():
        pass
    cur.execute("SELECT @_restock_0")
    cur.fetchall()

    # A transaction rolled back, then one committed.
    c.begin()
    cur.execute("UPDATE stock SET qty = 0 WHERE sku = %(sku)s", {"sku": "sku-001"})
    cur.execute("INSERT INTO log (msg) VALUES (%s)", ("rolled back",))
    c.rollback()
    c.begin()
    cur.execute("UPDATE stock SET price = price * 2 WHERE qty > %(q)s", {"q": 30})
    cur.execute("INSERT INTO log (msg) VALUES (%s)", ("committed ✓ 한글",))
    c.commit()

    # Fails on prod too: the replay must err the same way.
    try:
        cur.execute("INSERT INTO stock (sku, qty) VALUES ('seed', 2)")
    except pymysql.err.IntegrityError:
        pass
    cur.execute("INSERT IGNORE INTO stock (sku, qty) VALUES ('seed', 3)")
    cur.execute("SHOW WARNINGS")
    cur.fetchall()

    # Unbuffered: rows are read while the server sends them.
    ss = c.cursor(pymysql.cursors.SSCursor)
    ss.execute("SELECT sku, qty, price, updated, img FROM stock ORDER BY sku")
    for _ in ss:
        pass
    ss.close()
    dc = c.cursor(pymysql.cursors.DictCursor)
    dc.execute("SELECT sku, HEX(img) AS h FROM stock WHERE sku IN %s", (("sku-002", "sku-003"),))
    dc.fetchall()

    c.autocommit(True)
    cur.execute("DELETE FROM stock WHERE qty MOD 7 = 0")
    cur.execute("INSERT INTO log (msg) VALUES (%s); UPDATE log SET msg = CONCAT(msg, '.') WHERE id > 0",
                ("multi",))
    while cur.nextset():
        pass
    c.ping(reconnect=False)
    c.close()
    print(json.dumps(dict(sorted(SENT.items()))))


if __name__ == "__main__":
    main()
