"""Reproducible sampling: train/test split, cross-validation folds, class rebalancing.

Row order and partitioning never matter: every random choice is a hash of the row's key and the
seed, so the same data and seed give the same split on a laptop and on a cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipeline.names import LABEL

FOLD = "_fold"
WEIGHT = "weight"
_HASH_RANGE = float(2**31)


def key_uniform(key: Sequence[str], seed: int, salt: str = "") -> Column:
    """A number in [0, 1) from the key and the seed: the same for the same row, everywhere."""
    hashed = F.xxhash64(F.lit(f"{salt}:{seed}"), *[F.col(k) for k in key])
    return F.pmod(hashed, F.lit(2**31)).cast("double") / F.lit(_HASH_RANGE)


def spread(df: DataFrame, key: Sequence[str], partitions: int) -> DataFrame:
    """The rows hashed by key into `partitions` partitions of about equal size.

    The window functions that stratify (the split, the folds) leave the rows in one partition per
    label class: with 8% positives, 92% of the rows sit in one partition, and every pass of the
    training loop over them runs on one core. Hashing the key spreads them evenly, and the same rows
    land in the same partitions on every run, so sums over partitions come out the same.
    """
    return df.repartition(partitions, *[F.col(k) for k in key])


def split_stratified(
    df: DataFrame, *, key: Sequence[str], test_fraction: float, seed: int, label: str = LABEL
) -> tuple[DataFrame, DataFrame]:
    """Train/test with each label class split in the same proportion (exact to one row a class).

    Rows are ranked within their class by a hash of key and seed, and the first `test_fraction` of
    each class goes to test.
    """
    ranked = df.withColumn(
        "_split_rank",
        F.percent_rank().over(
            Window.partitionBy(label).orderBy(key_uniform(key, seed, "split"), *key)
        ),
    )
    is_test = F.col("_split_rank") < F.lit(test_fraction)
    return ranked.where(~is_test).drop("_split_rank"), ranked.where(is_test).drop("_split_rank")


def split_random(
    df: DataFrame, *, key: Sequence[str], test_fraction: float, seed: int
) -> tuple[DataFrame, DataFrame]:
    """Train/test by a hash of key and seed, regardless of the label."""
    u = key_uniform(key, seed, "split")
    return df.where(u >= test_fraction), df.where(u < test_fraction)


def split_by_time(
    df: DataFrame, *, time_col: str, cutoff: dt.datetime
) -> tuple[DataFrame, DataFrame]:
    """Train = rows before `cutoff`, test = rows at or after it: the model never sees the future."""
    return df.where(F.col(time_col) < F.lit(cutoff)), df.where(F.col(time_col) >= F.lit(cutoff))


def with_folds(
    df: DataFrame, *, key: Sequence[str], folds: int, seed: int, label: str | None = LABEL
) -> DataFrame:
    """Assign `_fold` in 0..folds-1, stratified by label when given (round-robin within a class)."""
    u = key_uniform(key, seed, "fold")
    if label is None:
        return df.withColumn(FOLD, F.floor(u * folds).cast("int"))
    order = Window.partitionBy(label).orderBy(u, *key)
    return df.withColumn(FOLD, (F.row_number().over(order) % folds).cast("int"))


def with_time_folds(df: DataFrame, *, time_col: str, folds: int) -> DataFrame:
    """Assign `_fold` as contiguous blocks of time (blocked cross-validation for temporal data)."""
    return df.withColumn(FOLD, (F.ntile(folds).over(Window.orderBy(time_col)) - 1).cast("int"))


def with_class_weights(
    df: DataFrame, weights: dict[float, float], *, label: str = LABEL
) -> DataFrame:
    """Add a `weight` column from per-class weights (computed by the caller on training rows only)."""
    expr: Column = F.lit(1.0)
    for value, weight in sorted(weights.items(), reverse=True):
        expr = F.when(F.col(label) == F.lit(value), F.lit(weight)).otherwise(expr)
    return df.withColumn(WEIGHT, expr.cast("double"))


def balanced_weights(counts: dict[float, int]) -> dict[float, float]:
    """n / (classes * n_class): every class carries the same total weight."""
    total = sum(counts.values())
    return {cls: total / (len(counts) * n) for cls, n in counts.items() if n > 0}


def downsample_majority(
    df: DataFrame,
    *,
    keep_fraction: float,
    majority: float,
    key: Sequence[str],
    seed: int,
    label: str = LABEL,
) -> DataFrame:
    """Keep every minority row and `keep_fraction` of the majority class (hash of key and seed)."""
    u = key_uniform(key, seed, "downsample")
    return df.where((F.col(label) != F.lit(majority)) | (u < F.lit(keep_fraction)))
