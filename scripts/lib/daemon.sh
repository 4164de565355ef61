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

stop_tree() {  # stop_tree NAME PID [GRACE] : SIGTERM PID and its descendants, wait, SIGKILL leftovers
  local name="$1" pid="$2" grace="${3:-30}" tree
  # Collect the tree first: once the parent exits its children are re-parented and out of reach.
  tree="$pid $(descendants "$pid" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  kill -TERM $tree 2>/dev/null || true
  # shellcheck disable=SC2086
  if ! wait_gone "$grace" $tree; then
    say "$name (pid $pid) still running after ${grace}s; sending SIGKILL"
    # shellcheck disable=SC2086
    kill -KILL $tree 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone 10 $tree || die "could not stop $name: pids $tree still alive"
  fi
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
