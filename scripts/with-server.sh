#!/usr/bin/env bash
# Runs a browser test command against a freshly started wsclose-server on a free port.
#
#   scripts/with-server.sh SERVER_BINARY [server flags...] -- COMMAND [args...]
#
# The server binds 127.0.0.1:0; its WebSocket base URL (ws://127.0.0.1:PORT) is exported as
# WSCLOSE_SERVER_URL for COMMAND. The server is stopped afterwards, whatever happens.
#
# WSCLOSE_FREE_PORT is a port that was free a moment ago, for the refused-connection test.
#
# wasm-bindgen-test serves its test page from another origin than the server, and the server
# refuses foreign browser origins (HTTP 403). So a second free port is picked for that page,
# exported as WASM_BINDGEN_TEST_ADDRESS, and allowed with --allowed-origin.
# Server logs go to $WSCLOSE_SERVER_LOG (default: target/wsclose-server-test.log).
set -uo pipefail

server=$1
shift
flags=()
while [[ $# -gt 0 && $1 != -- ]]; do
  flags+=("$1")
  shift
done
shift || { echo "with-server: missing '-- COMMAND'" >&2; exit 2; }

page_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export WASM_BINDGEN_TEST_ADDRESS=127.0.0.1:$page_port
# A port nothing listens on, for the "connection refused" test.
WSCLOSE_FREE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export WSCLOSE_FREE_PORT
flags+=(--allowed-origin "http://127.0.0.1:$page_port")

log=${WSCLOSE_SERVER_LOG:-target/wsclose-server-test.log}
listening=$(mktemp)
"$server" --addr 127.0.0.1:0 "${flags[@]}" >"$listening" 2>"$log" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -f "$listening"
}
trap cleanup EXIT

for _ in $(seq 200); do
  grep -q 'listening on' "$listening" && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "with-server: $server exited before listening; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.05
done
url=$(sed -n 's#^wsclose-server listening on http://#ws://#p' "$listening")
if [[ -z $url ]]; then
  echo "with-server: no 'listening on' line from $server after 10 s" >&2
  exit 1
fi
export WSCLOSE_SERVER_URL=$url
echo "with-server: wsclose-server at $url, test page at http://$WASM_BINDGEN_TEST_ADDRESS (server log: $log)"
"$@"
status=$?
exit "$status"
