#!/usr/bin/env bash
# Starts libvirtd (with virtlogd) on a host without systemd, for the benchmark
# against `virsh domstats`. Idempotent. What it sets, and why, is in
# ../shared/REFERENCE.md section 2: libvirt parses its compiled-in default
# user before its config, and this sandbox has no cgroups, udev or SELinux.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "libvirt-up: needs root" >&2; exit 1; }

getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/qemu /var/cache/libvirt/qemu

conf=/etc/libvirt/qemu.conf
if ! grep -q '^# vmpulse benchmark settings' "$conf" 2>/dev/null; then
  cat >> "$conf" <<'CONF'
# vmpulse benchmark settings
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
CONF
fi

pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 1 60); do
  virsh -c qemu:///system list >/dev/null 2>&1 && { echo "libvirtd is up"; exit 0; }
  sleep 0.5
done
echo "libvirt-up: libvirtd did not answer within 30 s; see /var/log/libvirt/libvirtd.log" >&2
exit 1
