"""The score stage: the run date's feature rows -> champion PipelineModel -> predictions table.

The champion is loaded as a native Spark `PipelineModel` (not `mlflow.pyfunc.spark_udf`, which
moves every row through Python). A champion whose compiled SQL expression was checked against
`transform` at registration (`pipeline.model.compiled`) is scored through that expression, with
no vector UDFs; any other through `transform`. The run date's partition of the predictions table
is replaced atomically (`replaceWhere run_date = D`), so a rerun gives the same content, never
duplicates, and a run killed mid-write leaves the previous complete set (or none) in place.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config.models import AppConfig
from pipeline.errors import RunError
from pipeline.features.transforms import EVENT_DATE
from pipeline.io.audit import NOOP, LedgerEntry, audited, read_audit
from pipeline.io.delta import is_delta_table, overwrite_where, read_delta, table_version
from pipeline.model.compiled import COMPILED, SCORING_TAG, model_scores
from pipeline.model.registry import load_champion
from pipeline.paths import PipelinePaths
from pipeline.score import monitor
from pipeline.train.runner import model_name

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from pyspark.ml import PipelineModel
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

RUN_DATE = "run_date"
_CONFLICT_MARKERS = (
    "ConcurrentAppend",
    "ConcurrentWrite",
    "ProtocolChanged",
    "MetadataChanged",
    "ConcurrentDeleteRead",
    "DELTA_CONCURRENT",
)


def _non_finite(columns: list[str]) -> Column:
    from pyspark.sql import functions as F

    cond = F.lit(False)
    for c in columns:
        v = F.col(c).cast("double")
        cond = cond | (F.isnan(v) | (F.abs(v) == F.lit(float("inf"))))
    return F.coalesce(cond, F.lit(False))


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
    run_date: dt.date,
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
        F.lit(run_date).cast("date").alias(RUN_DATE),
    )


def write_predictions(df: DataFrame, path: str, run_date: dt.date, *, attempts: int = 4) -> None:
    """Replace the run date's partition; retry when another date's write committed first."""
    for attempt in range(1, attempts + 1):
        try:
            overwrite_where(df, path, f"{RUN_DATE} = '{run_date}'", partition_by=[RUN_DATE])
            return
        except Exception as exc:
            # Two dates scored at once touch disjoint partitions; only the table's creation or a
            # metadata change can conflict, and a retry then sees the committed table.
            if attempt == attempts or not any(m in str(exc) for m in _CONFLICT_MARKERS):
                raise
            log.warning("concurrent Delta commit on %s (attempt %d): retrying", path, attempt)
            time.sleep(0.5 * attempt)


def run_score(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> LedgerEntry:
    """Score the run date; one audit row with the ledger and the monitoring metrics."""
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    entry = LedgerEntry(run_id=run_id, pipeline=spec.name, stage="score", run_date=run_date)
    with audited(spark, paths.audit, entry):
        _score(spark, config, paths, run_date, entry)
    return entry


def _score(
    spark: SparkSession,
    config: AppConfig,
    paths: PipelinePaths,
    run_date: dt.date,
    entry: LedgerEntry,
) -> None:
    from pyspark.sql import functions as F

    from pipeline.io.delta import append_idempotent

    spec = config.require_pipeline()
    if spec.task == "recommendation":
        _score_recommendations(spark, config, paths, run_date, entry)
        return
    if spec.model is None or spec.features is None:
        raise RunError("scoring needs the `features` and `model` sections")
    champ = _champion(spark, config, paths)
    name, model, version, threshold = champ.name, champ.model, champ.version, champ.threshold
    mv, features_version = champ.mv, champ.features_version
    rows = read_delta(spark, paths.features, features_version).where(
        F.col(EVENT_DATE) == F.lit(run_date)
    )

    inputs = list(spec.model.numeric) + list(spec.model.categorical)
    missing = [c for c in inputs if c not in rows.columns]
    if missing:
        raise RunError(f"the feature table lacks the model's input column(s): {', '.join(missing)}")
    keys = list(spec.score.keys or spec.features.key)
    for extra in (spec.features.entity, spec.features.event_time):
        if extra not in keys:
            keys.append(extra)

    rows = rows.persist()
    if _nothing_today(entry, rows, champ, f"no feature rows for {run_date}"):
        return

    # NaN or infinite inputs cannot be imputed meaningfully: quarantine those rows with a reason.
    bad = _non_finite(list(spec.model.numeric))
    good_rows, bad_rows = rows.where(~bad), rows.where(bad)
    classification = spec.task == "binary_classification"
    scored, score, path = model_scores(
        model,
        good_rows,
        classification=classification,
        compiled=spec.score.engine == "auto" and mv.tags.get(SCORING_TAG) == COMPILED,
    )
    predictions = predictions_frame(
        scored,
        score,
        keys=keys,
        threshold=threshold,
        model=name,
        version=version,
        mlflow_run_id=mv.run_id or "",
        features_version=features_version,
        run_date=run_date,
        classification=classification,
    )
    log.info("writing predictions for %s (scored through %s)", run_date, path)
    write_predictions(predictions, paths.predictions, run_date)

    quarantined = bad_rows.select(
        F.to_json(F.struct(*[F.col(c) for c in keys + inputs])).alias("raw_record"),
        F.lit(None).cast("string").alias("source_file"),
        F.lit("non_finite_value").alias("reason"),
        F.lit("a numeric model input is NaN or infinite").alias("detail"),
        F.lit(spec.name).alias("pipeline"),
        F.lit("score").alias("source"),
        F.lit(entry.run_id).alias("run_id"),
        F.lit(0).cast("long").alias("batch_id"),
        F.lit(run_date).cast("date").alias("run_date"),
        F.current_timestamp().alias("quarantined_at"),
    )
    # Idempotent per run date: a rerun of the same date does not quarantine its rows twice.
    day_number = (run_date - dt.date(1970, 1, 1)).days
    append_idempotent(
        quarantined,
        paths.quarantine,
        app_id=f"mlpipe-score-{spec.name}-{run_date}",
        version=day_number,
    )

    written = read_delta(spark, paths.predictions).where(F.col(RUN_DATE) == F.lit(run_date))
    entry.rows_accepted = written.count()
    entry.rows_quarantined = bad_rows.count()
    if entry.rows_quarantined:
        entry.quarantined_by_reason = {"non_finite_value": entry.rows_quarantined}
    version_written = table_version(spark, paths.predictions)
    if version_written is not None:
        entry.table_versions["predictions"] = version_written

    report = _monitor(spark, config, paths, rows, entry.rows_read, written, run_date, mv.tags)
    rows.unpersist()
    entry.metrics.update(report.metrics)
    entry.reconcile()
    _log_monitoring(config, run_date, report, name, version, {SCORING_TAG: path})
    if report.failures:
        raise RunError(
            "data drift beyond the failure threshold (predictions were written): "
            + "; ".join(report.failures)
        )
    entry.finish(message="; ".join(report.warnings) or None)


@dataclass(frozen=True)
class _Champion:
    name: str
    model: PipelineModel
    version: str
    threshold: float | None
    mv: ModelVersion
    features_version: int


def _champion(spark: SparkSession, config: AppConfig, paths: PipelinePaths) -> _Champion:
    """The champion model (native Spark) and the feature table's current version."""
    from mlflow import MlflowClient

    if not is_delta_table(spark, paths.features):
        raise RunError(f"no feature table at {paths.features}: run `mlpipe features` first")
    name = model_name(config)
    model, version, threshold = load_champion(name)
    mv = MlflowClient().get_model_version(name, version)
    features_version = table_version(spark, paths.features)
    assert features_version is not None
    return _Champion(name, model, version, threshold, mv, features_version)


