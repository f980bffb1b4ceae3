#!/usr/bin/env bash
# make demo: boots three test guests that read and write their disks, shows
# `vmpulse stats` for them, runs the agent for a few seconds and exports its
# ledger, shows a stuck VM reported as unresponsive, then stops the guests.
#   DEMO_ROUNDS=N   how many times to print the stats (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/debug
state=/tmp/vmpulse-demo
sockets=/run/vmpulse/qmp
rounds=${DEMO_ROUNDS:-3}

agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  "$bin/vmpulse-testbed" down --state-dir "$state" >/dev/null || true
}
trap cleanup EXIT
cleanup

echo "== booting three test guests (QEMU, TCG), monitor sockets in $sockets"
"$bin/vmpulse-testbed" up --count 3 --prefix demo --state-dir "$state" --socket-dir "$sockets" --workload loop-write:64 --wait

for i in $(seq 1 "$rounds"); do
  echo
  echo "== vmpulse stats --group state,cpu-total,block   (round $i of $rounds)"
  "$bin/vmpulse" stats --direct --group state,cpu-total,block
  sleep 3
done

echo "== vmpulse stats --json demo-1 (every group, one VM)"
"$bin/vmpulse" stats --direct --json demo-1
echo

echo "== vmpulse agent: sampling every second, ledger in $state/data"
"$bin/vmpulse" agent --socket-dir "$sockets" --data-dir "$state/data" --listen 127.0.0.1:9790 2>"$state/agent.log" &
agent_pid=$!
sleep 8
echo "== vmpulse stats --group io demo-1   (from the agent's snapshot: counters and 1s/1m/1h windows)"
"$bin/vmpulse" stats --agent 127.0.0.1:9790 --group io demo-1
echo "== stopping the agent (SIGTERM: it writes the ledger first)"
kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
echo "== vmpulse billing export --format csv (per VM, disk and hour)"
"$bin/vmpulse" billing export --data-dir "$state/data" --format csv | cut -d, -f2,3,5,7-11
echo
echo "== a VM that stops answering: SIGSTOP demo-2, then vmpulse stats --group state --timeout 1"
kill -STOP "$(cat "$state/demo-2/qemu.pid")"
time "$bin/vmpulse" stats --direct --group state --timeout 1 || true
kill -CONT "$(cat "$state/demo-2/qemu.pid")"
