"""The compiled score expression against MLlib's own `transform`, stage by stage and end to end."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from chispa import assert_approx_df_equality
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import (
    DecisionTreeClassifier,
    GBTClassifier,
    LinearSVC,
    LogisticRegression,
    NaiveBayes,
    RandomForestClassifier,
)
from pyspark.ml.regression import (
    DecisionTreeRegressor,
    GBTRegressor,
    LinearRegression,
    RandomForestRegressor,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config.stages import ModelInputSpec
from pipeline.model import trees
from pipeline.model.compiled import (
    COMPILED,
    SCORING_TAG,
    TRANSFORM,
    check_against_transform,
    compile_score,
    model_scores,
    scoring_tags,
)
from pipeline.model.evaluate import score_column
from pipeline.model.preprocess import FEATURES, build_preprocessing

BASE = {
    "numeric": ["x", "y", "n"],
    "categorical": ["c", "d"],
    "impute": {"strategy": "median", "indicators": True},
    "encode": {"min_frequency": 0.05},
    "scale": "standard",
}


def training_rows(spark: SparkSession, n: int = 600) -> DataFrame:
    """Numbers with nulls, an integer column, a constant column, skewed categories with rare ones."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        x = rng.gauss(0, 2)
        y = None if i % 7 == 0 else rng.uniform(-5, 5)
        c = rng.choice("aaaabbbcd") if i % 50 else f"rare{i}"
        d = None if i % 11 == 0 else rng.choice(["u", "v"])
        target = 1.5 * x - (y or 0.0) + (2.0 if c == "a" else 0.0) + rng.gauss(0, 1)
        rows.append((i, x, y, i % 5, 3.0, c, d, float(target > 0), target))
    return spark.createDataFrame(
        rows,
        "id INT, x DOUBLE, y DOUBLE, n INT, k DOUBLE, c STRING, d STRING, label DOUBLE, "
        "target DOUBLE",
    )


def scoring_rows(spark: SparkSession) -> DataFrame:
    """Rows the model has not seen: unseen and null categories, null and extreme numbers."""
    rows = [
        (1000, 0.5, 1.0, 2, 3.0, "a", "u"),
        (1001, None, None, None, None, None, None),
        (1002, -3.0, 4.5, 4, 3.0, "zzz-unseen", "v"),
        (1003, 1e6, -1e6, 0, 7.0, "rare3", "w-unseen"),
        (1004, 2.0, None, 1, 3.0, "d", None),
    ]
    schema = "id INT, x DOUBLE, y DOUBLE, n INT, k DOUBLE, c STRING, d STRING"
    return spark.createDataFrame(rows, schema).unionByName(
        training_rows(spark, 200).drop("label", "target")
    )


def fit(spark: SparkSession, spec: dict[str, Any], name: str) -> PipelineModel:
    predictor = PREDICTORS[name]()
    stages = build_preprocessing(
        ModelInputSpec.model_validate(spec), classification=predictor.getLabelCol() == "label"
    )
    return Pipeline(stages=[*stages, predictor]).fit(training_rows(spark))


def compiled_vs_transform(
    model: PipelineModel, rows: DataFrame, *, classification: bool
) -> tuple[DataFrame, DataFrame]:
    compiled = compile_score(model, rows, classification=classification)
    assert compiled is not None
    scored = model.transform(rows)
    expected = score_column(scored) if classification else F.col("prediction")
    return (
        compiled.frame.select("id", compiled.score.alias("score")),
        scored.select("id", expected.cast("double").alias("score")),
    )


