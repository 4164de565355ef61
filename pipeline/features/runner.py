"""The features stage: bronze -> feature Delta table for a run date.

A run for date D rewrites the event dates [D - label horizon, D] (just D when the label is a
column): rows of the last `horizon` days get their labels as the future becomes known. Window
features read history back to the longest window before the first rewritten date, so every row is
computed from the same data whichever run wrote it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.config.stages import ROW_ID, FeatureSpec, duration_seconds
from pipeline.console import stage_started
from pipeline.errors import RunError
from pipeline.faults import crash_point
from pipeline.features.transforms import (
    clean_strings,
    deduplicate,
    unknown_label,
    with_derived,
    with_event_date,
    with_label,
    with_row_id,
    with_window_features,
)
from pipeline.io.audit import NOOP, LedgerEntry, audited
from pipeline.io.delta import is_delta_table, overwrite_where, read_delta, table_version
from pipeline.io.lease import tables_lease
from pipeline.io.quarantine import replace_date_quarantine
from pipeline.io.raw import SOURCE_FILE, SOURCE_ROW
from pipeline.names import EVENT_DATE, LABEL
from pipeline.names import SOURCE_FILE as SOURCE_FILE_COLUMN
from pipeline.paths import PipelinePaths

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

# Reasons the features stage gives the ledger for a bronze row that makes no feature row.
DUPLICATE_KEY = "duplicate_key"  # an older record of the same key (the latest one is kept)
NULL_EVENT_TIME = "null_event_time"  # no event time: the row belongs to no date
UNKNOWN_LABEL = "unknown_label"  # a label value in neither `positive` nor `negative`
SEEN_BATCH = "bronze_batch_seen"  # metric: the last ingest batch a features run read


def label_horizon_days(spec: FeatureSpec) -> int:
    """How many days back a run rewrites so that event labels can mature."""
    if spec.label is None or spec.label.event is None:
        return 0
    return math.ceil(duration_seconds(spec.label.event.within) / 86400)


def build_features(
    spark: SparkSession,
    paths: PipelinePaths,
    spec: FeatureSpec,
    *,
    bronze: DataFrame,
    first: dt.date,
    last: dt.date,
) -> tuple[DataFrame, DataFrame]:
    """(bronze rows of the dates, feature rows of the dates) — lazily, nothing is computed here.

    `bronze` is what the features come from (`read_bronze`). The feature rows still carry
    bronze's metadata columns (`_source_file`, ...), which the feature table leaves out.
    """
    from pyspark.sql import functions as F

    history_start = dt.datetime.combine(first, dt.time()) - dt.timedelta(
        seconds=spec.max_window_seconds()
    )
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time())

    time = spec.time_column
    in_range = bronze.where((F.col(time) >= F.lit(history_start)) & (F.col(time) < F.lit(end)))
    target_bronze = with_event_date(in_range, time).where(F.col(EVENT_DATE) >= F.lit(first))

    events_df = None
    observed_until = None
    if spec.label is not None and spec.label.event is not None:
        events_path = paths.bronze(spec.label.event.source)
        if not is_delta_table(spark, events_path):
            raise RunError(
                f"no bronze table at {events_path} for the label events: run `mlpipe ingest` first"
            )
        events_df = read_delta(spark, events_path)
        # What is known on the run date: events up to the end of D.
        observed_until = F.lit(end)
        events_df = events_df.where(F.col(spec.label.event.time) < observed_until)

    key = spec.key_columns
    features = (
        in_range.transform(clean_strings, trim=spec.trim_strings, lowercase=spec.lowercase)
        .transform(
            deduplicate,
            key=key,
            event_time=time,
            tie_breakers=["_ingested_at", "_source_file"],
        )
        .transform(with_derived, spec.derived)
    )
    if spec.windows:
        assert spec.entity is not None
        assert spec.event_time is not None
        features = features.transform(
            with_window_features,
            entity=spec.entity,
            event_time=spec.event_time,
            windows=spec.windows,
        )
    features = features.transform(with_derived, spec.after_windows)
    if spec.label is not None:
        features = with_label(
            features,
            spec.label,
            key=key,
            events_df=events_df,
            entity=spec.entity,
            event_time=spec.event_time,
            observed_until=observed_until,
        )
    features = with_event_date(features, time).where(F.col(EVENT_DATE) >= F.lit(first))
    return target_bronze, features


def read_bronze(
    spark: SparkSession,
    paths: PipelinePaths,
    spec: FeatureSpec,
    source: str,
    version: int | None,
    test_sources: Mapping[str, int | None] | None = None,
) -> DataFrame:
    """The bronze rows features start from: the source's table at `version`, and the tables of
    the given test sources (same columns: checked when the configuration loads), each row
    numbered by its file and record when the features have no key."""
    frames = []
    for name, at in {source: version, **(test_sources or {})}.items():
        path = paths.bronze(name)
        if not is_delta_table(spark, path):
            raise RunError(f"no bronze table at {path}: run `mlpipe ingest` first")
        frame = read_delta(spark, path, at)
        frames.append(_with_row_ids(frame, path) if spec.key is None else frame)
    return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _with_row_ids(bronze: DataFrame, bronze_path: str) -> DataFrame:
    """Bronze with `row_id` (file and record number), the key of a source that declares none."""
    from pyspark.sql import functions as F

    numbered = SOURCE_ROW in bronze.columns
    if not numbered or bronze.where(F.col(SOURCE_ROW).isNull()).limit(1).count():
        raise RunError(
            f"rows in {bronze_path} carry no record number (ingested while features.key was set, "
            "or by an older version), and features.key is not set: set features.key, or ingest "
            "the files again into a new tables folder"
        )
    return with_row_id(bronze, source_file=SOURCE_FILE, source_row=SOURCE_ROW)


def store_features(
    features: DataFrame, paths: PipelinePaths, *, first: dt.date, last: dt.date
) -> None:
    """Replace the feature table's event dates `first`..`last` with `features` (bronze's metadata
    columns left out, the landing file kept) in one atomic commit."""
    from pyspark.sql import functions as F

    # The landing file stays with the row: a source split picks test rows by it, and a
    # prediction can be traced back to its file.
    if SOURCE_FILE_COLUMN not in features.columns:  # a source's own column of that name wins
        features = features.withColumn(SOURCE_FILE_COLUMN, F.col(SOURCE_FILE))
    metadata = [c for c in features.columns if c.startswith("_")]
    predicate = f"{EVENT_DATE} >= '{first}' AND {EVENT_DATE} <= '{last}'"
    overwrite_where(
        features.drop(*metadata),
        paths.features,
        predicate,
        partition_by=[EVENT_DATE],
        merge_schema=True,  # a table written before rows kept their file gains the column
    )


def quarantine_records(
    rows: DataFrame, reason: str, detail: str, *, run_date: Column | None = None
) -> DataFrame:
    """Feature-stage rows refused for `reason`, as quarantine records (their data as JSON); with
    `run_date`, each record's run date too."""
    from pyspark.sql import functions as F

    data = [c for c in rows.columns if not c.startswith("_") and c not in (EVENT_DATE, LABEL)]
    return rows.select(
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in data])).alias("raw_record"),
        F.col("_source_file").alias("source_file"),
        F.lit(reason).alias("reason"),
        F.lit(detail).alias("detail"),
        *([] if run_date is None else [run_date.cast("date").alias("run_date")]),
    )


