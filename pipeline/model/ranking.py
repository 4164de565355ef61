"""Recommendation: implicit (user, item) ratings, ALS recommendations in the original ids, ranking
metrics and the most-popular baseline, all computed by Spark.

A recommender model is a `PipelineModel` of three stages: a `StringIndexer` for the user ids, one
for the item ids, and the `ALSModel`. Its `transform` scores given (user, item) pairs (what MLflow's
pyfunc flavour serves); `recommend` asks it for each user's top items and maps them back to the
original ids.

Ranking metrics follow MLlib's `RankingMetrics` definitions (binary relevance), per user, averaged
over the users that have at least one relevant item:

* precision@k = hits in the top k / k;
* recall@k = hits in the top k / relevant items;
* NDCG@k = sum over hits of 1/log2(rank + 1), divided by the same sum for a perfect list;
* MAP@k = sum over hits of (hits so far / rank), divided by min(relevant items, k).

They are computed with joins and aggregations (no lists are collected); `tests/test_ranking.py`
checks them against MLlib's `RankingEvaluator`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.config.stages import RecommendSpec
from pipeline.errors import RunError

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

RATING = "rating"
EVENTS = "events"
USER_INDEX = "user_index"
ITEM_INDEX = "item_index"
SCORE = "score"
RANK = "rank"
METRIC_NAMES = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")


def interaction_pairs(events: DataFrame, spec: RecommendSpec) -> DataFrame:
    """(user, item, rating, events): implicit strengths summed per pair (log1p-compressed by
    default, pairs of no strength left out); explicit ratings averaged per pair (a user who
    rated an item twice counts once, at the mean of the two)."""
    from pyspark.sql import functions as F

    strength = F.col(spec.strength).cast("double")
    if spec.explicit:
        return (
            events.where(strength.isNotNull())
            .groupBy(spec.user, spec.item)
            .agg(F.avg(strength).alias(RATING), F.count(F.lit(1)).alias(EVENTS))
        )
    summed = events.groupBy(spec.user, spec.item).agg(
        F.sum(F.greatest(strength, F.lit(0.0))).alias("_strength"),
        F.count(F.lit(1)).alias(EVENTS),
    )
    rating = F.log1p("_strength") if spec.compress else F.col("_strength")
    return summed.select(spec.user, spec.item, rating.alias(RATING), EVENTS).where(
        F.col(RATING) > 0
    )


def indexers(spec: RecommendSpec) -> list[Any]:
    """User and item `StringIndexer`s; ids unseen in training get an index without ALS factors."""
    from pyspark.ml.feature import StringIndexer

    # "keep" maps unknown ids to one extra index: ALS has no factors for it, so such users get no
    # recommendations and such pairs are dropped (coldStartStrategy "drop") instead of failing.
    return [
        StringIndexer(inputCol=spec.user, outputCol=USER_INDEX, handleInvalid="keep"),
        StringIndexer(inputCol=spec.item, outputCol=ITEM_INDEX, handleInvalid="keep"),
    ]


def _parts(model: PipelineModel) -> tuple[Any, Any, Any]:
    from pyspark.ml.recommendation import ALSModel

    stages = model.stages
    if len(stages) != 3 or not isinstance(stages[2], ALSModel):
        raise ValueError("a recommender model is [user indexer, item indexer, ALS model]")
    return stages[0], stages[1], stages[2]


def recommend(model: PipelineModel, users: DataFrame, n: int, spec: RecommendSpec) -> DataFrame:
    """(user, item, score): each known user's `n` best items by the model, in the original ids."""
    from pyspark.ml.feature import IndexToString
    from pyspark.sql import functions as F

    user_indexer, item_indexer, als = _parts(model)
    known = user_indexer.transform(users.select(spec.user).distinct()).select(
        spec.user, F.col(USER_INDEX).cast("int").alias(USER_INDEX)
    )
    recs = als.recommendForUserSubset(known, n)
    exploded = recs.join(known, USER_INDEX).select(
        spec.user, F.explode("recommendations").alias("r")
    )
    to_id = IndexToString(inputCol=ITEM_INDEX, outputCol=spec.item, labels=item_indexer.labels)
    return to_id.transform(
        exploded.select(
            spec.user,
            F.col(f"r.{ITEM_INDEX}").cast("double").alias(ITEM_INDEX),
            F.col("r.rating").cast("double").alias(SCORE),
        )
    ).select(spec.user, spec.item, SCORE)


