"""Recommendation building blocks: implicit ratings, top-k with seen items removed, the popularity
baseline, and ranking metrics that agree with MLlib's `RankingEvaluator`."""

from __future__ import annotations

import math
import random

import pytest
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from pipeline.config.stages import RecommendSpec
from pipeline.model import ranking

SPEC = RecommendSpec(user="u", item="i", strength="s")


def test_interaction_pairs_sum_strength_per_pair_and_compress_it(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [("a", "x", 1.0), ("a", "x", 3.0), ("a", "y", 1.0), ("b", "x", 5.0), ("b", "z", -2.0)],
        "u STRING, i STRING, s DOUBLE",
    )
    expected = spark.createDataFrame(
        [
            ("a", "x", math.log1p(4.0), 2),
            ("a", "y", math.log1p(1.0), 1),
            ("b", "x", math.log1p(5.0), 1),
        ],
        "u STRING, i STRING, rating DOUBLE, events BIGINT",
    )
    # A negative strength counts as none: the pair carries no signal and is left out.
    assertDataFrameEqual(ranking.interaction_pairs(events, SPEC), expected)
    raw = ranking.interaction_pairs(events, SPEC.model_copy(update={"transform": "none"}))
    assert sorted(r.rating for r in raw.collect()) == [1.0, 4.0, 5.0]


def test_top_k_leaves_out_seen_items_and_breaks_ties_by_item(spark: SparkSession) -> None:
    candidates = spark.createDataFrame(
        [("a", "x", 0.9), ("a", "y", 0.8), ("a", "z", 0.8), ("a", "w", 0.1), ("b", "x", 0.5)],
        "u STRING, i STRING, score DOUBLE",
    )
    seen = spark.createDataFrame([("a", "x"), ("b", "y")], "u STRING, i STRING")
    expected = spark.createDataFrame(
        [("a", "y", 0.8, 1), ("a", "z", 0.8, 2), ("b", "x", 0.5, 1)],
        "u STRING, i STRING, score DOUBLE, rank INT",
    )
    assertDataFrameEqual(ranking.top_k(candidates, seen, 2, SPEC), expected)
    kept = ranking.top_k(candidates, seen, 1, SPEC.model_copy(update={"exclude_seen": False}))
    assert {(r.u, r.i) for r in kept.collect()} == {("a", "x"), ("b", "x")}


def test_popularity_baseline_recommends_the_most_shared_unseen_items(spark: SparkSession) -> None:
    train = spark.createDataFrame(
        [("a", "x"), ("b", "x"), ("c", "x"), ("a", "y"), ("b", "y"), ("c", "z")],
        "u STRING, i STRING",
    )
    users = spark.createDataFrame([("a",), ("c",), ("d",)], "u STRING")
    recs = ranking.popularity_recommend(train, users, 3, SPEC)
    ranked = ranking.top_k(recs, train, 2, SPEC)
    expected = spark.createDataFrame(
        [("a", "z", 1.0, 1), ("c", "y", 2.0, 1), ("d", "x", 3.0, 1), ("d", "y", 2.0, 2)],
        "u STRING, i STRING, score DOUBLE, rank INT",
    )
    assertDataFrameEqual(ranked, expected)


def test_per_user_metrics_by_hand(spark: SparkSession) -> None:
    # User a: hits at ranks 1 and 3 of 3, three relevant items. User b: no hit. User c: relevant
    # items but no recommendations at all (unknown to the model): zeros, not left out.
    ranked = spark.createDataFrame(
        [("a", "p", 0.9, 1), ("a", "q", 0.8, 2), ("a", "r", 0.7, 3), ("b", "p", 0.9, 1)],
        "u STRING, i STRING, score DOUBLE, rank INT",
    )
    relevant = spark.createDataFrame(
        [("a", "p"), ("a", "r"), ("a", "s"), ("b", "q"), ("c", "p")], "u STRING, i STRING"
    )
    ideal_a = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    expected = spark.createDataFrame(
        [
            ("a", 2 / 3, 2 / 3, (1 + 1 / math.log2(4)) / ideal_a, (1 / 1 + 2 / 3) / 3),
            ("b", 0.0, 0.0, 0.0, 0.0),
            ("c", 0.0, 0.0, 0.0, 0.0),
        ],
        "u STRING, precision_at_k DOUBLE, recall_at_k DOUBLE, ndcg_at_k DOUBLE, map_at_k DOUBLE",
    )
    assertDataFrameEqual(ranking.per_user_metrics(ranked, relevant, 3, SPEC), expected, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_ranking_metrics_agree_with_mllib_ranking_evaluator(spark: SparkSession, k: int) -> None:
    rng = random.Random(k)
    ranked_rows, relevant_rows, lists = [], [], []
    for u in range(40):
        recs = rng.sample(range(30), rng.randint(1, 12))
        rel = rng.sample(range(30), rng.randint(1, 8))
        ranked_rows += [(f"u{u}", f"{i}", 1.0 - r / 100, r + 1) for r, i in enumerate(recs)]
        relevant_rows += [(f"u{u}", f"{i}") for i in rel]
        lists.append(([float(i) for i in recs], [float(i) for i in rel]))
    ranked = spark.createDataFrame(ranked_rows, "u STRING, i STRING, score DOUBLE, rank INT")
    relevant = spark.createDataFrame(relevant_rows, "u STRING, i STRING")
    ours = ranking.mean_metrics(
        ranking.per_user_metrics(ranked.where(F.col("rank") <= k), relevant, k, SPEC)
    )
    arrays = spark.createDataFrame(lists, "prediction ARRAY<DOUBLE>, label ARRAY<DOUBLE>")
    names = {
        "precision_at_k": "precisionAtK",
        "recall_at_k": "recallAtK",
        "ndcg_at_k": "ndcgAtK",
        "map_at_k": "meanAveragePrecisionAtK",
    }
    for ours_name, mllib_name in names.items():
        evaluator = RankingEvaluator(metricName=mllib_name, k=k)  # type: ignore[arg-type]
        assert ours[ours_name] == pytest.approx(evaluator.evaluate(arrays), abs=1e-12), ours_name
    assert ours["users"] == 40
