#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/demo.sh: Debian packages and Rust components.
# Source it, then call mrte_install_deps. Idempotent; installs only what is missing.

MRTE_APT_PACKAGES=(
  clang llvm libclang-dev libelf-dev zlib1g-dev libpcap-dev m4 pkg-config
  mariadb-server mariadb-client sysbench tcpdump tshark tcpreplay percona-toolkit ethtool iproute2
  libbpf-dev libxdp-dev xdp-tools python3
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
