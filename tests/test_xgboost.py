"""`algorithm: xgboost` and `xgboost_regressor`: XGBoost's own Spark estimator as a candidate from
YAML, fed the preprocessing stages' vector, chosen by cross-validation like any candidate, saved
and loaded through MLflow inside the champion's PipelineModel, with feature importances."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from chispa import assert_approx_df_equality
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from pipeline.config import AppConfig
from pipeline.io.delta import read_delta
from pipeline.model.compiled import COMPILED, SCORING_TAG, compile_score
from pipeline.model.registry import current_champion
from pipeline.names import LABEL
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.train.runner import run_train
from pipeline.train.supervised import fit_final
from tests.helpers import assert_config_refused, tracked_config
from tests.test_train import RUN_DATE, split, task_of, training_data, write_features

pytestmark = pytest.mark.algorithms

SPEC = """
name: {name}
task: {task}
sources:
  ev: {{format: csv, columns: [{{name: id, type: string}}]}}
features: {{key: [id], entity: id, event_time: ts, label: {{column: y}}}}
model:
  numeric: [x1, x2, noise]
  categorical: [c]
  scale: none
train:
  metric: {metric}
  folds: 2
  seed: 5
  split: {{kind: random, test_fraction: 0.3, seed: 1}}
  candidates:
    - name: linear
      algorithm: {linear}
      params: {{maxIter: 20}}
    - name: boosted
      algorithm: {boosted}
      params: {{n_estimators: 40, learning_rate: 0.3, max_bin: 64}}
      grid: {{max_depth: [2, 3]}}
"""


def world(tmp_path: Path, *, regression: bool) -> AppConfig:
    name = "xgbr" if regression else "xgb"
    spec = SPEC.format(
        name=name,
        task="regression" if regression else "binary_classification",
        metric="rmse" if regression else "areaUnderROC",
        linear="linear_regression" if regression else "logistic_regression",
        boosted="xgboost_regressor" if regression else "xgboost",
    )
    return tracked_config(tmp_path, spec, name)


def test_xgboost_learns_what_a_linear_model_cannot_and_its_champion_loads_from_mlflow(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = world(tmp_path, regression=False)
    write_features(spark, cfg)  # y = (x1 > 0) xor (x2 > 0), 3% flipped
    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train")

    assert result.winner.candidate == "boosted"
    assert {r.candidate for r in result.results} == {"linear", "boosted"}
    assert {r.params["max_depth"] for r in result.results if r.candidate == "boosted"} == {2, 3}
    assert result.test_metrics["areaUnderROC"] > 0.9
    # The importances are the inputs' names; x1 and x2 carry the signal, the noise does not.
    importances = result.summary.importances
    top = sorted(importances, key=importances.__getitem__, reverse=True)[:2]
    assert set(top) == {"x1", "x2"}, importances
    assert sum(importances.values()) == pytest.approx(1.0)

    # Loaded back from the registry, the champion scores as the same fit made in memory does.
    champion = current_champion(result.model_name)
    assert champion.version == result.model_version
    data = training_data(spark, cfg, version=0)
    train, test = split(spark, cfg, data)
    fresh = fit_final(task_of(cfg), train, result.winner)
    cols: list[Column | str] = [
        "id",
        "prediction",
        vector_to_array(F.col("probability"))[1].alias("p"),
    ]
    assert_approx_df_equality(
        champion.model.transform(test).select(*cols),
        fresh.transform(test).select(*cols),
        precision=1e-6,
        ignore_row_order=True,
    )

    # Scoring the date: the trees were compiled to SQL and checked against `transform` at
    # registration; the compiled scores are XGBoost's, to single precision.
    assert champion.tags[SCORING_TAG] == COMPILED
    scored = run_score(spark, cfg, run_date=RUN_DATE, run_id="score")
    paths = PipelinePaths.of(cfg)
    table = read_delta(spark, paths.features)
    assert scored.rows_accepted == table.count()
    assert_approx_df_equality(
        read_delta(spark, paths.predictions).select("id", "score"),
        champion.model.transform(table).select(
            "id", vector_to_array(F.col("probability"))[1].alias("score")
        ),
        precision=1e-6,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_xgboost_regressor_fits_a_nonlinear_target(spark: SparkSession, tmp_path: Path) -> None:
    cfg = world(tmp_path, regression=True)
    rng = random.Random(3)
    rows = []
    for i in range(1200):
        x1, x2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
        y = 3.0 * abs(x1) + (2.0 if x2 > 0 else 0.0) + rng.gauss(0, 0.1)
        ts = dt.datetime(2026, 1, 9) + dt.timedelta(seconds=31 * i)
        rows.append((f"r{i}", ts, RUN_DATE, x1, x2, rng.gauss(0, 1), rng.choice("abc"), y))
    spark.createDataFrame(
        rows,
        "id STRING, ts TIMESTAMP, event_date DATE, x1 DOUBLE, x2 DOUBLE, noise DOUBLE, c STRING, "
        "y DOUBLE",
    ).withColumn(LABEL, F.col("y")).write.format("delta").partitionBy("event_date").save(
        PipelinePaths.of(cfg).features
    )
    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train")

    assert result.winner.candidate == "boosted"
    linear = min(r.mean for r in result.results if r.candidate == "linear")
    assert result.winner.mean < 0.5 * linear  # |x1| and a step: no line fits them
    champion = current_champion(result.model_name)
    table = read_delta(spark, PipelinePaths.of(cfg).features)
    rmse = RegressionEvaluator(labelCol=LABEL, metricName="rmse").evaluate(
        champion.model.transform(table)
    )
    assert rmse < 0.3
    # Its trees compiled to SQL give XGBoost's predictions, missing inputs included.
    assert champion.tags[SCORING_TAG] == COMPILED
    scoring = table.unionByName(
        table.limit(5).withColumn("x1", F.lit(None).cast("double")).withColumn("id", F.lit("m"))
    )
    compiled = compile_score(champion.model, scoring, classification=False)
    assert compiled is not None
    assert_approx_df_equality(
        compiled.frame.select("id", compiled.score.alias("p")),
        champion.model.transform(scoring).select("id", F.col("prediction").alias("p")),
        precision=1e-5,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_an_xgboost_regressor_is_refused_for_classification(tmp_path: Path) -> None:
    spec = SPEC.format(
        name="xgb",
        task="binary_classification",
        metric="areaUnderROC",
        linear="logistic_regression",
        boosted="xgboost_regressor",
    )
    assert_config_refused(
        tmp_path,
        spec,
        "xgb",
        "pipeline.train.candidates.1.algorithm",
        "algorithm 'xgboost_regressor' does not apply to a binary_classification task",
    )
