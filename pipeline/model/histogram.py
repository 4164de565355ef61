"""Score histograms: counts of positives and rows per score bin, and what follows from them.

A classifier's predictions on a whole data set are reduced by Spark to 1,001 bins
(`pipeline.model.evaluate.score_histogram`); everything else (ROC and precision-recall curves and
their areas, confusion counts at a threshold, calibration) is computed here from those counts, in
plain Python, so presentation code can use it without Spark.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

BINS = 1000


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
