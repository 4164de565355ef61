#!/usr/bin/env bash
# Run the nightly job (ingest -> features -> (retrain when due) -> score) for one pipeline and one
# date, unattended: from cron, a systemd timer or by hand. docs/SCHEDULING.md has the details.
#
#   scripts/nightly.sh --pipeline NAME [--run-date YYYY-MM-DD] [--env ENV] [--retries N]
#                      [--retry-delay SECONDS] [--log-dir DIR] [--submit] [--submit-arg ARG]...
#                      [-- EXTRA MLPIPE ARGS...]
#
# crontab (`crontab -e` as the user that owns the checkout; the script needs no environment):
#
#   15 2 * * * /path/to/repo/scripts/nightly.sh --pipeline fraud >> /dev/null 2>&1
#
# What it does:
#   * takes no lock of its own: mlpipe takes the pipeline's lease, which lives with its tables (so it
#     also excludes runs on other hosts, a backfill, or a driver in cluster mode). While another
#     command holds it, mlpipe exits 75 (EX_TEMPFAIL) at once, naming the holder, and this script
#     passes that on without retrying;
#   * runs, from the project folder whatever the caller's cwd,
#       .venv/bin/mlpipe nightly --pipeline NAME --run-date DATE [--env ENV] [EXTRA...]
#     or, with --submit, `scripts/submit [--submit-arg ARGs] nightly -- <the same arguments>`
#     (its master is $SPARK_MASTER, else spark://127.0.0.1:7077; --submit-arg passes e.g.
#     --master=yarn or --executor-memory=3g to scripts/submit and implies --submit);
#   * appends everything (its own timestamped lines and the job's output) to
#     <log-dir>/<pipeline>/<run-date>.log; stdout gets one line per attempt and a summary;
#   * retries exit code 1 (a run failure: a rerun resumes where the last one stopped) up to N more
#     times, --retry-delay seconds apart; never exit code 2 (usage or configuration error), nor any
#     other code (a signal, e.g. 137 after the OOM killer);
#   * exits with the job's final exit code: 0 success, 1 run failure, 2 usage or configuration
#     error (also this script's own usage errors), 75 another command holds the pipeline's lease, 128+N when
#     stopped by signal N (SIGTERM/SIGINT/SIGHUP are passed on to the job).
#
# Defaults: --run-date yesterday (UTC), --retries 2, --retry-delay 300, --log-dir var/log/nightly
# (relative to the project folder; a relative --log-dir given here is relative to the caller's cwd).
#
# Environment (all optional):
#   MLPIPE_BIN       the mlpipe executable to run instead of $MLPIPE_VENV/bin/mlpipe (tests point
#                    it at a fake); without --submit
#   MLPIPE_SUBMIT    the same for scripts/submit, with --submit
#   MLPIPE_VENV      the virtualenv (default: <project>/.venv)
#   JAVA_HOME        its bin/ goes first on PATH (Spark needs java)
set -euo pipefail

PROG=nightly.sh
EX_USAGE=2
EX_TEMPFAIL=75

# cron starts jobs with PATH=/usr/bin:/bin and little else: add the usual system folders (after
# whatever the caller had, so an explicit PATH still wins) and $JAVA_HOME/bin first.
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PATH="${JAVA_HOME:+$JAVA_HOME/bin:}${PATH:+$PATH:}$STD_PATH"
export PATH
export LANG="${LANG:-C.UTF-8}"
export PYTHONUNBUFFERED=1 # the job's output reaches the log as it happens, in order

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"

