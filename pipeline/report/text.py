"""The words and number formats every rendering of a training summary shares (HTML, Markdown,
console), so that the page, `summary.md` and the console lines say the same thing the same way.

Plain text, unescaped: each renderer escapes for its own format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pipeline.report.summary import (
    AGREE_ABSOLUTE,
    AGREE_RELATIVE,
    GateOutcome,
    TrainingSummary,
    advantage,
    agreement_tolerance,
    higher_is_better,
    is_count,
)

TOLERANCE_RULE = (
    f"estimates agree when they differ by at most {AGREE_ABSOLUTE:g}, "
    f"or {AGREE_RELATIVE:.0%} of the test value if that is larger"
)

_ROW_LABELS = {
    "train": "training rows",
    "test": "test rows (held out)",
}
_PAIR_LABELS = {
    "train": "training (user, item) pairs",
    "test": "test (user, item) pairs (held out)",
    "test_relevant": "test pairs to find (known users, items not seen in training)",
    "train_users": "users in training",
    "test_users_evaluated": "test users evaluated",
}


def number(value: Any, digits: int = 4) -> str:
    """A metric with `digits` decimals; None as a dash, other values as text."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    return f"{value:.{digits}f}"


def count(value: Any) -> str:
    """A count as a whole number with thousands separators (a fractional one as a metric)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return number(value)
    if isinstance(value, float) and not value.is_integer():
        return number(value)
    return f"{int(value):,}"


def value_text(key: str, value: float) -> str:
    """A value of the test metrics: counts (see `summary.COUNTS`) whole, metrics with decimals."""
    return count(value) if is_count(key) else number(value)


def signed(value: float | None) -> str:
    """A difference with its sign (a real minus sign)."""
    if value is None or not math.isfinite(value):
        return number(value)
    return f"{value:+.4f}".replace("-", "−")


def duration(seconds: float | None) -> str:
    """Seconds as `6.4 s` or `2 min 28.3 s`."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:04.1f} s"


def plain(value: Any) -> str:
    """A parameter value as text: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def param_chips(params: Mapping[str, Any]) -> list[str]:
    """`name=value` for every parameter, in order."""
    return [f"{k}={plain(v)}" for k, v in params.items()]


def direction(metric: str) -> str:
    """`higher is better` or `lower is better`."""
    return "higher is better" if higher_is_better(metric) else "lower is better"


def row_label(summary: TrainingSummary, key: str) -> str:
    """What a row count counts."""
    labels = _PAIR_LABELS if summary.task == "recommendation" else _ROW_LABELS
    if key in labels:
        return labels[key]
    if key.startswith("train_label_"):
        return f"training rows with label {key.removeprefix('train_label_')}"
    return key.replace("_", " ")


def row_share(summary: TrainingSummary, key: str) -> str:
    """A label's share of the training rows (`98.99%`), or empty."""
    train = summary.rows.get("train")
    if not key.startswith("train_label_") or not train:
        return ""
    return f"{summary.rows[key] / train:.2%}"


def gate_badge(gate: GateOutcome | None) -> str:
    """The champion gate's decision in a few words."""
    if gate is None:
        return "not recorded"
    return "promoted to champion" if gate.promoted else "not promoted"


def gate_comparison(gate: GateOutcome) -> str:
    """`challenger 0.7900 vs champion 0.7950` (what is known of it), or empty."""
    compared = [
        f"{label} {number(value)}"
        for label, value in (
            ("challenger", gate.challenger_metric),
            ("champion", gate.champion_metric),
        )
        if value is not None
    ]
    return " vs ".join(compared)


def threshold_note(summary: TrainingSummary) -> str:
    """Where the decision threshold comes from, or why there is none."""
    if summary.threshold is not None:
        return (
            "a score at or above it predicts the positive class. It comes from the out-of-fold "
            "cross-validation scores (or a fixed value in the configuration), never from test rows."
        )
    if summary.task == "recommendation":
        return "None: a recommender ranks items for each user; it has no decision threshold."
    return "None: not a classification model (the model predicts values)."


def lift(model: float, baseline: float) -> str:
    """The model's value as a multiple of the baseline's (`×1.85`), or a dash."""
    if not baseline or not math.isfinite(model / baseline):
        return "—"
    return f"×{model / baseline:.2f}"


def overfitting_notes(summary: TrainingSummary) -> list[str]:
    """What the train / cross-validation / test values of the selection metric say, judged by
    the stated tolerance (`TOLERANCE_RULE`): one note on memorisation (train vs test) and one on
    whether the selection estimate can be trusted (cross-validation vs test)."""
    test = summary.selection_value("test")
    if test is None:
        return []
    tolerance = agreement_tolerance(test)
    within = f"within the tolerance ({number(tolerance)})"
    beyond = f"more than the tolerance ({number(tolerance)})"
    notes = []
    train = summary.selection_value("train")
    if train is not None:
        gap = advantage(summary.metric, train, test)
        note = _compare("Train", gap)
        if abs(gap) <= tolerance:
            note += f" That is {within}: no sign that the model memorised its training rows."
        elif gap > 0:
            note += (
                f" That is {beyond}: the model memorised part of its training rows "
                "(overfitting); stronger regularisation, a smaller model or more rows should "
                "narrow the gap."
            )
        else:
            note += (
                f" That is {beyond}, the unusual way round: the test rows look easier than the "
                "training rows (another period or mix of cases), or are too few to measure well."
            )
        notes.append(note)
    cv = summary.selection_value("cv")
    if cv is not None:
        gap = advantage(summary.metric, cv, test)
        note = _compare("Cross-validation", gap)
        if abs(gap) <= tolerance:
            note += (
                f" That is {within}: cross-validation close to test, so the selection "
                "estimate can be trusted."
            )
        else:
            note += (
                f" The cross-validation estimate is off from test by {number(abs(gap))}, "
                f"{beyond}: the winner was chosen on an estimate that did not hold on the held-out "
                f"rows, so the ranking of the candidates may not hold either. "
                f"{_causes(summary, gap)}"
            )
        notes.append(note)
    return notes


def _compare(label: str, gap: float) -> str:
    word = "better" if gap >= 0 else "worse"
    return f"{label} is {word} than test by {number(abs(gap))}."


def _causes(summary: TrainingSummary, gap: float) -> str:
    causes = []
    if summary.split == "time":
        causes.append(
            "the test rows come from a later period than the folds (a time split), and the data "
            "may have changed since"
        )
    else:
        causes.append("the test rows differ from the training rows (another period or mix)")
    test_rows = summary.rows.get("test")
    rows = f" (this run has {count(test_rows)} test rows)" if test_rows is not None else ""
    causes.append(f"too few rows for either estimate to be precise{rows}")
    if gap > 0:
        causes.append(
            "leakage: information shared across folds (rows of one entity or one day in several "
            "folds, or a feature computed with the label) flatters cross-validation"
        )
    return "Likely causes: " + "; ".join(causes) + "."


def ranking_rows(summary: TrainingSummary) -> list[tuple[str, str, str, str]]:
    """(metric@k, model, most popular, lift) for a recommender against the popularity baseline."""
    r = summary.ranking
    if r is None:
        return []
    return [
        (
            name.replace("_at_k", f"@{r.k}"),
            number(value),
            number(r.baseline[name]),
            lift(value, r.baseline[name]),
        )
        for name, value in r.model.items()
        if name in r.baseline
    ]
