#!/usr/bin/env bash
# Two llm-node processes and HAProxy in front of them, on this machine's loopback: clients use
# http://127.0.0.1:8080. Run from the repository after `pnpm start` (or `pnpm build`); flags are passed to
# both nodes, e.g. `deploy/haproxy/start-two-nodes.sh --gpu-backend cpu`. Each node serves from its own GPU
# (--gpu-device 0 and 1); with --gpu-backend cpu both use the CPU. Ctrl-C drains both nodes and stops.
#
# Ports: LB_PORT (8080), NODE1_PORT (3001), NODE2_PORT (3002), NODE1_AGENT_PORT (3101), NODE2_AGENT_PORT (3102).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cli="$here/../../packages/cli/dist/bin.js"

command -v haproxy >/dev/null || { echo "haproxy is not installed (Debian, Ubuntu: sudo apt-get install haproxy)" >&2; exit 1; }
[ -f "$cli" ] || { echo "llm-node is not built: run 'pnpm build' first" >&2; exit 1; }

export LB_ADDR="127.0.0.1:${LB_PORT:-8080}"
export NODE1_ADDR="127.0.0.1:${NODE1_PORT:-3001}" NODE1_AGENT_PORT="${NODE1_AGENT_PORT:-3101}"
export NODE2_ADDR="127.0.0.1:${NODE2_PORT:-3002}" NODE2_AGENT_PORT="${NODE2_AGENT_PORT:-3102}"
devices=(0 1)
[[ " $* " == *" --gpu-backend cpu "* ]] && devices=(0 0)

pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

node "$cli" --port "${NODE1_ADDR#*:}" --agent-port "$NODE1_AGENT_PORT" --gpu-device "${devices[0]}" "$@" &
pids+=($!)
node "$cli" --port "${NODE2_ADDR#*:}" --agent-port "$NODE2_AGENT_PORT" --gpu-device "${devices[1]}" "$@" &
pids+=($!)
for addr in "$NODE1_ADDR" "$NODE2_ADDR"; do
  for _ in $(seq 1 600); do
    curl -fs "http://$addr/health/live" >/dev/null && break
    kill -0 "${pids[@]}" 2>/dev/null || { echo "a node did not start" >&2; exit 1; }
    sleep 0.1
  done
done
haproxy -W -db -f "$here/haproxy.cfg" &
pids+=($!)
echo "HAProxy on http://$LB_ADDR in front of llm-node at $NODE1_ADDR and $NODE2_ADDR (Ctrl-C stops all three)"
wait -n "${pids[@]}"
