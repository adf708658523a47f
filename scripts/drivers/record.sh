# Sourced by scripts/record-fixtures.sh (needs its cap_start/cap_stop, FIX, TRUTH and the lab env).
# Records one fixture per application driver (tests/fixtures/<name>.pcap) and, in TRUTH[<name>]:
#   commands    the commands the driver wrote on its sockets, counted by a tap inside the driver
#               program (client packets with sequence number 0, by first byte): the truth;
#   server_log  prod's general query log for the app's connections, by command type: a check only
#               (it logs no COM_PING nor COM_RESET_CONNECTION, no COM_STMT_CLOSE of an unknown id,
#               and COM_STMT_BULK_EXECUTE as some "Execute" lines);
#   schema      <name>.schema.sql: mariadb-dump of the scratch schemas BEFORE the workload;
#   tables      per table AFTER the workload: rows, CHECKSUM TABLE, and md5 of
#               `mariadb -N -B -r -e "SELECT * FROM db.t ORDER BY 1"` (tab-separated text).
# A replay test restores the schema file on a fresh server, replays the pcap and compares tables.

DRIVERS_DIR=$PWD/scripts/drivers
ROOT_SQL=(mariadb --no-defaults -S "$PROD_SOCK" -uroot)

# Prod's general log entries of the app's connections, as {"Query": n, ...}.
server_log_counts() {
  "${ROOT_SQL[@]}" -N -B -e "SELECT command_type, COUNT(*) FROM mysql.general_log
    WHERE user_host LIKE '%[$APP_ADDR]%' GROUP BY command_type ORDER BY command_type" |
    python3 -c 'import json, sys; print(json.dumps({l.split("\t")[0]: int(l.split("\t")[1]) for l in sys.stdin if l.strip()}))'
}

# Per table of the given schemas: {"db.t": {"rows": n, "checksum": c, "md5": m}}.
table_sums() {
  local out="{" first=1 db t rows sum md5
  for db in "$@"; do
    for t in $("${ROOT_SQL[@]}" -N -B -e "SELECT table_name FROM information_schema.tables WHERE table_schema='$db' ORDER BY 1"); do
      rows=$("${ROOT_SQL[@]}" -N -B -e "SELECT COUNT(*) FROM \`$db\`.\`$t\`")
      sum=$("${ROOT_SQL[@]}" -N -B -e "CHECKSUM TABLE \`$db\`.\`$t\` EXTENDED" | cut -f2)
      md5=$("${ROOT_SQL[@]}" -N -B -r -e "SELECT * FROM \`$db\`.\`$t\` ORDER BY 1" | md5sum | cut -d' ' -f1)
      [ $first = 1 ] || out+=", "
      first=0
      out+="\"$db.$t\": {\"rows\": $rows, \"checksum\": $sum, \"md5\": \"$md5\"}"
    done
  done
  echo "$out}"
}

