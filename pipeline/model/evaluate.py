"""Evaluation: metrics computed by Spark on whole data sets, small summaries, and plots.

The only actions here are summary steps that bring back a few hundred numbers (a score histogram,
a confusion matrix); predictions are never collected to the driver.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.features.transforms import LABEL

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

BINS = 1000
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


@dataclass(frozen=True)
class Histogram:
    """Counts of positives and rows per score bin (bin i covers [i/BINS, (i+1)/BINS))."""

    positives: tuple[float, ...]
    totals: tuple[float, ...]

    @staticmethod
    def empty() -> Histogram:
        return Histogram(tuple([0.0] * (BINS + 1)), tuple([0.0] * (BINS + 1)))

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(
            tuple(a + b for a, b in zip(self.positives, other.positives, strict=True)),
            tuple(a + b for a, b in zip(self.totals, other.totals, strict=True)),
        )

    def confusion_at(self, threshold: float) -> tuple[float, float, float, float]:
        """(tp, fp, tn, fn) when predicting positive for score >= threshold (bin resolution)."""
        cut = min(BINS, max(0, math.ceil(threshold * BINS)))
        tp = sum(self.positives[cut:])
        pred_pos = sum(self.totals[cut:])
        pos = sum(self.positives)
        neg = sum(self.totals) - pos
        fp = pred_pos - tp
        return tp, fp, neg - fp, pos - tp

    def curves(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """ROC points (fpr, tpr) and precision-recall points (recall, precision), high score first."""
        pos = sum(self.positives)
        neg = sum(self.totals) - pos
        roc, pr = [(0.0, 0.0)], []
        tp = fp = 0.0
        for i in range(BINS, -1, -1):
            tp += self.positives[i]
            fp += self.totals[i] - self.positives[i]
            if self.totals[i] == 0:
                continue
            roc.append((fp / neg if neg else 0.0, tp / pos if pos else 0.0))
            pr.append((tp / pos if pos else 0.0, tp / (tp + fp) if tp + fp else 1.0))
        return roc, pr

    def area(self, metric: str) -> float:
        """Area under the ROC ("areaUnderROC") or precision-recall curve, by trapezoids."""
        roc, pr = self.curves()
        if metric == "areaUnderROC":
            points = [*roc, (1.0, 1.0)]
        else:
            # MLlib's convention: the curve starts at recall 0 with the first precision.
            points = [(0.0, pr[0][1]), *pr] if pr else [(0.0, 1.0)]
        return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(points))

    def calibration(self, buckets: int = 10) -> list[tuple[float, float, float]]:
        """(mean predicted score, observed positive rate, rows) per score bucket."""
        out = []
        step = (BINS + 1) / buckets
        for b in range(buckets):
            lo, hi = int(b * step), int((b + 1) * step)
            n = sum(self.totals[lo:hi])
            if n == 0:
                continue
            mean_score = sum(((i + 0.5) / BINS) * self.totals[i] for i in range(lo, hi)) / n
            out.append((mean_score, sum(self.positives[lo:hi]) / n, n))
        return out


def score_histogram(pred_df: DataFrame) -> Histogram:
    """Summary step: the score histogram of predictions (one small aggregation)."""
    from pyspark.sql import functions as F

    rows = (
        pred_df.select(
            F.least(F.floor(score_column(pred_df) * BINS), F.lit(BINS)).cast("int").alias("b"),
            F.col(LABEL),
        )
        .groupBy("b")
        .agg(F.sum(LABEL).alias("pos"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    pos, tot = [0.0] * (BINS + 1), [0.0] * (BINS + 1)
    for r in rows:
        pos[r["b"]], tot[r["b"]] = float(r["pos"]), float(r["n"])
    return Histogram(tuple(pos), tuple(tot))


def choose_threshold(
    hist: Histogram, rule: str, *, min_precision: float = 0.5, fixed: float = 0.5
) -> float:
    """The decision threshold from (cross-validation) score counts: max F1, or the lowest
    threshold whose precision reaches `min_precision` (the most recall at that precision)."""
    if rule == "fixed":
        return fixed
    best_t, best_value = 0.5, -1.0
    for i in range(BINS, -1, -1):
        t = i / BINS
        tp, fp, _, fn = hist.confusion_at(t)
        if tp == 0:
            continue
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        if rule == "max_f1":
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_value:
                best_t, best_value = t, f1
        elif precision >= min_precision and recall > best_value:
            best_t, best_value = t, recall
    return best_t


def binary_metrics(pred_df: DataFrame, threshold: float) -> tuple[dict[str, float], Histogram]:
    """Test metrics of a binary classifier on the whole set, and its score histogram."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F

    roc = BinaryClassificationEvaluator(labelCol=LABEL, metricName="areaUnderROC").evaluate(pred_df)
    pr = BinaryClassificationEvaluator(labelCol=LABEL, metricName="areaUnderPR").evaluate(pred_df)
    p = F.least(F.greatest(score_column(pred_df), F.lit(1e-15)), F.lit(1 - 1e-15))
    predicted = (score_column(pred_df) >= F.lit(threshold)).cast("double")
    y = F.col(LABEL)
    agg = pred_df.select(
        F.sum(predicted * y).alias("tp"),
        F.sum(predicted * (1 - y)).alias("fp"),
        F.sum((1 - predicted) * (1 - y)).alias("tn"),
        F.sum((1 - predicted) * y).alias("fn"),
        F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("log_loss"),
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
    return metrics, score_histogram(pred_df)


def regression_metrics(pred_df: DataFrame) -> dict[str, float]:
    """RMSE, MAE and R² on the whole set."""
    from pyspark.ml.evaluation import RegressionEvaluator

    return {
        m: RegressionEvaluator(labelCol=LABEL, metricName=m).evaluate(pred_df)
        for m in ("rmse", "mae", "r2")
    }


def selection_metric(pred_df: DataFrame, metric: str) -> float:
    """The cross-validation metric of one fold's predictions."""
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator,
        MulticlassClassificationEvaluator,
        RegressionEvaluator,
    )

    name: Any = metric  # validated by the configuration's Literal; the stubs want their own
    if metric in ("areaUnderPR", "areaUnderROC"):
        return float(
            BinaryClassificationEvaluator(labelCol=LABEL, metricName=name).evaluate(pred_df)
        )
    if metric in ("f1", "accuracy"):
        evaluator = MulticlassClassificationEvaluator(labelCol=LABEL, metricName=name)
        return float(evaluator.evaluate(pred_df))
    return float(RegressionEvaluator(labelCol=LABEL, metricName=name).evaluate(pred_df))


