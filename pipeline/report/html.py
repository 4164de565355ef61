"""The training run's report: one self-contained HTML page a person can read and pass around.

`render_html` lays the `TrainingSummary` out with the Jinja2 template `templates/report.html.j2`
(autoescaped: every value from the run is escaped; styles in `templates/report.css`):

* a header with the pipeline, run date, winner, selection metric and the champion gate's decision;
* every candidate and grid point with its metric on every fold, mean, std and difference from the
  winner (the winner highlighted), and an inline SVG of each grid point's fold spread (min-max, each
  fold, the mean) on one shared scale;
* the held-out test metrics, confusion counts and decision threshold, a recommender's comparison
  with the most-popular baseline; the overfitting check (train vs cross-validation vs test);
* the plots (embedded as `data:image/png` URIs), the row counts, and the lineage (input tables with
  their Delta versions, git commit, library versions, step durations).

The page needs nothing from the network: no external CSS, JavaScript, fonts or images, and its
Content-Security-Policy forbids loading any (images only from `data:` URIs, only the page's own
script). That single inline script sets `data-images-loaded` on `<body>` to the number of images
the browser decoded once the page has loaded; it exists so that a test (tests/test_report.py) can
check in headless Chromium that every embedded plot renders. The output depends only on the
summary and the images (no clock, no environment).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pipeline.report import text
from pipeline.report.summary import (
    CONFUSION,
    GridPoint,
    TrainingSummary,
    higher_is_better,
    rank_key,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_PLOT_TITLES = {
    "roc_curve": "ROC curve",
    "pr_curve": "Precision-recall curve",
    "confusion_matrix": "Confusion matrix",
    "calibration": "Calibration",
    "feature_importance": "Feature importance",
    "ranking_vs_popularity": "Ranking metrics vs the most-popular baseline",
}
_UPPER_WORDS = {"roc": "ROC", "pr": "PR", "auc": "AUC", "cv": "CV", "shap": "SHAP"}

_TAG_LABELS = {
    "git_commit": "git commit",
    "spark_version": "Spark",
    "pyspark_version": "PySpark",
    "delta_version": "Delta Lake (delta-spark)",
    "mlflow_version": "MLflow",
    "run_id": "run id",
    "run_date": "run date",
}

_GAP_LABELS = {
    "overfit_gap_train_minus_test": "gap: train − test",
    "overfit_gap_cv_minus_test": "gap: cross-validation − test",
}

# Sets document.body.dataset.imagesLoaded to the number of <img> elements the browser decoded,
# once the page has loaded. Only for the browser test; the CSP below allows this script only.
_IMAGES_LOADED_SCRIPT = (
    'window.addEventListener("load", function () {'
    " var n = 0;"
    " for (var i = 0; i < document.images.length; i++) {"
    " var img = document.images[i];"
    " if (img.complete && img.naturalWidth > 0) { n++; }"
    " }"
    " document.body.dataset.imagesLoaded = String(n);"
    " });"
)

# The fold-spread charts: width, height and inner padding in pixels.
SPREAD = (170, 18, 5)


@dataclass(frozen=True)
class Figure:
    """An embedded plot."""

    title: str
    name: str
    uri: str
    width: int
    height: int

    @property
    def wide(self) -> bool:
        return self.width > 1.3 * self.height


@dataclass(frozen=True)
class Chip:
    """One `name=value` parameter; `varies` when it differs across the candidate's grid."""

    text: str
    varies: bool


@dataclass(frozen=True)
class Spread:
    """A grid point's folds on the table's shared scale (x positions in pixels)."""

    title: str
    bar_x: float | None
    bar_width: float
    dots: list[float]
    mean: float | None


@dataclass(frozen=True)
class CandidateRow:
    """One grid point in the candidates table."""

    rank: int
    name: str
    winner: bool
    halving: str
    position: str
    chips: list[Chip]
    folds: list[str]
    mean: str
    std: str
    vs_winner: str
    spread: Spread


@dataclass(frozen=True)
class Bar:
    """A labelled value with a bar of `percent` of the cell's width."""

    label: str
    note: str
    value: str
    percent: float


