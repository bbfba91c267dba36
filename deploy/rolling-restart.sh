#!/usr/bin/env bash
# A rolling restart of the cluster that deploy/serve-cluster.sh (make serve-cluster) runs:
# SIGTERM to each instance in turn; the next one only once the one before has exited and its
# new start listens again. While one restarts, nginx sends every upgrade to the other.
#
#   deploy/rolling-restart.sh [CLUSTER_DIR]     (default: $CLUSTER_DIR, else target/cluster)
#
# Rehearse it with real clients:
#   wsclose-check ws://127.0.0.1:3030/ws/drain --deploy --during deploy/rolling-restart.sh
#
# Environment: RESTART_TIMEOUT, seconds one instance may take to exit and come back (default 30).
set -euo pipefail

dir=${1:-${CLUSTER_DIR:-target/cluster}}
timeout=${RESTART_TIMEOUT:-30}
say() { printf 'rolling-restart: %s\n' "$*"; }
die() { printf 'rolling-restart: %s\n' "$*" >&2; exit 1; }

# Polls every 50 ms until COMMAND succeeds, for at most RESTART_TIMEOUT seconds.
await() {
  local tries=$((timeout * 20))
  until "$@"; do
    ((tries--)) || return 1
    sleep 0.05
  done
}
gone() { ! kill -0 "$1" 2>/dev/null; }
restarted() { [[ -s $dir/instance-$1.pid && $(cat "$dir/instance-$1.pid") != "$2" ]]; }

for pid_file in "$dir"/instance-*.pid; do
  [[ -s $pid_file ]] || die "no instance pid files in $dir: is the cluster running (make serve-cluster)?"
  k=${pid_file##*/instance-}
  k=${k%.pid}
  old=$(cat "$pid_file")
  say "instance $k: SIGTERM to pid $old"
  kill -TERM "$old" || die "instance $k (pid $old) is not running"
  await gone "$old" || die "instance $k (pid $old) did not exit within ${timeout}s"
  await restarted "$k" "$old" || die "instance $k did not come back within ${timeout}s"
  say "instance $k: back as pid $(cat "$pid_file")"
done
