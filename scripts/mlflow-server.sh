#!/usr/bin/env bash
# An MLflow tracking server on 127.0.0.1 for cluster runs and the cluster tests: runs, metrics and
# the model registry in a SQL backend store, artifacts proxied by the server (--serve-artifacts)
# into --artifacts-destination, so clients need only the HTTP URI.
#
#   scripts/mlflow-server.sh start  [--port 5000] [--dir var/mlflow] [--backend-store-uri URI]
#                                   [--artifacts-destination URI] [--timeout 120]
#   scripts/mlflow-server.sh stop   [--dir var/mlflow]
#   scripts/mlflow-server.sh status [--dir var/mlflow]
#
# Defaults: backend sqlite:///DIR/mlflow.db, artifacts DIR/artifacts. For a shared server, use
# PostgreSQL (the driver: pip install psycopg2-binary), with the password from the environment,
# never from a committed file:
#   MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:${PGPASSWORD}@db.internal:5432/mlflow" \
#     scripts/mlflow-server.sh start
# and an object store for artifacts, e.g. --artifacts-destination s3://bucket/mlflow (boto3 and
# AWS credentials in the server's environment).
#
# `start` returns once GET /health answers OK; it is a no-op when this DIR's server already runs.
# The server (the `mlflow server` command and the uvicorn processes it spawns) runs in its own
# process group, whose id is the pid in DIR/mlflow.pid: `stop` signals that group and waits.
# Environment: MLFLOW_SERVER_PORT, MLFLOW_SERVER_DIR, MLFLOW_BACKEND_STORE_URI,
# MLFLOW_ARTIFACTS_DESTINATION default the options; MLFLOW_SERVER_WORKERS (1) uvicorn workers;
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION (false here; MLflow's job runner serves GenAI features only).
# Exit codes: 0 ok, 1 failure, 2 usage error, 3 (status) not running.
set -euo pipefail

PROG=mlflow-server.sh
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

usage() {  # usage [EXIT] : the synopsis (stdout for --help, stderr for a usage error)
  print_usage "${BASH_SOURCE[0]}" 6 9 "${1:-2}"
}

[[ $# -ge 1 ]] || usage 2
action="$1"
shift
port="${MLFLOW_SERVER_PORT:-5000}"
dir="${MLFLOW_SERVER_DIR:-$ROOT/var/mlflow}"
backend="${MLFLOW_BACKEND_STORE_URI:-}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-}"
workers="${MLFLOW_SERVER_WORKERS:-1}"
timeout=120
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) need_value "$1" $#; port="$2"; shift 2 ;;
    --dir) need_value "$1" $#; dir="$2"; shift 2 ;;
    --backend-store-uri) need_value "$1" $#; backend="$2"; shift 2 ;;
    --artifacts-destination) need_value "$1" $#; artifacts="$2"; shift 2 ;;
    --timeout) need_value "$1" $#; timeout="$2"; shift 2 ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
  esac
done
is_port "$port" || die "--port must be a port number, not '$port'" 2
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, not '$timeout'" 2
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "MLFLOW_SERVER_WORKERS must be a positive number" 2
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
backend="${backend:-sqlite:///$dir/mlflow.db}"
artifacts="${artifacts:-$dir/artifacts}"

MLFLOW="$VENV/bin/mlflow"
PIDFILE="$dir/mlflow.pid"
PORTSFILE="$dir/mlflow.port"
LOG="$dir/mlflow.log"

running_pid() {  # the pid (= process group id) of this DIR's server, or nothing
  local pid
  pid="$(read_pid "$PIDFILE")"
  # The server runs from DIR (see start): its working directory tells it apart from other servers.
  if alive "$pid" && cmdline_has "$pid" "mlflow server" \
    && [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$dir" ]]; then
    echo "$pid"
  fi
}

load_port() {
  if [[ -f "$PORTSFILE" ]]; then port="$(tr -dc '0-9' <"$PORTSFILE")"; fi
}

ready() { [[ "$(http_get "http://$LOOPBACK:$port/health")" == OK ]]; }

stop_group() {  # stop_group PID : SIGTERM the process group PID (and any stray descendant), wait
  local pid="$1" members
  # Members of the group, plus descendants in case one started a group of its own.
  members="$(ps -o pid= -g "$pid" 2>/dev/null | tr '\n' ' ') $(tree_of "$pid")"
  kill -TERM -- "-$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -TERM $members 2>/dev/null || true
  # shellcheck disable=SC2086
  reap "the MLflow server" 30 $members
}

abandon_start() {  # what a failed start leaves: the server's group and its pid file
  stop_group "$(read_pid "$PIDFILE")"
  rm -f "$PIDFILE"
}

start() {
  [[ -x "$MLFLOW" ]] || die "mlflow is not installed in $VENV; run: bash scripts/setup.sh"
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    load_port
    ready || die "already running (pid $pid) but /health does not answer on port $port; see $LOG"
    say "already running: http://$LOOPBACK:$port (pid $pid)"
    return 0
  fi
  rm -f "$PIDFILE"
  port_busy "$port" && die "port $port on $LOOPBACK is already in use (choose another with --port)"
  if [[ "$backend" == sqlite:///* ]]; then mkdir -p "$(dirname "${backend#sqlite://}")"; fi
  if [[ "$artifacts" != *://* ]]; then mkdir -p "$artifacts"; fi
  echo "$port" >"$PORTSFILE"
  if [[ -f "$LOG" ]]; then mv -f "$LOG" "$LOG.1"; fi  # this run's log only (the last one in .1)
  local started=$SECONDS
  say "starting the MLflow server on http://$LOOPBACK:$port (store ${backend%%://*}, artifacts $artifacts, log $LOG)"
  # setsid: the server gets its own process group (id = its pid), so that stop reaches the
  # uvicorn processes it spawns. A background job of a script is no group leader, so setsid
  # does not fork and $! is the server's pid. cd: a stray ./mlruns or ./mlartifacts lands in DIR.
  # MLflow's job runner (GenAI scorers, trace roll-ups: several consumer processes, ~1 GiB) is off
  # unless asked for: batch ML runs, metrics, artifacts and the registry do not use it.
  (
    cd "$dir"
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
    exec setsid "$MLFLOW" server --host "$LOOPBACK" --port "$port" --workers "$workers" \
      --backend-store-uri "$backend" --serve-artifacts --artifacts-destination "$artifacts" \
      </dev/null >>"$LOG" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"

  wait_ready "the MLflow server" "$pid" "$timeout" "$LOG" abandon_start ready
  say "ready in $((SECONDS - started))s: http://$LOOPBACK:$port (pid $pid)"
}

stop() {
  stop_service "the MLflow server" "$PIDFILE" "$(running_pid)" stop_group
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
    say "process $pid is up but /health does not answer on port $port (see $LOG)"
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
