"""Nothing lost, doubled or skipped silently: the edges of ingest and features that used to lose or
double rows without an error — a second writer, a ledger that does not reconcile, files changed,
half-copied, moved or deleted, a lost ingest log, reader options that drop rows, rows without an
event time. Each test names the behaviour; real Delta tables, read back whole."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import AppConfig
from pipeline.errors import ConfigError, LeaseHeldError, LedgerMismatchError, RunError
from pipeline.features.runner import run_features
from pipeline.ingest import runner as ingest_runner
from pipeline.ingest.runner import run_ingest
from pipeline.io import lease as lease_module
from pipeline.io.audit import read_audit
from pipeline.io.delta import read_delta
from pipeline.io.lease import Lease, holding
from pipeline.io.raw import RawFile, list_files
from pipeline.paths import PipelinePaths
from tests.helpers import make_config
from tests.test_ingest import HEADER, SPEC, bronze, drop, landing

RUN_DATE = dt.date(2026, 1, 5)


def config_for(tmp_path: Path, *extra: str, source: str = "") -> AppConfig:
    spec = SPEC.format(fmt="csv", options="{header: true}", evolution="fail")
    if source:
        spec = spec.replace("    schema_evolution: fail\n", f"    schema_evolution: fail\n{source}")
    return make_config(tmp_path, spec, overrides=list(extra))


def lines(i0: int, n: int, day: str = "2026-01-01") -> list[str]:
    return [HEADER, *[f"{i},{i % 900}.5,a,{i % 7},{day} 10:00:00" for i in range(i0, i0 + n)]]


def ingest_log(
    spark: SparkSession, cfg: AppConfig, status: str = "committed"
) -> list[tuple[int, str, str | None]]:
    """(batch, file name, outcome) of the log's rows of one status, in batch order."""
    log = read_delta(spark, PipelinePaths.of(cfg).ingest_log).where(F.col("status") == status)
    return sorted(
        (r.batch_id, r.file_path.rsplit("/", 1)[-1], r.outcome)
        for r in log.select("batch_id", "file_path", "outcome").collect()
    )


def quarantined(spark: SparkSession, cfg: AppConfig) -> list[tuple[str, str]]:
    q = read_delta(spark, PipelinePaths.of(cfg).quarantine)
    return sorted(
        (r.source_file.rsplit("/", 1)[-1], r.reason)
        for r in q.select("source_file", "reason").collect()
    )


def ids(df: DataFrame) -> list[str]:
    return sorted(r.id for r in df.select("id").collect())


# --------------------------------------------------------------------------------------------------
# One writer at a time: the lease that lives with the tables
# --------------------------------------------------------------------------------------------------


def _foreign_holder(spark: SparkSession, cfg: AppConfig, *, expires_in: float) -> Lease:
    """A lease taken by a command on another host (as a driver in cluster mode would be)."""
    paths = PipelinePaths.of(cfg)
    other = Lease(spark, paths.lease, paths.pipeline, ttl=dt.timedelta(seconds=expires_in))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "gethostname", lambda: "scheduler-2.example")
        other._command, other._run_id = "nightly", "run-elsewhere"
        other._since = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        other._append("acquire", 1)
    return other


def test_a_second_writer_is_refused_naming_the_holder_on_another_host(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "a.csv", lines(0, 5))
    _foreign_holder(spark, cfg, expires_in=600)
    with pytest.raises(LeaseHeldError) as err:
        run_ingest(spark, cfg, run_date=RUN_DATE, run_id="second")
    assert err.value.exit_code == 75
    message = str(err.value)
    assert "nightly on host scheduler-2.example" in message
    assert "run run-elsewhere" in message
    # Nothing was written by the refused command.
    paths = PipelinePaths.of(cfg)
    assert not Path(paths.bronze("tx").removeprefix("file://")).exists()
    assert not Path(paths.ingest_log.removeprefix("file://")).exists()