usage() {
  cat <<EOF
Usage: scripts/nightly.sh --pipeline NAME [--run-date YYYY-MM-DD] [--env ENV] [--retries N]
                          [--retry-delay SECONDS] [--log-dir DIR] [--submit] [--submit-arg ARG]...
                          [-- EXTRA MLPIPE ARGS...]

Run 'mlpipe nightly' for one pipeline and date, unattended (cron): a dated log file, retries of
run failures (exit 1) only. One run per pipeline at a time: mlpipe's lease on its tables.

  --pipeline NAME        pipeline spec conf/base/pipelines/NAME.yml (required)
  --run-date DATE        the logical date (default: yesterday, UTC)
  --env ENV              configuration overlay passed to mlpipe (default: mlpipe's own)
  --retries N            extra attempts after a run failure (default 2)
  --retry-delay SECONDS  pause before each retry (default 300)
  --log-dir DIR          log folder; the log is DIR/NAME/DATE.log (default var/log/nightly)
  --submit               run through spark-submit: scripts/submit nightly -- ...
  --submit-arg ARG       an option for scripts/submit, e.g. --submit-arg=--master=yarn
                         (repeatable; implies --submit)
  -- ARGS...             passed to mlpipe nightly unchanged (e.g. -- --set spark.master=local[2])

Exit codes: 0 success, 1 run failure, 2 usage or configuration error, 75 another command holds
the pipeline's lease (nothing ran; not retried), 128+N stopped by signal N.
EOF
}

die() { # die MESSAGE [EXIT] : one clear line on stderr, then exit (2 by default)
  printf '%s: %s\n' "$PROG" "$1" >&2
  exit "${2:-$EX_USAGE}"
}

need_value() { # need_value OPTION ARGS_LEFT : an option that takes a value has one
  [[ "$2" -ge 2 ]] || die "option $1 needs a value (see --help)"
}

is_count() { [[ "$1" =~ ^[0-9]+$ ]]; }

# ---------------------------------------------------------------------------------------------
# Arguments
pipeline="" run_date="" env_name="" retries=2 retry_delay=300 log_dir="" submit=0
submit_args=() extra=()
while [[ $# -gt 0 ]]; do
  opt="$1"
  if [[ "$opt" == --*=* ]]; then # --option=value: split it, then handle it like --option value
    set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
    opt="$1"
  fi
  case "$opt" in
    --pipeline) need_value "$1" $#; pipeline="$2"; shift 2 ;;
    --run-date) need_value "$1" $#; run_date="$2"; shift 2 ;;
    --env) need_value "$1" $#; env_name="$2"; shift 2 ;;
    --retries) need_value "$1" $#; retries="$2"; shift 2 ;;
    --retry-delay) need_value "$1" $#; retry_delay="$2"; shift 2 ;;
    --log-dir) need_value "$1" $#; log_dir="$2"; shift 2 ;;
    --submit) submit=1; shift ;;
    --submit-arg) need_value "$1" $#; submit_args+=("$2"); submit=1; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown argument '$1' (mlpipe's own arguments go after '--'; see --help)" ;;
  esac
done