# record_driver NAME DRIVER-LABEL COMMAND...: scratch schema from scripts/drivers/NAME.sql, dump,
# capture while COMMAND runs in the app namespace (its stdout: the tap's JSON), log, checksums.
# NAME_b is a second take of NAME (same program and schema, other timing).
record_driver() {
  local name=$1 label=$2 base=${1%_b}
  shift 2
  local schemas
  schemas=$(grep -o 'CREATE DATABASE [a-z_0-9]*' "$DRIVERS_DIR/$base.sql" | awk '{print $3}' | tr '\n' ' ')
  "${ROOT_SQL[@]}" <"$DRIVERS_DIR/$base.sql"
  # shellcheck disable=SC2086
  mariadb-dump --no-defaults -S "$PROD_SOCK" -uroot --skip-dump-date --skip-comments --databases $schemas \
    >"$FIX/$base.schema.sql"
  "${ROOT_SQL[@]}" -e "SET GLOBAL log_output='TABLE'; TRUNCATE mysql.general_log; SET GLOBAL general_log=1"
  cap_start "$name"
  local client
  client=$(ip netns exec "$APP_NS" "$@")
  cap_stop
  "${ROOT_SQL[@]}" -e "SET GLOBAL general_log=0"
  local syns
  syns=$(tcpdump -nr "$FIX/$name.pcap" 'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn' 2>/dev/null | wc -l)
  local log tables
  log=$(server_log_counts)
  # shellcheck disable=SC2086
  tables=$(table_sums $schemas)
  TRUTH[$name]=$(python3 - "$name" "$label" "$client" "$log" "$tables" "$syns" "$base" <<'PY'
import json, sys
name, label, client, log, tables, syns, base = sys.argv[1:8]
client, log = json.loads(client), json.loads(log)
# General log command types -> protocol commands, to check the tap against the server.
names = {"Query": "COM_QUERY", "Init DB": "COM_INIT_DB", "Prepare": "COM_STMT_PREPARE",
         "Execute": "COM_STMT_EXECUTE", "Close stmt": "COM_STMT_CLOSE", "Reset stmt": "COM_STMT_RESET",
         "Statistics": "COM_STATISTICS", "Change user": "COM_CHANGE_USER", "Ping": "COM_PING",
         "Reset connection": "COM_RESET_CONNECTION", "Set option": "COM_SET_OPTION",
         "Field List": "COM_FIELD_LIST", "Quit": "COM_QUIT", "Long Data": "COM_STMT_SEND_LONG_DATA"}
for typ, n in log.items():
    cmd = names.get(typ)
    if cmd and client.get(cmd, 0) != n and not (cmd == "COM_STMT_EXECUTE" and "COM_STMT_BULK_EXECUTE" in client):
        print(f"record: {name}: server log has {n} {typ}, the driver's tap {client.get(cmd, 0)} {cmd}",
              file=sys.stderr)
# Every connection ends with COM_QUIT here: another client on the lab would show as more connects.
if log.get("Connect", 0) != client.get("COM_QUIT", 0):
    sys.exit(f"record: {name}: {log.get('Connect', 0)} connects in the server log, "
             f"{client.get('COM_QUIT', 0)} by the driver: was another client using the lab?")
if int(syns) != log.get("Connect", 0):
    sys.exit(f"record: {name}: {syns} connections captured, {log.get('Connect', 0)} made")
print(json.dumps({"file": f"{name}.pcap", "driver": label, "commands": client, "server_log": log,
                  "schema": f"{base}.schema.sql", "tables": json.loads(tables)}))
PY
)
  echo "record: $name: ${TRUTH[$name]}" >&2
}

record_drivers() {
  "${ROOT_SQL[@]}" -e "SET GLOBAL local_infile=1"
  local cj jar=/usr/share/java/mariadb-java-client.jar
  cj=$(mktemp -d)
  javac -d "$cj" -cp "$jar" "$DRIVERS_DIR/ConnectorJ.java"
  # Twice: where the pipelined batches split into TCP segments varies from run to run.
  for take in connectorj connectorj_b; do
    record_driver $take "Connector/J $(dpkg-query -W -f='${Version}' libmariadb-java)" \
      java -cp "$cj:$jar" ConnectorJ "$PROD_ADDR" "$DB_USER" "$DB_PASS" "$ED_USER" "$ED_PASS"
  done
  rm -rf "$cj"
  record_driver mysql2 "node mysql2 $(node -p "require('$DRIVERS_DIR/node_modules/mysql2/package.json').version")" \
    node "$DRIVERS_DIR/mysql2_workload.js" "$PROD_ADDR" "$DB_USER" "$DB_PASS"
  local csv
  csv=$(mktemp /tmp/mrte-people-XXXX.csv)
  for i in $(seq 2001 2100); do echo "$i,loaded-$i,city-$((i % 7))"; done >"$csv"
  record_driver pymysql "PyMySQL $("$MRTE_DRIVERS_PY" -c 'import importlib.metadata as m; print(m.version("PyMySQL"))')" \
    "$MRTE_DRIVERS_PY" "$DRIVERS_DIR/pymysql_workload.py" "$PROD_ADDR" "$DB_USER" "$DB_PASS" "$csv"
  rm -f "$csv"
  record_driver mysqlconnector \
    "mysql-connector-python $("$MRTE_DRIVERS_PY" -c 'import importlib.metadata as m; print(m.version("mysql-connector-python"))') (use_pure)" \
    "$MRTE_DRIVERS_PY" "$DRIVERS_DIR/mysqlconnector_workload.py" "$PROD_ADDR" "$DB_USER" "$DB_PASS"
}

