"""What a scoring run measures about itself, and where that goes: the reference window for drift,
the trailing row counts, and the MLflow run of each scored date.

The metrics themselves are computed in `pipeline.score.monitor`; this module reads the tables they
are compared with and records the result.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline import lineage, tracking
from pipeline.config.models import MlflowConfig
from pipeline.io.audit import read_audit
from pipeline.io.delta import is_delta_table, read_delta
from pipeline.names import EVENT_DATE, RUN_DATE
from pipeline.score import monitor

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pipeline.config.stages import ModelInputSpec, MonitorSpec, NightlySpec
    from pipeline.io.audit import LedgerEntry
    from pipeline.paths import PipelinePaths

log = logging.getLogger(__name__)


def trailing_rows(spark: SparkSession, audit_path: str, run_date: dt.date) -> float | None:
    """Mean rows read by the last 7 successful scoring runs before the run date."""
    from pyspark.sql import functions as F

    if not is_delta_table(spark, audit_path):
        return None
    prior = (
        read_audit(spark, audit_path)
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


def assess_supervised(
    spark: SparkSession,
    paths: PipelinePaths,
    *,
    model: ModelInputSpec,
    monitor_spec: MonitorSpec,
    nightly: NightlySpec,
    rows: DataFrame,
    rows_today: int,
    written: DataFrame,
    run_date: dt.date,
    tags: dict[str, str],
) -> monitor.MonitorReport:
    """Drift of the inputs against the champion's own training window, drift of the scores
    against the previous week's, null rates, and the row count against the trailing mean."""
    from pyspark.sql import functions as F

    numeric = list(model.numeric)
    trained_on = dt.date.fromisoformat(tags["run_date"]) if tags.get("run_date") else run_date
    ref_version = int(tags["features_version"]) if tags.get("features_version") else None
    first, last = nightly.training_window(trained_on)
    reference = read_delta(spark, paths.features, ref_version).where(
        (F.col(EVENT_DATE) >= F.lit(first)) & (F.col(EVENT_DATE) <= F.lit(last))
    )
    feature_psi = monitor.psi_by_column(reference, rows, numeric)
    earlier = read_delta(spark, paths.predictions).where(
        (F.col(RUN_DATE) < F.lit(run_date))
        & (F.col(RUN_DATE) >= F.lit(run_date - dt.timedelta(days=7)))
    )
    score_psi = None
    if earlier.limit(1).count():
        score_psi = monitor.psi_by_column(earlier, written, ["score"])["score"]
    return monitor.assess(
        monitor_spec,
        feature_psi=feature_psi,
        score_psi=score_psi,
        nulls=monitor.null_rates(rows, numeric + list(model.categorical)),
        rows_today=rows_today,  # counted once, by the ledger
        trailing_mean=trailing_rows(spark, paths.audit, run_date),
    )


def log_monitoring(
    mlflow_cfg: MlflowConfig,
    pipeline: str,
    run_date: dt.date,
    report: monitor.MonitorReport,
    *,
    model_name: str,
    model_version: str,
    tags: dict[str, str] | None = None,
    inputs: Sequence[lineage.DeltaInput] = (),
) -> None:
    """One MLflow run per scored date: the monitoring metrics, warnings and failures, the feature
    rows read and the predictions written (dataset inputs), and the champion used (model input)."""
    import mlflow

    from pipeline.tracking import ensure_experiment

    experiment_id = ensure_experiment(mlflow_cfg, pipeline)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"score {pipeline} {run_date}"
    ) as scored:
        lineage.log_inputs(
            scored.info.run_id, inputs, model_id=lineage.version_model_id(model_name, model_version)
        )
        tracking.set_tags(
            {
                "stage": "score",
                "run_date": str(run_date),
                "model_name": model_name,
                "model_version": model_version,
                **(tags or {}),
            }
        )
        mlflow.log_metrics({k.replace("=", "_"): v for k, v in report.metrics.items()})
        tracking.log_dict(
            {"warnings": report.warnings, "failures": report.failures}, "monitoring.json"
        )
    for warning in report.warnings:
        log.warning("monitoring %s %s: %s", pipeline, run_date, warning)


def score_lineage(paths: PipelinePaths, entry: LedgerEntry) -> list[lineage.DeltaInput]:
    """What a score run read and wrote, from its ledger row: the date's feature rows at the
    version scored, and the date's partition of the predictions at the version written."""
    day = entry.run_date
    tables = (
        ("features", paths.features, entry.rows_read, "event_date", lineage.SCORING),
        ("predictions", paths.predictions, entry.rows_accepted, "run_date", lineage.PREDICTIONS),
    )
    return [
        lineage.DeltaInput(
            name,
            path,
            entry.table_versions[name],
            rows,
            part=f"{column} = {day}",
            context=context,
        )
        for name, path, rows, column, context in tables
        if name in entry.table_versions
    ]
