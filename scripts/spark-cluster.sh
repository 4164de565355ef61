#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1 — one master, one worker — for spark-submit runs
# (scripts/submit) and the cluster tests. pip's pyspark has no sbin/start-master.sh, so the daemons
# are started and stopped with its sbin/spark-daemon.sh, which keeps their pid files.
#
#   scripts/spark-cluster.sh start  [--dir var/spark] [--port 7077] [--webui-port 8080]
#                                   [--worker-webui-port 8081] [--timeout 120]
#   scripts/spark-cluster.sh stop   [--dir var/spark]
#   scripts/spark-cluster.sh status [--dir var/spark]
#
# `start` returns once the master's JSON endpoint (http://127.0.0.1:8080/json/) lists the worker as
# ALIVE; it reuses daemons of this DIR that already run. `stop` stops the worker, then the master,
# through spark-daemon.sh (by the pids in its pid files), waits until they and the executors the
# worker launched have exited, and SIGKILLs those pids only if they outlive a grace period.
# Environment: SPARK_WORKER_CORES (2) and SPARK_WORKER_MEMORY (4g) size the worker;
# SPARK_DAEMON_MEMORY (512m) is the heap of each daemon; SPARK_MASTER_PORT, SPARK_MASTER_WEBUI_PORT,
# SPARK_WORKER_WEBUI_PORT and MLPIPE_SPARK_DIR default the options.
# Under DIR: logs/ (daemon logs), pids/ (spark-daemon.sh's pid files), work/ (the worker's folders
# per application: executor stdout/stderr), conf/ (an empty SPARK_CONF_DIR unless one is set, so no
# stray spark-env.sh or spark-defaults.conf is read).
# Exit codes: 0 ok, 1 failure, 2 usage error, 3 (status) not running.
set -euo pipefail

PROG=spark-cluster.sh
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

usage() {  # usage [EXIT] : the synopsis (stdout for --help, stderr for a usage error)
  print_usage "${BASH_SOURCE[0]}" 6 9 "${1:-2}"
}

[[ $# -ge 1 ]] || usage 2
action="$1"
shift
port="${SPARK_MASTER_PORT:-7077}"
webui_port="${SPARK_MASTER_WEBUI_PORT:-8080}"
worker_webui_port="${SPARK_WORKER_WEBUI_PORT:-8081}"
dir="${MLPIPE_SPARK_DIR:-$ROOT/var/spark}"
timeout=120
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) need_value "$1" $#; dir="$2"; shift 2 ;;
    --port) need_value "$1" $#; port="$2"; shift 2 ;;
    --webui-port) need_value "$1" $#; webui_port="$2"; shift 2 ;;
    --worker-webui-port) need_value "$1" $#; worker_webui_port="$2"; shift 2 ;;
    --timeout) need_value "$1" $#; timeout="$2"; shift 2 ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
  esac
done
for p in "$port" "$webui_port" "$worker_webui_port"; do
  is_port "$p" || die "ports must be numbers between 1 and 65535, not '$p'" 2
done
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, not '$timeout'" 2
cores="${SPARK_WORKER_CORES:-2}"
memory="${SPARK_WORKER_MEMORY:-4g}"
[[ "$cores" =~ ^[1-9][0-9]*$ ]] || die "SPARK_WORKER_CORES must be a positive number, not '$cores'" 2
[[ "$memory" =~ ^[1-9][0-9]*[mMgG]$ ]] || die "SPARK_WORKER_MEMORY must look like 4g or 512m, not '$memory'" 2
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "no virtualenv at $VENV; run: bash scripts/setup.sh"
SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null)" \
  || die "pyspark is not installed in $VENV; run: bash scripts/setup.sh"
DAEMON="$SPARK_HOME/sbin/spark-daemon.sh"
[[ -f "$DAEMON" ]] || die "$DAEMON not found (is pyspark complete?)"
MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker
PORTSFILE="$dir/spark.ports"

# The environment spark-daemon.sh and the daemons read (and the executors the worker launches).
export SPARK_HOME
export SPARK_LOG_DIR="$dir/logs" SPARK_PID_DIR="$dir/pids" SPARK_WORKER_DIR="$dir/work"
export SPARK_CONF_DIR="${SPARK_CONF_DIR:-$dir/conf}"
export SPARK_IDENT_STRING=mlpipe SPARK_LOCAL_IP="$LOOPBACK" SPARK_LOCAL_HOSTNAME="$LOOPBACK"
export SPARK_DAEMON_MEMORY="${SPARK_DAEMON_MEMORY:-512m}"
export PYSPARK_PYTHON="$PY"
unset SPARK_NO_DAEMONIZE SPARK_MASTER
mkdir -p "$SPARK_LOG_DIR" "$SPARK_PID_DIR" "$SPARK_WORKER_DIR" "$SPARK_CONF_DIR"

pid_file() { echo "$SPARK_PID_DIR/spark-$SPARK_IDENT_STRING-$1-1.pid"; }
log_file() { echo "$SPARK_LOG_DIR/spark-$SPARK_IDENT_STRING-$1-1-${HOSTNAME:-$(hostname)}.out"; }

running_pid() {  # running_pid CLASS : the pid of this DIR's daemon of CLASS, or nothing
  local pid
  pid="$(read_pid "$(pid_file "$1")")"
  if alive "$pid" && cmdline_has "$pid" "$1"; then echo "$pid"; fi
}

