#!/usr/bin/env bash
# Installs what vmpulse's tests, demo and benchmarks need on a Debian bookworm
# host, and builds the test guest. Idempotent: installs only what is missing.
#   scripts/setup.sh   QEMU, the guest image's sources, iproute2, losetup (thin disks), libvirt
#                      (the tests run a private libvirtd: scripts/libvirtd.sh) and GNU time
# `--libvirt` is still accepted (the bench target passes it); libvirt is always installed now.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  ""|--libvirt) ;;
  *) echo "setup: unknown option $1 (usage: scripts/setup.sh [--libvirt])" >&2; exit 1 ;;
esac

packages=(qemu-system-x86 qemu-utils busybox-static cpio iproute2 procps libsqlite3-dev sqlite3 mount util-linux
          libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev time
          prometheus  # promtool and a Prometheus server for the metrics tests (started by the tests)
          postgresql-15  # a throw-away PostgreSQL cluster for the engine's fleet store tests (initdb, started by the tests)
          chromium)   # headless, for the panel's browser test

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The guest's kernel is fetched with apt-get download, which needs package lists.
have_lists() { ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; }
if [ ${#missing[@]} -gt 0 ] || ! have_lists || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install ${missing[*]:-package lists} (run: sudo make setup)" >&2
    exit 1
  fi
  echo "setup: apt-get update"
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

testbed/build-guest.sh
