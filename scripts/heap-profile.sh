#!/usr/bin/env bash
# Heap profile of idle connections: runs the release wsclose-server and the bare
# tokio-tungstenite loop (bench/src/bin/bare-peer.rs) under heaptrack, one after the other,
# holds N idle connections to each for a few seconds with the bench's client process, and
# prints each server's peak heap and its largest peak consumers.
#
#   scripts/heap-profile.sh [N]        (N defaults to 2000)
#
# Needs heaptrack (apt-get install heaptrack) and `cargo build --release -p wsclose-server
# -p wsclose-bench`. The profiles stay in target/heap/.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
out=target/heap
release=target/release
command -v heaptrack >/dev/null || { echo "heap-profile: needs heaptrack (apt-get install heaptrack)" >&2; exit 2; }
for bin in wsclose-server wsclose-bench bare-peer; do
  test -x "$release/$bin" || { echo "heap-profile: $release/$bin missing (cargo build --release -p wsclose-server -p wsclose-bench)" >&2; exit 2; }
done
mkdir -p "$out"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# profile NAME PATH COMMAND...: the server listens on $port, chosen before.
profile() {
  local name=$1 path=$2 bin=$3
  shift 2
  rm -f "$out/$name".*
  heaptrack -o "$out/$name" "$@" >"$out/$name.log" 2>&1 &
  pids+=($!)
  local pid=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  # The bench's client process: one Open command, then stdin stays open while it holds them.
  { printf '{"cmd":"open","url":"ws://127.0.0.1:%s%s","addr":"127.0.0.1:%s","count":%s,"sources":["127.0.0.2"],"ping_ms":null}\n' \
      "$port" "$path" "$port" "$n"
    sleep 5; } | "$release/wsclose-bench" --scale-client
  # The server itself (heaptrack's shell script runs it as a child, with a helper beside it).
  pkill -TERM -f "^$bin .*127\.0\.0\.1:$port" || true
  wait "$pid" || true
  echo "== $name, $n idle connections"
  heaptrack_print -f "$out/$name".*zst -p 1 -a 0 -T 0 -l 0 -n 6 -s 0 2>/dev/null \
    | sed -n '/PEAK MEMORY CONSUMERS/,/MOST TEMPORARY/p' \
    | grep -E '^[0-9.]+[KMG]? peak|^[A-Za-z_<$]' | grep -v '^MOST\|^PEAK' || true
}

port=$(free_port)
profile wsclose /ws/echo "$release/wsclose-server" --addr "127.0.0.1:$port" --max-connections 100000
port=$(free_port)
profile bare / "$release/bare-peer" "127.0.0.1:$port"
