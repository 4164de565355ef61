"""Each shipped use case, end to end on a small generated data set, with its model quality above a
stated floor: generate -> ingest -> features -> train (the shipped YAML, only fewer folds)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from pipeline.config import AppConfig, load_config
from pipeline.features.runner import label_horizon_days, run_features
from pipeline.generate import generate
from pipeline.ingest.runner import run_ingest
from pipeline.io.delta import read_delta
from pipeline.model.registry import load_champion
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.status import pipeline_status
from pipeline.tracking import configure_mlflow
from pipeline.train.runner import TrainResult, run_train
from tests.helpers import CONF_DIR

pytestmark = pytest.mark.usecases

START = dt.date(2026, 1, 1)


def train_use_case(
    spark: SparkSession, tmp: Path, name: str, *, days: int, rows_per_day: int
) -> TrainResult:
    return prepare_and_train(spark, tmp, name, days=days, rows_per_day=rows_per_day)[1]


def prepare_and_train(
    spark: SparkSession, tmp: Path, name: str, *, days: int, rows_per_day: int
) -> tuple[AppConfig, TrainResult]:
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
    return cfg, run_train(spark, cfg, run_date=last, run_id="train")


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


def test_recommendation_als_beats_most_popular_and_scores_unseen_items(
    spark: SparkSession, tmp_path: Path
) -> None:
    days = 14
    cfg, result = prepare_and_train(
        spark, tmp_path, "recommendation", days=days, rows_per_day=3_000
    )
    m = result.test_metrics
    # The floor: ALS recovers the taste clusters, which a most-popular list cannot.
    assert m["ndcg_at_k"] > 1.3 * m["baseline_ndcg_at_k"] > 0
    assert m["precision_at_k"] > m["baseline_precision_at_k"]
    assert m["users"] >= 300
    assert result.decision.promoted
    # Halving: every grid point was tried, only the best third reached all rows.
    assert {r.fraction for r in result.results} == {1 / 3, 1.0}
    assert result.winner.fraction == 1.0

    last = START + dt.timedelta(days=days - 1)
    entry = run_score(spark, cfg, run_date=last, run_id="score")
    paths = PipelinePaths.of(cfg)
    recs = read_delta(spark, paths.predictions).where(F.col("run_date") == F.lit(last))
    features = read_delta(spark, paths.features)
    active = features.where(F.col("event_date") == F.lit(last)).select("user_id").distinct()
    champion, _, _ = load_champion(result.model_name)
    known = set(champion.stages[0].labels)  # type: ignore[attr-defined]
    active_users = {r.user_id for r in active.collect()}
    recommended = {r.user_id for r in recs.select("user_id").distinct().collect()}
    # Every active user the model knows gets recommendations; the others are counted as dropped.
    assert recommended == active_users & known
    assert (entry.rows_read, entry.rows_accepted, entry.rows_dropped) == (
        len(active_users),
        len(recommended),
        len(active_users - known),
    )
    # Ranks 1..10 per user, best score first.
    per_user = recs.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.min("rank").alias("lo"),
        F.max("rank").alias("hi"),
    )
    assert (
        per_user.where((F.col("n") != 10) | (F.col("lo") != 1) | (F.col("hi") != 10)).count() == 0
    )
    order = Window.partitionBy("user_id").orderBy("rank")
    worse_later = recs.withColumn("prev", F.lag("score").over(order)).where(
        F.col("score") > F.col("prev")
    )
    assert worse_later.count() == 0
    # Nothing the user already interacted with in the window is recommended.
    seen = features.select("user_id", "item_id").distinct()
    assert recs.join(seen, ["user_id", "item_id"]).count() == 0
    # The status view counts recommended users, not flagged rows.
    lines = pipeline_status(spark, cfg).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("predictions ("))
    assert lines[start + 1].split() == ["run", "date", "model", "version", "rows", "users"]
    assert lines[start + 3].split() == [
        str(last),
        "1",
        f"{10 * len(recommended):,}",
        f"{len(recommended):,}",
    ]
