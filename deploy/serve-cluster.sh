#!/usr/bin/env bash
# nginx in front of wsclose-server instances, each restarted when it exits.
#
#   deploy/serve-cluster.sh SERVER_BINARY [server flags...]      (make serve-cluster)
#
# Environment:
#   ADDR                nginx's listen address (default 127.0.0.1:3030; port 0 picks a free one)
#   PROXY_READ_TIMEOUT  nginx's proxy_read_timeout (default 60s, nginx's own default)
#   CLUSTER_DIR         nginx prefix, logs and state (default target/cluster)
#   NGINX_BIN           the nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   INSTANCE_LOG_MAX    the most one instance log file holds, as split -C takes it (default 8M,
#                       8 MiB); see Logs below
#
# Prints, on stdout:
#   wsclose-cluster instance K pid PID on http://IP:PORT   each time instance K starts (it is
#                                                          listening, its signal handlers set)
#   wsclose-cluster nginx pid PID                          once nginx's master listens and has
#                                                          written its pid file
#   wsclose-cluster listening on http://IP:PORT            right after, once: nginx accepts
#
# Port 0 in ADDR: nginx cannot bind port 0 and say which port it got, so the script tries a
# random port in 20000-32767 (below Linux's default ephemeral range, where the instances' and
# outgoing connections' ports come from) that nothing answers on, and if nginx still fails
# with "Address already in use" (another process took it first), it tries another one.
#
# State, under CLUSTER_DIR: instance-K.addr and instance-K.pid, the address and process id of
# instance K's current start (written once it listens); deploy/rolling-restart.sh reads them.
#
# Logs, under CLUSTER_DIR: nginx's error.log and access.log (nginx's own; rotate them with
# logrotate and `nginx -s reopen` in production), and each instance's stderr in
# instance-K.log. An instance log never grows past INSTANCE_LOG_MAX: when it would, it moves
# to instance-K.log.1 (replacing the one there) and a new one starts; a restarted instance
# starts a new one the same way. So an instance's logs take at most twice INSTANCE_LOG_MAX.
#
# A rolling restart is a SIGTERM to each instance in turn: the instance closes its listener,
# sends Close to its clients and exits; this script starts it again on the same port, while
# nginx sends new upgrades to the other instance. SIGINT or SIGTERM to this script stops every
# instance gracefully, then nginx, and exits 0.
set -uo pipefail

# SIGINT stops the cluster whatever the shell that started this script did with it. A background
# job of a non-interactive shell starts with SIGINT ignored, and bash cannot trap a signal that
# was ignored on entry; the instances (tokio) would still stop on it and be restarted forever.
# So start again, once, with SIGINT and SIGTERM at their defaults.
if [[ $(trap -p INT TERM) == *"trap -- ''"* && -z ${WSCLOSE_CLUSTER_SIGNALS_RESET:-} ]]; then
  WSCLOSE_CLUSTER_SIGNALS_RESET=1 exec env --default-signal=INT,TERM bash "$0" "$@"
fi

server=${1:?usage: deploy/serve-cluster.sh SERVER_BINARY [server flags...]}
shift
flags=("$@")
here=$(cd "$(dirname "$0")" && pwd)
addr=${ADDR:-127.0.0.1:3030}
instances=2 # deploy/nginx.conf names two
read_timeout=${PROXY_READ_TIMEOUT:-60s}
dir=${CLUSTER_DIR:-target/cluster}
nginx=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}

say() { printf 'wsclose-cluster %s\n' "$*"; }
die() { printf 'wsclose-cluster: %s\n' "$*" >&2; exit 1; }
log_max=${INSTANCE_LOG_MAX:-8M}