def test_an_expired_lease_of_a_dead_holder_is_taken_over(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "a.csv", lines(0, 5))
    _foreign_holder(spark, cfg, expires_in=0.5)
    time.sleep(1.0)
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="after-expiry")
    assert (entry.status, entry.rows_accepted) == ("succeeded", 5)
    # The lease table tells the story: the foreign acquire, ours, and our release.
    events = [
        (r.generation, r.event, r.command, r.run_id)
        for r in read_delta(spark, PipelinePaths.of(cfg).lease).orderBy("generation").collect()
    ]
    assert events == [
        (1, "acquire", "nightly", "run-elsewhere"),
        (2, "acquire", "ingest", "after-expiry"),
        (3, "release", "ingest", "after-expiry"),
    ]


def test_a_lease_held_by_a_process_gone_from_this_host_is_taken_over_at_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    paths = PipelinePaths.of(cfg)
    dead = Lease(spark, paths.lease, paths.pipeline, ttl=dt.timedelta(hours=1))
    dead._command, dead._since = "ingest", dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "getpid", lambda: 2**22 + 12345)  # no such process
        dead._append("acquire", 1)
    drop(cfg, "a.csv", lines(0, 3))
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="next")
    assert entry.rows_accepted == 3


def test_the_lease_is_reentrant_in_a_process_and_renewed_while_held(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    paths = PipelinePaths.of(cfg)
    ttl = dt.timedelta(seconds=9)
    with holding(spark, paths.lease, paths.pipeline, command="nightly", run_id="r", ttl=ttl):
        with holding(spark, paths.lease, paths.pipeline, command="ingest", run_id="r", ttl=ttl):
            pass
        time.sleep(12)  # longer than the ttl: renewals (every ttl / 3) keep it live
        latest = Lease(spark, paths.lease, paths.pipeline, ttl=ttl).latest()
        assert latest is not None
        assert latest.event == "renew"
        assert latest.live(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
    events = [r.event for r in read_delta(spark, paths.lease).orderBy("generation").collect()]
    assert events[0] == "acquire"
    assert events[-1] == "release"
    assert set(events[1:-1]) == {"renew"}
    assert lease_module._HELD == {}


# --------------------------------------------------------------------------------------------------
# The ledger is checked before the batch counts as done
# --------------------------------------------------------------------------------------------------


def test_a_ledger_mismatch_stays_failed_on_every_rerun_until_it_is_fixed(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "a.csv", lines(0, 10))
    real = ingest_runner.landed_counts

    def short_by_one(*args: object, **kwargs: object) -> tuple[int, int]:
        accepted, quarantined_rows = real(*args, **kwargs)  # type: ignore[arg-type]
        return accepted - 1, quarantined_rows

    monkeypatch.setattr(ingest_runner, "landed_counts", short_by_one)
    for attempt in ("first", "retry"):
        with pytest.raises(LedgerMismatchError, match=r"rows read \(10\) != accepted \(9\)"):
            run_ingest(spark, cfg, run_date=RUN_DATE, run_id=attempt)
    assert ingest_log(spark, cfg, "planned") == [(1, "a.csv", "read")]
    assert ingest_log(spark, cfg) == []  # the batch stays open: reruns resume it
    monkeypatch.setattr(ingest_runner, "landed_counts", real)
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="fixed")
    assert (entry.status, entry.batch_id, entry.rows_accepted) == ("succeeded", 1, 10)
    assert ingest_log(spark, cfg) == [(1, "a.csv", "ingested")]
    statuses = sorted(
        (r.run_id, r.status) for r in read_audit(spark, PipelinePaths.of(cfg).audit).collect()
    )
    assert statuses == [("first", "failed"), ("fixed", "succeeded"), ("retry", "failed")]


# --------------------------------------------------------------------------------------------------
# Files are known by path, size and modification time
# --------------------------------------------------------------------------------------------------


def _touch_later(path: Path) -> None:
    later = path.stat().st_mtime + 60
    os.utime(path, (later, later))


def test_a_file_rewritten_in_place_is_quarantined_whole_as_changed(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    target = drop(cfg, "a.csv", lines(0, 4))
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="first")
    drop(cfg, "a.csv", lines(0, 6))  # two rows appended in place
    _touch_later(target)
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="second")
    assert entry.quarantined_by_reason == {"file:file_changed": 1}
    assert ids(bronze(spark, cfg)) == ["0", "1", "2", "3"]
    assert quarantined(spark, cfg) == [("a.csv", "file_changed")]
    assert ingest_log(spark, cfg) == [(1, "a.csv", "ingested"), (2, "a.csv", "file_changed")]