def _nothing_today(entry: LedgerEntry, today: DataFrame, champ: _Champion, empty: str) -> bool:
    """Count the run date's (cached) rows into the ledger; finish as a no-op when there are none."""
    entry.rows_read = today.count()
    entry.table_versions["features"] = champ.features_version
    entry.metrics["model_version"] = float(champ.version)
    if entry.rows_read == 0:
        today.unpersist()
        entry.finish(NOOP, empty)
        return True
    return False


def _score_recommendations(
    spark: SparkSession,
    config: AppConfig,
    paths: PipelinePaths,
    run_date: dt.date,
    entry: LedgerEntry,
) -> None:
    """Top-k recommendations for every user active on the run date, seen items left out.

    One prediction row per (user, rank). Users the champion has never seen cannot get ALS
    recommendations: they are counted as dropped (cold start), with their number in the ledger.
    """
    from pyspark.sql import functions as F

    from pipeline.model import ranking

    spec = config.require_pipeline()
    assert spec.recommend is not None
    assert spec.features is not None
    r = spec.recommend
    k = spec.train.top_k if spec.train else 10
    champ = _champion(spark, config, paths)
    name, model, version = champ.name, champ.model, champ.version
    mv, features_version = champ.mv, champ.features_version
    table = read_delta(spark, paths.features, features_version)
    users = table.where(F.col(EVENT_DATE) == F.lit(run_date)).select(r.user).distinct().persist()
    if _nothing_today(entry, users, champ, f"no interactions on {run_date}"):
        return
    first = run_date - dt.timedelta(days=spec.nightly.train_lookback_days - 1)
    seen = (
        table.where((F.col(EVENT_DATE) >= F.lit(first)) & (F.col(EVENT_DATE) <= F.lit(run_date)))
        .join(users, r.user, "left_semi")
        .select(r.user, r.item)
        .distinct()
        .persist()
    )
    n = ranking.fetch_size(seen, users, k, r)
    ranked = ranking.top_k(ranking.recommend(model, users, n, r), seen, k, r)
    predictions = ranked.select(
        r.user,
        F.col(ranking.RANK).cast("int").alias("rank"),
        r.item,
        F.col(ranking.SCORE).alias("score"),
        F.lit(name).alias("model_name"),
        F.lit(version).alias("model_version"),
        F.lit(mv.run_id or "").alias("mlflow_run_id"),
        F.lit(features_version).cast("long").alias("features_version"),
        F.current_timestamp().alias("scored_at"),
        F.lit(run_date).cast("date").alias(RUN_DATE),
    )
    log.info("writing recommendations for %s", run_date)
    write_predictions(predictions, paths.predictions, run_date)
    written = read_delta(spark, paths.predictions).where(F.col(RUN_DATE) == F.lit(run_date))
    stats = written.agg(
        F.countDistinct(r.user).alias("users"), F.countDistinct(r.item).alias("items")
    ).first()
    assert stats is not None
    entry.rows_accepted = int(stats["users"])
    entry.rows_dropped = entry.rows_read - entry.rows_accepted
    version_written = table_version(spark, paths.predictions)
    if version_written is not None:
        entry.table_versions["predictions"] = version_written
    entry.reconcile()
    item_indexer: Any = model.stages[1]
    catalogue = len(item_indexer.labels)
    report = monitor.assess(
        spec.monitor,
        feature_psi={},
        score_psi=None,
        nulls={},
        rows_today=entry.rows_read,
        trailing_mean=_trailing_rows(spark, paths, run_date),
    )
    report.metrics["cold_start_users"] = float(entry.rows_dropped)
    report.metrics["catalogue_coverage"] = int(stats["items"]) / max(1, catalogue)
    users.unpersist()
    seen.unpersist()
    entry.metrics.update(report.metrics)
    _log_monitoring(config, run_date, report, name, version)
    message = [f"{entry.rows_dropped} user(s) unknown to the model (cold start)"] * bool(
        entry.rows_dropped
    )
    entry.finish(message="; ".join(message + report.warnings) or None)


