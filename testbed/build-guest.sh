#!/usr/bin/env bash
# Builds the vmpulse test guest: Debian's cloud kernel and a busybox initramfs,
# with Debian's qemu-guest-agent and the libraries it links (taken from the host,
# where QEMU's own packages installed them).
# Everything comes from Debian's packages (apt-get download + dpkg -x: nothing
# is installed on the host, no maintainer scripts run); nothing is fetched when
# the guest runs. Output: $OUT/vmlinuz and $OUT/initrd.img.
# Rebuilds only when the inputs (this script, the guest scripts) changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
OUT=${VMPULSE_TESTBED_DIR:-$here/../.testbed}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

stamp=$(cat "$0" "$here/guest-init.sh" "$here/guest-shell.sh" | sha256sum | cut -c1-16)
if [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "test guest is up to date in $OUT"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The cloud kernel's current package name, from the meta-package's dependency.
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  echo "build-guest: cannot find the cloud kernel package (is 'apt-get update' done?)" >&2
  exit 1
fi
echo "building the test guest from $kpkg and busybox-static"
(cd "$work" && apt-get download "$kpkg" >/dev/null 2>&1) || {
  echo "build-guest: 'apt-get download $kpkg' failed; run 'apt-get update' and retry" >&2
  exit 1
}
dpkg -x "$work"/"$kpkg"_*.deb "$work/k"
kver=${kpkg#linux-image-}

root="$work/root"
mkdir -p "$root/bin" "$root/modules" "$root/dev" "$root/proc" "$root/sys" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$here/guest-init.sh" "$root/init"
install -m 0755 "$here/guest-shell.sh" "$root/bin/guest-shell"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         virtio_blk virtio_balloon failover net_failover virtio_net \
         scsi_common scsi_mod sd_mod virtio_scsi virtio_console; do
  f=$(find "$work/k/lib/modules/$kver" -name "$m.ko" | head -n 1)
  if [ -z "$f" ]; then
    echo "build-guest: module $m.ko is not in $kpkg" >&2
    exit 1
  fi
  cp "$f" "$root/modules/"
done
# The guest agent (qemu-ga, on a virtio-serial port, see guest-init.sh) and every
# library it links, as the host's loader resolves them.
(cd "$work" && apt-get download qemu-guest-agent >/dev/null 2>&1) || {
  echo "build-guest: 'apt-get download qemu-guest-agent' failed; run 'apt-get update' and retry" >&2
  exit 1
}
dpkg -x "$work"/qemu-guest-agent_*.deb "$work/qga"
install -m 0755 "$work/qga/usr/sbin/qemu-ga" "$root/bin/qemu-ga"
if ldd "$root/bin/qemu-ga" | grep -q 'not found'; then
  echo "build-guest: qemu-ga needs libraries this host lacks: $(ldd "$root/bin/qemu-ga" | grep 'not found' | tr '\n' ' ')" >&2
  exit 1
fi
for lib in $(ldd "$root/bin/qemu-ga" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# /dev/console must exist before devtmpfs is mounted, or the kernel's early
# messages and /init's stdio have nowhere to go.
mknod -m 600 "$root/dev/console" c 5 1

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/initrd.img.tmp"
cp "$work/k/boot/vmlinuz-$kver" "$OUT/vmlinuz.tmp"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$stamp" > "$OUT/stamp"
echo "test guest built in $OUT ($(du -sh "$OUT/initrd.img" | cut -f1) initramfs, kernel $kver)"