def test_a_file_rewritten_in_place_is_ingested_again_when_the_source_says_so(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path, source="    on_change: reingest\n")
    target = drop(cfg, "a.csv", lines(0, 4))
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="first")
    drop(cfg, "a.csv", lines(0, 6))
    _touch_later(target)
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="second")
    assert (entry.batch_id, entry.rows_accepted) == (2, 6)
    got = bronze(spark, cfg).groupBy("_batch_id").count().orderBy("_batch_id").collect()
    assert [(r["_batch_id"], r["count"]) for r in got] == [(1, 4), (2, 6)]


def test_a_file_younger_than_the_settle_age_waits_and_is_then_ingested_whole(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path, source="    settle: 1h\n")
    target = drop(cfg, "copying.csv", lines(0, 2))  # still being copied: more lines to come
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="early")
    assert entry.status == "noop"
    assert "1 file(s) not settled" in (entry.message or "")
    drop(cfg, "copying.csv", lines(0, 8))
    hour_ago = time.time() - 3700
    os.utime(target, (hour_ago, hour_ago))
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="settled")
    assert entry.rows_accepted == 8
    assert ids(bronze(spark, cfg)) == sorted(str(i) for i in range(8))


def test_a_file_moved_into_a_subfolder_is_recognised_not_ingested_twice(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    target = drop(cfg, "a.csv", lines(0, 5))
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="first")
    (landing(cfg) / "archive").mkdir()
    target.rename(landing(cfg) / "archive" / "a.csv")  # mtime and size kept
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="after-move")
    assert entry.rows_read == 0
    assert "1 file(s) moved" in (entry.message or "")
    assert ids(bronze(spark, cfg)) == ["0", "1", "2", "3", "4"]
    assert ingest_log(spark, cfg) == [(1, "a.csv", "ingested"), (2, "a.csv", "moved")]
    # A third run has nothing to do.
    [again] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="third")
    assert again.status == "noop"


def test_a_file_deleted_between_listing_and_reading_is_recorded_and_the_rest_ingested(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "a.csv", lines(0, 3))
    gone = landing(cfg) / "gone.csv"

    def listed_then_deleted(spark: SparkSession, uri: str) -> list[RawFile]:
        found = list_files(spark, uri)
        return [*found, RawFile(f"file://{gone}", 120, dt.datetime(2026, 1, 1, 9))]

    monkeypatch.setattr("pipeline.ingest.runner.list_files", listed_then_deleted)
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="race")
    assert (entry.status, entry.rows_accepted) == ("succeeded", 3)
    assert "1 file(s) vanished" in (entry.message or "")
    assert ingest_log(spark, cfg) == [(1, "a.csv", "ingested"), (1, "gone.csv", "vanished")]
    # A vanished file that comes back is ingested then.
    monkeypatch.setattr("pipeline.ingest.runner.list_files", list_files)
    drop(cfg, "gone.csv", lines(100, 2))
    [back] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="back")
    assert back.rows_accepted == 2


# --------------------------------------------------------------------------------------------------
# A lost or restored ingest log
# --------------------------------------------------------------------------------------------------


