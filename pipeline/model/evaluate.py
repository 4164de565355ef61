"""Evaluation: metrics computed by Spark on whole data sets, and small summaries of them.

The only actions here are summary steps that bring back a few hundred numbers (a score histogram,
a confusion matrix); predictions are never collected to the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.model.histogram import BINS, Histogram
from pipeline.names import LABEL

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

HIGHER_IS_BETTER = {
    "areaUnderPR": True,
    "areaUnderROC": True,
    "f1": True,
    "accuracy": True,
    "rmse": False,
    "mae": False,
    "r2": True,
    "ndcg_at_k": True,
    "map_at_k": True,
    "precision_at_k": True,
    "recall_at_k": True,
}


def better(metric: str, a: float, b: float) -> bool:
    """True when value `a` is better than `b` for `metric`."""
    return a > b if HIGHER_IS_BETTER[metric] else a < b


def score_column(df: DataFrame) -> Column:
    """The positive-class score in [0, 1]: probability, or the sigmoid of the raw margin (SVM)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    if "probability" in df.columns:
        return vector_to_array(F.col("probability"))[1]
    return F.lit(1.0) / (F.lit(1.0) + F.exp(-vector_to_array(F.col("rawPrediction"))[1]))


def _weight(weight: str | None) -> Column:
    from pyspark.sql import functions as F

    return F.col(weight).cast("double") if weight else F.lit(1.0)


def score_histogram(pred_df: DataFrame, weight: str | None = None) -> Histogram:
    """Summary step: the score histogram of predictions (one small aggregation); with `weight`,
    each row counts as its sample weight."""
    from pyspark.sql import functions as F

    w = _weight(weight)
    rows = (
        pred_df.select(
            F.least(F.floor(score_column(pred_df) * BINS), F.lit(BINS)).cast("int").alias("b"),
            (F.col(LABEL) * w).alias("_pos"),
            w.alias("_n"),
        )
        .groupBy("b")
        .agg(F.sum("_pos").alias("pos"), F.sum("_n").alias("n"))
        .collect()
    )
    pos, tot = [0.0] * (BINS + 1), [0.0] * (BINS + 1)
    for r in rows:
        pos[r["b"]], tot[r["b"]] = float(r["pos"]), float(r["n"])
    return Histogram(tuple(pos), tuple(tot))


def choose_threshold(
    hist: Histogram, rule: str, *, min_precision: float = 0.5, fixed: float = 0.5
) -> float:
    """The decision threshold from (cross-validation) score counts: max F1, max accuracy (the
    fewest wrong predictions; the highest such threshold on ties), or the lowest threshold whose
    precision reaches `min_precision` (the most recall at that precision). A threshold must flag
    at least one row."""
    if rule == "fixed":
        return fixed
    best_t, best_value = 0.5, -1.0
    for i in range(BINS, -1, -1):
        t = i / BINS
        tp, fp, tn, fn = hist.confusion_at(t)
        if tp == 0:
            continue
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        if rule == "max_f1":
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_value:
                best_t, best_value = t, f1
        elif rule == "max_accuracy":
            accuracy = (tp + tn) / max(1.0, tp + fp + tn + fn)
            if accuracy > best_value:
                best_t, best_value = t, accuracy
        elif precision >= min_precision and recall > best_value:
            best_t, best_value = t, recall
    return best_t


def binary_metrics(
    pred_df: DataFrame, threshold: float, weight: str | None = None
) -> tuple[dict[str, float], Histogram]:
    """Test metrics of a binary classifier on the whole set, and its score histogram; with
    `weight`, each row counts as its sample weight (the counts are sums of weights)."""
    from pyspark.sql import functions as F

    roc = _binary_evaluator("areaUnderROC", weight).evaluate(pred_df)
    pr = _binary_evaluator("areaUnderPR", weight).evaluate(pred_df)
    p = F.least(F.greatest(score_column(pred_df), F.lit(1e-15)), F.lit(1 - 1e-15))
    predicted = (score_column(pred_df) >= F.lit(threshold)).cast("double")
    y, w = F.col(LABEL), _weight(weight)
    agg = pred_df.select(
        F.sum(w * predicted * y).alias("tp"),
        F.sum(w * predicted * (1 - y)).alias("fp"),
        F.sum(w * (1 - predicted) * (1 - y)).alias("tn"),
        F.sum(w * (1 - predicted) * y).alias("fn"),
        (F.sum(w * -(y * F.log(p) + (1 - y) * F.log(1 - p))) / F.sum(w)).alias("log_loss"),
    ).first()
    assert agg is not None
    tp, fp, tn, fn = (float(agg[k] or 0.0) for k in ("tp", "fp", "tn", "fn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    metrics = {
        "areaUnderROC": roc,
        "areaUnderPR": pr,
        "accuracy": (tp + tn) / max(1.0, tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "log_loss": float(agg["log_loss"] or 0.0),
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
    return metrics, score_histogram(pred_df, weight)


def _binary_evaluator(metric: str, weight: str | None) -> Any:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    name: Any = metric  # validated by the configuration's Literal; the stubs want their own
    evaluator = BinaryClassificationEvaluator(labelCol=LABEL, metricName=name)
    return evaluator.setWeightCol(weight) if weight else evaluator


def _regression_evaluator(metric: str, weight: str | None) -> Any:
    from pyspark.ml.evaluation import RegressionEvaluator

    name: Any = metric
    evaluator = RegressionEvaluator(labelCol=LABEL, metricName=name)
    return evaluator.setWeightCol(weight) if weight else evaluator


def regression_metrics(pred_df: DataFrame, weight: str | None = None) -> dict[str, float]:
    """RMSE, MAE and R² on the whole set (weighted by `weight` when given)."""
    return {
        m: float(_regression_evaluator(m, weight).evaluate(pred_df)) for m in ("rmse", "mae", "r2")
    }


def selection_metric(pred_df: DataFrame, metric: str, weight: str | None = None) -> float:
    """The cross-validation metric of one fold's predictions (weighted by `weight` when given)."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    if metric in ("areaUnderPR", "areaUnderROC"):
        return float(_binary_evaluator(metric, weight).evaluate(pred_df))
    if metric in ("f1", "accuracy"):
        name: Any = metric
        evaluator = MulticlassClassificationEvaluator(labelCol=LABEL, metricName=name)
        if weight:
            evaluator = evaluator.setWeightCol(weight)
        return float(evaluator.evaluate(pred_df))
    return float(_regression_evaluator(metric, weight).evaluate(pred_df))
