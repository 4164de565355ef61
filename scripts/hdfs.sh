#!/usr/bin/env bash
# A real single-node HDFS on 127.0.0.1 for integration tests and local cluster runs: Hadoop's
# MiniDFSCluster (one NameNode and one DataNode in one JVM, started by Hadoop's own
# MiniHadoopClusterManager) from the shaded jars that `scripts/setup.sh --hdfs` puts in
# .cache/jars/hdfs. Every socket (namenode RPC and web, datanode data/IPC/web) binds 127.0.0.1.
#
#   scripts/hdfs.sh start  [--port 9000] [--http-port 9870] [--dir var/hdfs] [--format] [--timeout 120]
#   scripts/hdfs.sh stop   [--dir var/hdfs]
#   scripts/hdfs.sh status [--dir var/hdfs]
#   scripts/hdfs.sh fs     [--dir var/hdfs] -- -ls -R /     (Hadoop's FsShell against this HDFS)
#
# Under DIR: data/ (namenode and datanode storage; kept across restarts, wiped by --format, formatted
# automatically on the first start), conf/ (core-site.xml and hdfs-site.xml: a client configuration
# for this namenode), hdfs.log (this run's; the previous one in hdfs.log.1), hdfs.pid, hdfs.ports.
# Missing jars are resolved first (scripts/setup.sh --hdfs). `start` returns once the namenode
# reports a live datanode and is out of safe mode (or fails with the log's tail); it is a no-op when
# this DIR's HDFS already runs. `stop` signals the pid in hdfs.pid (never a process found by name)
# and its children, waits for them to exit, and SIGKILLs them only after a grace period.
# Environment: HDFS_PORT, HDFS_HTTP_PORT, HDFS_DIR (defaults for the options), HDFS_HEAP (768m),
# HDFS_LOG_LEVEL (warn; info or debug to see the namenode's and datanode's own log lines).
# Exit codes: 0 ok, 1 failure, 2 usage error, 3 (status) not running.
set -euo pipefail

PROG=hdfs.sh
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

usage() {  # usage [EXIT] : the synopsis (stdout for --help, stderr for a usage error)
  print_usage "${BASH_SOURCE[0]}" 7 10 "${1:-2}"
}

[[ $# -ge 1 ]] || usage 2
action="$1"
shift
port="${HDFS_PORT:-9000}"
http_port="${HDFS_HTTP_PORT:-9870}"
dir="${HDFS_DIR:-$ROOT/var/hdfs}"
timeout=120
format=0
port_given=0
fs_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) need_value "$1" $#; port="$2"; port_given=1; shift 2 ;;
    --http-port) need_value "$1" $#; http_port="$2"; shift 2 ;;
    --dir) need_value "$1" $#; dir="$2"; shift 2 ;;
    --timeout) need_value "$1" $#; timeout="$2"; shift 2 ;;
    --format) format=1; shift ;;
    --) shift; fs_args=("$@"); break ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
  esac
done
is_port "$port" || die "--port must be a port number, not '$port'" 2
is_port "$http_port" || die "--http-port must be a port number, not '$http_port'" 2
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, not '$timeout'" 2
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

JARS="$ROOT/.cache/jars/hdfs"
PIDFILE="$dir/hdfs.pid"
PORTSFILE="$dir/hdfs.ports"
LOG="$dir/hdfs.log"
MAIN=org.apache.hadoop.mapreduce.MiniHadoopClusterManager

need_jars() {  # the mini-cluster's jars, resolved by the project's set-up (Maven) when missing
  if ! compgen -G "$JARS/hadoop-client-minicluster-*.jar" >/dev/null; then
    say "HDFS mini-cluster jars not in $JARS yet: running scripts/setup.sh --hdfs"
    bash "$ROOT/scripts/setup.sh" --hdfs >&2 || die "scripts/setup.sh --hdfs failed"
    compgen -G "$JARS/hadoop-client-minicluster-*.jar" >/dev/null \
      || die "HDFS mini-cluster jars still missing in $JARS after scripts/setup.sh --hdfs"
  fi
}

running_pid() {  # the pid of this DIR's mini-cluster, or nothing
  local pid
  pid="$(read_pid "$PIDFILE")"
  if alive "$pid" && cmdline_has "$pid" "$MAIN" && cmdline_has "$pid" "$dir/data"; then
    echo "$pid"
  fi
}

load_ports() {  # the ports a running instance was started with (hdfs.ports), over the options
  local saved
  saved="$(saved_port "$PORTSFILE" port || true)"
  port="${saved:-$port}"
  saved="$(saved_port "$PORTSFILE" http_port || true)"
  http_port="${saved:-$http_port}"
}

