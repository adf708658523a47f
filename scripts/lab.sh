#!/usr/bin/env bash
# The SPAN lab: three network namespaces on one machine.
#
#   mrte-app  (198.18.0.1) --veth-- mrte-prod (198.18.0.2, MariaDB "prod" :3306)
#                                      | tc clsact + u32 + mirred: both directions of prod0
#                                      v
#                                    mir0 --veth-- span0 (mirror port) in mrte-cap
#   mrte-cap: span0 (no address, promisc), 198.18.1.2 on its lo (MariaDB "test" :3306)
#
# Usage: scripts/lab.sh up|down|status|load [sysbench args...]
# Env: LAB_DIR (/var/tmp/mrte-lab), TABLES (4), TABLE_SIZE (10000), TEST_BUFFER_POOL (128M),
#      PROD_BUFFER_POOL (128M), WORKLOAD (oltp_read_only), THREADS (4), DURATION (30), PS_MODE (disable).
# Addresses are from 198.18.0.0/15 only; nothing leaves the namespaces.
set -euo pipefail

LAB_DIR=${LAB_DIR:-/var/tmp/mrte-lab}
APP_NS=mrte-app PROD_NS=mrte-prod CAP_NS=mrte-cap
APP_ADDR=198.18.0.1 PROD_ADDR=198.18.0.2 TEST_ADDR=198.18.1.2
PORT=3306 MIRROR_IF=span0
DB_USER=sbtest DB_PASS=sbtest
ED_USER=sbtest_ed ED_PASS=sbtest_ed
TABLES=${TABLES:-4} TABLE_SIZE=${TABLE_SIZE:-10000}

log() { echo "lab: $*" >&2; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
have_ns() { ip netns list 2>/dev/null | grep -qw "$1"; }

offloads_off() {
  local ns=$1 dev=$2
  nsx "$ns" ethtool -K "$dev" tso off gso off gro off lro off >/dev/null 2>&1 || \
    nsx "$ns" ethtool -K "$dev" tso off gso off gro off >/dev/null 2>&1 || true
}

net_up() {
  for ns in $APP_NS $PROD_NS $CAP_NS; do
    have_ns "$ns" || ip netns add "$ns"
    nsx "$ns" ip link set lo up
  done
  if ! nsx $APP_NS ip link show app0 >/dev/null 2>&1; then
    ip link add app0 netns $APP_NS type veth peer name prod0 netns $PROD_NS
    nsx $APP_NS ip addr add $APP_ADDR/24 dev app0
    nsx $PROD_NS ip addr add $PROD_ADDR/24 dev prod0
    nsx $APP_NS ip link set app0 up
    nsx $PROD_NS ip link set prod0 up
  fi
  if ! nsx $CAP_NS ip link show $MIRROR_IF >/dev/null 2>&1; then
    # Two queues each way, so that multi-queue capture (--queues 2) can be tested: a frame arrives on
    # the RX queue of the TX queue it was sent on (mirrored traffic: queue 0).
    ip link add mir0 netns $PROD_NS numtxqueues 2 numrxqueues 2 type veth peer name $MIRROR_IF \
      netns $CAP_NS numtxqueues 2 numrxqueues 2
    nsx $PROD_NS ip link set mir0 up
    nsx $CAP_NS ip link set $MIRROR_IF up promisc on
  fi
  if ! nsx $CAP_NS ip -o addr show dev lo | grep -q "$TEST_ADDR/"; then
    nsx $CAP_NS ip addr add $TEST_ADDR/32 dev lo
  fi
  offloads_off $APP_NS app0
  offloads_off $PROD_NS prod0
  offloads_off $PROD_NS mir0
  offloads_off $CAP_NS $MIRROR_IF
  nsx $PROD_NS tc qdisc replace dev prod0 clsact
  nsx $PROD_NS tc filter del dev prod0 ingress 2>/dev/null || true
  nsx $PROD_NS tc filter del dev prod0 egress 2>/dev/null || true
  nsx $PROD_NS tc filter add dev prod0 ingress protocol all prio 1 u32 match u32 0 0 \
    action mirred egress mirror dev mir0
  nsx $PROD_NS tc filter add dev prod0 egress protocol all prio 1 u32 match u32 0 0 \
    action mirred egress mirror dev mir0
}

server_start() { # name ns addr buffer_pool [extra mariadbd args]
  local name=$1 ns=$2 addr=$3 pool=$4 dir=$LAB_DIR/$1
  shift 4
  if [ -f "$dir.pid" ] && kill -0 "$(cat "$dir.pid")" 2>/dev/null; then return 0; fi
  if [ ! -d "$dir/mysql" ]; then
    mkdir -p "$dir"
    mariadb-install-db --no-defaults --datadir="$dir" --user=root --auth-root-authentication-method=socket \
      >"$dir.install.log" 2>&1
  fi
  nsx "$ns" setsid mariadbd --no-defaults --datadir="$dir" --socket="$dir.sock" --pid-file="$dir.pid" \
    --port=$PORT --bind-address="$addr" --user=root --skip-name-resolve --skip-log-bin \
    --innodb-buffer-pool-size="$pool" --innodb-flush-log-at-trx-commit=0 --innodb-log-file-size=64M \
    --max-allowed-packet=64M --max-connections=2000 --log-error="$dir.err" \
    --general-log=0 --general-log-file="$dir.general.log" "$@" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 120); do
    mariadb --no-defaults -S "$dir.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  log "$name server did not start; see $dir.err"; tail -20 "$dir.err" >&2 || true
  return 1
}