def render_html(summary: TrainingSummary, images: Sequence[Path]) -> str:
    """One self-contained HTML page for a training run (see the module docstring).

    `images` are PNG files, embedded in the given order and titled from their file names
    (`plot_title`); a file that is not a PNG is a `ValueError`.
    """
    figures = [_figure(path) for path in images]
    script_hash = base64.b64encode(hashlib.sha256(_IMAGES_LOADED_SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    gate = summary.gate
    winner = summary.winning if summary.candidates else GridPoint("—", "", {}, [])
    lo, hi = _padded_range(_all_folds(summary))
    return _template().render(
        s=summary,
        csp=csp,
        # Trusted, so not escaped: the package's own style sheet and this module's script.
        css=Markup(_static("report.css")),
        script=Markup(_IMAGES_LOADED_SCRIPT),
        direction=text.direction(summary.metric),
        higher=higher_is_better(summary.metric),
        winner=winner,
        winner_chips=[Chip(c, False) for c in text.param_chips(winner.params)],
        cv_mean=text.number(winner.mean),
        cv_std=text.number(winner.std),
        test_value=text.number(summary.selection_value("test")),
        gate=gate,
        gate_badge=text.gate_badge(gate),
        gate_details=_gate_details(summary),
        candidates=_candidate_rows(summary, lo, hi),
        scale_text=f"{text.number(lo)} – {text.number(hi)}",
        spread=SPREAD,
        metrics=[
            (key, text.value_text(key, value), key == summary.metric)
            for key, value in summary.test.items()
            if key not in CONFUSION and key != "threshold"
        ],
        confusion=(
            {k: text.count(summary.test[k]) for k in CONFUSION}
            if all(k in summary.test for k in CONFUSION)
            else None
        ),
        threshold=text.number(summary.threshold),
        threshold_note=text.threshold_note(summary),
        ranking=text.ranking_rows(summary),
        ranking_users=text.count(summary.ranking.users) if summary.ranking else "",
        overfitting=_overfitting_rows(summary),
        gaps=[
            (_GAP_LABELS.get(key, key), key, text.signed(value))
            for key, value in summary.overfitting.items()
            if key not in {f"{stage}_{summary.metric}" for stage in ("train", "cv", "test")}
        ],
        notes=text.overfitting_notes(summary),
        tolerance_rule=text.TOLERANCE_RULE,
        figures=figures,
        rows=[
            (text.row_label(summary, k), text.count(v), text.row_share(summary, k))
            for k, v in summary.rows.items()
        ],
        tags=[(_TAG_LABELS.get(k, k), summary.tags[k]) for k in _ordered_tags(summary.tags)],
        durations=_duration_rows(summary.durations_s),
    )


def plot_title(path: Path) -> str:
    """A plot's title from its file name: `roc_curve.png` -> `ROC curve`."""
    stem = path.stem
    if stem in _PLOT_TITLES:
        return _PLOT_TITLES[stem]
    words = [w for w in stem.replace("-", "_").split("_") if w]
    if not words:
        return path.name
    words = [_UPPER_WORDS.get(w.lower(), w) for w in words]
    first = words[0]
    words[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(words)


# --------------------------------------------------------------------------------------------------
# The template and its static parts
# --------------------------------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _template() -> jinja2.Template:
    return _environment().get_template("report.html.j2")


@functools.cache
def _static(name: str) -> str:
    return resources.files("pipeline.report").joinpath("templates", name).read_text("utf-8")


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def _gate_details(summary: TrainingSummary) -> list[str]:
    gate = summary.gate
    if gate is None:
        return ["the run's summary has no gate decision"]
    details = [gate.reason] if gate.reason else []
    if comparison := text.gate_comparison(gate):
        details.append(comparison)
    if gate.gain_lower_bound is not None:
        details.append(f"gain lower bound {text.signed(gate.gain_lower_bound)}")
    if summary.model_name is not None:
        details.append(f"model {summary.model_name} version {summary.model_version}")
    return details


def _candidate_rows(summary: TrainingSummary, lo: float, hi: float) -> list[CandidateRow]:
    """Every grid point, best first (see `summary.rank_key`), its spread on the scale lo-hi."""
    points = summary.candidates
    if not points:
        return []
    n_folds = max(len(p.folds) for p in points)
    varying = _varying_params(points)
    positions = _grid_positions(points)
    winner_mean = _finite(summary.winning.mean)
    order = sorted(range(len(points)), key=lambda i: rank_key(points[i], summary.metric))
    rows = []
    for rank, i in enumerate(order, start=1):
        point = points[i]
        is_winner = i == summary.winner
        mean = _finite(point.mean)
        delta = (
            "—"
            if is_winner or mean is None or winner_mean is None
            else text.signed(mean - winner_mean)
        )
        rows.append(
            CandidateRow(
                rank=rank,
                name=point.candidate,
                winner=is_winner,
                halving=(
                    f"halving: stopped at {point.fraction:.0%} of the rows"
                    if point.fraction < 1.0
                    else ""
                ),
                position=positions[i],
                chips=[
                    Chip(f"{k}={text.plain(v)}", k in varying.get(point.candidate, set()))
                    for k, v in point.params.items()
                ],
                folds=[text.number(v) for v in point.folds] + [""] * (n_folds - len(point.folds)),
                mean=text.number(point.mean),
                std=text.number(point.std),
                vs_winner=delta,
                spread=_spread(point, lo, hi),
            )
        )
    return rows


def _spread(point: GridPoint, lo: float, hi: float) -> Spread:
    width, _, pad = SPREAD

    def x(v: float) -> float:
        return round(pad + (v - lo) / (hi - lo) * (width - 2 * pad), 1)

    values = [v for v in point.folds if math.isfinite(v)]
    mean = _finite(point.mean)
    mean_x = None if mean is None else x(mean)
    if not values:
        return Spread("no fold values", None, 0.0, [], mean_x)
    title = (
        f"min {text.number(min(values))}, mean {text.number(mean)}, "
        f"max {text.number(max(values))} over {len(values)} folds"
    )
    x0, x1 = x(min(values)), x(max(values))
    return Spread(title, x0, max(1.0, round(x1 - x0, 1)), [x(v) for v in values], mean_x)


def _overfitting_rows(summary: TrainingSummary) -> list[Bar]:
    stages = [
        ("train", "train", "training split (the data the final model was fitted on)"),
        ("cross-validation", "cv", "winner's mean over the folds"),
        ("test", "test", "held out"),
    ]
    shown = [
        (label, summary.selection_value(stage), note)
        for label, stage, note in stages
        if f"{stage}_{summary.metric}" in summary.overfitting
    ]
    scale = max((abs(v) for _, v, _ in shown if v is not None), default=0.0) or 1.0
    return [
        Bar(label, note, text.number(value), _percent(0.0 if value is None else abs(value) / scale))
        for label, value, note in shown
    ]


def _duration_rows(durations: dict[str, float]) -> list[Bar]:
    seconds = {k: _finite(v) for k, v in durations.items()}
    longest = max((v for v in seconds.values() if v is not None), default=0.0) or 1.0
    rows = [
        Bar(k.replace("_", " "), "", text.duration(v), _percent((v or 0.0) / longest))
        for k, v in seconds.items()
    ]
    if rows:
        total = sum(v for v in seconds.values() if v is not None)
        rows.append(Bar("total", "", text.duration(total), 0.0))
    return rows


def _ordered_tags(tags: dict[str, str]) -> list[str]:
    return [k for k in _TAG_LABELS if k in tags] + [k for k in tags if k not in _TAG_LABELS]


# --------------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------------


def _figure(path: Path) -> Figure:
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE) or len(data) < 24:
        raise ValueError(f"{path} is not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return Figure(plot_title(path), path.name, uri, width, height)


def _varying_params(points: list[GridPoint]) -> dict[str, set[str]]:
    """Per candidate, the parameter names whose value differs between its grid points."""
    seen: dict[str, dict[str, set[str]]] = {}
    for point in points:
        values = seen.setdefault(point.candidate, {})
        for k, v in point.params.items():
            values.setdefault(k, set()).add(text.plain(v))
    return {name: {k for k, vs in values.items() if len(vs) > 1} for name, values in seen.items()}


def _grid_positions(points: list[GridPoint]) -> list[str]:
    """`position of size` within its candidate's grid, for every grid point."""
    totals: dict[str, int] = {}
    numbered = []
    for point in points:
        totals[point.candidate] = totals.get(point.candidate, 0) + 1
        numbered.append((totals[point.candidate], point.candidate))
    return [f"{pos} of {totals[name]}" for pos, name in numbered]


def _all_folds(summary: TrainingSummary) -> list[float]:
    return [v for p in summary.candidates for v in p.folds if math.isfinite(v)]


def _padded_range(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.01, 0.001)
    return lo - pad, hi + pad


def _percent(fraction: float) -> float:
    return round(max(0.0, min(1.0, fraction)) * 100, 1)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
