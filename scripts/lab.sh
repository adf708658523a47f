#!/usr/bin/env bash
# The SPAN lab: three network namespaces on one machine.
#
#   mrte-app  (198.18.0.1) --veth-- mrte-prod (198.18.0.2, MariaDB "prod" :3306)
#                                      | tc clsact + u32 + mirred: both directions of prod0
#                                      v
#                                    mir0 --veth-- span0 (mirror port) in mrte-cap
#   mrte-cap: span0 (no address, promisc), 198.18.1.2 on its lo (MariaDB "test" :3306)
#
# Scale-out (issue 12; after `up`): `scripts/lab.sh nats [1|3]` starts nats-server with JetStream
# in mrte-cap, one node at 198.18.1.11:4222 or a 3-node cluster for R3 streams (198.18.1.11-13:4222,
# routes :6222, monitoring :8222), and REPLAY_HOSTS (2) "replay host" namespaces mrte-rh<k>
# (198.18.2.<4k-2>), each a veth away from mrte-cap, that reach NATS and the test server 198.18.1.2
# ($LAB_DIR/env: NATS_URL, REPLAY_NS). `nats-kill K` SIGKILLs node K (1-based).
#
# Usage: scripts/lab.sh up|down|status|load [sysbench args...]|nats [1|3]|nats-kill K
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
REPLAY_HOSTS=${REPLAY_HOSTS:-2}
nats_addr() { echo "198.18.1.$((10 + $1))"; }
replay_ns_all() { ip netns list 2>/dev/null | grep -o '^mrte-rh[0-9]*' | sort -V || true; }

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

nats_bin() {
  local b=${MRTE_NATS_SERVER:-/var/tmp/mrte-nats/venv/bin/nats-server}
  [ -x "$b" ] || b=$(command -v nats-server || true)
  [ -n "$b" ] || { log "nats-server missing: scripts/lib/deps.sh mrte_install_nats"; exit 1; }
  echo "$b"
}

# Replay hosts: mrte-rh<k> with rh<k> (198.18.2.<4k-2>/30) paired to rh<k>c (198.18.2.<4k-3>) in
# mrte-cap; their route to 198.18.1.0/24 (NATS, the test server) goes through mrte-cap.
replay_hosts_up() {
  local k ns a
  for k in $(seq "$REPLAY_HOSTS"); do
    ns=mrte-rh$k a=$((4 * k))
    have_ns "$ns" || ip netns add "$ns"
    nsx "$ns" ip link set lo up
    if ! nsx "$ns" ip link show "rh$k" >/dev/null 2>&1; then
      ip link add "rh${k}c" netns $CAP_NS type veth peer name "rh$k" netns "$ns"
      nsx $CAP_NS ip addr add "198.18.2.$((a - 3))/30" dev "rh${k}c"
      nsx "$ns" ip addr add "198.18.2.$((a - 2))/30" dev "rh$k"
      nsx $CAP_NS ip link set "rh${k}c" up
      nsx "$ns" ip link set "rh$k" up
      nsx "$ns" ip route add 198.18.1.0/24 via "198.18.2.$((a - 3))"
    fi
  done
}

tcp_open() { nsx "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }

nats_up() { # nodes (1 or 3)
  local n=${1:-1} bin i j addr routes urls=() ns
  [ "$n" = 1 ] || [ "$n" = 3 ] || { log "nats: 1 or 3 nodes"; exit 2; }
  have_ns $CAP_NS || { log "the lab is down: scripts/lab.sh up first"; exit 1; }
  bin=$(nats_bin)
  replay_hosts_up
  for i in $(seq "$n"); do
    addr=$(nats_addr "$i")
    urls+=("nats://$addr:4222")
    nsx $CAP_NS ip -o addr show dev lo | grep -q "$addr/" || nsx $CAP_NS ip addr add "$addr/32" dev lo
    if [ -f "$LAB_DIR/nats-n$i.pid" ] && kill -0 "$(cat "$LAB_DIR/nats-n$i.pid")" 2>/dev/null; then continue; fi
    local args=(-js -a "$addr" -p 4222 -m 8222 -sd "$LAB_DIR/nats-n$i" --server_name "n$i")
    if [ "$n" = 3 ]; then
      routes=$(for j in 1 2 3; do [ "$j" = "$i" ] || printf 'nats://%s:6222,' "$(nats_addr "$j")"; done)
      args+=(--cluster_name mrte-lab --cluster "nats://$addr:6222" --routes "${routes%,}")
    fi
    mkdir -p "$LAB_DIR/nats-n$i"
    nsx $CAP_NS setsid "$bin" "${args[@]}" </dev/null >"$LAB_DIR/nats-n$i.log" 2>&1 &
    echo $! >"$LAB_DIR/nats-n$i.pid"
  done
  for i in $(seq "$n"); do
    addr=$(nats_addr "$i")
    for _ in $(seq 100); do tcp_open $CAP_NS "$addr" 4222 && break; sleep 0.1; done
    tcp_open $CAP_NS "$addr" 4222 || { log "nats n$i did not start; see $LAB_DIR/nats-n$i.log"; exit 1; }
  done
  # JetStream ready: /healthz answers 200 once the node is current with the cluster's meta leader.
  for i in $(seq "$n"); do
    addr=$(nats_addr "$i")
    for _ in $(seq 300); do nsx $CAP_NS curl -sf "http://$addr:8222/healthz" >/dev/null && break; sleep 0.1; done
    nsx $CAP_NS curl -sf "http://$addr:8222/healthz" >/dev/null || { log "nats n$i: JetStream not ready; see $LAB_DIR/nats-n$i.log"; exit 1; }
  done
  # Every replay host reaches every node and the test server.
  for ns in $(replay_ns_all); do
    for i in $(seq "$n"); do
      tcp_open "$ns" "$(nats_addr "$i")" 4222 || { log "$ns cannot reach nats n$i"; exit 1; }
    done
    tcp_open "$ns" $TEST_ADDR $PORT || { log "$ns cannot reach the test server"; exit 1; }
  done
  local url; url=$(IFS=,; echo "${urls[*]}")
  sed -i '/^NATS_URL=/d; /^NATS_NODES=/d; /^REPLAY_NS=/d' "$LAB_DIR/env"
  {
    echo "NATS_URL=$url"
    echo "NATS_NODES=$n"
    echo "REPLAY_NS=\"$(replay_ns_all | tr '\n' ' ' | sed 's/ $//')\""
  } >>"$LAB_DIR/env"
  log "nats: $n node(s) $url in $CAP_NS (store $LAB_DIR/nats-n*); replay hosts: $(replay_ns_all | tr '\n' ' ')"
}

nats_kill() { # node number
  local f=$LAB_DIR/nats-n$1.pid
  [ -f "$f" ] || { log "no nats node $1"; exit 1; }
  kill -9 "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
  log "nats n$1 killed (SIGKILL)"
}

status() {
  echo "namespaces: $(ip netns list 2>/dev/null | grep -o 'mrte-[a-z0-9]*' | tr '\n' ' ')"
  for f in "$LAB_DIR"/nats-n*.pid; do
    [ -f "$f" ] || continue
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid): running"; else echo "$(basename "$f" .pid): dead"; fi
  done
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
  for f in "$LAB_DIR"/nats-n*.pid; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  for ns in $APP_NS $PROD_NS $CAP_NS $(replay_ns_all); do
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
  nats) nats_up "$@" ;;
  nats-kill) nats_kill "$@" ;;
  *) echo "usage: $0 up|down|status|load [sysbench args]|nats [1|3]|nats-kill K" >&2; exit 2 ;;
esac
