# Shared helpers for the scripts that start and stop local services by pid (hdfs.sh,
# spark-cluster.sh, mlflow-server.sh). Sourced, not run. Nothing here ever finds a process by name:
# every process is addressed by the pid its start command wrote, and its children by walking the
# process tree down from that pid.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
VENV="${MLPIPE_VENV:-$ROOT/.venv}"
LOOPBACK=127.0.0.1

die() {  # die MESSAGE [EXIT] : one clear line on stderr, then exit (1 by default)
  printf '%s: %s\n' "$PROG" "$1" >&2
  exit "${2:-1}"
}
say() { printf '%s: %s\n' "$PROG" "$*"; }

need_value() {  # need_value OPTION NEXT_ARG_COUNT : an option that takes a value has one
  [[ "$2" -ge 2 ]] || die "option $1 needs a value" 2
}

is_port() { [[ "$1" =~ ^[0-9]+$ && "$1" -ge 1 && "$1" -le 65535 ]]; }

alive() {  # alive PID : the process exists (and is not a zombie)
  local state
  [[ -n "$1" ]] || return 1
  state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z* ]]
}

cmdline_has() {  # cmdline_has PID TEXT : the process's command line contains TEXT (pid-reuse guard)
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

read_pid() {  # read_pid FILE : the pid in FILE, or nothing
  if [[ -f "$1" ]]; then tr -dc '0-9' <"$1"; fi
}

saved_port() {  # saved_port FILE KEY : the port saved as KEY=PORT in FILE (read, never sourced)
  [[ -f "$1" ]] && sed -n "s/^$2=\([0-9][0-9]*\)\$/\1/p" "$1" | head -n 1
}

descendants() {  # descendants PID : every descendant pid, children first listed before theirs
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

wait_gone() {  # wait_gone SECONDS PID... : true when all PIDs have exited within SECONDS
  local deadline=$((SECONDS + $1)) pid any
  shift
  while :; do
    any=0
    for pid in "$@"; do alive "$pid" && any=1; done
    [[ "$any" == 0 ]] && return 0
    [[ "$SECONDS" -ge "$deadline" ]] && return 1
    sleep 0.2
  done
}

tree_of() {  # tree_of PID : PID and every descendant, on one line
  # Collected before anything is signalled: once a parent exits, its children are re-parented
  # and out of reach.
  echo "$1 $(descendants "$1" | tr '\n' ' ')"
}

reap() {  # reap NAME GRACE PID... : wait up to GRACE seconds for PIDs (already asked to stop) to
  # exit; SIGKILL what is left, and fail when even that does not end them within 10 s
  local name="$1" grace="$2"
  shift 2
  if ! wait_gone "$grace" "$@"; then
    say "$name (pid $1) still running after ${grace}s; sending SIGKILL"
    kill -KILL "$@" 2>/dev/null || true
    wait_gone 10 "$@" || die "could not stop $name: pids $* still alive"
  fi
}

stop_tree() {  # stop_tree NAME PID [GRACE] : SIGTERM PID and its descendants, wait, SIGKILL leftovers
  local name="$1" pid="$2" grace="${3:-30}" tree
  tree="$(tree_of "$pid")"
  # shellcheck disable=SC2086
  kill -TERM $tree 2>/dev/null || true
  # shellcheck disable=SC2086
  reap "$name" "$grace" $tree
}

wait_ready() {  # wait_ready NAME PID TIMEOUT LOG ON_FAIL CHECK... : poll CHECK until it succeeds.
  # If PID exits first, or TIMEOUT seconds pass: ON_FAIL (a command that stops and cleans up what
  # was started), the tail of LOG, and fail with one line.
  local name="$1" pid="$2" timeout="$3" log="$4" on_fail="$5" deadline
  shift 5
  deadline=$((SECONDS + timeout))
  until "$@"; do
    if ! alive "$pid"; then
      $on_fail
      log_tail "$log"
      die "$name exited during start-up (see $log)"
    fi
    if [[ "$SECONDS" -ge "$deadline" ]]; then
      $on_fail
      log_tail "$log"
      die "$name was not ready within ${timeout}s (stopped it; see $log)"
    fi
    sleep 0.5
  done
}

stop_service() {  # stop_service NAME PIDFILE PID STOPPER... : stop a running service with
  # `STOPPER... PID`, then remove its pid file; or say it is not running (and drop a stale pid file)
  local name="$1" pidfile="$2" pid="$3"
  shift 3
  if [[ -z "$pid" ]]; then
    if [[ -f "$pidfile" ]]; then
      rm -f "$pidfile"
      say "$name not running (removed the stale pid file)"
    else
      say "$name not running"
    fi
    return 0
  fi
  "$@" "$pid"
  rm -f "$pidfile"
  say "stopped $name (pid $pid)"
}

port_busy() {  # port_busy PORT : something accepts connections on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/$LOOPBACK/$1") 2>/dev/null
}

http_get() {  # http_get URL : the body, or a non-zero exit (short timeouts: used in polls)
  curl -fsS --max-time 3 "$1" 2>/dev/null
}

log_tail() {  # log_tail FILE : the last lines of a log, indented, to stderr
  if [[ -s "$1" ]]; then
    printf '%s: last lines of %s:\n' "$PROG" "$1" >&2
    tail -n 25 "$1" | sed 's/^/    /' >&2
  fi
}

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null; then
    command -v java
  else
    die "java not found: install Java 17 or set JAVA_HOME"
  fi
}

command -v curl >/dev/null || { echo "${PROG:-daemon}: curl is required" >&2; exit 1; }

print_usage() {  # print_usage SCRIPT FIRST LAST EXIT : header lines FIRST..LAST of SCRIPT, then exit
  local text
  text="$(sed -n "${2},${3}p" "$1" | sed 's/^# \{0,1\}//')"
  if [[ "$4" == 0 ]]; then
    printf '%s\n' "$text"
  else
    printf '%s\n' "$text" >&2
  fi
  exit "$4"
}
