"""A second mysql-connector-python (use_pure=True) workload (same tap as
mysqlconnector_workload.py) for what the first leaves out: executemany batched into one INSERT,
a prepared cursor with a large bytes parameter and dates, NULLs, ENUM and BIT, callproc (several
result sets), an unbuffered cursor, a multi-statement query, start_transaction with rollback and
commit, cmd_init_db, a statement that fails on prod, and a compressed connection with a prepared
cursor.

Usage: python mysqlconnector_x_workload.py HOST USER PASS
"""

import datetime
import decimal
import json
import sys

import mysql.connector

from mysqlconnector_workload import PORT, SENT  # installs the socket tap


def connect(host, user, password, **kw):
    return mysql.connector.connect(host=host, port=PORT, user=user, password=password,
                                   database="drv_mycx", use_pure=True, ssl_disabled=True, **kw)


def prepared(c, base):
    cur = c.cursor(prepared=True)
    for i in range(1, 9):
        body = bytes((i * 17 + j) % 256 for j in range(200 * i + (40000 if i == 8 else 0)))
        cur.execute(
            "INSERT INTO docs (id, title, body, score, created, tag, ok) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (base + i, f"doc ✓ {i}", body, decimal.Decimal(f"{i}.125"),
             datetime.datetime(2026, 4, i, 9, 30, i), "abc"[i % 3], None if i % 4 == 0 else i % 2))
    for i in (1, 5, 8):
        cur.execute("SELECT id, title, LENGTH(body), score, created, tag FROM docs WHERE id = %s", (base + i,))
        cur.fetchall()
    cur.close()


def main():
    host, user, password = sys.argv[1:4]
    c = connect(host, user, password)
    cur = c.cursor()
    cur.execute(
        "CREATE PROCEDURE tally_up(IN n INT, OUT total INT) BEGIN "
        "UPDATE tally SET v = v + n WHERE k = 'docs'; SELECT v INTO total FROM tally WHERE k = 'docs'; "
        "SELECT k, v FROM tally; END")
    cur.executemany("INSERT INTO tally (k, v) VALUES (%s, %s)", [(f"k{i}", i) for i in range(1, 21)])
    c.commit()
    prepared(c, 0)
    c.commit()
    for n in (1, 2):
        cur.callproc("tally_up", (n, 0))
        for _ in cur.stored_results():
            pass
    c.commit()
    c.start_transaction()
    cur.execute("UPDATE tally SET v = -1")
    c.rollback()
    c.start_transaction(isolation_level="READ COMMITTED")
    cur.execute("UPDATE tally SET v = v * 2 WHERE k LIKE 'k1%'")
    c.commit()
    try:
        cur.execute("INSERT INTO tally (k, v) VALUES ('docs', 1)")
    except mysql.connector.errors.IntegrityError:
        pass
    ub = c.cursor(buffered=False)
    ub.execute("SELECT id, title, body FROM docs ORDER BY id")
    ub.fetchall()
    ub.close()
    cur.execute("UPDATE tally SET v = v + 1 WHERE k = 'k1'; SELECT COUNT(*) FROM tally; "
                "DELETE FROM tally WHERE k = 'k20'", map_results=True)
    while True:
        if cur.with_rows:
            cur.fetchall()
        if not cur.nextset():
            break
    c.commit()
    c.cmd_init_db("drv_mycx")
    c.ping()
    c.close()

    z = connect(host, user, password, compress=True)
    prepared(z, 100)
    z.commit()
    zc = z.cursor()
    zc.execute("SELECT id, title, body FROM docs ORDER BY id")
    zc.fetchall()
    z.close()
    print(json.dumps(dict(sorted(SENT.items()))))


if __name__ == "__main__":
    main()
