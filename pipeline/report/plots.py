"""The run's plots as PNG files, drawn from the training summary with matplotlib (each figure on
its own Agg canvas: no pyplot, so no global state and nothing to close).

A classification run gets its ROC and precision-recall curves, confusion matrix and calibration,
all computed from the test set's score histogram (`pipeline.model.histogram`); any run with
feature importances gets a bar chart of the largest ones; a recommendation run gets its ranking
metrics next to the most-popular baseline. Each `*_figure` function returns the figure, laid out
and ready to save, so a test can measure it; `draw_plots` saves them all.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.model.histogram import Histogram
from pipeline.report.summary import TrainingSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
TOP_IMPORTANCES = 20
# A feature name longer than this is shortened in the middle on the chart (the start names the
# source column, the end the category), so the bars keep most of the figure's width.
MAX_LABEL = 44
# Titles wrap at this many characters per inch of the width they are centred on (about what a
# 12 pt title takes), so that a title never runs past the figure's edge.
TITLE_CHARS_PER_INCH = 8
_NEGATIVE, _POSITIVE, _BASELINE = "#c44", "#47a", "#bbb"


def draw_plots(summary: TrainingSummary, out_dir: Path) -> list[Path]:
    """Save every plot the summary has data for into `out_dir` (created); their paths.

    Classification (a test histogram): roc_curve, pr_curve, confusion_matrix, calibration;
    importances (non-empty): feature_importance; recommendation (a ranking comparison):
    ranking_vs_popularity. All `.png`, in that order.
    """
    figures: list[tuple[str, Callable[[], Figure]]] = []
    if summary.test_histogram is not None:
        figures += [
            ("roc_curve", lambda: roc_figure(summary)),
            ("pr_curve", lambda: pr_figure(summary)),
            ("confusion_matrix", lambda: confusion_figure(summary)),
            ("calibration", lambda: calibration_figure(summary)),
        ]
    if summary.importances:
        figures.append(("feature_importance", lambda: importance_figure(summary.importances)))
    if summary.ranking is not None:
        figures.append(("ranking_vs_popularity", lambda: ranking_figure(summary)))
    if not figures:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_save(make(), out_dir / f"{name}.png") for name, make in figures]


def histogram_of(summary: TrainingSummary) -> Histogram:
    """The test set's score histogram (a `ValueError` for a run without one)."""
    if summary.test_histogram is None:
        raise ValueError(f"the {summary.pipeline} run has no test score histogram")
    h = summary.test_histogram
    return Histogram(tuple(float(v) for v in h.positives), tuple(float(v) for v in h.totals))


def roc_figure(summary: TrainingSummary) -> Figure:
    """The ROC curve of the test set against chance."""
    hist = histogram_of(summary)
    roc, _ = hist.curves()
    auc = summary.test.get("areaUnderROC", hist.area("areaUnderROC"))
    fig, ax = _subplots(5, 5)
    ax.plot([x for x, _ in roc], [y for _, y in roc], label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    _title(fig, ax, "ROC curve (test set)")
    ax.legend(loc="lower right")
    return _laid_out(fig)


def pr_figure(summary: TrainingSummary) -> Figure:
    """The precision-recall curve of the test set against the base rate."""
    hist = histogram_of(summary)
    _, pr = hist.curves()
    auc = summary.test.get("areaUnderPR", hist.area("areaUnderPR"))
    base = sum(hist.positives) / max(1.0, sum(hist.totals))
    fig, ax = _subplots(5, 5)
    ax.plot([r for r, _ in pr], [p for _, p in pr], label=f"model (AUC-PR {auc:.3f})")
    ax.axhline(base, linestyle="--", color="grey", label=f"base rate {base:.3%}")
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    _title(fig, ax, "Precision-recall curve (test set)")
    ax.legend(loc="upper right")
    return _laid_out(fig)


def confusion_figure(summary: TrainingSummary) -> Figure:
    """The confusion matrix at the decision threshold (counts at the histogram's resolution)."""
    hist = histogram_of(summary)
    threshold = 0.5 if summary.threshold is None else summary.threshold
    tp, fp, tn, fn = hist.confusion_at(threshold)
    cells = [[tn, fp], [fn, tp]]
    fig, ax = _subplots(4.5, 4)
    ax.imshow(cells, cmap="Blues")
    darkest = max(max(row) for row in cells)
    for i in range(2):
        for j in range(2):
            colour = "white" if cells[i][j] > darkest / 2 else "black"  # readable on dark blue
            ax.text(
                j, i, f"{round(cells[i][j]):,}", ha="center", va="center", fontsize=12, color=colour
            )
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["pred 0", "pred 1"],
        yticklabels=["true 0", "true 1"],
    )
    _title(fig, ax, f"Confusion matrix at threshold {threshold:.3f}")
    return _laid_out(fig)


