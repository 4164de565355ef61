"""`mlpipe maintain`: Delta upkeep of one pipeline's tables (design: docs/design/maintain.md).

Every night adds a few small commits to the ledger tables (ingest log, audit, quarantine, the
lease) and a partition to the feature and prediction tables; nothing shrinks them. For each of the
pipeline's tables that exists, in one run under the pipeline's lease:

1. `OPTIMIZE` bin-packs small files (a table already compact is left as it is);
2. the retention is chosen so that no version a registered model pins is lost: the feature table
   at the `features_version` of every model version that carries an alias (the champion's is what
   nightly monitoring compares against). `VACUUM`'s retention and the table's
   `delta.deletedFileRetentionDuration` (beyond which Delta refuses time travel) and
   `delta.logRetentionDuration` all cover the oldest pinned version's commit plus the time to the
   next maintenance (the pin ages meanwhile, and log entries are dropped at automatic checkpoints);
3. `VACUUM` deletes the files no version inside that retention reads;
4. a checkpoint is written, so the next read replays one Parquet file instead of JSON commits.

What it did goes to the audit table (stage `maintain`) and the console, one line per table.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.console import stage_started
from pipeline.io.audit import LedgerEntry, audited, read_audit
from pipeline.io.delta import is_delta_table
from pipeline.io.lease import tables_lease
from pipeline.paths import PipelinePaths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "maintain"
# Delta refuses a VACUUM retention under this unless its safety check is turned off.
_DELTA_MIN_RETENTION_HOURS = 168
_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_LISTING = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


@dataclass(frozen=True)
class Pin:
    """A table version that must stay readable, and why."""

    path: str
    version: int
    model_version: str  # the registered version that pins it
    registered_at: dt.datetime  # when that version was registered
    reason: str  # e.g. "model fraud v3 (champion)"


@dataclass
class TableUpkeep:
    """What maintenance did to one table."""

    name: str
    path: str
    files_before: int
    files_after: int = 0
    compacted: int = 0  # small files OPTIMIZE replaced
    vacuumed: int = 0  # files VACUUM deleted
    retention_hours: int = 0
    log_retention_days: int = 0
    pinned: list[Pin] = field(default_factory=list)

    def line(self) -> str:
        """One line for the console."""
        pins = ", ".join(f"v{p.version} for {p.reason}" for p in self.pinned)
        return (
            f"{self.name}: files {self.files_before} -> {self.files_after} "
            f"(compacted {self.compacted}, vacuumed {self.vacuumed}), "
            f"retention {self.retention_hours} h, log {self.log_retention_days} d"
            + (f", keeping {pins}" if pins else "")
        )


@dataclass
class MaintainResult:
    """Maintenance of one pipeline: a line per table."""

    pipeline: str
    tables: list[TableUpkeep]

    def summary(self) -> str:
        head = f"maintain {self.pipeline}: {len(self.tables)} table(s)"
        return "\n".join([head, *(f"  {t.line()}" for t in self.tables)])


def pipeline_tables(spark: SparkSession, paths: PipelinePaths) -> dict[str, str]:
    """The pipeline's Delta tables that exist, by name."""
    candidates = {
        **{f"bronze/{s}": paths.bronze(s) for s in paths.sources},
        "quarantine": paths.quarantine,
        "ingest_log": paths.ingest_log,
        "audit": paths.audit,
        "features": paths.features,
        "predictions": paths.predictions,
        "_lease": paths.lease,
    }
    return {name: path for name, path in candidates.items() if is_delta_table(spark, path)}


