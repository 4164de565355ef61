"""The features stage: bronze -> feature Delta table for a run date.

A run for date D rewrites the event dates [D - label horizon, D] (just D when the label is a
column): rows of the last `horizon` days get their labels as the future becomes known. Window
features read history back to the longest window before the first rewritten date, so every row is
computed from the same data whichever run wrote it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.config.stages import FeatureSpec, duration_seconds
from pipeline.errors import RunError
from pipeline.faults import crash_point
from pipeline.features.transforms import (
    clean_strings,
    deduplicate,
    with_derived,
    with_event_date,
    with_label,
    with_window_features,
)
from pipeline.io.audit import NOOP, LedgerEntry, audited
from pipeline.io.delta import is_delta_table, overwrite_where, read_delta, table_version
from pipeline.io.lease import tables_lease
from pipeline.io.quarantine import replace_date_quarantine
from pipeline.names import EVENT_DATE
from pipeline.paths import PipelinePaths

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# Reasons the features stage gives the ledger for a bronze row that makes no feature row.
DUPLICATE_KEY = "duplicate_key"  # an older record of the same key (the latest one is kept)
NULL_EVENT_TIME = "null_event_time"  # no event time: the row belongs to no date
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
    source: str,
    first: dt.date,
    last: dt.date,
    bronze_version: int | None = None,
) -> tuple[DataFrame, DataFrame]:
    """(bronze rows of the dates, feature rows of the dates) — lazily, nothing is computed here.

    `source` is the bronze table the features come from.
    """
    from pyspark.sql import functions as F

    history_start = dt.datetime.combine(first, dt.time()) - dt.timedelta(
        seconds=spec.max_window_seconds()
    )
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time())

    bronze_path = paths.bronze(source)
    if not is_delta_table(spark, bronze_path):
        raise RunError(f"no bronze table at {bronze_path}: run `mlpipe ingest` first")
    bronze = read_delta(spark, bronze_path, bronze_version)
    in_range = bronze.where(
        (F.col(spec.event_time) >= F.lit(history_start)) & (F.col(spec.event_time) < F.lit(end))
    )
    target_bronze = with_event_date(in_range, spec.event_time).where(
        F.col(EVENT_DATE) >= F.lit(first)
    )

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

    features = (
        in_range.transform(clean_strings, trim=spec.trim_strings, lowercase=spec.lowercase)
        .transform(
            deduplicate,
            key=spec.key,
            event_time=spec.event_time,
            tie_breakers=["_ingested_at", "_source_file"],
        )
        .transform(with_derived, spec.derived)
        .transform(
            with_window_features,
            entity=spec.entity,
            event_time=spec.event_time,
            windows=spec.windows,
        )
        .transform(with_derived, spec.after_windows)
    )
    if spec.label is not None:
        features = with_label(
            features,
            spec.label,
            key=spec.key,
            events_df=events_df,
            entity=spec.entity,
            event_time=spec.event_time,
            observed_until=observed_until,
        )
    features = with_event_date(features, spec.event_time).where(F.col(EVENT_DATE) >= F.lit(first))
    metadata = [c for c in features.columns if c.startswith("_")]
    return target_bronze, features.drop(*metadata)


def run_features(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> LedgerEntry:
    """Write the feature rows of the run date (and of the label horizon before it)."""
    pipeline = config.require_pipeline()
    spec = pipeline.require_features()
    paths = PipelinePaths.of(config)
    entry = LedgerEntry(run_id=run_id, pipeline=pipeline.name, stage="features", run_date=run_date)
    first = run_date - dt.timedelta(days=label_horizon_days(spec))
    ttl = config.storage.lease_ttl_seconds
    with (
        tables_lease(spark, paths, ttl, command="features", run_id=run_id),
        audited(spark, paths.audit, entry),
    ):
        _write_features(
            spark, paths, spec, entry, source=pipeline.feature_source, first=first, last=run_date
        )
    return entry


def untimed_rows(bronze: DataFrame, spec: FeatureSpec, run_date: dt.date) -> DataFrame:
    """Bronze rows without an event time that the batches of `run_date` ingested: they belong
    to no event date, so no feature row can be made of them."""
    from pyspark.sql import functions as F

    ingested_on = (
        F.coalesce(F.col("_run_date"), F.to_date("_ingested_at"))
        if "_run_date" in bronze.columns
        else F.to_date("_ingested_at")  # bronze written before rows carried their run date
    )
    return bronze.where(F.col(spec.event_time).isNull() & (ingested_on == F.lit(run_date)))


def _write_features(
    spark: SparkSession,
    paths: PipelinePaths,
    spec: FeatureSpec,
    entry: LedgerEntry,
    *,
    source: str,
    first: dt.date,
    last: dt.date,
) -> None:
    from pyspark.sql import functions as F

    bronze_path = paths.bronze(source)
    bronze_version = table_version(spark, bronze_path)
    target_bronze, features = build_features(
        spark, paths, spec, source=source, first=first, last=last, bronze_version=bronze_version
    )
    untimed = untimed_rows(read_delta(spark, bronze_path, bronze_version), spec, last).persist()
    target_bronze = target_bronze.persist()
    in_range, without_time = target_bronze.count(), untimed.count()
    entry.rows_read = in_range + without_time
    if bronze_version is not None:
        entry.table_versions["bronze"] = bronze_version
        # The last ingest batch this run saw: later batches with rows of these dates make the
        # date due again (late data, see pipeline.nightly).
        seen = read_delta(spark, bronze_path, bronze_version).agg(F.max("_batch_id")).first()
        entry.metrics[SEEN_BATCH] = float(seen[0]) if seen and seen[0] is not None else 0.0
    _quarantine_untimed(paths, spec, entry, untimed, source, last)
    untimed.unpersist()
    if entry.rows_read == 0:
        target_bronze.unpersist()
        entry.finish(NOOP, f"no bronze rows with event dates {first}..{last}")
        return
    distinct_keys = target_bronze.select(*spec.key).distinct().count() if in_range else 0
    target_bronze.unpersist()

    if in_range:
        predicate = f"{EVENT_DATE} >= '{first}' AND {EVENT_DATE} <= '{last}'"
        overwrite_where(features, paths.features, predicate, partition_by=[EVENT_DATE])
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


def _quarantine_untimed(
    paths: PipelinePaths,
    spec: FeatureSpec,
    entry: LedgerEntry,
    untimed: DataFrame,
    source: str,
    run_date: dt.date,
) -> None:
    """Replace the date's quarantined rows without an event time (a rerun never doubles them)."""
    from pyspark.sql import functions as F

    data = [c for c in untimed.columns if not c.startswith("_")]
    records = untimed.select(
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in data])).alias("raw_record"),
        F.col("_source_file").alias("source_file"),
        F.lit(NULL_EVENT_TIME).alias("reason"),
        F.lit(f"{spec.event_time} is empty: the row belongs to no event date").alias("detail"),
    )
    replace_date_quarantine(
        records,
        paths.quarantine,
        pipeline=paths.pipeline,
        source="features",
        run_id=entry.run_id,
        run_date=run_date,
    )
