"""Recommendation from explicit ratings (1-5 stars): ALS predicts ratings, rmse and mae measure
them against predicting the mean rating, only well-rated held-out pairs count as relevant for
the ranking metrics, and the gate promotes no model that does not beat its baseline."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.config import AppConfig
from pipeline.model.registry import GateInputs, _beats_baseline, champion_version, current_champion
from pipeline.names import EVENT_DATE, LABEL
from pipeline.paths import PipelinePaths
from pipeline.train.runner import run_train
from tests.helpers import assert_config_refused, tracked_config

RUN_DATE = dt.date(2026, 3, 1)

pytestmark = pytest.mark.algorithms

SPEC = """
name: {name}
task: recommendation
sources:
  ratings:
    format: csv
    columns:
      - {{name: user_id, type: string, nullable: false}}
      - {{name: item_id, type: string, nullable: false}}
      - {{name: stars, type: int, nullable: false, min: 1, max: 5}}
      - {{name: part, type: string, nullable: false}}
      - {{name: rated_at, type: timestamp, nullable: false, format: epoch_seconds}}
features:
  key: [user_id, item_id]
  entity: user_id
  event_time: rated_at
  label: {{column: stars}}
recommend:
  user: user_id
  item: item_id
  feedback: explicit
  relevant_rating: 4
train:
  metric: rmse
  top_k: 10
  folds: 2
  split: {{kind: column, column: part, test: [test]}}
  candidates:
    - name: als
      algorithm: als
      params: {params}
nightly: {{train_lookback_days: 30}}
"""
GOOD = "{maxIter: 10, rank: 4, regParam: 0.1}"


Rating = tuple[str, str, int, str, dt.datetime]


def ratings(n_users: int = 150, n_items: int = 120, per_user: int = 30) -> list[Rating]:
    """Stars that follow 3 latent tastes (plus noise); one row in five is held out."""
    rng = random.Random(5)
    taste = [[rng.gauss(0, 0.6) for _ in range(3)] for _ in range(n_users)]
    trait = [[rng.gauss(0, 0.6) for _ in range(3)] for _ in range(n_items)]
    out: list[Rating] = []
    for u in range(n_users):
        for i in rng.sample(range(n_items), per_user):
            affinity = sum(a * b for a, b in zip(taste[u], trait[i], strict=True))
            stars = min(5, max(1, round(3 + 2.5 * affinity + rng.gauss(0, 0.4))))
            ts = dt.datetime(2026, 2, 20) + dt.timedelta(minutes=len(out))
            part = "test" if rng.random() < 0.2 else "train"
            out.append((f"u{u}", f"i{i}", stars, part, ts))
    return out


def feature_table(spark: SparkSession, cfg: AppConfig) -> None:
    """The feature rows features would write for these ratings (label = stars)."""
    df = spark.createDataFrame(
        ratings(), "user_id STRING, item_id STRING, stars INT, part STRING, rated_at TIMESTAMP"
    )
    df.withColumn(LABEL, F.col("stars").cast("double")).withColumn(
        EVENT_DATE, F.to_date("rated_at")
    ).write.format("delta").mode("overwrite").partitionBy(EVENT_DATE).save(
        PipelinePaths.of(cfg).features
    )


def world(tmp_path: Path, name: str, params: str = GOOD) -> AppConfig:
    return tracked_config(tmp_path, SPEC.format(name=name, params=params), name)


def test_explicit_ratings_are_predicted_measured_by_rmse_and_ranked_on_good_ratings_only(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = world(tmp_path, "stars")
    feature_table(spark, cfg)
    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train")
    test = result.summary.test

    # rmse and mae recomputed from the champion on the held-out ratings.
    held_out = (
        spark.read.format("delta")
        .load(PipelinePaths.of(cfg).features)
        .where(F.col("part") == "test")
        .select("user_id", "item_id", F.col(LABEL).alias("rating"))
    )
    predicted = current_champion(result.model_name).model.transform(held_out)
    for metric in ("rmse", "mae"):
        want = RegressionEvaluator(labelCol="rating", metricName=metric).evaluate(predicted)
        assert test[metric] == pytest.approx(want, abs=1e-9)
    # Against predicting the training mean for every pair: a model of the tastes does better.
    assert test["rmse"] < 0.85 * test["baseline_rmse"]
    assert test["mae"] < test["baseline_mae"]
    assert result.decision.promoted

    # Relevant: held-out pairs of known users rated 4 or 5 (a 1-star rating is no hit).
    train_pairs = spark.createDataFrame(
        [(u, i) for u, i, _, part, _ in ratings() if part == "train"],
        "user_id STRING, item_id STRING",
    )
    good = held_out.where(F.col("rating") >= 4).join(
        train_pairs.select("user_id").distinct(), "user_id", "left_semi"
    )
    assert result.summary.rows["test_relevant"] == good.count()
    assert good.count() < held_out.count() / 2
    assert 0.0 <= test["ndcg_at_k"] <= 1.0


def test_a_model_that_does_not_beat_the_mean_rating_is_never_promoted(
    spark: SparkSession, tmp_path: Path
) -> None:
    # Regularised to nothing, every predicted rating is about 0: far worse than the mean.
    cfg = world(tmp_path, "flat", "{maxIter: 3, rank: 2, regParam: 1000.0}")
    feature_table(spark, cfg)
    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train")

    assert not result.decision.promoted
    assert "does not beat the mean rating baseline's" in result.decision.reason
    assert result.summary.test["rmse"] > result.summary.test["baseline_rmse"]
    assert champion_version(result.model_name) is None  # no champion at all


def test_the_baseline_check_follows_the_metric_direction() -> None:
    def inputs(metric: str, value: float) -> GateInputs:
        return GateInputs(metric, lambda m: 0.0, baseline=("most-popular", value))

    assert _beats_baseline(inputs("ndcg_at_k", 0.1463), 0.1449, 0.0, True) is not None
    assert _beats_baseline(inputs("ndcg_at_k", 0.1463), 0.1600, 0.0, True) is None
    assert _beats_baseline(inputs("ndcg_at_k", 0.1463), 0.1500, 0.01, True) is not None
    assert _beats_baseline(inputs("rmse", 1.12), 0.93, 0.0, False) is None
    assert _beats_baseline(inputs("rmse", 1.12), 1.15, 0.0, False) is not None


@pytest.mark.parametrize(
    ("edit", "key", "phrase"),
    [
        (("  relevant_rating: 4\n", ""), "pipeline.recommend", "explicit feedback needs"),
        (
            ("  feedback: explicit\n  relevant_rating: 4\n", ""),
            "pipeline.train.metric",
            "rating metrics need explicit ratings: recommend.feedback: explicit",
        ),
        (
            (GOOD, "{implicitPrefs: true, rank: 4}"),
            "pipeline.train.candidates.0.params.implicitPrefs",
            "implicitPrefs contradicts recommend.feedback: explicit",
        ),
    ],
)
def test_explicit_feedback_is_checked_before_spark_starts(
    tmp_path: Path, edit: tuple[str, str], key: str, phrase: str
) -> None:
    spec = SPEC.format(name="stars", params=GOOD)
    old, new = edit
    assert old in spec
    assert_config_refused(tmp_path, spec.replace(old, new), "stars", key, phrase)
