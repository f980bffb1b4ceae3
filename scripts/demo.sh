#!/usr/bin/env bash
# make demo: boots three test guests that read and write their disks, shows
# `vmpulse stats` for them, runs the agent for a few seconds (with a fourth guest
# on a thin disk that the agent extends as the guest writes), calls each verb of
# its host API (`vmpulse rpc`), exports its ledger,
# shows a stuck VM reported as unresponsive, then stops the guests.
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

echo "== a thin disk for demo-thin-1: a qcow2 image (1 GiB to the guest) on a 64 MiB loop device, grown by 64 MiB chunks"
{
  echo "socket_dir: $sockets"
  echo "data_dir: $state/data"
  echo "listen: 127.0.0.1:9790"
  echo "thin_disks:"
  "$bin/vmpulse-testbed" thin-disk --vm demo-thin-1 --state-dir "$state" --size-mib 64 --capacity-mib 1024 --chunk-mib 64
} >"$state/agent.yaml"
cat "$state/agent.yaml"
thin_device=$(awk '$1 == "device:" {print $2}' "$state/agent.yaml")

echo "== vmpulse agent --config $state/agent.yaml: sampling every second, ledger in $state/data"
"$bin/vmpulse" agent --config "$state/agent.yaml" 2>"$state/agent.log" &
agent_pid=$!
sleep 2
echo "== booting demo-thin-1, which writes 300 MiB to its thin disk as soon as it is up"
"$bin/vmpulse-testbed" up --count 1 --prefix demo-thin --state-dir "$state" --socket-dir "$sockets" \
  --thin-device "$thin_device" --workload write:300 --wait
sleep 8
echo "== vmpulse stats --group io demo-1   (from the agent's snapshot: counters and 1s/1m/1h windows)"
"$bin/vmpulse" stats --agent 127.0.0.1:9790 --group io demo-1
echo "== vmpulse stats --group thin demo-thin-1   (the device grew on QEMU's write-threshold events)"
"$bin/vmpulse" stats --agent 127.0.0.1:9790 --group thin demo-thin-1
echo "== the host API for engines (JSON-RPC at /rpc): one call of each verb with vmpulse rpc"
rpc() { echo "-- vmpulse rpc $*"; "$bin/vmpulse" rpc --agent 127.0.0.1:9790 "$@"; }
rpc Host.getAllVmRuntimeStats
rpc VM.getStatus '{"vmIDs": ["demo-1", "demo-thin-1"]}'
rpc VM.getConfInfo '{"vmIDs": ["demo-1"]}'
rpc VM.getGuestDetails '{"vmIDs": ["demo-1"]}'
rpc Host.getAllVmDeviceStats | head -60; echo "   ... (cut)"
rpc Host.getAllDomainStats '{"groups": ["state", "balloon"], "vmIDs": ["demo-2"]}'
rpc rpc.discover | grep -E '^      "name": "[A-Za-z.]+",?$' | sed -E 's/^ *"name": "([^"]+)",?$/   method \1/'
echo "== the agent's log of those extensions"
grep 'thin disk' "$state/agent.log" | sed 's/^.*thin disk/thin disk/' | head -20
echo "== stopping the agent (SIGTERM: it writes the ledger first)"
kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=""
echo "== vmpulse billing export --format csv (per VM, disk and hour)"
"$bin/vmpulse" billing export --data-dir "$state/data" --format csv | cut -d, -f2,3,5,7-11
echo
echo "== a VM that stops answering: SIGSTOP demo-2, then vmpulse stats --group state --timeout 1"
kill -STOP "$(cat "$state/demo-2/qemu.pid")"
time "$bin/vmpulse" stats --direct --group state --timeout 1 || true
kill -CONT "$(cat "$state/demo-2/qemu.pid")"