# Estimators need a running session to be built: the parameters name them, the test builds them.
PREDICTORS: dict[str, Callable[[], Any]] = {
    "logistic": lambda: LogisticRegression(
        featuresCol=FEATURES, labelCol="label", regParam=0.01, maxIter=50
    ),
    "svc": lambda: LinearSVC(featuresCol=FEATURES, labelCol="label"),
    "linear": lambda: LinearRegression(featuresCol=FEATURES, labelCol="target", regParam=0.1),
    "multinomial": lambda: LogisticRegression(
        featuresCol=FEATURES, labelCol="label", family="multinomial", maxIter=20
    ),
    "gbt": lambda: GBTClassifier(
        featuresCol=FEATURES, labelCol="label", maxIter=8, maxDepth=3, seed=1
    ),
    "gbt_regressor": lambda: GBTRegressor(
        featuresCol=FEATURES, labelCol="target", maxIter=8, maxDepth=3, seed=1
    ),
    "forest": lambda: RandomForestClassifier(
        featuresCol=FEATURES, labelCol="label", numTrees=6, maxDepth=4, seed=1
    ),
    "forest_regressor": lambda: RandomForestRegressor(
        featuresCol=FEATURES, labelCol="target", numTrees=6, maxDepth=4, seed=1
    ),
    "tree": lambda: DecisionTreeClassifier(featuresCol=FEATURES, labelCol="label", maxDepth=5),
    "tree_regressor": lambda: DecisionTreeRegressor(
        featuresCol=FEATURES, labelCol="target", maxDepth=5
    ),
    "naive_bayes": lambda: NaiveBayes(featuresCol=FEATURES, labelCol="label", modelType="gaussian"),
}


@pytest.mark.parametrize(
    ("spec", "predictor", "classification"),
    [
        pytest.param(BASE, "logistic", True, id="logistic-indicators-rare-standard"),
        pytest.param(
            {**BASE, "numeric": ["x", "y", "n", "k"], "impute": {"strategy": "mean"}},
            "logistic",
            True,
            id="logistic-constant-column-mean-imputation",
        ),
        pytest.param(
            {**BASE, "scale": "none", "encode": {"one_hot": False}},
            "logistic",
            True,
            id="logistic-unscaled-category-indices",
        ),
        pytest.param(
            {
                **BASE,
                "select": {"variance_threshold": 0.01, "univariate_top_k": 6},
                "pca": {"k": 3},
            },
            "logistic",
            True,
            id="logistic-selectors-and-pca",
        ),
        pytest.param(BASE, "svc", True, id="linear-svc"),
        pytest.param(BASE, "linear", False, id="linear-regression"),
        pytest.param(BASE, "gbt", True, id="gbt-classifier"),
        pytest.param(BASE, "gbt_regressor", False, id="gbt-regressor"),
        pytest.param(BASE, "forest", True, id="random-forest-classifier"),
        pytest.param(BASE, "forest_regressor", False, id="random-forest-regressor"),
        pytest.param(BASE, "tree", True, id="decision-tree-classifier"),
        pytest.param(BASE, "tree_regressor", False, id="decision-tree-regressor"),
        pytest.param(
            {**BASE, "scale": "none", "encode": {"one_hot": False}},
            "gbt",
            True,
            id="gbt-on-category-indices",
        ),
    ],
)
def test_compiled_score_equals_transform(
    spark: SparkSession, spec: dict[str, Any], predictor: str, classification: bool
) -> None:
    model = fit(spark, spec, predictor)
    rows = scoring_rows(spark)
    ours, mllib = compiled_vs_transform(model, rows, classification=classification)
    # The same arithmetic in a different summation order: equal to the last few bits.
    assert_approx_df_equality(
        ours, mllib, precision=1e-12, ignore_row_order=True, ignore_nullable=True
    )
    # And the scores are not trivially equal: they spread over the range.
    spread = mllib.agg(F.min("score"), F.max("score")).first()
    assert spread is not None
    assert spread[1] - spread[0] > 0.5


def splits(node: trees.Node) -> list[trees.Split]:
    if isinstance(node, trees.Leaf):
        return []
    return [node, *splits(node.left), *splits(node.right)]


def test_rows_exactly_on_a_tree_threshold_and_categorical_splits_score_as_mllib_sends_them(
    spark: SparkSession,
) -> None:
    # Unscaled inputs and category indices: the trees' thresholds are values of the input
    # columns, and the category indices (nominal in the assembled vector) split by sets.
    model = fit(spark, {**BASE, "scale": "none", "encode": {"one_hot": False}}, "tree")
    [root] = trees.mllib_trees(model.stages[-1], with_stats=True)
    found = splits(root)
    assert any(s.categories for s in found), "no categorical split: the case is not covered"
    # Slot 0 is x (the first numeric input, imputed): score x on every threshold it splits at,
    # and just above and below it.
    on_x = sorted({s.threshold for s in found if s.feature == 0 and s.threshold is not None})
    assert on_x, "the tree never splits on x"
    base = scoring_rows(spark).where("id < 1005 OR id % 7 = 0").drop("x")
    xs = spark.createDataFrame([(t + d,) for t in on_x for d in (0.0, -1e-12, 1e-12)], "x DOUBLE")
    rows = base.crossJoin(xs).withColumn("id", F.monotonically_increasing_id())
    ours, mllib = compiled_vs_transform(model, rows, classification=True)
    assert_approx_df_equality(
        ours, mllib, precision=0.0, ignore_row_order=True, ignore_nullable=True
    )
    assert mllib.select("score").distinct().count() > 1


