#!/usr/bin/env bash
# An S3-compatible API server on 127.0.0.1 (moto's server mode, from PyPI: `moto[server]` in the
# dev extras) for the s3-marked tests and for trying s3a:// storage on one machine. It keeps its
# buckets in memory: what a run wrote is gone once the server stops.
#
#   scripts/s3-server.sh start  [--port 5010] [--dir var/s3] [--timeout 60]
#   scripts/s3-server.sh stop   [--dir var/s3]
#   scripts/s3-server.sh status [--dir var/s3]
#
# Clients reach it at http://127.0.0.1:PORT with any access key (e.g. test/test), path-style:
#   spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:PORT  spark.hadoop.fs.s3a.path.style.access=true
# `start` returns once the server answers; it is a no-op when this DIR's server already runs.
# Environment: S3_SERVER_PORT and S3_SERVER_DIR default the options.
# Exit codes: 0 ok, 1 failure, 2 usage error, 3 (status) not running.
set -euo pipefail

PROG=s3-server.sh
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

usage() {  # usage [EXIT] : the synopsis (stdout for --help, stderr for a usage error)
  print_usage "${BASH_SOURCE[0]}" 6 8 "${1:-2}"
}

[[ $# -ge 1 ]] || usage 2
action="$1"
shift
port="${S3_SERVER_PORT:-5010}"
dir="${S3_SERVER_DIR:-$ROOT/var/s3}"
timeout=60
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) need_value "$1" $#; port="$2"; shift 2 ;;
    --dir) need_value "$1" $#; dir="$2"; shift 2 ;;
    --timeout) need_value "$1" $#; timeout="$2"; shift 2 ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
  esac
done
is_port "$port" || die "--port must be a port number, not '$port'" 2
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, not '$timeout'" 2
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

PIDFILE="$dir/s3.pid"
PORTSFILE="$dir/s3.port"
LOG="$dir/s3.log"

running_pid() {  # the pid of this DIR's server, or nothing
  local pid
  pid="$(read_pid "$PIDFILE")"
  # The server runs from DIR (see start): its working directory tells it apart from other servers.
  if alive "$pid" && cmdline_has "$pid" "moto.server" \
    && [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$dir" ]]; then
    echo "$pid"
  fi
}

load_port() {
  if [[ -f "$PORTSFILE" ]]; then port="$(tr -dc '0-9' <"$PORTSFILE")"; fi
}

# Any answer at all (moto lists no buckets as XML) means the server is up.
ready() { http_get "http://$LOOPBACK:$port/" >/dev/null; }

abandon_start() {  # what a failed start leaves: the server and its pid file
  local pid
  pid="$(read_pid "$PIDFILE")"
  [[ -n "$pid" ]] && stop_tree "the S3 server" "$pid" 10
  rm -f "$PIDFILE"
}

start() {
  "$VENV/bin/python" -c 'import moto.server' 2>/dev/null \
    || die "moto[server] is not installed in $VENV; run: bash scripts/setup.sh"
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    load_port
    ready || die "already running (pid $pid) but does not answer on port $port; see $LOG"
    say "already running: http://$LOOPBACK:$port (pid $pid)"
    return 0
  fi
  rm -f "$PIDFILE"
  port_busy "$port" && die "port $port on $LOOPBACK is already in use (choose another with --port)"
  echo "$port" >"$PORTSFILE"
  if [[ -f "$LOG" ]]; then mv -f "$LOG" "$LOG.1"; fi
  local started=$SECONDS
  say "starting the S3 API server on http://$LOOPBACK:$port (log $LOG)"
  (
    cd "$dir"
    exec "$VENV/bin/python" -m moto.server --host "$LOOPBACK" --port "$port" </dev/null >>"$LOG" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "the S3 server" "$pid" "$timeout" "$LOG" abandon_start ready
  say "ready in $((SECONDS - started))s: http://$LOOPBACK:$port (pid $pid)"
}

stop() {
  stop_service "the S3 server" "$PIDFILE" "$(running_pid)" stop_tree "the S3 server"
}

status() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    say "not running"
    exit 3
  fi
  load_port
  if ready; then
    say "running: http://$LOOPBACK:$port (pid $pid, log $LOG)"
  else
    say "process $pid is up but does not answer on port $port (see $LOG)"
    exit 1
  fi
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  -h | --help) usage 0 ;;
  *) die "unknown command '$action' (start, stop or status)" 2 ;;
esac