load_ports() {  # the ports the running daemons were started with (spark.ports), over the options
  local saved
  saved="$(saved_port "$PORTSFILE" master_port || true)"
  port="${saved:-$port}"
  saved="$(saved_port "$PORTSFILE" webui_port || true)"
  webui_port="${saved:-$webui_port}"
  saved="$(saved_port "$PORTSFILE" worker_webui_port || true)"
  worker_webui_port="${saved:-$worker_webui_port}"
}

alive_workers() {  # the number of ALIVE workers in the master's JSON, or a non-zero exit
  http_get "http://$LOOPBACK:$webui_port/json/" | "$PY" -c '
import json, sys
try:
    state = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
if state.get("status") != "ALIVE":
    sys.exit(1)
print(sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE"))'
}

log_of() {  # log_of WHAT : the log file of the master or the worker
  log_file "$([[ "$1" == master ]] && echo "$MASTER_CLASS" || echo "$WORKER_CLASS")"
}

master_up() { alive_workers >/dev/null; }
worker_up() { local n; n="$(alive_workers)" && [[ "$n" -ge 1 ]]; }

start() {
  local mpid wpid started=$SECONDS
  mpid="$(running_pid "$MASTER_CLASS")"
  wpid="$(running_pid "$WORKER_CLASS")"
  if [[ -n "$mpid" || -n "$wpid" ]]; then
    load_ports
  else
    rm -f "$(pid_file "$MASTER_CLASS")" "$(pid_file "$WORKER_CLASS")"
    for p in "$port" "$webui_port" "$worker_webui_port"; do
      port_busy "$p" && die "port $p on $LOOPBACK is already in use (see --help for the port options)"
    done
    printf 'master_port=%s\nwebui_port=%s\nworker_webui_port=%s\n' \
      "$port" "$webui_port" "$worker_webui_port" >"$PORTSFILE"
  fi
  local url="spark://$LOOPBACK:$port"

  if [[ -z "$mpid" ]]; then
    say "starting the master $url (web http://$LOOPBACK:$webui_port, logs in $SPARK_LOG_DIR)"
    "$DAEMON" start "$MASTER_CLASS" 1 --host "$LOOPBACK" --port "$port" --webui-port "$webui_port" \
      >/dev/null
    mpid="$(running_pid "$MASTER_CLASS")"
    [[ -n "$mpid" ]] || { log_tail "$(log_file "$MASTER_CLASS")"; die "the master did not start"; }
  fi
  wait_ready "the master" "$mpid" "$timeout" "$(log_of master)" stop_all master_up

  if [[ -z "$wpid" ]]; then
    say "starting a worker with $cores cores and $memory (web http://$LOOPBACK:$worker_webui_port)"
    "$DAEMON" start "$WORKER_CLASS" 1 --host "$LOOPBACK" --webui-port "$worker_webui_port" \
      --cores "$cores" --memory "$memory" --work-dir "$SPARK_WORKER_DIR" "$url" >/dev/null
    wpid="$(running_pid "$WORKER_CLASS")"
    [[ -n "$wpid" ]] || { log_tail "$(log_file "$WORKER_CLASS")"; die "the worker did not start"; }
  fi
  wait_ready "the worker" "$wpid" "$timeout" "$(log_of worker)" stop_all worker_up
  say "ready in $((SECONDS - started))s: $url (master pid $mpid, worker pid $wpid, web http://$LOOPBACK:$webui_port)"
}

daemon_stop() {  # daemon_stop CLASS NAME PID : spark-daemon.sh stop, then make sure it and its
  # children (a worker's executors) exited
  local class="$1" name="$2" tree
  tree="$(tree_of "$3")"
  "$DAEMON" stop "$class" 1 >/dev/null
  # shellcheck disable=SC2086
  reap "the $name" 30 $tree
}

stop_daemon() {  # stop_daemon NAME CLASS
  stop_service "the $1" "$(pid_file "$2")" "$(running_pid "$2")" daemon_stop "$2" "$1"
}

stop_all() {
  stop_daemon worker "$WORKER_CLASS"
  stop_daemon master "$MASTER_CLASS"
}

stop() {
  if [[ -z "$(running_pid "$MASTER_CLASS")$(running_pid "$WORKER_CLASS")" ]]; then
    rm -f "$(pid_file "$MASTER_CLASS")" "$(pid_file "$WORKER_CLASS")"
    say "not running"
    return 0
  fi
  stop_all
}

status() {
  local mpid wpid n
  mpid="$(running_pid "$MASTER_CLASS")"
  wpid="$(running_pid "$WORKER_CLASS")"
  if [[ -z "$mpid" && -z "$wpid" ]]; then
    say "not running"
    exit 3
  fi
  load_ports
  if [[ -n "$mpid" && -n "$wpid" ]] && n="$(alive_workers)" && [[ "$n" -ge 1 ]]; then
    say "running: spark://$LOOPBACK:$port (master pid $mpid, worker pid $wpid, $n alive worker(s), web http://$LOOPBACK:$webui_port)"
  else
    say "partly running: master pid ${mpid:-none}, worker pid ${wpid:-none}; no ALIVE worker at http://$LOOPBACK:$webui_port/json/"
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