def test_a_tree_ensemble_too_large_to_compile_is_scored_by_transform_and_says_why(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fit(spark, BASE, "forest")
    rows = scoring_rows(spark)
    monkeypatch.setattr(trees, "MAX_NODES", 10)
    assert compile_score(model, rows, classification=True) is None
    tags = scoring_tags(model, rows, classification=True)
    assert tags[SCORING_TAG] == TRANSFORM
    assert "tree nodes (more than 10" in tags[f"{SCORING_TAG}.reason"]


def test_a_tree_model_of_the_other_task_is_not_compiled(spark: SparkSession) -> None:
    model = fit(spark, BASE, "gbt_regressor")
    tags = scoring_tags(model, scoring_rows(spark), classification=True)
    assert tags[SCORING_TAG] == TRANSFORM
    assert "GBTRegressionModel does not score this task" in tags[f"{SCORING_TAG}.reason"]


def test_model_scores_takes_the_compiled_path_only_when_asked(spark: SparkSession) -> None:
    model = fit(spark, BASE, "logistic")
    rows = scoring_rows(spark)
    frames = {}
    for compiled in (True, False):
        scored, score, path = model_scores(model, rows, classification=True, compiled=compiled)
        assert path == (COMPILED if compiled else TRANSFORM)
        frames[path] = scored.select("id", score.alias("score"))
    # The compiled frame has no vector columns: the vector stages were never applied.
    compiled_frame = compile_score(model, rows, classification=True)
    assert compiled_frame is not None
    assert not {FEATURES, "probability", "rawPrediction"} & set(compiled_frame.frame.columns)
    assert_approx_df_equality(
        frames[COMPILED], frames[TRANSFORM], precision=1e-12, ignore_row_order=True
    )


@pytest.mark.parametrize(
    ("spec", "predictor", "reason"),
    [
        pytest.param(BASE, "naive_bayes", "NaiveBayesModel", id="naive-bayes"),
        pytest.param({**BASE, "scale": "minmax"}, "logistic", "MinMaxScalerModel", id="minmax"),
        pytest.param(BASE, "multinomial", "binomial", id="multinomial-logistic"),
    ],
)
def test_pipelines_without_a_compiled_form_are_scored_by_transform(
    spark: SparkSession, spec: dict[str, Any], predictor: str, reason: str
) -> None:
    model = fit(spark, spec, predictor)
    rows = scoring_rows(spark)
    assert compile_score(model, rows, classification=True) is None
    scored, score, path = model_scores(model, rows, classification=True, compiled=True)
    assert path == TRANSFORM
    expected = model.transform(rows)
    assert_approx_df_equality(
        scored.select("id", score.alias("score")),
        expected.select("id", score_column(expected).alias("score")),
        precision=0.0,
        ignore_row_order=True,
    )
    tags = scoring_tags(model, rows, classification=True)
    assert tags[SCORING_TAG] == TRANSFORM
    assert reason in tags[f"{SCORING_TAG}.reason"]


def test_registration_check_passes_a_compilable_model_and_reports_gaps_and_empty_samples(
    spark: SparkSession,
) -> None:
    model = fit(spark, BASE, "logistic")
    rows = scoring_rows(spark)
    assert scoring_tags(model, rows, classification=True) == {SCORING_TAG: COMPILED}
    assert check_against_transform(model, rows, classification=True) is None
    # Below any tolerance (a negative one), every row is a gap: the report names the worst row.
    gap = check_against_transform(model, rows, classification=True, tolerance=-1.0)
    assert gap is not None
    assert gap.startswith("the compiled and transform scores differ by")
    # No rows checked is no agreement: such a model keeps transform.
    assert scoring_tags(model, rows.limit(0), classification=True) == {
        SCORING_TAG: TRANSFORM,
        f"{SCORING_TAG}.reason": "no rows to compare the compiled score with transform on",
    }
