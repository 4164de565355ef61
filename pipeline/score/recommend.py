"""Scoring of a recommendation pipeline: the top k items for every user active on the run date.

One prediction row per (user, rank), the items each user interacted with in the champion's
training window left out. Users the champion has never seen cannot get ALS recommendations: they
are counted as dropped (cold start), with their number in the ledger.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from pipeline.config.models import AppConfig
from pipeline.io.audit import LedgerEntry
from pipeline.io.delta import read_delta, table_version
from pipeline.model import ranking
from pipeline.names import EVENT_DATE, RUN_DATE
from pipeline.paths import PipelinePaths
from pipeline.score import monitor
from pipeline.score.observe import log_monitoring, score_lineage, trailing_rows
from pipeline.score.predictions import champion_and_features, count_today, write_predictions

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from pipeline.config.stages import RecommendSpec
    from pipeline.model.registry import Champion

log = logging.getLogger(__name__)

COLD_START = "cold_start_user"  # the ledger's reason for a user the model has never seen


def recommendation_rows(
    ranked: DataFrame,
    spec: RecommendSpec,
    champ: Champion,
    features_version: int,
    run_date: Column,
) -> DataFrame:
    """The prediction rows of ranked recommendations (user, item, score, rank): one per (user,
    rank), with the champion and feature-table version that made them."""
    from pyspark.sql import functions as F

    return ranked.select(
        spec.user,
        F.col(ranking.RANK).cast("int").alias("rank"),
        spec.item,
        F.col(ranking.SCORE).alias("score"),
        F.lit(champ.name).alias("model_name"),
        F.lit(champ.version).alias("model_version"),
        F.lit(champ.run_id).alias("mlflow_run_id"),
        F.lit(features_version).cast("long").alias("features_version"),
        F.current_timestamp().alias("scored_at"),
        run_date.cast("date").alias(RUN_DATE),
    )


def score_recommendations(
    spark: SparkSession,
    config: AppConfig,
    paths: PipelinePaths,
    run_date: dt.date,
    entry: LedgerEntry,
) -> None:
    """Write the run date's recommendations and their ledger and monitoring."""
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    r = spec.require_recommend()
    k = spec.train.top_k if spec.train else 10
    champ, features_version = champion_and_features(spark, spec, paths)
    table = read_delta(spark, paths.features, features_version)
    users = table.where(F.col(EVENT_DATE) == F.lit(run_date)).select(r.user).distinct().persist()
    if count_today(entry, users, champ, features_version, f"no interactions on {run_date}"):
        return
    first, last = spec.nightly.training_window(run_date)
    seen = (
        table.where((F.col(EVENT_DATE) >= F.lit(first)) & (F.col(EVENT_DATE) <= F.lit(last)))
        .join(users, r.user, "left_semi")
        .select(r.user, r.item)
        .distinct()
        .persist()
    )
    n = ranking.fetch_size(seen, users, k, r)
    ranked = ranking.top_k(ranking.recommend(champ.model, users, n, r), seen, k, r)
    predictions = recommendation_rows(ranked, r, champ, features_version, F.lit(run_date))
    log.info("writing recommendations for %s", run_date)
    write_predictions(predictions, paths.predictions, run_date)
    written = read_delta(spark, paths.predictions).where(F.col(RUN_DATE) == F.lit(run_date))
    stats = written.agg(
        F.countDistinct(r.user).alias("users"), F.countDistinct(r.item).alias("items")
    ).first()
    assert stats is not None  # a global aggregation has one row
    entry.rows_accepted = int(stats["users"])
    # Users the champion has no factors for get no ALS recommendations: cold start.
    entry.drop(COLD_START, entry.rows_read - entry.rows_accepted)
    version_written = table_version(spark, paths.predictions)
    if version_written is not None:
        entry.table_versions["predictions"] = version_written
    entry.reconcile()
    item_indexer: Any = champ.model.stages[1]
    catalogue = len(item_indexer.labels)
    report = monitor.assess(
        spec.monitor,
        feature_psi={},
        score_psi=None,
        nulls={},
        rows_today=entry.rows_read,
        trailing_mean=trailing_rows(spark, paths.audit, run_date),
    )
    report.metrics["cold_start_users"] = float(entry.rows_dropped)
    report.metrics["catalogue_coverage"] = int(stats["items"]) / max(1, catalogue)
    users.unpersist()
    seen.unpersist()
    entry.metrics.update(report.metrics)
    log_monitoring(
        config.mlflow,
        spec.name,
        run_date,
        report,
        model_name=champ.name,
        model_version=champ.version,
        inputs=score_lineage(paths, entry),
    )
    message = [f"{entry.rows_dropped} user(s) unknown to the model (cold start)"] * bool(
        entry.rows_dropped
    )
    entry.finish(message="; ".join(message + report.warnings) or None)