def popular_items(train_pairs: DataFrame, n: int, spec: RecommendSpec) -> DataFrame:
    """(item, score): the `n` items with the most distinct users in training (ties by id)."""
    from pyspark.sql import functions as F

    return (
        train_pairs.groupBy(spec.item)
        .agg(F.countDistinct(spec.user).cast("double").alias(SCORE))
        .orderBy(F.col(SCORE).desc(), F.col(spec.item))
        .limit(n)
    )


def popularity_recommend(
    train_pairs: DataFrame, users: DataFrame, n: int, spec: RecommendSpec
) -> DataFrame:
    """(user, item, score): the most-popular baseline, the same `n` items for everyone."""
    from pyspark.sql import functions as F

    top = popular_items(train_pairs, n, spec)
    return users.select(spec.user).distinct().crossJoin(F.broadcast(top))


def fetch_size(seen: DataFrame | None, users: DataFrame, k: int, spec: RecommendSpec) -> int:
    """How many items to ask for so that k remain after removing seen ones (up to `max_seen`)."""
    from pyspark.sql import functions as F

    if seen is None or not spec.exclude_seen:
        return k
    row = (
        seen.join(users.select(spec.user).distinct(), spec.user)
        .groupBy(spec.user)
        .count()
        .agg(F.max("count"))
        .first()
    )
    most = int(row[0]) if row is not None and row[0] is not None else 0
    return k + min(most, spec.max_seen)


def top_k(candidates: DataFrame, seen: DataFrame | None, k: int, spec: RecommendSpec) -> DataFrame:
    """(user, item, score, rank): the k best candidates per user, seen items left out."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if seen is not None and spec.exclude_seen:
        candidates = candidates.join(
            seen.select(spec.user, spec.item), [spec.user, spec.item], "left_anti"
        )
    order = Window.partitionBy(spec.user).orderBy(F.col(SCORE).desc(), F.col(spec.item))
    return (
        candidates.withColumn(RANK, F.row_number().over(order))
        .where(F.col(RANK) <= k)
        .select(spec.user, spec.item, SCORE, RANK)
    )


def relevant_pairs(test_pairs: DataFrame, train_pairs: DataFrame, spec: RecommendSpec) -> DataFrame:
    """(user, item) to be found: test pairs of users known from training, minus seen pairs; with
    explicit feedback only the pairs rated at least `relevant_rating`."""
    from pyspark.sql import functions as F

    if spec.explicit:
        assert spec.relevant_rating is not None  # the configuration requires it
        test_pairs = test_pairs.where(F.col(RATING) >= F.lit(spec.relevant_rating))
    pairs = test_pairs.select(spec.user, spec.item).join(
        train_pairs.select(spec.user).distinct(), spec.user, "left_semi"
    )
    if spec.exclude_seen:
        pairs = pairs.join(
            train_pairs.select(spec.user, spec.item), [spec.user, spec.item], "left_anti"
        )
    return pairs.distinct()


def per_user_metrics(
    ranked: DataFrame, relevant: DataFrame, k: int, spec: RecommendSpec
) -> DataFrame:
    """One row per user with relevant items: precision_at_k, recall_at_k, ndcg_at_k, map_at_k.

    Users without recommendations (unknown to the model) score 0 on every metric.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    user, item = spec.user, spec.item
    n_relevant = relevant.groupBy(user).agg(F.count(F.lit(1)).alias("n_rel"))
    hits = ranked.join(
        relevant.select(user, item).withColumn("hit", F.lit(1)), [user, item], "left"
    ).withColumn("hit", F.coalesce(F.col("hit"), F.lit(0)))
    upto = Window.partitionBy(user).orderBy(RANK).rowsBetween(Window.unboundedPreceding, 0)
    hits = hits.withColumn("hits_so_far", F.sum("hit").over(upto))
    log2 = F.log(2.0, F.col(RANK) + 1)
    per_user = hits.groupBy(user).agg(
        F.sum("hit").alias("hits"),
        F.sum(F.col("hit") / log2).alias("dcg"),
        F.sum(F.col("hit") * F.col("hits_so_far") / F.col(RANK)).alias("ap_sum"),
    )
    ideal = F.least(F.col("n_rel"), F.lit(k))
    # The ideal DCG: every one of the first min(relevant, k) ranks is a hit.
    idcg = F.aggregate(
        F.sequence(F.lit(1), ideal),
        F.lit(0.0),
        lambda acc, i: acc + F.lit(1.0) / F.log(2.0, i + 1),
    )
    joined = n_relevant.join(per_user, user, "left").fillna(0.0, ["hits", "dcg", "ap_sum"])
    return joined.select(
        user,
        (F.col("hits") / F.lit(float(k))).alias("precision_at_k"),
        (F.col("hits") / F.col("n_rel")).alias("recall_at_k"),
        (F.col("dcg") / idcg).alias("ndcg_at_k"),
        (F.col("ap_sum") / ideal).alias("map_at_k"),
    )


