"""Preprocessing stages, sampling and threshold choice: whole-result checks on small data."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config.stages import ModelInputSpec
from pipeline.model import sampling
from pipeline.model.evaluate import choose_threshold
from pipeline.model.histogram import BINS, Histogram
from pipeline.model.preprocess import (
    RARE,
    RareCategoryGrouper,
    build_preprocessing,
    choose_pca_k,
    feature_names,
)

SPEC = ModelInputSpec.model_validate(
    {
        "numeric": ["x", "y"],
        "categorical": ["c"],
        "impute": {"strategy": "mean", "indicators": True},
        "encode": {"min_frequency": 0.2},
        "scale": "standard",
    }
)


# The vector slots of SPEC on `frame`: numeric, indicators, categories by frequency, unseen bucket.
ALL_NAMES = ["x", "y", "x__missing", "y__missing", "c=a", "c=b", f"c={RARE}", "c=__unseen__"]


def frame(spark: SparkSession) -> DataFrame:
    rows = [
        (float(i), None if i % 4 == 0 else float(i % 3), "a" if i % 2 else "b", float(i % 2))
        for i in range(20)
    ]
    rows.append((100.0, 1.0, "rare", 1.0))
    return spark.createDataFrame(rows, "x DOUBLE, y DOUBLE, c STRING, label DOUBLE")


def test_rare_category_grouper_groups_values_below_the_share(spark: SparkSession) -> None:
    df = spark.createDataFrame([("a",)] * 5 + [("b",)] * 4 + [("z",)] + [(None,)], "c STRING")
    model = RareCategoryGrouper(inputCols=["c"], minFrequency=0.2).fit(df)
    got = model.transform(
        spark.createDataFrame([("a",), ("b",), ("z",), ("new",), (None,)], "c STRING")
    )
    expected = spark.createDataFrame([("a",), ("b",), (RARE,), (RARE,), (None,)], "c STRING")
    assert_df_equality(got, expected, ignore_row_order=True)
    assert model.kept() == {"c": ["a", "b"]}


def test_feature_names_match_the_vector_and_recover_original_columns(spark: SparkSession) -> None:
    model = Pipeline(stages=build_preprocessing(SPEC)).fit(frame(spark))
    width = (
        model.transform(frame(spark))
        .select(F.size(vector_to_array(F.col("features"))).alias("n"))
        .first()
    )
    names = feature_names(SPEC, model)
    assert width is not None
    assert len(names) == width["n"]
    # Categories by frequency (ties alphabetically), then the unseen/null bucket.
    assert names == ALL_NAMES


def test_selection_and_pca_keep_names_consistent(spark: SparkSession) -> None:
    spec = SPEC.model_copy(
        update={
            "select": SPEC.select.model_copy(
                update={"variance_threshold": 0.0, "univariate_top_k": 3}
            ),
        }
    )
    model = Pipeline(stages=build_preprocessing(spec)).fit(frame(spark))
    names = feature_names(spec, model)
    assert len(names) == 3
    assert set(names) <= set(ALL_NAMES)
    chi2 = ModelInputSpec.model_validate(
        {**spec.model_dump(), "select": {"univariate_top_k": 2, "univariate_test": "chi2"}}
    )
    chi2_model = Pipeline(stages=build_preprocessing(chi2)).fit(frame(spark))
    assert len(feature_names(chi2, chi2_model)) == 2
    with_pca = spec.model_copy(update={"pca": {"k": 2}})
    with_pca = ModelInputSpec.model_validate(with_pca.model_dump())
    pca_model = Pipeline(stages=build_preprocessing(with_pca)).fit(frame(spark))
    assert feature_names(with_pca, pca_model) == ["pc_1", "pc_2"]


def test_pca_by_explained_variance_picks_the_fewest_components_on_training_rows(
    spark: SparkSession,
) -> None:
    rng = random.Random(2)
    rows = []
    for _ in range(300):
        a, b = rng.gauss(0, 3), rng.gauss(0, 2)
        rows.append((a, b, a + b + rng.gauss(0, 0.01), a - b + rng.gauss(0, 0.01), 0.0))
    df = spark.createDataFrame(rows, "p DOUBLE, q DOUBLE, r DOUBLE, s DOUBLE, label DOUBLE")
    spec = ModelInputSpec.model_validate(
        {"numeric": ["p", "q", "r", "s"], "scale": "none", "pca": {"variance": 0.99}}
    )
    # Four columns, two independent directions: two components explain ~100% of the variance.
    assert choose_pca_k(spec, df) == 2
    model = Pipeline(stages=build_preprocessing(spec, pca_k=2)).fit(df)
    assert feature_names(spec, model) == ["pc_1", "pc_2"]
    assert choose_pca_k(spec.model_copy(update={"pca": None}), df) is None


def test_fitted_preprocessing_round_trips_through_save_and_load(
    spark: SparkSession, tmp_path: Path
) -> None:
    model = Pipeline(stages=build_preprocessing(SPEC)).fit(frame(spark))
    model.write().overwrite().save(str(tmp_path / "prep"))
    loaded = PipelineModel.load(str(tmp_path / "prep"))
    unseen = spark.createDataFrame(
        [(1.0, None, "never-seen", 0.0), (None, 2.0, None, 1.0)], frame(spark).schema
    )
    for df in (frame(spark), unseen):
        before = model.transform(df).select("x", "c", vector_to_array(F.col("features")).alias("f"))
        after = loaded.transform(df).select("x", "c", vector_to_array(F.col("features")).alias("f"))
        assert_df_equality(before, after, ignore_row_order=True)


def keyed(spark: SparkSession, n: int = 2000, positives_every: int = 20) -> DataFrame:
    start = dt.datetime(2026, 1, 1)
    return spark.createDataFrame(
        [
            (f"k{i}", start + dt.timedelta(minutes=i), 1.0 if i % positives_every == 0 else 0.0)
            for i in range(n)
        ],
        "id STRING, ts TIMESTAMP, label DOUBLE",
    )


def test_stratified_split_is_deterministic_and_keeps_the_class_ratio(spark: SparkSession) -> None:
    df = keyed(spark)
    train, test = sampling.split_stratified(df, key=["id"], test_fraction=0.25, seed=7)
    train2, test2 = sampling.split_stratified(
        df.repartition(7), key=["id"], test_fraction=0.25, seed=7
    )
    assert_df_equality(test, test2, ignore_row_order=True)
    assert_df_equality(train, train2, ignore_row_order=True)
    by_class = {r.label: r["count"] for r in test.groupBy("label").count().collect()}
    assert by_class == {1.0: 25, 0.0: 475}  # 25% of 100 positives and of 1900 negatives
    assert train.join(test, "id").count() == 0
    _, other_seed = sampling.split_stratified(df, key=["id"], test_fraction=0.25, seed=8)
    assert other_seed.join(test, "id").count() < 500


def test_time_split_puts_only_the_latest_rows_in_test(spark: SparkSession) -> None:
    df = keyed(spark, n=100)
    cutoff = dt.datetime(2026, 1, 1, 1, 20)
    train, test = sampling.split_by_time(df, time_col="ts", cutoff=cutoff)
    max_train = train.agg(F.max("ts")).first()
    min_test = test.agg(F.min("ts")).first()
    assert max_train is not None
    assert min_test is not None
    assert (max_train[0], min_test[0]) == (dt.datetime(2026, 1, 1, 1, 19), cutoff)
    assert (train.count(), test.count()) == (80, 20)


def test_folds_are_stratified_and_cover_every_row_once(spark: SparkSession) -> None:
    folded = sampling.with_folds(
        keyed(spark, n=300, positives_every=10), key=["id"], folds=3, seed=1
    )
    counts = {
        (r._fold, r.label): r["count"] for r in folded.groupBy("_fold", "label").count().collect()
    }
    assert counts == {(f, 1.0): 10 for f in range(3)} | {(f, 0.0): 90 for f in range(3)}


def _placement(df: DataFrame) -> list[set[str]]:
    """The ids in each partition of the DataFrame as it runs."""
    parts = df.rdd.mapPartitionsWithIndex(lambda i, rows: [(i, {r.id for r in rows})]).collect()
    return [ids for _, ids in sorted(parts)]


def test_spread_evens_out_the_partitions_the_stratifying_window_leaves(
    spark: SparkSession,
) -> None:
    folded = sampling.with_folds(keyed(spark, n=2000), key=["id"], folds=3, seed=1)
    # The window partitions by label: the negatives (95% of the rows) share one partition.
    assert max(len(ids) for ids in _placement(folded)) >= 1900
    spread = sampling.spread(folded, ["id"], 4)
    placement = _placement(spread)
    assert len(placement) == 4
    assert all(400 <= len(ids) <= 600 for ids in placement), [len(ids) for ids in placement]
    # The same rows with the same folds, and the same rows in the same partitions on every run.
    assert_df_equality(folded, spread, ignore_row_order=True)
    assert _placement(sampling.spread(folded.repartition(3), ["id"], 4)) == placement


def test_rebalancing_weights_and_downsampling(spark: SparkSession) -> None:
    df = keyed(spark, n=100, positives_every=10)
    weights = sampling.balanced_weights({1.0: 10, 0.0: 90})
    assert weights == pytest.approx({1.0: 5.0, 0.0: 100 / 180})
    weighted = sampling.with_class_weights(df, weights)
    got = {r.label: r.weight for r in weighted.select("label", "weight").distinct().collect()}
    assert got == pytest.approx({1.0: 5.0, 0.0: 100 / 180})
    down = sampling.downsample_majority(df, keep_fraction=0.2, majority=0.0, key=["id"], seed=3)
    by_class = {r.label: r["count"] for r in down.groupBy("label").count().collect()}
    assert by_class[1.0] == 10
    assert 8 <= by_class[0.0] <= 30


def test_threshold_rules_on_a_known_histogram() -> None:
    pos, tot = [0.0] * (BINS + 1), [0.0] * (BINS + 1)
    # 10 positives at score 0.9; 5 positives and 10 negatives at 0.6; 80 negatives at 0.1
    pos[900], tot[900] = 10, 10
    pos[600], tot[600] = 5, 15
    tot[100] = 80
    hist = Histogram(tuple(pos), tuple(tot))
    assert hist.confusion_at(0.9) == (10, 0, 90, 5)
    assert hist.confusion_at(0.5) == (15, 10, 80, 0)
    # F1 is 0.8 at 0.9 (P 1, R 2/3) and 0.75 at 0.6 (P 0.6, R 1)
    assert choose_threshold(hist, "max_f1") == pytest.approx(0.9)
    # the most recall whose precision still reaches the floor
    assert choose_threshold(hist, "min_precision", min_precision=0.5) == pytest.approx(0.6)
    assert choose_threshold(hist, "min_precision", min_precision=0.7) == pytest.approx(0.9)
    assert choose_threshold(hist, "fixed", fixed=0.3) == 0.3


def test_max_accuracy_picks_the_threshold_with_the_fewest_errors_where_f1_prefers_recall() -> None:
    pos, tot = [0.0] * (BINS + 1), [0.0] * (BINS + 1)
    # 5 positives and 3 negatives at 0.8; 5 positives and 6 negatives at 0.4; 100 negatives at 0.1
    pos[800], tot[800] = 5, 8
    pos[400], tot[400] = 5, 11
    tot[100] = 100
    hist = Histogram(tuple(pos), tuple(tot))
    # F1: 0.556 at 0.8 (P 5/8, R 1/2), 0.690 at 0.4 (P 10/19, R 1) -> 0.4
    assert choose_threshold(hist, "max_f1") == pytest.approx(0.4)
    # errors: 8 at 0.8 (3 FP + 5 FN), 9 at 0.4 (9 FP) -> 0.8
    assert choose_threshold(hist, "max_accuracy") == pytest.approx(0.8)
