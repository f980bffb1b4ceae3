#!/usr/bin/env bash
# A private libvirtd for the tests, beside (and independent of) the host's own.
#
#   scripts/libvirtd.sh start DIR                  start it (idempotent); prints its URI
#   scripts/libvirtd.sh stop DIR [--keep-guests]   stop it and its QEMUs (idempotent); with
#                                                  --keep-guests only libvirtd stops, its domains
#                                                  run on and a later `start DIR` reconnects to them
#   scripts/libvirtd.sh uri DIR                    print the URI clients use
#
# How: libvirtd's paths are compiled in (/run/libvirt, /var/lib/libvirt, ...), so it runs in a
# mount namespace of its own (unshare --mount, private propagation) where DIR's subdirectories
# are bind-mounted over those paths. A holder process (`sleep infinity`, pid in DIR/holder.pid)
# keeps the namespace alive across libvirtd restarts; libvirtd enters it with nsenter, and QEMU
# inherits it (qemu.conf: namespaces = [ ]). From outside, its socket is
# DIR/run/libvirt/libvirt-sock, so the URI is qemu:///system?socket=DIR/run/libvirt/libvirt-sock.
# The host's /run/libvirt, /var/lib/libvirt, /etc/libvirt... are never written, and a host
# libvirtd (running or not) is neither needed nor disturbed.
#
# DIR holds: run/ lib/ cache/ log/ etc/ (the bind sources), libvirtd.log (the daemon's log),
# log/qemu/NAME.log (each QEMU's stderr), holder.pid.
# The settings (REFERENCE.md section 2): QEMU as root, no dynamic ownership, no security driver,
# no cgroups, QEMU's output to plain files (no virtlogd needed).
set -euo pipefail

die() { echo "libvirtd.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR | stop DIR [--keep-guests] | uri DIR"; }

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
[ "$(id -u)" = 0 ] || die "needs root (libvirtd runs QEMU as root here)"
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac
dir=${dir%/}
[ -n "$dir" ] && [ "$dir" != / ] || die "DIR must not be /"
case "$dir" in *[!A-Za-z0-9_./+-]*) die "DIR may hold only letters, digits and _ . / + - (it goes into mount commands and a URI): $dir" ;; esac

sock="$dir/run/libvirt/libvirt-sock"
# libvirt probes QEMU's capabilities (~4 s) before its first domain and caches them in
# /var/cache/libvirt/qemu/capabilities (DIR/cache here); a copy kept here seeds new DIRs.
# libvirt re-probes by itself when the copy is stale (new QEMU, libvirt or kernel).
seed=${VMPULSE_LIBVIRT_CAPS_SEED:-/var/tmp/vmpulse-libvirt-caps}
uri="qemu:///system?socket=$sock"
# unix socket paths are limited to 107 bytes
[ ${#sock} -le 107 ] || die "DIR is too long for a unix socket path: $sock (${#sock} > 107 bytes)"

# The pid in FILE if that process is alive (and not a zombie), else nothing.
live_pid() {
  local file=$1 pid state
  [ -f "$file" ] || return 0
  pid=$(tr -dc 0-9 <"$file")
  [ -n "$pid" ] || return 0
  state=$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$pid/stat" 2>/dev/null || true)
  case "$state" in ''|Z|X) ;; *) echo "$pid" ;; esac
}

alive() { # PID: running and not a zombie
  local state
  state=$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null || true)
  case "$state" in ''|Z|X) return 1 ;; *) return 0 ;; esac
}

