"""`mlpipe maintain` on real Delta tables: compaction that keeps every row, a checkpoint, and a
VACUUM whose retention keeps the feature version a registered champion pinned (and only that)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

from mlflow import MlflowClient
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from pipeline.config import AppConfig
from pipeline.io.audit import LedgerEntry, read_audit, write_audit
from pipeline.io.delta import read_delta
from pipeline.maintain import maintenance_due, run_maintain
from pipeline.paths import PipelinePaths
from pipeline.tracking import configure_mlflow
from tests.helpers import local_path, make_config

DAY = dt.date(2026, 3, 1)
SPEC = """
name: upkeep
task: binary_classification
sources:
  ev: {format: csv, columns: [{name: id, type: string}]}
features: {key: [id], entity: id, event_time: ts, label: {column: y}}
"""


def _config(tmp: Path, *overrides: str) -> AppConfig:
    cfg = make_config(
        tmp,
        SPEC,
        name="upkeep",
        overrides=[f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db", *overrides],
    )
    configure_mlflow(cfg.mlflow)
    return cfg


def _ledger_rows(spark: SparkSession, cfg: AppConfig, nights: int) -> None:
    """One small audit commit per night, as the nightly flow leaves them."""
    audit = PipelinePaths.of(cfg).audit
    for i in range(nights):
        day = DAY + dt.timedelta(days=i)
        entry = LedgerEntry(f"run-{i}", "upkeep", "features", day, rows_read=i, rows_accepted=i)
        write_audit(spark, audit, [entry.finish()])


def test_maintain_compacts_the_ledger_keeps_every_row_and_writes_a_checkpoint(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = _config(tmp_path)
    _ledger_rows(spark, cfg, 12)
    audit = PipelinePaths.of(cfg).audit
    before = read_audit(spark, audit).collect()

    result = run_maintain(spark, cfg, run_date=DAY, run_id="maintain-1")

    [upkeep] = [t for t in result.tables if t.name == "audit"]
    assert (upkeep.files_before, upkeep.compacted, upkeep.files_after) == (12, 12, 1)
    # Default retention: the replaced small files stay for time travel, nothing is vacuumed.
    assert (upkeep.vacuumed, upkeep.retention_hours, upkeep.log_retention_days) == (0, 168, 30)
    assert upkeep.pinned == []
    after = read_audit(spark, audit)
    assertDataFrameEqual(after.where("stage != 'maintain'"), before)
    [row] = after.where("stage = 'maintain'").collect()
    assert (row.status, row.metrics["files_before.audit"], row.metrics["files_after.audit"]) == (
        "succeeded",
        12.0,
        1.0,
    )
    log_dir = Path(local_path(audit)) / "_delta_log"
    assert list(log_dir.glob("*.checkpoint.parquet")), "no checkpoint written"
    assert read_delta(spark, audit, 0).count() == 1  # the first version is still readable
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{audit}`").collect()
    assert {r.key: r.value for r in props}["delta.logRetentionDuration"] == "interval 30 days"


def _age(path: str, version: int, days: float) -> None:
    """Make commit `version` of a local Delta table look `days` old: the commit's timestamps,
    its removed files' deletion time, its added files' and the commit file's modification time."""
    millis = int((dt.datetime.now(dt.timezone.utc).timestamp() - days * 86400) * 1000)
    table = Path(local_path(path))
    commit = table / "_delta_log" / f"{version:020d}.json"
    actions = [json.loads(line) for line in commit.read_text().splitlines() if line]
    for action in actions:
        if "commitInfo" in action:
            action["commitInfo"]["timestamp"] = millis
            if "inCommitTimestamp" in action["commitInfo"]:
                action["commitInfo"]["inCommitTimestamp"] = millis
        if "remove" in action:
            action["remove"]["deletionTimestamp"] = millis
        if "add" in action:
            action["add"]["modificationTime"] = millis
            os.utime(table / action["add"]["path"], (millis / 1000, millis / 1000))
    commit.write_text("".join(json.dumps(a) + "\n" for a in actions))
    os.utime(commit, (millis / 1000, millis / 1000))
    # Checksums of the old content: Hadoop's of the file, Delta's of the version (both optional).
    for stale in (f".{commit.name}.crc", f"{version:020d}.crc", f".{version:020d}.crc.crc"):
        (commit.parent / stale).unlink(missing_ok=True)


def _features_history(spark: SparkSession, cfg: AppConfig) -> list[list[tuple[str, int]]]:
    """Four overwrites of the feature table, 60, 50, 33 and 1 day(s) ago, a file each; the rows
    of each version."""
    path = PipelinePaths.of(cfg).features
    versions = [[(f"v{v}-{i}", v) for i in range(3)] for v in range(4)]
    for rows in versions:
        frame = spark.createDataFrame(rows, "id STRING, v INT").coalesce(1)
        frame.write.format("delta").mode("overwrite").save(path)
    for version, days in enumerate((60, 50, 33, 1)):
        _age(path, version, days)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # forget the timestamps seen at write
    return versions


