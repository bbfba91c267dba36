#!/usr/bin/env bash
# CPU per idle connection-second of several running servers, measured side by side: each gets
# COUNT connections from its own scripts/ping-clients.py (a Ping a second each), and all are
# watched over the same windows, so that what the machine does meanwhile weighs on all of them
# alike. Prints each window's figures and their ratios to the first server's.
#
# usage: scripts/cpu-side-by-side.sh PID=ws://HOST:PORT/PATH [PID=URL ...]
#   COUNT (1000) connections per server, WINDOWS (3) windows of WINDOW (5) seconds after
#   WARMUP (8) seconds; PYTHON (target/peers/venv/bin/python, made by `make setup-peers`).
# The window must end before the servers' own keepalive Pings (wsclose: 25 s after connecting).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000} WINDOWS=${WINDOWS:-3} WINDOW=${WINDOW:-5} WARMUP=${WARMUP:-8}
PYTHON=${PYTHON:-target/peers/venv/bin/python}
[ $# -ge 1 ] || { sed -n 2,10p "$0" >&2; exit 2; }

pids=() clients=()
trap 'kill "${clients[@]}" 2>/dev/null || true' EXIT
for server in "$@"; do
  pid=${server%%=*} url=${server#*=}
  [ -d "/proc/$pid" ] || { echo "no process $pid" >&2; exit 2; }
  pids+=("$pid")
  "$PYTHON" scripts/ping-clients.py "$url" "$COUNT" & clients+=($!)
done
sleep "$WARMUP"

# The CPU time of every thread of a process, in ns (/proc/PID/task/*/schedstat).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { print s }'; }

for window in $(seq "$WINDOWS"); do
  before=() after=()
  for pid in "${pids[@]}"; do before+=("$(cpu_ns "$pid")"); done
  sleep "$WINDOW"
  for pid in "${pids[@]}"; do after+=("$(cpu_ns "$pid")"); done
  line="window $window:"
  for i in "${!pids[@]}"; do
    line+=$(awk -v ns=$(( after[i] - before[i] )) -v first=$(( after[0] - before[0] )) \
      -v pid="${pids[i]}" -v seconds="$WINDOW" -v count="$COUNT" \
      'BEGIN { printf "  %s %.1f µs per conn-s (%.2f×)", pid, ns / 1000 / seconds / count, ns / first }')
  done
  echo "$line"
done
