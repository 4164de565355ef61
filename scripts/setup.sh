#!/usr/bin/env bash
# One-time (and idempotent) set-up of everything the pipeline needs on a fresh Linux machine:
#   - a .venv with the pinned Python packages (constraints.txt) and this project installed editable;
#   - the JVM jars Spark needs (Delta Lake; HDFS mini-cluster with --hdfs; Hadoop's S3A connector
#     with --s3) resolved by Maven from Maven Central into .cache/jars/, so no Spark session ever
#     downloads anything;
#   - Debian packages a fresh machine lacks (a native BLAS for MLlib), when run as root.
# Re-running is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MLPIPE_VENV:-$ROOT/.venv}"
CACHE="$ROOT/.cache"
mkdir -p "$CACHE"

want_hdfs=0
want_s3=0
for arg in "$@"; do
  case "$arg" in
    --hdfs) want_hdfs=1 ;;
    --s3) want_s3=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --hdfs, --s3)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }

stamp_ok() {  # stamp_ok NAME FILE... : true when NAME's stamp matches the files' content hash
  local name="$1"; shift
  local want; want="$(cat "$@" | sha256sum | cut -c1-16)"
  [[ -f "$CACHE/$name.stamp" && "$(cat "$CACHE/$name.stamp")" == "$want" ]]
}
stamp_write() {
  local name="$1"; shift
  cat "$@" | sha256sum | cut -c1-16 > "$CACHE/$name.stamp"
}

# --- Debian packages ------------------------------------------------------------------------------
# MLlib uses a native BLAS through netlib when libblas.so.3 is present; without it, it falls back to a
# slower Java implementation. Only attempted as root with apt; otherwise a note, not a failure.
if ! ldconfig -p 2>/dev/null | grep -q 'libblas.so.3'; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    log "installing a native BLAS (libopenblas0-pthread)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null) \
      || log "WARNING: could not install libopenblas0-pthread; MLlib will use its Java BLAS"
  else
    log "note: no libblas.so.3; install libopenblas0-pthread for faster MLlib (optional)"
  fi
fi

# The browser test renders the HTML training report with Debian's headless chromium.
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    log "installing chromium (headless browser for the report test)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || log "WARNING: could not install chromium; tests/test_report.py's browser test will fail"
  else
    log "note: install Debian's chromium for the browser test of the HTML report"
  fi
fi

# --- Python environment ---------------------------------------------------------------------------
for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "setup.sh: '$tool' is required (Java 17 and Maven)" >&2; exit 1; }
done
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null; then PY="$cand"; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "setup.sh: Python 3.10+ is required" >&2; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
if ! stamp_ok venv pyproject.toml constraints.txt; then
  log "installing Python packages (pinned by constraints.txt)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
  stamp_write venv pyproject.toml constraints.txt
fi

# --- JVM jars -------------------------------------------------------------------------------------
SPARK_JARS="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"

fetch_jars() {  # fetch_jars PROFILE : resolve a Maven profile into .cache/jars/PROFILE
  local profile="$1" out="$CACHE/jars/$1"
  if stamp_ok "jars-$profile" scripts/jars/pom.xml && [[ -d "$out" ]]; then return; fi
  log "resolving $profile jars with Maven"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  mvn -q -B -f scripts/jars/pom.xml -P "$profile" dependency:copy-dependencies \
      -DincludeScope=runtime -DexcludeGroupIds=org.apache.spark,org.scala-lang \
      -DoutputDirectory="$out.tmp"
  if [[ "$profile" == delta ]]; then
    # Keep only what Spark does not already ship: a second, older copy of Hadoop, Parquet or Jackson
    # on the classpath is how class-version conflicts start.
    for jar in "$out.tmp"/*.jar; do
      local base artifact
      base="$(basename "$jar")"
      artifact="$(sed -E 's/-[0-9][0-9.]*(-[0-9]+)?\.jar$//' <<<"$base")"
      if compgen -G "$SPARK_JARS/${artifact}-[0-9]*.jar" >/dev/null \
         || [[ "$artifact" == commons-logging && -n "$(compgen -G "$SPARK_JARS/jcl-over-slf4j-*.jar")" ]]; then
        rm "$jar"
      fi
    done
  fi
  rm -rf "$out" && mv "$out.tmp" "$out"
  stamp_write "jars-$profile" scripts/jars/pom.xml
}
fetch_jars delta
if [[ "$want_hdfs" == 1 ]]; then fetch_jars hdfs; fi
if [[ "$want_s3" == 1 ]]; then fetch_jars s3; fi

# --- JVM class-data-sharing archive (pipeline/jvmcache.py): faster JVM starts ---------------------
if ! stamp_ok cds pyproject.toml constraints.txt scripts/jars/pom.xml || [[ ! -f "$CACHE/jvm/mlpipe.jsa" ]]; then
  log "building the JVM class-data-sharing archive"
  if "$VENV/bin/python" -m pipeline.jvmcache >/dev/null; then
    stamp_write cds pyproject.toml constraints.txt scripts/jars/pom.xml
  else
    log "no class-data-sharing archive (JVMs start without it)"
  fi
fi

log "ready: $VENV, jars in $CACHE/jars"
