"""Data-quality and drift metrics of a scoring run, computed by Spark in a few aggregations.

* population stability index (PSI) of every numeric model input against a reference (the
  champion's training window), on deciles of the reference;
* PSI of the score distribution against the previous run dates' predictions;
* null rate of every model input;
* today's row count against the trailing mean of earlier scoring runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config.stages import MonitorSpec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_EPS = 1e-4  # floor for empty bins, so PSI stays finite


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two binned distributions (counts or shares)."""
    e_total, a_total = sum(expected) or 1.0, sum(actual) or 1.0
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe, pa = max(e / e_total, _EPS), max(a / a_total, _EPS)
        value += (pa - pe) * math.log(pa / pe)
    return value


def _edges(reference: DataFrame, columns: Sequence[str], bins: int) -> dict[str, list[float]]:
    probs = [i / bins for i in range(1, bins)]
    quantiles = reference.approxQuantile(list(columns), probs, 0.001)
    return {c: sorted(set(q)) for c, q in zip(columns, quantiles, strict=True)}


def binned_counts(df: DataFrame, edges: dict[str, list[float]]) -> dict[str, list[float]]:
    """Counts per bin of every column (bins given by inner edges; nulls are left out), in one job."""
    from pyspark.sql import functions as F

    if not edges:
        return {}
    parts = []
    for col, inner in edges.items():
        bucket = F.lit(0)
        for i, edge in enumerate(inner):
            bucket = F.when(F.col(col) > F.lit(edge), F.lit(i + 1)).otherwise(bucket)
        parts.append(
            F.struct(F.lit(col).alias("c"), F.when(F.col(col).isNotNull(), bucket).alias("b"))
        )
    rows = (
        df.select(F.explode(F.array(*parts)).alias("x"))
        .where(F.col("x.b").isNotNull())
        .groupBy("x.c", "x.b")
        .count()
        .collect()
    )
    out = {col: [0.0] * (len(inner) + 1) for col, inner in edges.items()}
    for r in rows:
        out[r["c"]][r["b"]] = float(r["count"])
    return out


def psi_by_column(
    reference: DataFrame, current: DataFrame, columns: Sequence[str], bins: int = 10
) -> dict[str, float]:
    """PSI of each numeric column of `current` against `reference` (reference deciles)."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    ref = reference.select(*[F.col(c).cast("double").alias(c) for c in columns])
    cur = current.select(*[F.col(c).cast("double").alias(c) for c in columns])
    edges = _edges(ref, columns, bins)
    ref_counts, cur_counts = binned_counts(ref, edges), binned_counts(cur, edges)
    return {c: psi(ref_counts[c], cur_counts[c]) for c in columns}


def psi_by_column_per(
    reference: DataFrame,
    current: DataFrame,
    columns: Sequence[str],
    by: str,
    *,
    keys: Sequence[Any],
    bins: int = 10,
) -> dict[Any, dict[str, float]]:
    """`psi_by_column` for each of the `keys` (values of `current`'s column `by`, e.g. its run
    dates), in one job for the reference and one for all the keys: the edges are the
    reference's, as there."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    ref = reference.select(*[F.col(c).cast("double").alias(c) for c in columns])
    cur = current.select(by, *[F.col(c).cast("double").alias(c) for c in columns])
    edges = _edges(ref, columns, bins)
    ref_counts = binned_counts(ref, edges)
    parts = []
    for col, inner in edges.items():
        parts.append(F.struct(F.lit(col).alias("c"), _bucket(F.col(col), inner).alias("b")))
    rows = (
        cur.select(by, F.explode(F.array(*parts)).alias("x"))
        .where(F.col("x.b").isNotNull())
        .groupBy(by, "x.c", "x.b")
        .count()
        .collect()
    )
    counts = {key: {c: [0.0] * (len(inner) + 1) for c, inner in edges.items()} for key in keys}
    for r in rows:
        if r[by] in counts:
            counts[r[by]][r["c"]][r["b"]] = float(r["count"])
    return {key: {c: psi(ref_counts[c], per[c]) for c in columns} for key, per in counts.items()}


def _bucket(value: Column, inner: Sequence[float]) -> Column:
    """The bin of `value` among the sorted inner edges (null for null), as `binned_counts`."""
    from pyspark.sql import functions as F

    bucket = F.lit(0)
    for i, edge in enumerate(inner):
        bucket = F.when(value > F.lit(edge), F.lit(i + 1)).otherwise(bucket)
    return F.when(value.isNotNull(), bucket)