# Sends SIGTERM to PIDS, waits up to SECONDS, then SIGKILL and waits up to 2 s more.
terminate() {
  local seconds=$1; shift
  local pids=("$@") left p i
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -CONT "${pids[@]}" 2>/dev/null || true
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < seconds * 10; i++)); do
    left=()
    for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
    [ ${#left[@]} -gt 0 ] || return 0
    sleep 0.1
  done
  kill -KILL "${left[@]}" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    left=()
    for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
    [ ${#left[@]} -gt 0 ] || return 0
    sleep 0.1
  done
  echo "libvirtd.sh: processes still alive after SIGKILL: ${left[*]}" >&2
  return 1
}

answers() { # whether the daemon answers on its socket
  [ -S "$sock" ] && timeout 10 virsh -q -c "$uri" uri >/dev/null 2>&1
}

libvirtd_pid() { local p; p=$(live_pid "$dir/run/libvirt/libvirtd.pid"); [ -z "$p" ] || ! ours "$p" || echo "$p"; }
holder_pid() { local p; p=$(live_pid "$dir/holder.pid"); [ -z "$p" ] || ! ours "$p" || echo "$p"; }

# Whether PID lives in one of DIR's mount namespaces: there, /run/libvirt is DIR/run/libvirt.
# (A namespace's id is reused once it is gone, so ids alone cannot tell; /proc/PID/root
# resolves paths in PID's own mount namespace.)
ours() {
  local want
  want=$(stat -c %d:%i "$dir/run/libvirt" 2>/dev/null) || return 1
  [ "$(stat -L -c %d:%i "/proc/$1/root/run/libvirt" 2>/dev/null)" = "$want" ]
}

# Every process in one of DIR's mount namespaces, and the QEMUs whose pid files libvirtd left.
namespace_pids() {
  local p ns self want
  declare -A seen=()
  want=$(stat -c %d:%i "$dir/run/libvirt" 2>/dev/null) || return 0
  self=$(readlink /proc/self/ns/mnt)
  for p in /proc/[0-9]*; do
    ns=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
    [ "$ns" != "$self" ] || continue
    if [ -z "${seen[$ns]-}" ]; then
      if [ "$(stat -L -c %d:%i "$p/root/run/libvirt" 2>/dev/null)" = "$want" ]; then seen[$ns]=1; else seen[$ns]=0; fi
    fi
    [ "${seen[$ns]}" = 1 ] && echo "${p#/proc/}"
  done
  return 0
}
qemu_pids() {
  local f pid
  for f in "$dir"/run/libvirt/qemu/*.pid; do
    [ -f "$f" ] || continue
    pid=$(live_pid "$f")
    [ -n "$pid" ] && grep -qa qemu "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
  done
  return 0
}

write_config() {
  local etc="$dir/etc"
  mkdir -p "$etc"
  cat >"$etc/libvirtd.conf" <<'CONF'
# written by scripts/libvirtd.sh: a private libvirtd for vmpulse's tests
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
  cat >"$etc/qemu.conf" <<'CONF'
# written by scripts/libvirtd.sh (see ../shared/REFERENCE.md section 2)
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
# QEMU stays in the daemon's mount namespace (so `stop` finds it, and it sees the test paths)
namespaces = [ ]
CONF
  : >"$etc/libvirt.conf"
}

start() {
  local holder pid i
  mkdir -p "$dir"/run/libvirt "$dir"/lib "$dir"/cache "$dir"/log
  write_config

  # libvirt parses its compiled-in default QEMU user and group before its config.
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

  pid=$(libvirtd_pid)
  if [ -n "$pid" ] && [ -n "$(holder_pid)" ] && answers; then
    echo "$uri"
    return 0
  fi
  if [ -n "$pid" ]; then # a libvirtd that does not answer, or lost its namespace: replace it
    terminate 10 "$pid" || die "cannot stop the unresponsive libvirtd $pid"
  fi

  holder=$(holder_pid)
  if [ -z "$holder" ]; then
    # The mount points must exist on the host (empty directories; the packages make them anyway).
    local targets=() t real src
    for t in /run/libvirt /var/run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt; do
      mkdir -p "$t"
      real=$(readlink -f "$t")
      # /var/run is usually a symlink to /run: mount each real directory once
      case " ${targets[*]-} " in *" $real "*) ;; *) targets+=("$real") ;; esac
    done
    local script="set -e"
    for real in "${targets[@]}"; do
      case "$real" in
        */run/libvirt) src="$dir/run/libvirt" ;;
        */var/lib/libvirt) src="$dir/lib" ;;
        */var/cache/libvirt) src="$dir/cache" ;;
        */var/log/libvirt) src="$dir/log" ;;
        */etc/libvirt) src="$dir/etc" ;;
        *) die "unexpected mount point $real" ;;
      esac
      script+="; mount --bind '$src' '$real'"
    done
    rm -f "$dir/holder.ready"
    # The holder writes its own pid ($$ of the shell that becomes `sleep`): setsid may fork.
    script+="; echo \$\$ >'$dir/holder.ready'; exec sleep infinity"
    setsid unshare --mount --propagation private -- /bin/sh -c "$script" \
      </dev/null >>"$dir/holder.log" 2>&1 &
    for ((i = 0; i < 50; i++)); do
      [ -s "$dir/holder.ready" ] && break
      sleep 0.1
    done
    holder=$(live_pid "$dir/holder.ready")
    [ -n "$holder" ] || die "the namespace holder did not set up its mounts within 5 s: $(tail -n 5 "$dir/holder.log" 2>/dev/null)"
    ours "$holder" || { kill -KILL "$holder"; die "the holder's /run/libvirt is not $dir/run/libvirt: the bind mounts failed; see $dir/holder.log"; }
    echo "$holder" >"$dir/holder.pid"
  fi

  # A stale socket would make `answers` probe a dead daemon.
  rm -f "$sock" "$sock-ro" "$dir/run/libvirt/libvirt-admin-sock"
  local caps="$dir/cache/qemu/capabilities" probe=0
  if ! ls "$caps"/*.xml >/dev/null 2>&1; then
    probe=1
    if ls "$seed"/*.xml >/dev/null 2>&1; then mkdir -p "$caps" && cp -p "$seed"/*.xml "$caps"/ && probe=0; fi
  fi
  nsenter --mount --target "$holder" -- /usr/sbin/libvirtd -d -p /run/libvirt/libvirtd.pid \
    </dev/null >>"$dir/libvirtd.log" 2>&1 \
    || die "libvirtd failed to start; see $dir/libvirtd.log and $dir/log/libvirtd.log: $(tail -n 5 "$dir/log/libvirtd.log" 2>/dev/null)"
  for ((i = 0; i < 300; i++)); do
    if answers; then
      # Probe now (not in the first test's domain start) and keep a copy for the next DIR.
      if [ $probe = 1 ] && timeout 60 virsh -q -c "$uri" domcapabilities --virttype qemu >/dev/null 2>&1 \
        && ls "$caps"/*.xml >/dev/null 2>&1 && mkdir -p "$seed"; then
        for f in "$caps"/*.xml; do cp -p "$f" "$seed/.$$.tmp" && mv -f "$seed/.$$.tmp" "$seed/${f##*/}"; done
      fi
      echo "$uri"
      return 0
    fi
    [ -n "$(libvirtd_pid)" ] || [ $i -lt 20 ] || break
    sleep 0.1
  done
  die "libvirtd did not answer at $sock within 30 s; see $dir/log/libvirtd.log: $(tail -n 5 "$dir/log/libvirtd.log" 2>/dev/null)"
}