[[ -n "$pipeline" ]] || die "--pipeline NAME is required (see --help)"
# The name becomes part of file names (the log): keep it to what pipeline specs are named.
[[ "$pipeline" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] ||
  die "invalid pipeline name '$pipeline' (letters, digits, '_', '-', '.')"
if [[ -z "$run_date" ]]; then
  run_date="$(date -u -d yesterday +%F)"
elif ! [[ "$run_date" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] ||
  [[ "$(date -u -d "$run_date" +%F 2>/dev/null)" != "$run_date" ]]; then
  die "--run-date '$run_date' is not a date in YYYY-MM-DD form"
fi
is_count "$retries" || die "--retries '$retries' is not a whole number >= 0"
is_count "$retry_delay" || die "--retry-delay '$retry_delay' is not a whole number of seconds"
retries=$((10#$retries)) retry_delay=$((10#$retry_delay))

if [[ -z "$log_dir" ]]; then
  log_dir="$ROOT/var/log/nightly"
elif [[ "$log_dir" != /* ]]; then
  log_dir="$PWD/$log_dir" # relative to where it was given, before the cd below
fi

# The command. Its arguments are the same with or without spark-submit.
job_args=(--pipeline "$pipeline" --run-date "$run_date")
if [[ -n "$env_name" ]]; then job_args+=(--env "$env_name"); fi
job_args+=("${extra[@]}")
if [[ "$submit" == 1 ]]; then
  runner="${MLPIPE_SUBMIT:-$ROOT/scripts/submit}"
  cmd=("$runner" "${submit_args[@]}" nightly -- "${job_args[@]}")
else
  runner="${MLPIPE_BIN:-${MLPIPE_VENV:-$ROOT/.venv}/bin/mlpipe}"
  cmd=("$runner" nightly "${job_args[@]}")
fi
[[ -x "$runner" ]] || die "$runner is not an executable file (run: bash scripts/setup.sh)"

cd "$ROOT"

# ---------------------------------------------------------------------------------------------
# Log file
log_file="$log_dir/$pipeline/$run_date.log"
mkdir -p "$log_dir/$pipeline" 2>/dev/null || die "cannot create the log folder $log_dir/$pipeline"
touch "$log_file" 2>/dev/null || die "cannot write the log file $log_file"
label="nightly $pipeline $run_date"

log() { # log MESSAGE : a timestamped line in the log file
  printf '%s %s[%d]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PROG" "$$" "$*" >>"$log_file"
}
say() { # say MESSAGE : the same line on stdout (terse) and in the log
  log "$*"
  printf '%s: %s\n' "$label" "$*"
}

# ---------------------------------------------------------------------------------------------
# Run, retrying run failures
child="" attempt=0 attempts=$((retries + 1)) started=$SECONDS

finish() { # finish EXIT : the end line, the summary, and exit
  local rc="$1" took=$((SECONDS - started)) outcome
  case "$rc" in
    0) outcome="succeeded" ;;
    1) outcome="FAILED: run failure" ;;
    2) outcome="FAILED: usage or configuration error (not retried)" ;;
    "$EX_TEMPFAIL") outcome="NOT RUN: another command holds the pipeline's lease (not retried)" ;;
    *) outcome="FAILED" ;;
  esac
  log "end pipeline=$pipeline run_date=$run_date exit=$rc attempts=$attempt duration=${took}s"
  if [[ "$rc" == 0 ]]; then
    printf '%s: %s after %d attempt(s) in %ds (log: %s)\n' "$label" "$outcome" "$attempt" \
      "$took" "$log_file"
  else
    printf '%s: %s, exit %d after %d attempt(s) in %ds; see %s\n' "$label" "$outcome" "$rc" \
      "$attempt" "$took" "$log_file" >&2
  fi
  exit "$rc"
}

# shellcheck disable=SC2317  # reached through the traps below
on_signal() { # on_signal NAME NUMBER : pass the signal on to the job, wait for it, end the log
  trap '' INT TERM HUP
  log "received SIG$1; stopping the job"
  if [[ -n "$child" ]]; then
    # The job runs in its own process group (setsid below): signal all of it (mlpipe, the JVM).
    kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  finish $((128 + $2))
}
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

log "start pipeline=$pipeline run_date=$run_date attempts<=$attempts retry_delay=${retry_delay}s" \
  "cwd=$PWD"
# The command as logged: --set values of keys named like a credential, and URI passwords, masked
# (the same rules as pipeline/redact.py; the job masks its own output).
mask_arg() { # mask_arg PREVIOUS ARG : ARG, shell-quoted, as it may be shown
  local prev="$1" arg="$2" key quoted
  quoted="$(printf '%q' "$arg")"
  if [[ "$prev" == --set && "$arg" == *=* ]] || [[ "$arg" == --set=*=* ]]; then
    key="${arg%%=*}"
    key="${key#--set=}"
    shopt -s nocasematch
    if [[ "$key" =~ (secret|passw(or)?d|token|credential|(^|[._-])(api|access|account|private)?[._-]?key($|[._-])) ]]; then
      quoted="$(printf '%q' "${arg%%=*}=")***"
    fi
    shopt -u nocasematch
  fi
  sed -E 's#([A-Za-z][A-Za-z0-9+.-]*://[^:/@[:space:]]*):[^@/[:space:]]+@#\1:***@#g' <<<"$quoted"
}
shown="" prev=""
for arg in "${cmd[@]}"; do
  shown+="$(mask_arg "$prev" "$arg") "
  prev="$arg"
done
shown="${shown% }"
rc=0
while :; do
  attempt=$((attempt + 1))
  say "attempt $attempt of $attempts: $shown"
  # In the background, then wait: a signal to this script is handled (and passed on) at once.
  # setsid: a process group of its own, so that a signal can reach the job's whole process tree.
  setsid --wait "${cmd[@]}" </dev/null >>"$log_file" 2>&1 &
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=""
  log "attempt $attempt of $attempts exited $rc"
  if [[ "$rc" != 1 || "$attempt" -ge "$attempts" ]]; then
    break
  fi
  say "attempt $attempt failed (exit 1, run failure); retrying in ${retry_delay}s"
  sleep "$retry_delay" &
  child=$!
  wait "$child" || true
  child=""
done
finish "$rc"