def score_psi_by_date(
    predictions: DataFrame, dates: Sequence[Any], *, days: int = 7, bins: int = 10
) -> dict[Any, float]:
    """For each run date D of `dates`, the PSI of D's scores against the scores of the `days`
    dates before D (deciles of those), as a night's scoring computes it; dates with no earlier
    scores are left out. One job for the edges of every date, one for the counts."""
    import datetime as dt

    from pyspark.sql import functions as F

    if not dates:
        return {}
    lo, hi = min(dates), max(dates)
    scores = predictions.select(
        F.col("run_date").alias("_d0"), F.col("score").cast("double").alias("score")
    ).where(F.col("score").isNotNull())
    earlier = (
        scores.where(
            (F.col("_d0") >= F.lit(lo - dt.timedelta(days=days))) & (F.col("_d0") < F.lit(hi))
        )
        .withColumn("_d", F.explode(F.sequence(F.date_add("_d0", 1), F.date_add("_d0", days))))
        .where(F.col("_d").isin(*dates))
    )
    probs = [i / bins for i in range(1, bins)]
    edges = {
        r["_d"]: sorted(set(r["q"]))
        for r in earlier.groupBy("_d")
        .agg(F.percentile_approx("score", probs, 1000).alias("q"))
        .collect()
    }
    if not edges:
        return {}
    spark = predictions.sparkSession
    table = spark.createDataFrame(
        [(d, e) for d, e in edges.items()], "_d date, _edges array<double>"
    )
    current = scores.where(F.col("_d0").isin(*edges)).withColumnRenamed("_d0", "_d")
    bucket = F.size(F.filter("_edges", lambda e: F.col("score") > e))
    rows = (
        earlier.select("_d", "score")
        .withColumn("_which", F.lit("e"))
        .unionByName(current.withColumn("_which", F.lit("c")))
        .join(F.broadcast(table), "_d")
        .groupBy("_d", "_which", bucket.alias("b"))
        .count()
        .collect()
    )
    counts = {(d, w): [0.0] * (len(e) + 1) for d, e in edges.items() for w in ("e", "c")}
    for r in rows:
        counts[(r["_d"], r["_which"])][r["b"]] = float(r["count"])
    return {d: psi(counts[(d, "e")], counts[(d, "c")]) for d in edges}


def null_rates_by(df: DataFrame, columns: Sequence[str], by: str) -> dict[Any, dict[str, float]]:
    """`null_rates` for each value of column `by`, in one aggregation."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    rows = (
        df.groupBy(by)
        .agg(*[F.avg(F.col(c).isNull().cast("double")).alias(c) for c in columns])
        .collect()
    )
    return {r[by]: {c: float(r[c] or 0.0) for c in columns} for r in rows}


def null_rates(df: DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """Share of nulls per column (one aggregation)."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    row = df.select(*[F.avg(F.col(c).isNull().cast("double")).alias(c) for c in columns]).first()
    return {c: float(row[c] or 0.0) if row is not None else 0.0 for c in columns}


@dataclass
class MonitorReport:
    """Drift and quality metrics of one run, with warnings and failures by threshold."""

    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def max_feature_psi(self) -> float:
        values = [v for k, v in self.metrics.items() if k.startswith("psi.") and k != "psi.score"]
        return max(values, default=0.0)


def assess(
    spec: MonitorSpec,
    *,
    feature_psi: dict[str, float],
    score_psi: float | None,
    nulls: dict[str, float],
    rows_today: int,
    trailing_mean: float | None,
) -> MonitorReport:
    """Turn raw measurements into metrics plus warnings/failures by the configured thresholds."""
    report = MonitorReport()
    for col, value in feature_psi.items():
        report.metrics[f"psi.{col}"] = value
        if spec.psi_fail is not None and value >= spec.psi_fail:
            report.failures.append(f"{col}: PSI {value:.3f} >= {spec.psi_fail}")
        elif value >= spec.psi_warn:
            report.warnings.append(f"{col}: PSI {value:.3f} >= {spec.psi_warn}")
    if score_psi is not None:
        report.metrics["psi.score"] = score_psi
        if score_psi >= spec.psi_warn:
            report.warnings.append(f"prediction distribution shifted: PSI {score_psi:.3f}")
    for col, rate in nulls.items():
        report.metrics[f"null_rate.{col}"] = rate
        if rate >= spec.null_rate_warn:
            report.warnings.append(f"{col}: {rate:.1%} nulls")
    report.metrics["rows"] = float(rows_today)
    if trailing_mean:
        ratio = rows_today / trailing_mean
        report.metrics["rows_vs_trailing_mean"] = ratio
        if ratio < spec.row_count_ratio_warn:
            report.warnings.append(
                f"only {rows_today} rows, {ratio:.0%} of the trailing mean {trailing_mean:.0f}"
            )
    return report
