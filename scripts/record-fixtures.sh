#!/usr/bin/env bash
# Records the test fixtures with real clients on the lab: tcpdump on the mirror port (span0, in
# mrte-cap) while mariadb, mysqladmin, sysbench and python talk to prod from mrte-app. Writes
# tests/fixtures/*.pcap (the 18 MiB statement as .pcap.gz) and tests/fixtures/truth.json: per
# fixture, the command counts the clients sent, known from the client side (the scripted statement
# lists, sysbench's own report, the driver programs' socket taps), never from mrte's decoder.
#
# Usage: scripts/record-fixtures.sh [all|clients|drivers|drivers2]   (default all)
#   clients: the mariadb/mysqladmin/sysbench/python fixtures; drivers: the application drivers of
#   scripts/drivers/ (Connector/J, mysql2, PyMySQL, mysql-connector-python), see record_driver;
#   drivers2: the same drivers' second workloads (*_x: procedures, transactions, types, pools), node mariadb + mysql.
# Entries of truth.json not recorded in this run are kept. Run it under flock /tmp/mrte-lab.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
case "$WHAT" in all|clients|drivers|drivers2) ;; *) echo "usage: $0 [all|clients|drivers|drivers2]" >&2; exit 2 ;; esac
FIX=$PWD/tests/fixtures
mkdir -p "$FIX"
if [ "$WHAT" != clients ]; then
  . scripts/lib/deps.sh
  mrte_install_driver_deps
fi
LAB_ENV=/var/tmp/mrte-lab/env
# The Rust lab tests (tests/lab.rs, capture/tests/live_xdp.rs) serialise on this file (created
# exclusively, removed when done); run this script under `flock /tmp/mrte-lab.lock` as well.
LAB_LOCK=/var/tmp/mrte-lab.lock
for i in $(seq 1800); do (set -o noclobber; echo $$ >"$LAB_LOCK") 2>/dev/null && break; sleep 0.5; done
[ "$(cat "$LAB_LOCK" 2>/dev/null)" = $$ ] || { echo "record: $LAB_LOCK held for 15 min" >&2; exit 1; }
brought_up=0
cleanup() { [ "$brought_up" = 1 ] && scripts/lab.sh down; rm -f "$LAB_LOCK"; }
trap cleanup EXIT
if [ ! -f "$LAB_ENV" ]; then scripts/lab.sh up; brought_up=1; fi
. "$LAB_ENV"
M=(ip netns exec "$APP_NS" mariadb --no-defaults --skip-ssl -h "$PROD_ADDR" -u"$DB_USER" -p"$DB_PASS")
declare -A TRUTH

cap_start() { # name [iface [namespace]]
  local f=$FIX/$1.pcap
  rm -f "$f"
  local err=/tmp/mrte-record-tcpdump.$$
  ip netns exec "${3:-$CAP_NS}" tcpdump -i "${2:-$MIRROR_IF}" -B 262144 -s 0 -U -n -w "$f" "tcp port $PROD_PORT" >/dev/null 2>"$err" &
  CAP_PID=$!
  # On a loaded machine tcpdump may take seconds to start: wait until it listens.
  for _ in $(seq 100); do grep -q "listening on" "$err" 2>/dev/null && break; sleep 0.1; done
  rm -f "$err"
  sleep 0.5
}
cap_stop() { sleep 1; kill "$CAP_PID"; wait "$CAP_PID" 2>/dev/null || true; }

