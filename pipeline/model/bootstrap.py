"""Paired bootstrap of the challenger's gain over the champion on the same test set, by Spark.

Each replicate reweights the test units (rows, or users for recommendation) with Poisson(1)
weights — the usual large-data stand-in for resampling with replacement — taken from a hash of the
unit's key, the replicate number and the seed, so a rerun gives the same bounds. Both models are
measured on the same weighted replicate, which is what makes the bootstrap *paired*: the spread
of the gain, not of each metric, decides.

Every metric is reduced to weighted sums per replicate in one aggregation: counts per score bin
for the areas under the ROC and PR curves, confusion counts for F1 and accuracy, error sums for
RMSE, MAE and R², and weighted means of the per-user values for the ranking metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.model.evaluate import HIGHER_IS_BETTER, score_column
from pipeline.model.histogram import BINS, Histogram
from pipeline.names import LABEL

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

REPLICATE = "_replicate"
WEIGHT = "_bootstrap_weight"
SAMPLE_WEIGHT = "_sample_weight"
# P(Poisson(1) <= n) for n = 0..5; above the last one the weight is 6 (P = 0.00006).
_POISSON_CDF = (0.36788, 0.73576, 0.91970, 0.98101, 0.99634, 0.99941)


def _weights(df: DataFrame, key: Sequence[str], replicates: int, seed: int) -> DataFrame:
    """Every row once per replicate, with its Poisson(1) weight in that replicate."""
    from pyspark.sql import functions as F

    exploded = df.withColumn(REPLICATE, F.explode(F.sequence(F.lit(0), F.lit(replicates - 1))))
    hashed = F.xxhash64(F.lit(f"bootstrap:{seed}"), F.col(REPLICATE), *[F.col(k) for k in key])
    u = F.pmod(hashed, F.lit(2**31)).cast("double") / F.lit(float(2**31))
    weight: Column = F.lit(float(len(_POISSON_CDF)))
    for n, cdf in reversed(list(enumerate(_POISSON_CDF))):
        weight = F.when(u < F.lit(cdf), F.lit(float(n))).otherwise(weight)
    return exploded.withColumn(WEIGHT, weight).where(F.col(WEIGHT) > 0)


def _signed(metric: str, challenger: float, champion: float) -> float:
    return challenger - champion if HIGHER_IS_BETTER[metric] else champion - challenger


def supervised_gains(
    challenger: DataFrame,
    champion: DataFrame,
    *,
    key: Sequence[str],
    metric: str,
    replicates: int,
    seed: int,
    weight: str | None = None,
) -> list[float]:
    """The challenger's gain on each replicate, from both models' predictions of the same rows.
    With `weight` (a sample-weight column), each row counts its weight times its Poisson draw, so
    the replicates spread around the weighted gain the test metrics report."""
    from pyspark.sql import functions as F

    def outputs(pred: DataFrame, tag: str) -> DataFrame:
        cols: list[Column | str] = [*key, F.col("prediction").cast("double").alias(f"pred_{tag}")]
        if metric in ("areaUnderPR", "areaUnderROC"):
            cols.append(score_column(pred).alias(f"score_{tag}"))
        if tag == "a":
            cols.append(LABEL)
            if weight is not None:
                cols.append(F.col(weight).cast("double").alias(SAMPLE_WEIGHT))
        return pred.select(*cols)

    paired = outputs(challenger, "a").join(outputs(champion, "b"), list(key))
    weighted = _weights(paired, key, replicates, seed)
    if weight is not None:
        weighted = weighted.withColumn(WEIGHT, F.col(WEIGHT) * F.col(SAMPLE_WEIGHT))
    w, y = F.col(WEIGHT), F.col(LABEL)
    if metric in ("areaUnderPR", "areaUnderROC"):
        return _auc_gains(weighted, metric, replicates)
    sums = []
    for tag in ("a", "b"):
        p = F.col(f"pred_{tag}")
        if metric in ("f1", "accuracy"):
            sums += [
                F.sum(w * p * y).alias(f"tp_{tag}"),
                F.sum(w * p * (1 - y)).alias(f"fp_{tag}"),
                F.sum(w * (1 - p) * y).alias(f"fn_{tag}"),
            ]
        else:
            sums += [
                F.sum(w * (p - y) * (p - y)).alias(f"se_{tag}"),
                F.sum(w * F.abs(p - y)).alias(f"ae_{tag}"),
            ]
    rows = (
        weighted.groupBy(REPLICATE)
        .agg(F.sum(w).alias("n"), F.sum(w * y).alias("sy"), F.sum(w * y * y).alias("syy"), *sums)
        .collect()
    )
    gains = []
    for r in rows:
        values = []
        for tag in ("a", "b"):
            n = float(r["n"])
            if metric == "f1":
                tp, fp, fn = (float(r[f"{c}_{tag}"]) for c in ("tp", "fp", "fn"))
                values.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
            elif metric == "accuracy":
                values.append(1.0 - (float(r[f"fp_{tag}"]) + float(r[f"fn_{tag}"])) / n)
            elif metric == "rmse":
                values.append(math.sqrt(float(r[f"se_{tag}"]) / n))
            elif metric == "mae":
                values.append(float(r[f"ae_{tag}"]) / n)
            else:  # r2
                total = float(r["syy"]) - float(r["sy"]) ** 2 / n
                values.append(1.0 - float(r[f"se_{tag}"]) / total if total > 0 else 0.0)
        gains.append(_signed(metric, values[0], values[1]))
    return gains


def _auc_gains(weighted: DataFrame, metric: str, replicates: int) -> list[float]:
    from pyspark.sql import functions as F

    parts = []
    for tag in ("a", "b"):
        b = F.least(F.floor(F.col(f"score_{tag}") * BINS), F.lit(BINS)).cast("int")
        parts.append(F.struct(F.lit(tag).alias("m"), b.alias("bin")))
    rows = (
        weighted.select(REPLICATE, WEIGHT, LABEL, F.explode(F.array(*parts)).alias("x"))
        .groupBy(REPLICATE, "x.m", "x.bin")
        .agg(
            F.sum(F.col(WEIGHT) * F.col(LABEL)).alias("pos"),
            F.sum(WEIGHT).alias("tot"),
        )
        .collect()
    )
    pos = {(i, m): [0.0] * (BINS + 1) for i in range(replicates) for m in "ab"}
    tot = {(i, m): [0.0] * (BINS + 1) for i in range(replicates) for m in "ab"}
    for r in rows:
        pos[(r[REPLICATE], r["m"])][r["bin"]] = float(r["pos"])
        tot[(r[REPLICATE], r["m"])][r["bin"]] = float(r["tot"])
    gains = []
    for i in range(replicates):
        challenger = Histogram(tuple(pos[(i, "a")]), tuple(tot[(i, "a")]))
        champion = Histogram(tuple(pos[(i, "b")]), tuple(tot[(i, "b")]))
        gains.append(_signed(metric, challenger.area(metric), champion.area(metric)))
    return gains


def ranking_gains(
    challenger: DataFrame,
    champion: DataFrame,
    *,
    user: str,
    metric: str,
    replicates: int,
    seed: int,
) -> list[float]:
    """Gains from both models' per-user ranking metrics (the same users: those with relevant items)."""
    from pyspark.sql import functions as F

    paired = challenger.select(user, F.col(metric).alias("a")).join(
        champion.select(user, F.col(metric).alias("b")), user
    )
    w = F.col(WEIGHT)
    rows = (
        _weights(paired, [user], replicates, seed)
        .groupBy(REPLICATE)
        .agg((F.sum(w * (F.col("a") - F.col("b"))) / F.sum(w)).alias("gain"))
        .collect()
    )
    return [float(r["gain"]) for r in rows]