def pinned_versions(config: AppConfig) -> list[Pin]:
    """The feature table versions registered models pin: those of every aliased version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    spec = config.require_pipeline()
    name = spec.model_name
    client = MlflowClient()
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    features = PipelinePaths.of(config).features
    pins = []
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    for version, aliases in sorted(by_version.items()):
        found = client.get_model_version(name, version)
        tag = found.tags.get("features_version")
        if tag:
            reason = f"model {name} v{version} ({', '.join(sorted(aliases))})"
            registered = dt.datetime.fromtimestamp(
                (found.creation_timestamp or 0) / 1000, dt.timezone.utc
            )
            pins.append(Pin(features, int(tag), version, registered, reason))
    return pins


def _commit_time(spark: SparkSession, path: str, version: int) -> dt.datetime | None:
    from delta.tables import DeltaTable

    row = (
        DeltaTable.forPath(spark, path)
        .history()
        .where(f"version = {int(version)}")
        .select("timestamp")
        .first()
    )
    return None if row is None else row[0].replace(tzinfo=dt.timezone.utc)


def _num_files(spark: SparkSession, path: str) -> int:
    row = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").select("numFiles").first()
    return int(row[0]) if row is not None and row[0] is not None else 0


@contextlib.contextmanager
def _vacuum_settings(spark: SparkSession, hours: int) -> Iterator[None]:
    """Session settings for one VACUUM: Delta's refusal of a retention under 7 days lifted when
    the YAML asked for one, and its file listing as wide as the shuffle rather than Spark's
    partition-discovery default of 10,000 tasks (most of a small table's VACUUM time)."""
    settings = {_LISTING: spark.conf.get("spark.sql.shuffle.partitions") or "8"}
    if hours < _DELTA_MIN_RETENTION_HOURS:
        settings[_RETENTION_CHECK] = "false"
    before: dict[str, str | None] = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def _checkpoint(spark: SparkSession, path: str) -> None:
    """Write a checkpoint of the table's latest version (Delta's JVM API: Python has none)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    delta_log.checkpoint()


def maintain_table(
    spark: SparkSession,
    name: str,
    path: str,
    *,
    file_retention_days: float,
    log_retention_days: float,
    next_run_days: float,
    pins: list[Pin],
    now: dt.datetime,
) -> TableUpkeep:
    """Compact, set the log retention, vacuum and checkpoint one table."""
    upkeep = TableUpkeep(name, path, files_before=_num_files(spark, path))
    upkeep.pinned = [p for p in pins if p.path == path]
    # How far back the pinned versions go: their files and log entries must outlive that.
    oldest_h = 0.0
    for pin in upkeep.pinned:
        committed = _commit_time(spark, path, pin.version)
        if committed is not None:
            oldest_h = max(oldest_h, (now - committed).total_seconds() / 3600)
    # Until the next maintenance extends it again (the pin ages meanwhile), and past the two days
    # before expiry at which `maintenance_due` calls for one anyway.
    keep_h = oldest_h + (next_run_days + 3) * 24 if upkeep.pinned else 0.0
    upkeep.retention_hours = math.ceil(max(file_retention_days * 24, keep_h))
    upkeep.log_retention_days = math.ceil(max(log_retention_days, keep_h / 24))

    optimized = spark.sql(f"OPTIMIZE delta.`{path}`").select("metrics.numFilesRemoved").first()
    upkeep.compacted = int(optimized[0]) if optimized is not None and optimized[0] else 0
    # Delta refuses time travel to a version older than the deleted-file retention, and drops
    # log entries older than the log retention at checkpoints: both must cover the pins.
    spark.sql(
        f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ("
        f"'delta.deletedFileRetentionDuration' = 'interval {upkeep.retention_hours} hours', "
        f"'delta.logRetentionDuration' = 'interval {upkeep.log_retention_days} days')"
    )
    with _vacuum_settings(spark, upkeep.retention_hours):
        retain = f"RETAIN {upkeep.retention_hours} HOURS"
        upkeep.vacuumed = spark.sql(f"VACUUM delta.`{path}` {retain} DRY RUN").count()
        if upkeep.vacuumed:
            spark.sql(f"VACUUM delta.`{path}` {retain}").collect()
    _checkpoint(spark, path)
    upkeep.files_after = _num_files(spark, path)
    log.info("maintain %s", upkeep.line())
    return upkeep


def run_maintain(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> MaintainResult:
    """Maintain every table of the pipeline (under its lease); one audit row."""
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    m = spec.maintain
    stage_started(STAGE, spec.name, str(run_date))
    entry = LedgerEntry(run_id=run_id, pipeline=spec.name, stage=STAGE, run_date=run_date)
    ttl = config.storage.lease_ttl_seconds
    with (
        tables_lease(spark, paths, ttl, command=STAGE, run_id=run_id),
        audited(spark, paths.audit, entry),
    ):
        pins = pinned_versions(config)
        now = dt.datetime.now(dt.timezone.utc)
        done = [
            maintain_table(
                spark,
                name,
                path,
                file_retention_days=m.file_retention_days,
                log_retention_days=m.log_retention_days,
                # Without a cadence, pins are kept as far as with the default weekly one.
                next_run_days=m.every_days or 7,
                pins=pins,
                now=now,
            )
            for name, path in pipeline_tables(spark, paths).items()
            # The lease is held (and written) by this very run: compacting it would conflict.
            if name != "_lease"
        ]
        entry.metrics = {
            **{f"files_before.{t.name}": float(t.files_before) for t in done},
            **{f"files_after.{t.name}": float(t.files_after) for t in done},
            **{f"vacuumed.{t.name}": float(t.vacuumed) for t in done},
        }
        entry.message = "; ".join(t.line() for t in done)
    return MaintainResult(spec.name, done)


def maintenance_due(spark: SparkSession, config: AppConfig, run_date: dt.date) -> bool:
    """Due every `maintain.every_days`, counted from the last maintenance or, before the first,
    from the pipeline's first night (so a young pipeline is not maintained on its first night);
    and, whatever the cadence, as soon as a pinned version comes within two days of its table's
    time-travel retention (a champion kept for long would otherwise become unreadable for the
    nightly monitoring that compares against it)."""
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    every = spec.maintain.every_days
    paths = PipelinePaths.of(config)
    if not is_delta_table(spark, paths.audit):
        return False
    if pins_expiring(spark, config):
        return True
    if not every:
        return False
    # One job every night: the last maintenance and the first night, together.
    maintained = (F.col("stage") == STAGE) & (F.col("status") == "succeeded")
    row = (
        read_audit(spark, paths.audit)
        .agg(F.max(F.when(maintained, F.col("run_date"))), F.min("run_date"))
        .first()
    )
    since = None if row is None else (row[0] or row[1])
    return since is not None and (run_date - since).days >= every


_MARGIN = dt.timedelta(days=2)
_DEFAULT_FILE_RETENTION = dt.timedelta(hours=_DELTA_MIN_RETENTION_HOURS)


def pins_expiring(spark: SparkSession, config: AppConfig) -> list[Pin]:
    """The pinned versions within two days of their table's deleted-file retention (Delta's
    limit for time travel). The registry is asked first, and a table only for pins whose model
    version is itself old enough to matter: on most nights this reads no table."""
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for pin in pinned_versions(config):
        if now - pin.registered_at < _DEFAULT_FILE_RETENTION - _MARGIN - dt.timedelta(days=1):
            continue  # the pinned commit came before the registration, at most a day before
        committed = _commit_time(spark, pin.path, pin.version)
        if committed is not None and now - committed >= _file_retention(spark, pin.path) - _MARGIN:
            out.append(pin)
    return out


def _file_retention(spark: SparkSession, path: str) -> dt.timedelta:
    """The table's `delta.deletedFileRetentionDuration` (Delta's default when unset)."""
    import re

    rows = spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()
    value = {r.key: r.value for r in rows}.get("delta.deletedFileRetentionDuration", "")
    match = re.fullmatch(r"interval (\d+) (hours?|days?)", value.strip().lower())
    if match is None:
        return _DEFAULT_FILE_RETENTION
    n = int(match.group(1))
    return dt.timedelta(hours=n) if match.group(2).startswith("hour") else dt.timedelta(days=n)