# The second workloads (*_x): what a team's own application does beyond the first ones; and the
# node connectors mariadb (pipelining by default, bulk batches) and mysql (mysqljs); PHP mysqlnd
# (PDO, mysqli with a cursor: COM_STMT_FETCH) and Go's go-sql-driver.
record_drivers2() {
  local cj jar=/usr/share/java/mariadb-java-client.jar
  cj=$(mktemp -d)
  javac -d "$cj" -cp "$jar" "$DRIVERS_DIR/ConnectorJ.java" "$DRIVERS_DIR/ConnectorJX.java"
  record_driver connectorj_x "Connector/J $(dpkg-query -W -f='${Version}' libmariadb-java)" \
    java -cp "$cj:$jar" ConnectorJX "$PROD_ADDR" "$DB_USER" "$DB_PASS"
  rm -rf "$cj"
  record_driver mysql2_x "node mysql2 $(node -p "require('$DRIVERS_DIR/node_modules/mysql2/package.json').version")" \
    node "$DRIVERS_DIR/mysql2_x_workload.js" "$PROD_ADDR" "$DB_USER" "$DB_PASS"
  record_driver mariadbjs "node mariadb $(node -p "require('$DRIVERS_DIR/node_modules/mariadb/package.json').version") + mysql $(node -p "require('$DRIVERS_DIR/node_modules/mysql/package.json').version")" \
    node "$DRIVERS_DIR/mariadbjs_workload.js" "$PROD_ADDR" "$DB_USER" "$DB_PASS"
  # PHP and Go offer no hook on their sockets: tapproxy.py relays and counts (127.0.0.1:3307 in the
  # app namespace); the capture sees relay <-> prod, the same bytes.
  local tap=(python3 "$DRIVERS_DIR/tapproxy.py" 3307 "$PROD_ADDR" "$PROD_PORT" --)
  record_driver php "PHP $(php -r 'echo PHP_VERSION;') mysqlnd (PDO, mysqli)" \
    "${tap[@]}" php "$DRIVERS_DIR/php_workload.php" 127.0.0.1 3307 "$DB_USER" "$DB_PASS"
  local gobin
  gobin=$(mktemp -d)
  (cd "$DRIVERS_DIR/gowork" && GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE=$gobin/cache go build -o "$gobin/gowork" .)
  record_driver go "Go $(go env GOVERSION) go-sql-driver/mysql $(dpkg-query -W -f='${Version}' golang-github-go-sql-driver-mysql-dev)" \
    "${tap[@]}" "$gobin/gowork" 127.0.0.1 3307 "$DB_USER" "$DB_PASS"
  rm -rf "$gobin"
  record_driver pymysql_x "PyMySQL $("$MRTE_DRIVERS_PY" -c 'import importlib.metadata as m; print(m.version("PyMySQL"))')" \
    "$MRTE_DRIVERS_PY" "$DRIVERS_DIR/pymysql_x_workload.py" "$PROD_ADDR" "$DB_USER" "$DB_PASS"
  record_driver mysqlconnector_x \
    "mysql-connector-python $("$MRTE_DRIVERS_PY" -c 'import importlib.metadata as m; print(m.version("mysql-connector-python"))') (use_pure)" \
    "$MRTE_DRIVERS_PY" "$DRIVERS_DIR/mysqlconnector_x_workload.py" "$PROD_ADDR" "$DB_USER" "$DB_PASS"
}