sql() { mariadb --no-defaults -S "$LAB_DIR/$1.sock" -uroot -e "$2"; }

seed() {
  for s in prod test; do
    sql $s "DELETE FROM mysql.global_priv WHERE User=''; FLUSH PRIVILEGES;
      CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
      GRANT ALL ON *.* TO '$DB_USER'@'%'; CREATE DATABASE IF NOT EXISTS sbtest; FLUSH PRIVILEGES;"
    # A MariaDB ed25519 user (client_ed25519 auth) for replay auth tests.
    sql $s "INSTALL SONAME 'auth_ed25519'" 2>/dev/null || true
    sql $s "CREATE USER IF NOT EXISTS '$ED_USER'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('$ED_PASS');
      GRANT ALL ON *.* TO '$ED_USER'@'%'; FLUSH PRIVILEGES;"
  done
  local have
  have=$(mariadb --no-defaults -S "$LAB_DIR/prod.sock" -uroot -N -e \
    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='sbtest'")
  if [ "$have" -lt "$TABLES" ]; then
    log "seeding prod with sysbench ($TABLES tables x $TABLE_SIZE rows)"
    nsx $APP_NS sysbench oltp_read_write --db-driver=mysql --mysql-host=$PROD_ADDR --mysql-port=$PORT \
      --mysql-user=$DB_USER --mysql-password=$DB_PASS --tables="$TABLES" --table-size="$TABLE_SIZE" \
      prepare >"$LAB_DIR/seed.log" 2>&1
    log "copying prod's data to test so both start identical"
    mariadb-dump --no-defaults -S "$LAB_DIR/prod.sock" -uroot --databases sbtest --single-transaction \
      | mariadb --no-defaults -S "$LAB_DIR/test.sock" -uroot
  fi
}

write_env() {
  cat >"$LAB_DIR/env" <<EOF
LAB_DIR=$LAB_DIR
APP_NS=$APP_NS
PROD_NS=$PROD_NS
CAP_NS=$CAP_NS
APP_ADDR=$APP_ADDR
PROD_ADDR=$PROD_ADDR
PROD_PORT=$PORT
TEST_ADDR=$TEST_ADDR
TEST_PORT=$PORT
MIRROR_IF=$MIRROR_IF
PROD_SOCK=$LAB_DIR/prod.sock
TEST_SOCK=$LAB_DIR/test.sock
DB_USER=$DB_USER
DB_PASS=$DB_PASS
ED_USER=$ED_USER
ED_PASS=$ED_PASS
TABLES=$TABLES
TABLE_SIZE=$TABLE_SIZE
EOF
}

status() {
  echo "namespaces: $(ip netns list 2>/dev/null | grep -o 'mrte-[a-z]*' | tr '\n' ' ')"
  for s in prod test; do
    if [ -f "$LAB_DIR/$s.pid" ] && kill -0 "$(cat "$LAB_DIR/$s.pid")" 2>/dev/null; then
      echo "$s server: running (pid $(cat "$LAB_DIR/$s.pid"), socket $LAB_DIR/$s.sock)"
    else
      echo "$s server: not running"
    fi
  done
  if have_ns $PROD_NS; then
    echo "mirror filters on prod0 (mrte-prod):"
    nsx $PROD_NS tc -s filter show dev prod0 ingress | grep -E "mirred|Sent" | sed 's/^/  ingress /' || true
    nsx $PROD_NS tc -s filter show dev prod0 egress | grep -E "mirred|Sent" | sed 's/^/  egress  /' || true
  fi
  [ -f "$LAB_DIR/env" ] && { echo "facts ($LAB_DIR/env):"; sed 's/^/  /' "$LAB_DIR/env"; }
  return 0
}

up() {
  command -v mariadbd >/dev/null || { log "mariadbd missing: run scripts/lib/deps.sh first"; exit 1; }
  mkdir -p "$LAB_DIR"
  # tc mirred hands mirrored frames to the per-CPU backlog; a burst (a 16 MiB statement) must not
  # overflow it, as a real SPAN port's buffer would not.
  [ "$(sysctl -n net.core.netdev_max_backlog)" -ge 100000 ] || sysctl -qw net.core.netdev_max_backlog=100000
  net_up
  if [ ! -f "$LAB_DIR/tls/key.pem" ]; then
    mkdir -p "$LAB_DIR/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mrte-lab-prod" \
      -keyout "$LAB_DIR/tls/key.pem" -out "$LAB_DIR/tls/cert.pem" >/dev/null 2>&1
  fi
  server_start prod $PROD_NS $PROD_ADDR "${PROD_BUFFER_POOL:-128M}" \
    --ssl-cert="$LAB_DIR/tls/cert.pem" --ssl-key="$LAB_DIR/tls/key.pem"
  server_start test $CAP_NS $TEST_ADDR "${TEST_BUFFER_POOL:-128M}"
  seed
  write_env
  # The mirror must carry both directions: a query from app must show up on span0.
  local before after
  before=$(nsx $CAP_NS cat /sys/class/net/$MIRROR_IF/statistics/rx_packets)
  nsx $APP_NS mariadb --no-defaults -h $PROD_ADDR -u$DB_USER -p$DB_PASS -e 'SELECT 1' >/dev/null
  after=$(nsx $CAP_NS cat /sys/class/net/$MIRROR_IF/statistics/rx_packets)
  [ "$after" -gt "$before" ] || { log "mirror port saw no packets"; exit 1; }
  nsx $CAP_NS mariadb --no-defaults -h $TEST_ADDR -u$DB_USER -p$DB_PASS -e 'SELECT 1' >/dev/null
  log "up: prod $PROD_ADDR:$PORT (ns $PROD_NS), test $TEST_ADDR:$PORT (ns $CAP_NS), mirror port $MIRROR_IF in $CAP_NS; facts in $LAB_DIR/env"
}

down() {
  for s in prod test; do
    if [ -f "$LAB_DIR/$s.pid" ]; then
      local pid; pid=$(cat "$LAB_DIR/$s.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  for ns in $APP_NS $PROD_NS $CAP_NS; do
    if have_ns "$ns"; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns"
    fi
  done
  rm -rf "$LAB_DIR"
  log "down"
}

load() {
  local workload=${WORKLOAD:-oltp_read_only}
  nsx $APP_NS timeout $(( ${DURATION:-30} + 60 )) sysbench "$workload" --db-driver=mysql \
    --mysql-host=$PROD_ADDR --mysql-port=$PORT --mysql-user=$DB_USER --mysql-password=$DB_PASS \
    --tables="$TABLES" --table-size="$TABLE_SIZE" --threads="${THREADS:-4}" --time="${DURATION:-30}" \
    --db-ps-mode="${PS_MODE:-disable}" --report-interval=10 "$@" run
}

cmd=${1:-status}; shift || true
case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  load) load "$@" ;;
  *) echo "usage: $0 up|down|status|load [sysbench args]" >&2; exit 2 ;;
esac
