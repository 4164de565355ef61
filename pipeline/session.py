"""The one place that builds the SparkSession.

Two situations, one function:

* The pipeline starts Spark itself (`mlpipe ...`, tests, local development): everything comes from
  `SparkConfig` — master, Delta's extension and catalog, the jars cached by `make setup` on the
  classpath, the driver bound to loopback, shuffle partitions scaled to the cores, and the Python
  workers pinned to this interpreter.
* Under `spark-submit` (the JVM already exists and owns the configuration): whatever spark-submit set
  (master, jars, confs) is kept; only Delta's settings that are still missing are added.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.models import SparkConfig
from pipeline.console import verbose as console_verbose
from pipeline.errors import RunError
from pipeline.jvmcache import java_options
from pipeline.redact import SPARK_REDACTION_REGEX
from pipeline.sparkconf import DELTA_CONF

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOOPBACK = "127.0.0.1"


def default_jars_dir() -> Path:
    """Where `scripts/setup.sh` puts the Delta jars: `.cache/jars/delta` in the project."""
    return Path(__file__).resolve().parents[1] / ".cache" / "jars" / "delta"


def under_spark_submit() -> bool:
    """True when this Python process was started by spark-submit (or a pyspark shell)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def local_cores(master: str) -> int:
    """Cores a `local[...]` master uses; the machine's cores for anything else."""
    match = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\s*\d+)?\])?", master.strip())
    if match is None or match.group(1) in (None, "*"):
        return 1 if master.strip() == "local" else (os.cpu_count() or 2)
    return int(match.group(1))


def shuffle_partitions(cfg: SparkConfig) -> int:
    """Shuffle partitions: configured, or twice the local cores (Spark's 200 is far too many here)."""
    if cfg.shuffle_partitions != "auto":
        return int(cfg.shuffle_partitions)
    return max(2, 2 * local_cores(cfg.master))


def delta_jars(cfg: SparkConfig) -> list[str]:
    """The cached Delta jars; a `RunError` that says how to get them when there are none."""
    jars_dir = Path(cfg.jars_dir) if cfg.jars_dir else default_jars_dir()
    jars = sorted(glob.glob(str(jars_dir / "*.jar")))
    if not any(Path(j).name.startswith("delta-spark_") for j in jars):
        raise RunError(
            f"Delta Lake jars not found in {jars_dir}; run `make setup` (scripts/setup.sh) first"
        )
    return jars


def s3a_jars(cfg: SparkConfig) -> list[str]:
    """Hadoop's S3A connector and the AWS SDK it was built with (`scripts/setup.sh --s3`, next to
    the Delta jars); a `RunError` that says how to get them when they are missing."""
    jars_dir = (Path(cfg.jars_dir) if cfg.jars_dir else default_jars_dir()).parent / "s3"
    jars = sorted(glob.glob(str(jars_dir / "*.jar")))
    if not any(Path(j).name.startswith("hadoop-aws-") for j in jars):
        raise RunError(
            f"s3a:// storage needs Hadoop's S3A connector jars, not found in {jars_dir}; "
            "run `scripts/setup.sh --s3` first"
        )
    return jars


def uses_s3a(uris: Iterable[str | None]) -> bool:
    """True when any of the storage URIs is on S3 (through Hadoop's s3a:// connector)."""
    return any(u is not None and u.startswith("s3a://") for u in uris)


def session_conf(cfg: SparkConfig, *, s3a: bool = False) -> dict[str, str]:
    """Every Spark setting the pipeline applies when it starts Spark itself; `s3a` adds the S3A
    connector's jars (only then: the AWS SDK bundle is large, and a cluster ships every jar to
    every executor)."""
    parts = shuffle_partitions(cfg)
    jars = delta_jars(cfg) + (s3a_jars(cfg) if s3a else [])
    conf: dict[str, str] = {
        **DELTA_CONF,
        "spark.jars": ",".join(jars),
        "spark.driver.memory": cfg.driver_memory,
        "spark.sql.shuffle.partitions": str(parts),
        # Delta replays its log with this many partitions (default 50): match the shuffle width.
        "spark.databricks.delta.snapshotPartitions": str(parts),
        "spark.ui.enabled": str(cfg.ui_enabled).lower(),
        "spark.sql.session.timeZone": "UTC",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # Spark masks the values of matching keys in its logs, UI and event logs; its default
        # misses Azure account keys and GCS private keys (a user's own setting still wins).
        "spark.redaction.regex": SPARK_REDACTION_REGEX,
        # The console progress bar's redraws would fill the run's log file (pipeline.console);
        # --verbose shows it.
        "spark.ui.showConsoleProgress": "true" if console_verbose() else "false",
    }
    if cfg.master.startswith("local"):
        conf["spark.driver.host"] = LOOPBACK
        conf["spark.driver.bindAddress"] = LOOPBACK
    conf.update({k: _conf_str(v) for k, v in cfg.conf.items()})
    cds = java_options()
    if cds:
        # The driver JVM's start (pipeline/jvmcache.py); a user's own options come after ours.
        given = conf.get("spark.driver.extraJavaOptions", "")
        conf["spark.driver.extraJavaOptions"] = f"{cds} {given}".strip()
    return conf


def _conf_str(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_spark(
    cfg: SparkConfig, *, app_name: str | None = None, storage: Iterable[str | None] = ()
) -> SparkSession:
    """Return the active SparkSession, or build one from `cfg` (see the module docstring);
    `storage` is the URIs the run reads and writes (s3a:// ones add the S3A connector)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active

    name = app_name or cfg.app_name
    if under_spark_submit():
        from pyspark import SparkConf, SparkContext

        # Connect to spark-submit's JVM first: only then does SparkConf() see what it was given.
        SparkContext._ensure_initialized()
        submitted = SparkConf()
        builder = SparkSession.builder
        # spark-submit names the app after the script (e.g. "nightly.py") unless --name was given:
        # keep a user's --name, replace the script's.
        given = submitted.get("spark.app.name", "")
        if not given or given.endswith(".py"):
            builder = builder.appName(name)
        defaults = {
            **DELTA_CONF,
            "spark.sql.session.timeZone": "UTC",
            "spark.redaction.regex": SPARK_REDACTION_REGEX,
        }
        for key, value in defaults.items():
            if not submitted.contains(key):
                builder = builder.config(key, value)
        spark = builder.getOrCreate()
    else:
        # Read by the JVM launcher and the Python workers, so they must be in the environment
        # before the JVM starts; the host name does not resolve reliably on these machines.
        if cfg.master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        builder = SparkSession.builder.master(cfg.master).appName(name)
        for key, value in session_conf(cfg, s3a=uses_s3a(storage)).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    # Delta's commit conflicts then reach Python as their own exception types
    # (`delta.exceptions.ConcurrentAppendException`, ...), not as a generic Java error.
    import delta.exceptions  # noqa: F401

    return spark


def parallelism(spark: SparkSession) -> int:
    """How many tasks the session runs at once: what partitions are sized to."""
    return int(spark.sparkContext.defaultParallelism)