def mean_metrics(per_user: DataFrame) -> dict[str, float]:
    """The four metrics averaged over users, and the number of users (one aggregation)."""
    from pyspark.sql import functions as F

    row = per_user.agg(
        *[F.avg(m).alias(m) for m in METRIC_NAMES], F.count(F.lit(1)).alias("users")
    ).first()
    assert row is not None
    return {m: float(row[m] or 0.0) for m in METRIC_NAMES} | {"users": float(row["users"])}


def evaluate_model(
    model: PipelineModel,
    seen: DataFrame | None,
    relevant: DataFrame,
    k: int,
    spec: RecommendSpec,
    n: int | None = None,
) -> DataFrame:
    """Per-user metrics of the model's top k for the users in `relevant` (seen items removed).

    `n`, the number of items to ask the model for, is `fetch_size(...)` unless given (callers
    evaluating many models on the same users compute it once).
    """
    n = n or fetch_size(seen, relevant, k, spec)
    ranked = top_k(recommend(model, relevant, n, spec), seen, k, spec)
    return per_user_metrics(ranked, relevant, k, spec)


def evaluate_popularity(
    train_pairs: DataFrame, relevant: DataFrame, k: int, spec: RecommendSpec
) -> DataFrame:
    """Per-user metrics of the most-popular baseline on the same users and the same exclusions."""
    n = fetch_size(train_pairs, relevant, k, spec)
    ranked = top_k(popularity_recommend(train_pairs, relevant, n, spec), train_pairs, k, spec)
    return per_user_metrics(ranked, relevant, k, spec)


def rating_metrics(model: PipelineModel, pairs: DataFrame, mean_rating: float) -> dict[str, float]:
    """rmse and mae of the model's predicted ratings on held-out (user, item, rating) pairs,
    beside the same errors of predicting the training ratings' mean (`baseline_rmse`,
    `baseline_mae`), on the pairs the model can predict (users and items it knows: ALS drops
    the others, counted in `rated_pairs` vs `pairs`)."""
    from pyspark.sql import functions as F

    predicted = model.transform(pairs)
    err = F.col("prediction") - F.col(RATING)
    base = F.lit(mean_rating) - F.col(RATING)
    row = predicted.agg(
        F.sqrt(F.avg(err * err)).alias("rmse"),
        F.avg(F.abs(err)).alias("mae"),
        F.sqrt(F.avg(base * base)).alias("baseline_rmse"),
        F.avg(F.abs(base)).alias("baseline_mae"),
        F.count(F.lit(1)).alias("rated_pairs"),
    ).first()
    assert row is not None
    if not row["rated_pairs"]:
        raise RunError("no held-out rating has a user and an item the model knows")
    return {k: float(row[k]) for k in row.asDict()}