record_clients() {
# (a) mariadb client: a scripted session with USE, an error, a multi-statement, SHOW; --force runs all.
cap_start client_session
"${M[@]}" --force sbtest >/dev/null 2>&1 <<'SQL' || true
SELECT id, k FROM sbtest1 WHERE id BETWEEN 1 AND 5;
SELECT * FROM no_such_table;
USE mysql;
SELECT COUNT(*) FROM user;
USE sbtest;
SHOW TABLES;
DELIMITER //
SELECT 1; SELECT 2//
DELIMITER ;
SELECT 'it''s a "quoted" string', 3.14, NULL;
SQL
cap_stop
# The mariadb client sends `SELECT DATABASE()` before each `USE` (6 statements + 2 of those).
TRUTH[client_session]='{"COM_QUERY": 8, "COM_INIT_DB": 2, "COM_QUIT": 1}'

# (b) mysqladmin: ping, status, processlist.
cap_start mysqladmin
ip netns exec "$APP_NS" mysqladmin --no-defaults --skip-ssl -h "$PROD_ADDR" -u"$DB_USER" -p"$DB_PASS" ping status processlist >/dev/null 2>&1
cap_stop
TRUTH[mysqladmin]='{"COM_PING": 1, "COM_STATISTICS": 1, "COM_QUERY": 1, "COM_QUIT": 1}'

# (c) sysbench text protocol, (d) prepared statements: bounded by event count.
sb() { ip netns exec "$APP_NS" sysbench "$1" --db-driver=mysql --mysql-host="$PROD_ADDR" --mysql-user="$DB_USER" \
  --mysql-password="$DB_PASS" --tables="$TABLES" --table-size="$TABLE_SIZE" --threads=2 --events="$2" --time=0 \
  --db-ps-mode="$3" run; }
cap_start sysbench_text
out=$(sb oltp_read_write 40 disable)
cap_stop
q=$(echo "$out" | awk '/queries:/ {print $2; exit}')
TRUTH[sysbench_text]="{\"COM_QUERY\": $q, \"COM_QUIT\": 2}"

cap_start sysbench_ps
out=$(sb oltp_read_only 40 auto)
cap_stop
q=$(echo "$out" | awk '/queries:/ {print $2; exit}')
# oltp_read_only prepares 5 statements per table plus BEGIN and COMMIT per connection, closes them at the end.
np=$(( (5 * TABLES + 2) * 2 ))
TRUTH[sysbench_ps]="{\"COM_STMT_EXECUTE\": $q, \"COM_STMT_PREPARE\": $np, \"COM_STMT_CLOSE\": $np, \"COM_QUIT\": 2}"

# (e) compressed protocol.
cap_start compressed
"${M[@]}" --compress sbtest -e "SELECT c FROM sbtest1 WHERE id < 50; SELECT SUM(k) FROM sbtest2; SELECT REPEAT('z', 100000)" >/dev/null
cap_stop
TRUTH[compressed]='{"COM_QUERY": 3, "COM_QUIT": 1}'

# (f) one statement of 18 MiB (over the 16 MiB packet limit: two protocol packets).
big=$(mktemp)
python3 -c "import sys; sys.stdout.write(\"SELECT LENGTH('\" + 'x' * (18 * 1024 * 1024) + \"');\n\")" >"$big"
# Taken with `-i any` on the client's side (Linux cooked SLL2 frames, no mirror in between).
cap_start big_statement any "$APP_NS"
"${M[@]}" --max-allowed-packet=64M sbtest <"$big" >/dev/null
cap_stop
rm -f "$big"
gzip -9f "$FIX/big_statement.pcap"
TRUTH[big_statement]='{"COM_QUERY": 1, "COM_QUIT": 1}'

# (g) TLS: the session is counted and not decoded.
cap_start tls
ip netns exec "$APP_NS" mariadb --no-defaults --ssl -h "$PROD_ADDR" -u"$DB_USER" -p"$DB_PASS" -e "SELECT 1" >/dev/null
cap_stop
TRUTH[tls]='{}'

# (h) a session opened before the capture started: its first statements are not captured.
( echo "SELECT 1;"; sleep 2; echo "SELECT 2;"; echo "SELECT 3;"; sleep 1 ) | "${M[@]}" sbtest >/dev/null &
client=$!
sleep 1
cap_start midstream
wait "$client"
cap_stop
TRUTH[midstream]='{"COM_QUERY": 2, "COM_QUIT": 1}'

# (i) LOAD DATA LOCAL INFILE.
csv=$(mktemp)
for i in $(seq 1 200); do echo "$i,row$i"; done >"$csv"
cap_start local_infile
"${M[@]}" --local-infile=1 sbtest -e "CREATE TEMPORARY TABLE li (id INT, v VARCHAR(20)); LOAD DATA LOCAL INFILE '$csv' INTO TABLE li FIELDS TERMINATED BY ','; SELECT COUNT(*) FROM li" >/dev/null
cap_stop
rm -f "$csv"
TRUTH[local_infile]='{"COM_QUERY": 3, "COM_QUIT": 1}'

# (j) garbage on port 3306: random bytes from a raw TCP client.
cap_start garbage
ip netns exec "$APP_NS" python3 - "$PROD_ADDR" <<'PY'
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], 3306), timeout=5)
try:
    s.recv(4096)
    for _ in range(4):
        s.sendall(os.urandom(1000))
        time.sleep(0.05)
    time.sleep(0.3)
except OSError:
    pass  # the server resets a connection that sends garbage
s.close()
PY
cap_stop
TRUTH[garbage]='{}'
for k in client_session mysqladmin sysbench_text sysbench_ps compressed big_statement tls midstream local_infile garbage; do
  f=$k.pcap; [ "$k" = big_statement ] && f=$k.pcap.gz
  TRUTH[$k]="{\"file\": \"$f\", \"commands\": ${TRUTH[$k]}}"
done
}

. scripts/drivers/record.sh
case "$WHAT" in
  all) record_clients; record_drivers; record_drivers2 ;;
  clients) record_clients ;;
  drivers) record_drivers ;;
  drivers2) record_drivers2 ;;
esac

# truth.json: one entry per line, entries not recorded now kept as they were.
for k in "${!TRUTH[@]}"; do printf '%s\t%s\n' "$k" "${TRUTH[$k]}"; done | python3 -c '
import json, os, sys
path = sys.argv[1]
old = json.load(open(path)) if os.path.exists(path) else {}
for line in sys.stdin:
    k, v = line.rstrip("\n").split("\t", 1)
    old[k] = json.loads(v)
lines = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in old.items()]
open(path, "w").write("{\n" + ",\n".join(lines) + "\n}\n")
' "$FIX/truth.json"
ls -la "$FIX"
