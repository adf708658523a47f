"""PyMySQL workload for record-fixtures.sh: executemany, LOCAL INFILE, select_db, multi-statements,
CJK statements (UTF-8) and non-UTF-8 connections (EUC-KR, Shift_JIS).

Usage: python pymysql_workload.py HOST USER PASS CSV
Prints, as JSON, the commands PyMySQL wrote on its sockets: each packet with sequence number 0 (a
command) counted by its first byte, hidden ones (SET NAMES, SET AUTOCOMMIT) included.
"""

import json
import os
import sys
from collections import Counter

import pymysql
from pymysql.constants import CLIENT

NAMES = {0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY", 0x0E: "COM_PING"}
SENT = Counter()
PORT = int(os.environ.get("DB_PORT", "3306"))
_write = pymysql.connections.Connection._write_bytes


def _tap(self, data):
    if len(data) > 4 and data[3] == 0:
        SENT[NAMES.get(data[4], f"COM_0x{data[4]:02x}")] += 1
    return _write(self, data)


pymysql.connections.Connection._write_bytes = _tap

# Statements whose text the decoder must show as sent (UTF-8 connection).
CJK = [
    "/*中*/ SET @x=1",
    "INSERT INTO people (id, name, city) VALUES (900, '김철수', '서울')",
    "/* 日本語のコメント */ SELECT name FROM people WHERE city = '東京'",
    "SELECT '한국어' AS k, '日本語' AS j, 'ü' AS u",
    "UPDATE people SET city = '부산' /* 한글 주석 */ WHERE id = 900",
]


def main():
    host, user, password, csv = sys.argv[1:5]
    # The lab's prod offers TLS and PyMySQL would take it: plain text, so that the capture decodes.
    c = pymysql.connect(
        host=host, port=PORT, user=user, password=password, database="drv_py", charset="utf8mb4",
        local_infile=True, client_flag=CLIENT.MULTI_STATEMENTS, ssl_disabled=True,
    )
    cur = c.cursor()
    rows = [(i, f"name-{i}", f"city-{i % 5}") for i in range(1, 31)]
    # An INSERT ... VALUES executemany is one multi-row INSERT; any other statement runs per row.
    cur.executemany("INSERT INTO people (id, name, city) VALUES (%s, %s, %s)", rows)
    cur.executemany("UPDATE people SET city = %s WHERE id = %s", [("moved", i) for i in range(1, 6)])
    cur.execute(
        f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE people FIELDS TERMINATED BY ',' (id, name, city)"
    )
    c.select_db("drv_py_b")
    cur.execute("INSERT INTO events (id, what) VALUES (1, 'in b'), (2, 'also in b')")
    cur.execute("SELECT COUNT(*) FROM events")
    cur.fetchall()
    c.select_db("drv_py")
    cur.execute(
        "INSERT INTO people (id, name, city) VALUES (500, 'multi', 'x'); "
        "UPDATE people SET name = 'multi2' WHERE id = 500; SELECT COUNT(*) FROM people"
    )
    while cur.nextset():
        pass
    for sql in CJK:
        cur.execute(sql)
        cur.fetchall()
    c.ping(reconnect=False)
    c.commit()
    c.close()

    # Non-UTF-8 connections: the statement bytes are EUC-KR and Shift_JIS.
    for cs, rid, text in (("euckr", 1, "한글 테스트"), ("sjis", 2, "日本語テスト")):
        k = pymysql.connect(host=host, port=PORT, user=user, password=password, database="drv_py",
                            charset=cs, autocommit=True, ssl_disabled=True)
        kc = k.cursor()
        kc.execute(f"INSERT INTO texts (id, cs, body) VALUES ({rid}, '{cs}', '{text}')")
        kc.execute(f"SELECT body FROM texts WHERE body = '{text}'")
        kc.fetchall()
        k.close()
    print(json.dumps(dict(sorted(SENT.items()))))


if __name__ == "__main__":
    main()
