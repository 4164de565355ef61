"""Each shipped use case, end to end on a small generated data set, with its model quality above a
stated floor: generate -> ingest -> features -> train (the shipped YAML, only fewer folds)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipeline.config import load_config
from pipeline.features.runner import label_horizon_days, run_features
from pipeline.generate import generate
from pipeline.ingest.runner import run_ingest
from pipeline.paths import PipelinePaths
from pipeline.tracking import configure_mlflow
from pipeline.train.runner import TrainResult, run_train
from tests.helpers import CONF_DIR

START = dt.date(2026, 1, 1)


def train_use_case(
    spark: SparkSession, tmp: Path, name: str, *, days: int, rows_per_day: int
) -> TrainResult:
    cfg = load_config(
        name,
        env="test",
        conf_dir=CONF_DIR,
        overrides=[
            f"storage.landing={tmp / 'landing'}",
            f"storage.tables={tmp / 'tables'}",
            f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"mlflow.artifact_location={tmp}/artifacts",
            f"storage.reports={tmp}/reports",
            "pipeline.train.folds=2",
        ],
    )
    configure_mlflow(cfg.mlflow)
    generate(
        name,
        PipelinePaths.of(cfg).landing,
        days=days,
        rows_per_day=rows_per_day,
        start_date=START,
        seed=4,
    )
    last = START + dt.timedelta(days=days - 1)
    run_ingest(spark, cfg, run_date=last, run_id="ingest")
    spec = cfg.require_pipeline().features
    assert spec is not None
    step = label_horizon_days(spec) + 1  # each run rewrites [D - horizon, D]
    day = last
    while day >= START:
        run_features(spark, cfg, run_date=day, run_id=f"features-{day}")
        day -= dt.timedelta(days=step)
    return run_train(spark, cfg, run_date=last, run_id="train")


def test_fraud_beats_its_base_rate_by_far(spark: SparkSession, tmp_path: Path) -> None:
    result = train_use_case(spark, tmp_path, "fraud", days=2, rows_per_day=10_000)
    base_rate = result.rows["train_label_1"] / result.rows["train"]
    assert base_rate < 0.03
    assert result.test_metrics["areaUnderPR"] > 0.5 > 10 * base_rate
    assert result.test_metrics["areaUnderROC"] > 0.95


def test_churn_is_learned_from_yaml_only(spark: SparkSession, tmp_path: Path) -> None:
    result = train_use_case(spark, tmp_path, "churn", days=1, rows_per_day=8_000)
    assert result.test_metrics["areaUnderROC"] > 0.75


def test_maintenance_predicts_failures_within_seven_days(
    spark: SparkSession, tmp_path: Path
) -> None:
    result = train_use_case(spark, tmp_path, "maintenance", days=16, rows_per_day=960)
    positive_rate = result.rows["train_label_1"] / result.rows["train"]
    assert result.test_metrics["areaUnderPR"] > max(0.6, 3 * positive_rate)


@pytest.mark.parametrize("name", ["fraud", "churn", "maintenance"])
def test_shipped_specs_define_every_stage(name: str) -> None:
    spec = load_config(name, env="test", conf_dir=CONF_DIR).require_pipeline()
    assert spec.features is not None
    assert spec.model is not None
    assert spec.train is not None
