"""The train stage: choose a model by k-fold cross-validation, evaluate it once on held-out data,
track everything in MLflow, register it, and promote it only when it beats the champion.

The parts, each in its own module: `policy` (which rows train, test and validate),
`search` (the cross-validation and halving loop), `supervised` / `recommend` (the task-specific
fitting and evaluation), `track` (MLflow, the summary and report, the registry and the gate).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.errors import RunError
from pipeline.io.audit import LedgerEntry, audited
from pipeline.io.delta import is_delta_table, read_delta, table_version
from pipeline.io.lease import tables_lease
from pipeline.paths import PipelinePaths
from pipeline.session import parallelism
from pipeline.tracking import configure_mlflow
from pipeline.train import policy
from pipeline.train.evaluation import Evaluation
from pipeline.train.recommend import RecommendTask, evaluate_recommender
from pipeline.train.supervised import SupervisedTask, evaluate_supervised
from pipeline.train.track import RunInfo, TrainResult, track_register_gate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "check_training", "run_train"]


def check_training(config: AppConfig) -> SupervisedTask | RecommendTask:
    """The sections training needs, checked before Spark starts (a `ConfigError` naming the key)."""
    spec = config.require_pipeline()
    if spec.task == "recommendation":
        return RecommendTask.of(spec)
    return SupervisedTask.of(spec)


def run_train(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> TrainResult:
    """Select, evaluate, log, register and gate; one audit row."""
    spec = config.require_pipeline()
    task = check_training(config)
    paths = PipelinePaths.of(config)
    configure_mlflow(config.mlflow)
    entry = LedgerEntry(run_id=run_id, pipeline=spec.name, stage="train", run_date=run_date)
    ttl = config.storage.lease_ttl_seconds
    with (
        tables_lease(spark, paths, ttl, command="train", run_id=run_id),
        audited(spark, paths.audit, entry),
    ):
        if not is_delta_table(spark, paths.features):
            raise RunError(f"no feature table at {paths.features}: run `mlpipe features` first")
        durations: dict[str, float] = {}
        clock = time.monotonic()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.monotonic()
            durations[name] = round(now - clock, 3)
            clock = now

        features_version = table_version(spark, paths.features)
        assert features_version is not None  # the table exists
        window = spec.nightly.training_window(run_date)
        data = policy.labelled_window(read_delta(spark, paths.features, features_version), window)
        evaluation: Evaluation
        if isinstance(task, SupervisedTask):
            task = task.with_inputs(spec, data.schema)
        if isinstance(task, RecommendTask):
            evaluation = evaluate_recommender(task, data, lap=lap)
        else:
            evaluation = evaluate_supervised(task, data, cores=parallelism(spark), lap=lap)
        try:
            entry.rows_read = evaluation.rows["train"] + evaluation.rows["test"]
            entry.rows_accepted = entry.rows_read
            report_dir = Path(config.storage.reports) / spec.name / f"{run_date}-{run_id[:8]}"
            info = RunInfo(run_date, run_id, features_version, report_dir)
            result = track_register_gate(spark, config, evaluation, info, durations, lap)
        finally:
            evaluation.release()
        entry.table_versions["features"] = features_version
        entry.metrics = {f"test_{k}": v for k, v in result.test_metrics.items()} | {
            "cv_mean": result.winner.mean
        }
        entry.message = (
            f"model {result.model_name} v{result.model_version}: "
            f"{'promoted' if result.decision.promoted else 'not promoted'} "
            f"({result.decision.reason})"
        )
        entry.finish()
    log.info("training done: %s", entry.message)
    return result