def calibration_figure(summary: TrainingSummary) -> Figure:
    """Observed positive rate against mean predicted score, per score bucket."""
    calib = histogram_of(summary).calibration()
    fig, ax = _subplots(5, 5)
    ax.plot([m for m, _, _ in calib], [o for _, o, _ in calib], marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(xlabel="mean predicted score", ylabel="observed positive rate")
    _title(fig, ax, "Calibration (test set)")
    ax.legend(loc="upper left")
    return _laid_out(fig)


def importance_figure(importances: dict[str, float], *, top: int = TOP_IMPORTANCES) -> Figure:
    """Bars of the `top` largest importances or coefficients by magnitude (negative in red),
    labelled with the original feature names, the largest at the top."""
    items = sorted(importances.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top][::-1]
    fig, ax = _subplots(8, 0.3 * len(items) + 1.6)
    ax.barh(
        [shorten(k) for k, _ in items],
        [v for _, v in items],
        color=[_NEGATIVE if v < 0 else _POSITIVE for _, v in items],
    )
    ax.axvline(0, color="grey", linewidth=0.8)
    # Titled on the figure, not on the axes: long feature names push the axes to the right, and
    # a title centred on them would run past the figure's right edge.
    title = "Feature importance / coefficient (original feature names)"
    fig.suptitle(_wrap(title, fig.get_figwidth()))
    return _laid_out(fig)


def ranking_figure(summary: TrainingSummary) -> Figure:
    """The recommender's ranking metrics next to the most-popular baseline's, on the same users."""
    ranking = summary.ranking
    if ranking is None:
        raise ValueError(f"the {summary.pipeline} run has no ranking comparison")
    names = [m for m in ranking.model if m in ranking.baseline]
    labels = [n.replace("_at_k", f"@{ranking.k}") for n in names]
    xs = range(len(names))
    fig, ax = _subplots(6.5, 4)
    ax.bar([x - 0.2 for x in xs], [ranking.model[n] for n in names], width=0.4, label="model")
    ax.bar(
        [x + 0.2 for x in xs],
        [ranking.baseline[n] for n in names],
        width=0.4,
        label="most popular",
        color=_BASELINE,
    )
    ax.set_xticks(list(xs), labels)
    _title(fig, ax, f"Ranking on held-out interactions ({ranking.users:,} users)")
    ax.legend()
    return _laid_out(fig)


def shorten(label: str, width: int = MAX_LABEL) -> str:
    """`label`, cut in the middle with an ellipsis when longer than `width` characters."""
    if len(label) <= width:
        return label
    head = (width - 1) // 2
    return f"{label[:head]}…{label[len(label) - (width - 1 - head) :]}"


# --------------------------------------------------------------------------------------------------


def _subplots(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure with one axes, on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _title(fig: Figure, ax: Axes, text: str) -> None:
    """An axes title, wrapped to the axes (the figure less about an inch of axis labels)."""
    ax.set_title(_wrap(text, fig.get_figwidth() - 1))


def _wrap(text: str, inches: float) -> str:
    return "\n".join(textwrap.wrap(text, max(20, int(inches * TITLE_CHARS_PER_INCH))))


def _laid_out(fig: Figure) -> Figure:
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path
