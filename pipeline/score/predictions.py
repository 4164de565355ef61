"""The predictions table: what a prediction row holds, how a date's partition is replaced, and
the champion and feature-table version every row of a scoring run records."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from pipeline.config.models import PipelineSpec
from pipeline.errors import RunError
from pipeline.io.audit import NOOP, LedgerEntry
from pipeline.io.delta import is_commit_conflict, is_delta_table, overwrite_where, table_version
from pipeline.model.registry import Champion, current_champion
from pipeline.names import RUN_DATE
from pipeline.paths import PipelinePaths

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)


def predictions_frame(
    scored: DataFrame,
    score: Column,
    *,
    keys: list[str],
    threshold: float | None,
    model: str,
    version: str,
    mlflow_run_id: str,
    features_version: int,
    run_date: dt.date | Column,
    classification: bool,
) -> DataFrame:
    """Select the prediction row: keys, score, label at the stored threshold, and lineage.

    `score` is the model's score on `scored` (`model_scores` gives both).
    """
    from pyspark.sql import functions as F

    label = (
        (score >= F.lit(threshold if threshold is not None else 0.5)).cast("int")
        if classification
        else F.lit(None).cast("int")
    )
    return scored.select(
        *keys,
        score.alias("score"),
        label.alias("predicted_label"),
        F.lit(model).alias("model_name"),
        F.lit(version).alias("model_version"),
        F.lit(mlflow_run_id).alias("mlflow_run_id"),
        F.lit(features_version).cast("long").alias("features_version"),
        F.current_timestamp().alias("scored_at"),
        (F.lit(run_date) if isinstance(run_date, dt.date) else run_date)
        .cast("date")
        .alias(RUN_DATE),
    )


def write_predictions(
    df: DataFrame, path: str, run_date: dt.date, *, last: dt.date | None = None, attempts: int = 4
) -> None:
    """Replace the run date's partition (or those of `run_date`..`last`); retry when another
    date's write committed first."""
    predicate = (
        f"{RUN_DATE} = '{run_date}'"
        if last is None
        else f"{RUN_DATE} >= '{run_date}' AND {RUN_DATE} <= '{last}'"
    )
    for attempt in range(1, attempts + 1):
        try:
            overwrite_where(df, path, predicate, partition_by=[RUN_DATE])
            return
        except Exception as exc:
            # Two dates scored at once touch disjoint partitions; only the table's creation or a
            # metadata change can conflict, and a retry then sees the committed table.
            if attempt == attempts or not is_commit_conflict(exc):
                raise
            log.warning("concurrent Delta commit on %s (attempt %d): retrying", path, attempt)
            time.sleep(0.5 * attempt)


def champion_and_features(
    spark: SparkSession, spec: PipelineSpec, paths: PipelinePaths
) -> tuple[Champion, int]:
    """The champion model and the feature table's current version."""
    if not is_delta_table(spark, paths.features):
        raise RunError(f"no feature table at {paths.features}: run `mlpipe features` first")
    champ = current_champion(spec.model_name)
    features_version = table_version(spark, paths.features)
    assert features_version is not None  # the table exists
    return champ, features_version


def count_today(
    entry: LedgerEntry, today: DataFrame, champ: Champion, features_version: int, empty: str
) -> bool:
    """Count the run date's (cached) rows into the ledger; True (finished as a no-op) when there
    are none."""
    entry.rows_read = today.count()
    entry.table_versions["features"] = features_version
    entry.metrics["model_version"] = float(champ.version)
    if entry.rows_read == 0:
        today.unpersist()
        entry.finish(NOOP, empty)
        return True
    return False