def _trailing_rows(spark: SparkSession, paths: PipelinePaths, run_date: dt.date) -> float | None:
    """Mean rows read by the last 7 successful scoring runs before the run date."""
    from pyspark.sql import functions as F

    if not is_delta_table(spark, paths.audit):
        return None
    prior = (
        read_audit(spark, paths.audit)
        .where(
            (F.col("stage") == "score")
            & (F.col("status") == "succeeded")
            & (F.col("run_date") < F.lit(run_date))
        )
        .groupBy("run_date")
        .agg(F.max("rows_read").alias("n"))
        .orderBy(F.col("run_date").desc())
        .limit(7)
        .agg(F.avg("n"))
        .first()
    )
    return float(prior[0]) if prior is not None and prior[0] is not None else None


def _monitor(
    spark: SparkSession,
    config: AppConfig,
    paths: PipelinePaths,
    rows: DataFrame,
    rows_today: int,
    written: DataFrame,
    run_date: dt.date,
    tags: dict[str, str],
) -> monitor.MonitorReport:
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    assert spec.model is not None
    numeric = list(spec.model.numeric)
    # Reference: the champion's own training window.
    trained_on = dt.date.fromisoformat(tags["run_date"]) if tags.get("run_date") else run_date
    ref_version = int(tags["features_version"]) if tags.get("features_version") else None
    first = trained_on - dt.timedelta(days=spec.nightly.train_lookback_days - 1)
    reference = read_delta(spark, paths.features, ref_version).where(
        (F.col(EVENT_DATE) >= F.lit(first)) & (F.col(EVENT_DATE) <= F.lit(trained_on))
    )
    feature_psi = monitor.psi_by_column(reference, rows, numeric)
    earlier = read_delta(spark, paths.predictions).where(
        (F.col(RUN_DATE) < F.lit(run_date))
        & (F.col(RUN_DATE) >= F.lit(run_date - dt.timedelta(days=7)))
    )
    score_psi = None
    if earlier.limit(1).count():
        score_psi = monitor.psi_by_column(earlier, written, ["score"])["score"]
    trailing = _trailing_rows(spark, paths, run_date)
    return monitor.assess(
        spec.monitor,
        feature_psi=feature_psi,
        score_psi=score_psi,
        nulls=monitor.null_rates(rows, numeric + list(spec.model.categorical)),
        rows_today=rows_today,  # counted once, by the ledger
        trailing_mean=trailing,
    )


def _log_monitoring(
    config: AppConfig,
    run_date: dt.date,
    report: monitor.MonitorReport,
    name: str,
    version: str,
    tags: dict[str, str] | None = None,
) -> None:
    import mlflow

    from pipeline.tracking import ensure_experiment

    spec = config.require_pipeline()
    experiment_id = ensure_experiment(config.mlflow, spec.name)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"score {spec.name} {run_date}"):
        mlflow.set_tags(
            {
                "stage": "score",
                "run_date": str(run_date),
                "model_name": name,
                "model_version": version,
                **(tags or {}),
            }
        )
        mlflow.log_metrics({k.replace("=", "_"): v for k, v in report.metrics.items()})
        mlflow.log_dict(
            {"warnings": report.warnings, "failures": report.failures}, "monitoring.json"
        )
    for warning in report.warnings:
        log.warning("monitoring %s %s: %s", spec.name, run_date, warning)