def untimed_detail(spec: FeatureSpec) -> str:
    return f"{spec.time_column} is empty: the row belongs to no event date"


def unknown_label_detail(spec: FeatureSpec) -> str:
    assert spec.label is not None
    return f"{spec.label.column} is neither a positive nor a negative label value"


def run_features(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> LedgerEntry:
    """Write the feature rows of the run date (and of the label horizon before it)."""
    pipeline = config.require_pipeline()
    spec = pipeline.require_features()
    paths = PipelinePaths.of(config)
    entry = LedgerEntry(run_id=run_id, pipeline=pipeline.name, stage="features", run_date=run_date)
    first = run_date - dt.timedelta(days=label_horizon_days(spec))
    stage_started("features", pipeline.name, f"event dates {first}..{run_date}")
    ttl = config.storage.lease_ttl_seconds
    with (
        tables_lease(spark, paths, ttl, command="features", run_id=run_id),
        audited(spark, paths.audit, entry),
    ):
        _write_features(
            spark,
            paths,
            spec,
            entry,
            source=pipeline.feature_source,
            test_sources=pipeline.test_sources,
            first=first,
            last=run_date,
        )
    return entry


def untimed_rows(bronze: DataFrame, spec: FeatureSpec, run_date: dt.date) -> DataFrame:
    """Bronze rows without an event time that the batches of `run_date` ingested: they belong
    to no event date, so no feature row can be made of them."""
    from pyspark.sql import functions as F

    return bronze.where(F.col(spec.time_column).isNull() & (ingest_date(bronze) == F.lit(run_date)))


def ingest_date(bronze: DataFrame) -> Column:
    """The run date of the ingest batch that brought each bronze row."""
    from pyspark.sql import functions as F

    if "_run_date" in bronze.columns:
        return F.coalesce(F.col("_run_date"), F.to_date("_ingested_at"))
    return F.to_date("_ingested_at")  # bronze written before rows carried their run date


def _write_features(
    spark: SparkSession,
    paths: PipelinePaths,
    spec: FeatureSpec,
    entry: LedgerEntry,
    *,
    source: str,
    test_sources: Sequence[str],
    first: dt.date,
    last: dt.date,
) -> None:
    from pyspark.sql import functions as F

    bronze_path = paths.bronze(source)
    bronze_version = table_version(spark, bronze_path)
    given = {name: table_version(spark, paths.bronze(name)) for name in test_sources}
    # Read (and, without a key, its record numbers checked) once for both uses below.
    bronze = read_bronze(spark, paths, spec, source, bronze_version, given)
    target_bronze, features = build_features(
        spark, paths, spec, bronze=bronze, first=first, last=last
    )
    # (quarantined as bronze holds them: without the row id the features add)
    untimed = untimed_rows(bronze.drop(ROW_ID), spec, last).persist()
    target_bronze = target_bronze.persist()
    in_range, without_time = target_bronze.count(), untimed.count()
    entry.rows_read = in_range + without_time
    for name, at in given.items():
        if at is not None:
            entry.table_versions[f"bronze.{name}"] = at
    if bronze_version is not None:
        entry.table_versions["bronze"] = bronze_version
        # The last ingest batch this run saw: later batches with rows of these dates make the
        # date due again (late data, see pipeline.nightly).
        seen = read_delta(spark, bronze_path, bronze_version).agg(F.max("_batch_id")).first()
        entry.metrics[SEEN_BATCH] = float(seen[0]) if seen and seen[0] is not None else 0.0
    unknown = unknown_label(spec.label)
    unlabelled = features.where(unknown) if unknown is not None and in_range else None
    _quarantine(paths, spec, entry, untimed, unlabelled, last)
    untimed.unpersist()
    if entry.rows_read == 0:
        target_bronze.unpersist()
        entry.finish(NOOP, f"no bronze rows with event dates {first}..{last}")
        return
    distinct_keys = target_bronze.select(*spec.key_columns).distinct().count() if in_range else 0
    target_bronze.unpersist()

    if in_range:
        if unknown is not None:
            # Counted from what the quarantine now holds: the features are not computed again.
            quarantined = read_delta(spark, paths.quarantine).where(
                (F.col("source") == "features")
                & (F.col("run_date") == F.lit(last))
                & (F.col("reason") == UNKNOWN_LABEL)
            )
            entry.drop(UNKNOWN_LABEL, quarantined.count())
            features = features.where(~unknown)
        store_features(features, paths, first=first, last=last)
        crash_point("features.after_write")
        written = read_delta(spark, paths.features).where(
            (F.col(EVENT_DATE) >= F.lit(first)) & (F.col(EVENT_DATE) <= F.lit(last))
        )
        entry.rows_accepted = written.count()
    entry.drop(DUPLICATE_KEY, in_range - distinct_keys)
    entry.drop(NULL_EVENT_TIME, without_time)
    version = table_version(spark, paths.features)
    if version is not None:
        entry.table_versions["features"] = version
    entry.reconcile()


def _quarantine(
    paths: PipelinePaths,
    spec: FeatureSpec,
    entry: LedgerEntry,
    untimed: DataFrame,
    unlabelled: DataFrame | None,
    run_date: dt.date,
) -> None:
    """Replace the date's quarantined feature rows (a rerun never doubles them): rows without an
    event time, and rows whose label value is in neither declared list."""
    frame = quarantine_records(untimed, NULL_EVENT_TIME, untimed_detail(spec))
    if unlabelled is not None and spec.label is not None:
        frame = frame.unionByName(
            quarantine_records(unlabelled, UNKNOWN_LABEL, unknown_label_detail(spec))
        )
    replace_date_quarantine(
        frame,
        paths.quarantine,
        pipeline=paths.pipeline,
        source="features",
        run_id=entry.run_id,
        run_date=run_date,
    )