def _readable(spark: SparkSession, path: str, version: int) -> list[tuple[str, int]] | None:
    try:
        return sorted((r.id, r.v) for r in read_delta(spark, path, version).collect())
    except Exception:  # its files were vacuumed, or it is beyond the time-travel retention
        return None


def test_vacuum_keeps_the_feature_version_the_champion_pinned_and_deletes_older_files(
    spark: SparkSession, tmp_path: Path
) -> None:
    pinned = _config(tmp_path / "pinned", "pipeline.maintain.file_retention_days=0")
    versions = _features_history(spark, pinned)
    client = MlflowClient()
    name = pinned.require_pipeline().model_name
    client.create_registered_model(name)
    model = client.create_model_version(name, source=str(tmp_path), tags={"features_version": "2"})
    client.set_registered_model_alias(name, "champion", model.version)

    result = run_maintain(spark, pinned, run_date=DAY, run_id="maintain-pinned")

    path = PipelinePaths.of(pinned).features
    [upkeep] = [t for t in result.tables if t.name == "features"]
    assert [(p.version, p.reason) for p in upkeep.pinned] == [
        (2, f"model {name} v{model.version} (champion)")
    ]
    # Back to the pinned commit (33 days) and on past the next maintenance (in 7 days) and the
    # two days' warning before expiry, not the configured zero; the log (default 30 days) as far.
    assert 43 * 24 < upkeep.retention_hours <= 43 * 24 + 1
    assert upkeep.log_retention_days == 44
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()
    assert {r.key: r.value for r in props}["delta.deletedFileRetentionDuration"] == (
        f"interval {upkeep.retention_hours} hours"
    )
    # The pinned version reads back whole; the file that only version 0 read is gone.
    assert _readable(spark, path, 2) == sorted(versions[2])
    assert _readable(spark, path, 3) == sorted(versions[3])
    assert _readable(spark, path, 0) is None
    assert upkeep.vacuumed == 1

    # The same history without a champion: a zero retention leaves only the latest version.
    bare = _config(tmp_path / "bare", "pipeline.maintain.file_retention_days=0")
    versions = _features_history(spark, bare)
    run_maintain(spark, bare, run_date=DAY, run_id="maintain-bare")
    bare_path = PipelinePaths.of(bare).features
    assert [_readable(spark, bare_path, v) for v in (0, 1, 2)] == [None, None, None]
    assert sorted((r.id, r.v) for r in read_delta(spark, bare_path).collect()) == sorted(
        versions[3]
    )


def test_the_nightly_flow_maintains_on_its_cadence_counted_from_the_first_night(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, "pipeline.maintain.every_days=3")
    _ledger_rows(spark, cfg, 1)  # the pipeline's first night: DAY
    due = {
        DAY + dt.timedelta(days=d): maintenance_due(spark, cfg, DAY + dt.timedelta(days=d))
        for d in range(4)
    }
    assert list(due.values()) == [False, False, False, True]
    run_maintain(spark, cfg, run_date=DAY + dt.timedelta(days=3), run_id="m")
    # Counted again from the last maintenance.
    assert not maintenance_due(spark, cfg, DAY + dt.timedelta(days=5))
    assert maintenance_due(spark, cfg, DAY + dt.timedelta(days=6))
    never = _config(tmp_path / "never", "pipeline.maintain.every_days=0")
    _ledger_rows(spark, never, 1)
    assert not maintenance_due(spark, never, DAY + dt.timedelta(days=365))


def test_a_pin_near_its_time_travel_limit_makes_maintenance_due_whatever_the_cadence(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, "pipeline.maintain.every_days=0")
    _ledger_rows(spark, cfg, 1)
    _features_history(spark, cfg)  # version 2 was committed 33 days ago
    client = MlflowClient()
    name = cfg.require_pipeline().model_name
    client.create_registered_model(name)
    model = client.create_model_version(name, source=str(tmp_path), tags={"features_version": "2"})
    client.set_registered_model_alias(name, "champion", model.version)
    # Registered just now: its pin is taken to be recent, no table is read.
    assert not maintenance_due(spark, cfg, DAY)

    # The registration 33 days old, as the registry would have it a month on.
    month_ago = int((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=33)).timestamp() * 1000)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("UPDATE model_versions SET creation_time = ?", (month_ago,))
    assert maintenance_due(spark, cfg, DAY)  # beyond Delta's default 7 days: due at once
    run_maintain(spark, cfg, run_date=DAY, run_id="m")
    assert not maintenance_due(spark, cfg, DAY)  # the retention now reaches past the pin
    path = PipelinePaths.of(cfg).features
    assert sorted(r.v for r in read_delta(spark, path, 2).collect()) == [2, 2, 2]