def test_a_lost_ingest_log_is_detected_before_anything_is_written(
    spark: SparkSession, tmp_path: Path
) -> None:
    import shutil

    cfg = config_for(tmp_path)
    drop(cfg, "a.csv", lines(0, 4))
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="first")
    paths = PipelinePaths.of(cfg)
    shutil.rmtree(paths.ingest_log.removeprefix("file://"))
    drop(cfg, "b.csv", lines(10, 3))
    before = bronze(spark, cfg).collect()
    with pytest.raises(
        RunError, match=r"ingest log .* batch 1\b.* bronze table has already committed batch 1 "
    ):
        run_ingest(spark, cfg, run_date=RUN_DATE, run_id="after-loss")
    assert sorted(bronze(spark, cfg).collect()) == sorted(before)


# --------------------------------------------------------------------------------------------------
# Reader options that would drop rows
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "phrase"),
    [
        ("mode: DROPMALFORMED", "drops or fails rows"),
        ("ignoreCorruptFiles: true", "skips files"),
        ("pathGlobFilter: '*.csv'", "skips files"),
        ("columnNameOfCorruptRecord: bad", "set by the ingest stage"),
        ("nosuchoption: 1", "not an option of the csv reader"),
    ],
)
def test_reader_options_that_drop_rows_are_rejected_before_spark_starts(
    tmp_path: Path, option: str, phrase: str
) -> None:
    spec = SPEC.format(fmt="csv", options="{header: true, " + option + "}", evolution="fail")
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, spec)
    key = option.split(":")[0]
    assert err.value.key == f"pipeline.sources.tx.options.{key}"
    assert err.value.line is not None  # the line of the option in the pipeline's file
    assert phrase in str(err.value)


# --------------------------------------------------------------------------------------------------
# Features count every row they cannot use
# --------------------------------------------------------------------------------------------------

FEATURE_SPEC = """
name: nf
task: binary_classification
sources:
  ev:
    format: csv
    options: {header: true}
    columns:
      - {name: id, type: string, nullable: false}
      - {name: user, type: string, nullable: false}
      - {name: ts, type: timestamp, format: "yyyy-MM-dd HH:mm:ss"}
      - {name: x, type: double}
features:
  key: [id]
  entity: user
  event_time: ts
  label: {expr: "cast(x > 0 as double)"}
"""


def test_feature_rows_without_an_event_time_are_counted_and_quarantined(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, FEATURE_SPEC, name="nf")
    folder = Path(PipelinePaths.of(cfg).source_path("ev").removeprefix("file://"))
    folder.mkdir(parents=True)
    (folder / "d.csv").write_text(
        "id,user,ts,x\n"
        "1,u1,2026-01-05 10:00:00,1.0\n"
        "2,u1,2026-01-05 11:00:00,-1.0\n"
        "3,u2,,0.5\n"  # no event time: it belongs to no date
        "2,u1,2026-01-05 11:00:00,-1.0\n"  # a duplicate
    )
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="in")
    entry = run_features(spark, cfg, run_date=RUN_DATE, run_id="feat")
    assert (entry.rows_read, entry.rows_accepted, entry.rows_dropped) == (4, 2, 2)
    assert entry.dropped_by_reason == {"duplicate_key": 1, "null_event_time": 1}
    q = read_delta(spark, PipelinePaths.of(cfg).quarantine).where(F.col("source") == "features")
    assert [(r.reason, r.run_date) for r in q.collect()] == [("null_event_time", RUN_DATE)]
    # A rerun of the date neither doubles the quarantined row nor changes the ledger.
    again = run_features(spark, cfg, run_date=RUN_DATE, run_id="feat-again")
    assert again.dropped_by_reason == {"duplicate_key": 1, "null_event_time": 1}
    assert q.count() == 1


def test_bronze_rows_carry_the_run_date_of_the_batch_that_ingested_them(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "a.csv", lines(0, 2))
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="first")
    got = read_delta(spark, PipelinePaths.of(cfg).bronze("tx")).select("id", "_run_date")
    expected = spark.createDataFrame(
        [("0", RUN_DATE), ("1", RUN_DATE)], "id STRING, _run_date DATE"
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