# --------------------------------------------------------------------------------------------------
# Plots (PNG files a person can read)
# --------------------------------------------------------------------------------------------------


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_binary(hist: Histogram, metrics: dict[str, float], out_dir: Path) -> list[Path]:
    """ROC, precision-recall, confusion matrix and calibration plots of a test set."""
    plt = _figure()
    out_dir.mkdir(parents=True, exist_ok=True)
    roc, pr = hist.curves()
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(
        [x for x, _ in roc], [y for _, y in roc], label=f"model (AUC {metrics['areaUnderROC']:.3f})"
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test set)")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out_dir / "roc_curve.png"))

    base = sum(hist.positives) / max(1.0, sum(hist.totals))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(
        [r for r, _ in pr], [p for _, p in pr], label=f"model (AUC-PR {metrics['areaUnderPR']:.3f})"
    )
    ax.axhline(base, linestyle="--", color="grey", label=f"base rate {base:.3%}")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall curve (test set)",
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper right")
    paths.append(_save(fig, out_dir / "pr_curve.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4))
    cells = [[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]]
    ax.imshow(cells, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(cells[i][j]):,}", ha="center", va="center", fontsize=12)
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["pred 0", "pred 1"],
        yticklabels=["true 0", "true 1"],
        title=f"Confusion matrix at threshold {metrics['threshold']:.3f}",
    )
    paths.append(_save(fig, out_dir / "confusion_matrix.png"))

    calib = hist.calibration()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([m for m, _, _ in calib], [o for _, o, _ in calib], marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(
        xlabel="mean predicted score",
        ylabel="observed positive rate",
        title="Calibration (test set)",
    )
    ax.legend(loc="upper left")
    paths.append(_save(fig, out_dir / "calibration.png"))
    return paths


def plot_importances(importances: dict[str, float], out_dir: Path, *, top: int = 20) -> Path | None:
    """A bar chart of the largest feature importances or coefficients (by magnitude)."""
    if not importances:
        return None
    plt = _figure()
    items = sorted(importances.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(items) + 1.5))
    ax.barh(
        [k for k, _ in items],
        [v for _, v in items],
        color=["#c44" if v < 0 else "#47a" for _, v in items],
    )
    ax.set(title="Feature importance / coefficient (original feature names)")
    return _save(fig, out_dir / "feature_importance.png")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