stop() {
  local keep=$1 pid holder pids
  [ -d "$dir" ] || return 0
  pid=$(libvirtd_pid)
  if [ -n "$pid" ]; then
    terminate 10 "$pid" || die "cannot stop libvirtd $pid"
  fi
  rm -f "$sock" "$sock-ro" "$dir/run/libvirt/libvirt-admin-sock"
  [ "$keep" = 1 ] && return 0

  # The QEMUs and anything else left in DIR's namespaces, then the holder.
  holder=$(holder_pid)
  mapfile -t pids < <({ qemu_pids; namespace_pids; } | sort -un | grep -vx "${holder:-none}" || true)
  terminate 5 "${pids[@]}" || die "cannot stop the QEMUs of $dir"
  if [ -n "$holder" ]; then terminate 2 "$holder" || die "cannot stop the namespace holder $holder"; fi
  # Nothing runs any more: drop the state of the dead domains so the next start is clean.
  rm -rf "$dir/run/libvirt" "$dir/holder.pid" "$dir/holder.ready"
}

case "$cmd" in
  start) [ $# -eq 2 ] || usage; start ;;
  stop)
    keep=0
    if [ $# -eq 3 ]; then [ "$3" = --keep-guests ] || usage; keep=1; elif [ $# -ne 2 ]; then usage; fi
    stop "$keep"
    ;;
  uri) [ $# -eq 2 ] || usage; echo "$uri" ;;
  *) usage ;;
esac
