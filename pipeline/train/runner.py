"""The train stage: choose a model by k-fold cross-validation, evaluate it once on held-out data,
track everything in MLflow, register it, and promote it only when it beats the champion.

The parts, each in its own module: `policy` (which rows train, test and validate),
`search` (the cross-validation and halving loop), `supervised` / `recommend` (the task-specific
fitting and evaluation), `track` (MLflow, the summary and report, the registry and the gate).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.console import stage_started
from pipeline.errors import RunError
from pipeline.io.audit import SUCCEEDED, LedgerEntry, audited, read_audit, write_audit
from pipeline.io.delta import is_delta_table, read_delta, table_version
from pipeline.io.lease import tables_lease
from pipeline.model.registry import LEDGER_TAG, champion_version
from pipeline.paths import PipelinePaths
from pipeline.session import parallelism
from pipeline.timing import Laps
from pipeline.tracking import configure_mlflow
from pipeline.train import policy
from pipeline.train.evaluation import Evaluation
from pipeline.train.recommend import RecommendTask, evaluate_recommender
from pipeline.train.supervised import SupervisedTask, evaluate_supervised
from pipeline.train.track import RunInfo, TrainResult, track_register_gate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "check_training", "record_unrecorded_promotion", "run_train"]


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
    stage_started("train", spec.name, f"{run_date}, {len(task.train.candidates)} candidate(s)")
    ttl = config.storage.lease_ttl_seconds
    with tables_lease(spark, paths, ttl, command="train", run_id=run_id):
        record_unrecorded_promotion(spark, config)
        with audited(spark, paths.audit, entry):
            result = _train(spark, config, task, entry, run_date=run_date, run_id=run_id)
    log.info("training done: %s", entry.message)
    return result


def record_unrecorded_promotion(spark: SparkSession, config: AppConfig) -> LedgerEntry | None:
    """Write the ledger row of the training run that promoted the champion, when that run was
    stopped between the alias move and its row (the row waits on the version, `LEDGER_TAG`).
    Called under the pipeline's lease, before training decides anything; the row written, or
    None when there is nothing to record."""
    from mlflow import MlflowClient
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    if spec.train is None:
        return None
    paths = PipelinePaths.of(config)
    configure_mlflow(config.mlflow)
    version = champion_version(spec.model_name)
    if version is None:
        return None
    client = MlflowClient()
    tags = client.get_model_version(spec.model_name, version).tags
    if LEDGER_TAG not in tags:
        return None  # registered before rows were kept on versions, or by hand
    entry = LedgerEntry.from_json(tags[LEDGER_TAG])
    if is_delta_table(spark, paths.audit) and (
        read_audit(spark, paths.audit)
        .where(
            (F.col("stage") == "train")
            & (F.col("run_id") == entry.run_id)
            & (F.col("status") == SUCCEEDED)
        )
        .limit(1)
        .count()
    ):
        return None
    entry.finish()
    write_audit(spark, paths.audit, [entry])
    if "gate" not in tags:
        client.set_model_version_tag(spec.model_name, version, "gate", f"promoted: {entry.message}")
    log.warning(
        "training run %s promoted %s v%s but stopped before its ledger row: row written now",
        entry.run_id,
        spec.model_name,
        version,
    )
    return entry


def given_test_files(spark: SparkSession, config: AppConfig) -> dict[str, list[str]]:
    """The files each source named by a source split brought (as bronze spells them)."""
    from pipeline.io.raw import SOURCE_FILE

    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    files: dict[str, list[str]] = {}
    for name in spec.test_sources:
        path = paths.bronze(name)
        if not is_delta_table(spark, path):
            raise RunError(
                f"train.split.test names source '{name}', which has no bronze table at {path}: "
                "run `mlpipe ingest` first"
            )
        rows = read_delta(spark, path).select(SOURCE_FILE).distinct().collect()
        files[name] = sorted(r[0] for r in rows)
    return files


def _train(
    spark: SparkSession,
    config: AppConfig,
    task: SupervisedTask | RecommendTask,
    entry: LedgerEntry,
    *,
    run_date: dt.date,
    run_id: str,
) -> TrainResult:
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    if not is_delta_table(spark, paths.features):
        raise RunError(f"no feature table at {paths.features}: run `mlpipe features` first")
    lap = Laps()
    durations = lap.durations

    features_version = table_version(spark, paths.features)
    assert features_version is not None  # the table exists
    window = spec.nightly.training_window(run_date)
    data = policy.labelled_window(read_delta(spark, paths.features, features_version), window)
    evaluation: Evaluation
    if spec.test_sources:
        task = dataclasses.replace(task, test_files=given_test_files(spark, config))
    if isinstance(task, SupervisedTask):
        task = task.with_inputs(spec, data.schema)
    if isinstance(task, RecommendTask):
        evaluation = evaluate_recommender(task, data, lap=lap)
    else:
        evaluation = evaluate_supervised(task, data, cores=parallelism(spark), lap=lap)
    try:
        report_dir = Path(config.storage.reports) / spec.name / f"{run_date}-{run_id[:8]}"
        info = RunInfo(run_date, run_id, features_version, report_dir)
        result = track_register_gate(spark, config, evaluation, info, durations, lap, entry)
    finally:
        evaluation.release()
    entry.finish()
    return result