[[ -x $server ]] || die "no server binary at $server (run make build)"
[[ -x $nginx ]] || die "no nginx at $nginx (make setup installs Debian's nginx)"
host=${addr%:*}
port=${addr##*:}
pick_port=0
[[ $port == 0 ]] && pick_port=1
mkdir -p "$dir/tmp" && dir=$(cd "$dir" && pwd) || die "cannot create $dir"
rm -f "$dir"/instance-*.out "$dir"/instance-*.addr "$dir"/instance-*.pid "$dir/stopping"

# Waits until FILE holds the server's listening line and prints the address in it.
listening_addr() {
  local file=$1 pid=$2
  for _ in $(seq 400); do
    local line
    line=$(sed -n 's#^wsclose-server listening on http://##p' "$file" 2>/dev/null)
    [[ -n $line ]] && { echo "$line"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Waits until none of the given processes runs any more. (Not `wait PID`: after a `wait` that a
# signal interrupted, bash can hang in `wait PID` for children that are already gone.)
await_exit() {
  while kill -0 "$@" 2>/dev/null; do sleep 0.05; done
}

# Copies stdin (instance K's stderr) to instance-K.log in pieces of at most INSTANCE_LOG_MAX
# bytes, whole lines (split -C); each piece first moves the one before to instance-K.log.1.
# It ignores SIGINT, so that it outlives a Ctrl-C to the process group and the instance can
# still log its graceful stop (an instance whose stderr is gone loses its Close frames); it
# ends when the instance does, at the end of its stderr.
instance_log() {
  trap '' INT
  local log=$dir/instance-$1.log
  SHELL=/bin/sh LOG=$log split -C "$log_max" -a 8 \
    --filter='if [ -s "$LOG" ]; then mv -f "$LOG" "$LOG.1"; fi; exec cat >"$LOG"' \
    - "$dir/instance-$1.piece."
}

# Runs instance K until the cluster stops: start it (first on a free port, then on the same
# one), wait for it to exit, start it again after RESTART_DELAY. Background subshells of a
# non-interactive bash ignore SIGINT, so the stop request is the `stopping` file plus SIGTERM;
# the delay also lets a Ctrl-C (which reaches the instances directly) be seen before a restart.
RESTART_DELAY=0.2
supervise() {
  local k=$1 bind=127.0.0.1:0 pid=
  trap '[[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null' TERM
  while [[ ! -e $dir/stopping ]]; do
    WSCLOSE_INSTANCE=$k "$server" --addr "$bind" "${flags[@]}" \
      >"$dir/instance-$k.out" 2> >(instance_log "$k") </dev/null &
    pid=$!
    local at
    if at=$(listening_addr "$dir/instance-$k.out" "$pid"); then
      bind=$at
      echo "$at" >"$dir/instance-$k.addr"
      echo "$pid" >"$dir/instance-$k.pid"
      say "instance $k pid $pid on http://$at"
    else
      printf 'wsclose-cluster: instance %s did not start; see %s\n' "$k" "$dir/instance-$k.log" >&2
    fi
    await_exit "$pid"
    pid=
    sleep "$RESTART_DELAY"
  done
}

supervisors=()
for k in $(seq "$instances"); do
  supervise "$k" &
  supervisors+=($!)
done

nginx_pid=
# Stops everything: the instances first (each closes its sockets through nginx), then nginx,
# and exits with STATUS (default 0). Called from the main flow, not from the trap.
stop_all() {
  local status=${1:-0}
  trap '' TERM INT
  : >"$dir/stopping"
  kill -TERM "${supervisors[@]}" 2>/dev/null
  await_exit "${supervisors[@]}"
  # Graceful: nginx stops accepting and lets the (now closed) proxied connections finish.
  if [[ -n $nginx_pid ]]; then
    kill -QUIT "$nginx_pid" 2>/dev/null
    await_exit "$nginx_pid"
  fi
  exit "$status"
}
stopping=0
trap 'stopping=1' TERM INT

# nginx needs every instance's address before it starts.
for k in $(seq "$instances"); do
  for _ in $(seq 400); do [[ -s $dir/instance-$k.addr ]] && break; sleep 0.05; done
  [[ -s $dir/instance-$k.addr ]] || { printf 'wsclose-cluster: instance %s never listened\n' "$k" >&2; stop_all 1; }
done
# Starts nginx on $host:$port in its own session, so a Ctrl-C does not stop it before the
# instances have sent their Close frames through it (stop_all stops it gracefully afterwards).
# Returns 0 once nginx's master has written its pid file, which it does after it has bound and
# listens on its port: from then on a connection to the port is nginx's. Returns 1 if nginx
# exited, 2 if it exited because the port was taken.
start_nginx() {
  sed -e "s#@LISTEN@#$host:$port#" \
      -e "s#@INSTANCE_1@#$(cat "$dir/instance-1.addr")#" \
      -e "s#@INSTANCE_2@#$(cat "$dir/instance-2.addr")#" \
      -e "s#@PROXY_READ_TIMEOUT@#$read_timeout#" \
      "$here/nginx.conf" >"$dir/nginx.conf"
  rm -f "$dir/nginx.pid"
  local log_from
  log_from=$(($(stat -c %s "$dir/error.log" 2>/dev/null || echo 0) + 1))
  # The script is its process group's leader and this job is not, so setsid does not fork:
  # $! is nginx's master itself.
  setsid "$nginx" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
  nginx_pid=$!
  until [[ $(cat "$dir/nginx.pid" 2>/dev/null) == "$nginx_pid" ]]; do
    if ! kill -0 "$nginx_pid" 2>/dev/null; then
      tail -c +"$log_from" "$dir/error.log" 2>/dev/null | grep -q 'Address already in use' && return 2
      return 1
    fi
    sleep 0.05
  done
}

# Whether something on this machine accepts connections on $host:$1.
answers() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

started=1
for _ in $(seq 10); do
  if ((pick_port)); then
    port=$((20000 + RANDOM % 12768))
    answers "$port" && continue
  fi
  start_nginx
  started=$?
  ((started == 2 && pick_port)) && continue
  break
done
if ((started != 0)); then
  nginx_pid=
  cat "$dir/error.log" >&2
  printf 'wsclose-cluster: nginx did not start\n' >&2
  stop_all 1
fi
say "nginx pid $nginx_pid"
say "listening on http://$host:$port"
# Until SIGTERM/SIGINT (the trap sets `stopping`) or until everything died. A poll, not
# `wait`: a signal that lands between a check of `stopping` and the `wait` would leave the
# script waiting for supervisors that restart their instances forever.
while ((!stopping)) && kill -0 "${supervisors[@]}" "$nginx_pid" 2>/dev/null; do sleep 0.1; done
stop_all