ready() {  # the namenode answers, has a live datanode, and is out of safe mode
  local jmx="http://$LOOPBACK:$http_port/jmx?qry=Hadoop:service=NameNode,name"
  http_get "$jmx=FSNamesystemState" | grep -Eq '"NumLiveDataNodes" : [1-9]' \
    && http_get "$jmx=NameNodeInfo" | grep -q '"Safemode" : ""'
}

write_client_conf() {
  mkdir -p "$dir/conf"
  cat >"$dir/conf/core-site.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/hdfs.sh: a Hadoop client configuration for this single-node HDFS. -->
<configuration>
  <property><name>fs.defaultFS</name><value>hdfs://$LOOPBACK:$port</value></property>
</configuration>
EOF
  # In hdfs-site.xml, not core-site.xml: Hadoop loads hdfs-default.xml after core-site.xml.
  cat >"$dir/conf/hdfs-site.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/hdfs.sh: one datanode, so one replica per block. -->
<configuration>
  <property><name>dfs.replication</name><value>1</value></property>
</configuration>
EOF
  printf 'port=%s\nhttp_port=%s\n' "$port" "$http_port" >"$PORTSFILE"
}

start() {
  need_jars
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    local wanted="$port"
    load_ports
    if [[ "$port_given" == 1 && "$wanted" != "$port" ]]; then
      die "already running on port $port (pid $pid) from $dir; stop it first to use port $wanted"
    fi
    ready || die "already running (pid $pid) but the namenode does not answer on port $http_port; see $LOG"
    say "already running: hdfs://$LOOPBACK:$port (pid $pid)"
    return 0
  fi
  rm -f "$PIDFILE"
  port_busy "$port" && die "port $port on $LOOPBACK is already in use (choose another with --port)"
  port_busy "$http_port" && die "port $http_port on $LOOPBACK is already in use (choose another with --http-port)"

  local format_arg=()
  if [[ "$format" == 1 || ! -d "$dir/data/name-0-1/current" ]]; then
    rm -rf "$dir/data"
    format_arg=(-format)
  fi
  mkdir -p "$dir/data" "$dir/tmp"
  if [[ -f "$LOG" ]]; then mv -f "$LOG" "$LOG.1"; fi  # this run's log only (the last one in .1)
  write_client_conf
  local java started=$SECONDS
  java="$(java_bin)"
  say "starting single-node HDFS on hdfs://$LOOPBACK:$port (data in $dir/data, log in $LOG)"
  # Run from DIR so that anything Hadoop writes relative to the working directory lands there.
  (
    cd "$dir"
    exec nohup "$java" -Xmx"${HDFS_HEAP:-768m}" -Djava.net.preferIPv4Stack=true \
      -Dorg.slf4j.simpleLogger.defaultLogLevel="${HDFS_LOG_LEVEL:-warn}" \
      -Dorg.slf4j.simpleLogger.showDateTime=true \
      -Dtest.build.data="$dir/data" -Dhadoop.tmp.dir="$dir/tmp" \
      -cp "$JARS/*" "$MAIN" -nomr "${format_arg[@]}" -datanodes 1 \
      -nnport "$port" -nnhttpport "$http_port" \
      -D "hdfs.minidfs.basedir=$dir/data" -D "hadoop.tmp.dir=$dir/tmp" -D dfs.replication=1 \
      -writeConfig "$dir/conf/minicluster-site.xml" \
      </dev/null >>"$LOG" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"

  wait_ready HDFS "$pid" "$timeout" "$LOG" abandon_start ready
  say "ready in $((SECONDS - started))s: hdfs://$LOOPBACK:$port (pid $pid, web http://$LOOPBACK:$http_port)"
}

stop() {
  stop_service HDFS "$PIDFILE" "$(running_pid)" stop_tree HDFS
}

abandon_start() {  # what a failed start leaves: the process tree and its pid file
  local pid
  pid="$(read_pid "$PIDFILE")"
  [[ -z "$pid" ]] || stop_tree HDFS "$pid" 20
  rm -f "$PIDFILE"
}

status() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    say "not running"
    exit 3
  fi
  load_ports
  if ready; then
    say "running: hdfs://$LOOPBACK:$port (pid $pid, web http://$LOOPBACK:$http_port, data $dir/data)"
  else
    say "process $pid is up but the namenode is not ready on port $http_port (see $LOG)"
    exit 1
  fi
}

fs() {
  need_jars
  [[ -f "$dir/conf/core-site.xml" ]] || die "no client configuration in $dir/conf; start HDFS first"
  [[ ${#fs_args[@]} -gt 0 ]] || die "usage: scripts/hdfs.sh fs [--dir DIR] -- -ls /" 2
  exec "$(java_bin)" -Dorg.slf4j.simpleLogger.defaultLogLevel=error \
    -cp "$dir/conf:$JARS/*" org.apache.hadoop.fs.FsShell "${fs_args[@]}"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fs) fs ;;
  -h | --help) usage 0 ;;
  *) die "unknown command '$action' (start, stop, status or fs)" 2 ;;
esac
