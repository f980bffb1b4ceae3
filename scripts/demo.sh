#!/usr/bin/env bash
# make demo: boots three test guests that read and write their disks, and shows
# `vmpulse stats` for them a few times, then stops them.
#   DEMO_ROUNDS=N   how many times to print the stats (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/debug
state=/tmp/vmpulse-demo
sockets=/run/vmpulse/qmp
rounds=${DEMO_ROUNDS:-3}

cleanup() { "$bin/vmpulse-testbed" down --state-dir "$state" >/dev/null || true; }
trap cleanup EXIT
cleanup

echo "== booting three test guests (QEMU, TCG), monitor sockets in $sockets"
"$bin/vmpulse-testbed" up --count 3 --prefix demo --state-dir "$state" --socket-dir "$sockets" --workload loop-write:64 --wait

for i in $(seq 1 "$rounds"); do
  echo
  echo "== vmpulse stats --group state,cpu-total,block   (round $i of $rounds)"
  "$bin/vmpulse" stats --group state,cpu-total,block
  sleep 3
done

echo "== vmpulse stats --json demo-1 (every group, one VM)"
"$bin/vmpulse" stats --json demo-1
echo
echo "== a VM that stops answering: SIGSTOP demo-2, then vmpulse stats --group state --timeout 1"
kill -STOP "$(cat "$state/demo-2/qemu.pid")"
time "$bin/vmpulse" stats --group state --timeout 1 || true
kill -CONT "$(cat "$state/demo-2/qemu.pid")"
