#!/bin/busybox sh
# /init of the vmpulse test guest: a busybox initramfs on Debian's cloud kernel.
# It loads the virtio modules, reports readiness on the first serial port, runs
# the workload named on the kernel command line (wl=...), and then serves a
# command shell on the second serial port (see testbed/guest-shell.sh).
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /mnt
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# The cloud kernel builds virtio as modules and the package has no modules.dep,
# so they are loaded by hand, in dependency order (virtio_ring first).
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         virtio_blk virtio_balloon failover net_failover virtio_net \
         scsi_common scsi_mod sd_mod virtio_scsi virtio_console; do
  insmod "/modules/$m.ko" 2>/dev/null
done

wl=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    wl=*) wl="${arg#wl=}" ;;
  esac
done

# The command shell starts before readiness is announced, so that a host that
# waits for VMPULSE-READY can talk to it at once.
if [ -e /dev/ttyS1 ]; then
  stty -F /dev/ttyS1 raw -echo 2>/dev/null
  /bin/guest-shell </dev/ttyS1 >/dev/ttyS1 2>&1 &
fi

# The guest agent, when the host gave the VM its port (org.qemu.guest_agent.0).
for port in /sys/class/virtio-ports/*; do
  [ -e "$port/name" ] || continue
  if [ "$(cat "$port/name")" = org.qemu.guest_agent.0 ]; then
    mkdir -p /var/run
    /bin/qemu-ga -m virtio-serial -p "/dev/$(basename "$port")" -t /tmp -f /tmp/qemu-ga.pid -l /tmp/qemu-ga.log &
  fi
done

echo "VMPULSE-READY $(ls /sys/block | tr '\n' ' ')" >/dev/ttyS0

# Workloads: wl=write:MIB writes MIB MiB to /dev/vda with O_DIRECT.
# (SCSI disks, when a test adds them, are /dev/sda...: sd_mod is loaded above.)
case "$wl" in
  write:*)
    n="${wl#write:}"
    dd if=/dev/zero of=/dev/vda bs=1M count="$n" oflag=direct 2>/dev/null
    echo "VMPULSE-WORKLOAD-DONE $wl" >/dev/ttyS0
    ;;
  loop-write:*)
    # A steady trickle for the demo: 1 MiB every second, round and round.
    n="${wl#loop-write:}"
    i=0
    while true; do
      dd if=/dev/zero of=/dev/vda bs=1M count=1 seek=$((i % n)) oflag=direct 2>/dev/null
      dd if=/dev/vda of=/dev/null bs=64k count=4 skip=$((i % 16)) iflag=direct 2>/dev/null
      i=$((i + 1))
      sleep 1
    done &
    ;;
esac

while true; do sleep 3600; done
