# Sourced by bench/replay-cpu.sh and bench/replay-instr.sh: starts a scratch mariadbd on 127.0.0.1
# (own datadir and port under $OUT, stopped and removed at exit), loads sysbench's 4 x 10 000-row
# tables and records DURATION s of sysbench oltp_read_only off lo with tcpdump into $PCAP.
# Needs OUT, PORT, DURATION, THREADS, PS_MODE; sets srv, SB (the sysbench command) and PCAP.
rm -rf "$OUT" && mkdir -p "$OUT/tmp"
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null; rm -rf "$OUT/data"; }
trap cleanup EXIT
mariadb-install-db --no-defaults --datadir="$OUT/data" --user=root --skip-test-db \
  --auth-root-authentication-method=normal --tmpdir="$OUT/tmp" >/dev/null 2>&1
mariadbd --no-defaults --datadir="$OUT/data" --socket="$OUT/sock" --pid-file="$OUT/pid" \
  --log-error="$OUT/err.log" --port="$PORT" --bind-address=127.0.0.1 --tmpdir="$OUT/tmp" --user=root \
  --innodb-buffer-pool-size=128M >/dev/null 2>&1 &
srv=$!
for _ in $(seq 100); do mariadb -S "$OUT/sock" -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
mariadb -S "$OUT/sock" -uroot -e "create database sbtest; create user sbtest@'%' identified by 'sbtest';
  grant all on *.* to sbtest@'%';"
SB=(sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT"
  --mysql-user=sbtest --mysql-password=sbtest --tables=4 --table-size=10000 --threads="$THREADS"
  --db-ps-mode="$PS_MODE")
"${SB[@]}" prepare >/dev/null
PCAP=$OUT/sb.pcap
tcpdump -i lo -B 524288 -s 0 -U -n -w "$PCAP" "tcp port $PORT" 2>"$OUT/tcpdump.log" &
td=$!
for _ in $(seq 100); do grep -q "listening on" "$OUT/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
"${SB[@]}" --time="$DURATION" run >/dev/null
sleep 0.5; kill "$td"; wait "$td" 2>/dev/null || true
grep -E "dropped by kernel" "$OUT/tcpdump.log" || true
