"""The training run's report: one self-contained HTML page a person can read and pass around.

`render_report` turns the run's `summary` (what `summary.json` holds, plus an optional
`gate: {"promoted": bool, "reason": str}`), its `lineage` (what `lineage.json` holds: tags, inputs,
rows, durations_s) and its PNG plots into a single page:

* a header with the pipeline, run date, winner, selection metric and the champion gate's decision;
* every candidate and grid point with its metric on every fold, mean, std and difference from the
  winner (the winner highlighted), and an inline SVG of each grid point's fold spread (min-max, each
  fold, the mean) on one shared scale;
* the held-out test metrics, confusion counts and decision threshold; the overfitting check (train
  vs cross-validation vs test);
* the plots (embedded as `data:image/png` URIs), the row counts, and the lineage (input tables with
  their Delta versions, git commit, library versions, step durations).

The page needs nothing from the network: no external CSS, JavaScript, fonts or images, and its
Content-Security-Policy forbids loading any (images only from `data:` URIs, only the page's own
script). That single inline script sets `data-images-loaded` on `<body>` to the number of images
the browser decoded once the page has loaded; it exists so that a test (tests/test_report.py) can
check in headless Chromium that every embedded plot renders. Every value from the run is escaped.

This module is pure and uses the standard library only (no Spark, MLflow or plotting imports).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Selection metrics where a smaller value is better (mirrors evaluate.HIGHER_IS_BETTER, which
# cannot be imported here without importing pyspark; a test keeps the two in step).
LOWER_IS_BETTER = frozenset({"rmse", "mae"})

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Counts in the test metrics (shown as a confusion matrix, not as metrics).
_CONFUSION = ("tp", "fp", "tn", "fn")

_PLOT_TITLES = {
    "roc_curve": "ROC curve",
    "pr_curve": "Precision-recall curve",
    "confusion_matrix": "Confusion matrix",
    "calibration": "Calibration",
    "feature_importance": "Feature importance",
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

_ROW_LABELS = {
    "train": "training rows",
    "test": "test rows (held out)",
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

_CSS = """
:root {
  --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da;
  --win: #fff8c5; --win-line: #d4a72c; --good: #1a7f37; --good-bg: #dafbe1; --warn: #bc4c00;
  --warn-bg: #fff1e5;
}
* { box-sizing: border-box; }
body {
  margin: 0; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial,
    sans-serif;
}
main { max-width: 1160px; margin: 0 auto; padding: 20px 20px 40px; }
h1 { font-size: 24px; margin: 0; }
h2 { font-size: 17px; margin: 0 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 6px; }
section { margin-top: 26px; }
p { margin: 6px 0; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
nav { margin-top: 6px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 12px;
  margin: 14px 0 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; background: var(--soft); }
.card .label { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
.card .value { font-size: 19px; font-weight: 600; }
.card .detail { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 13px;
  font-weight: 600; border: 1px solid; }
.badge.promoted { color: var(--good); background: var(--good-bg); }
.badge.not-promoted { color: var(--warn); background: var(--warn-bg); }
.badge.unknown { color: var(--muted); background: #fff; }
.badge.win { color: #7d4e00; background: var(--win); border-color: var(--win-line); font-size: 11px;
  padding: 0 6px; margin-left: 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: middle; }
th { font-size: 12px; color: var(--muted); font-weight: 600; background: var(--soft); }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.winner td { background: var(--win); }
td.name { white-space: nowrap; }
tr.winner td:first-child { box-shadow: inset 4px 0 0 var(--win-line); }
tr.key td { font-weight: 600; }
code { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px;
  background: var(--soft); padding: 0 4px; border-radius: 4px; overflow-wrap: anywhere; }
tr.winner code { background: rgba(255, 255, 255, .6); }
code.grid { font-weight: 700; }
.params code { display: inline-block; margin: 1px 2px 1px 0; }
svg.spread { display: block; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; }
.cols > section { margin-top: 26px; }
.bar { height: 10px; background: var(--accent); border-radius: 2px; min-width: 1px; }
.bar.win { background: var(--win-line); }
td.barcell { width: 45%; }
.confusion { width: auto; margin-top: 4px; }
.confusion td.num { min-width: 90px; font-size: 15px; }
.note { border-left: 3px solid var(--line); padding: 2px 10px; color: var(--muted); }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-weight: 600; margin-bottom: 4px; }
figcaption .small { font-weight: 400; }
footer { margin-top: 32px; font-size: 12px; color: var(--muted); }
@media (max-width: 820px) { .cols { grid-template-columns: 1fr; } }
@media print { figure, table { break-inside: avoid; } nav { display: none; } }
"""


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is better (unknown metrics: assumed so)."""
    return metric not in LOWER_IS_BETTER


def render_report(summary: dict[str, Any], lineage: dict[str, Any], images: Sequence[Path]) -> str:
    """One self-contained HTML page for a training run (see the module docstring).

    `summary` has the keys of the runner's `summary.json` (pipeline, run_date, metric, winner,
    candidates, test, overfitting, threshold, rows) and optionally `gate`; `lineage` is the
    runner's lineage dict (tags, inputs, rows, durations_s); `images` are PNG files, embedded in
    the given order and titled from their file names. Raises `ValueError` for a file that is not
    a PNG. The output depends only on the arguments (no clock, no environment).
    """
    metric = str(summary.get("metric", "metric"))
    candidates: list[dict[str, Any]] = list(summary.get("candidates") or [])
    winner: dict[str, Any] = dict(summary.get("winner") or {})
    winner_index = _winner_index(candidates, winner)
    figures = [_figure(path) for path in images]
    script_hash = base64.b64encode(hashlib.sha256(_IMAGES_LOADED_SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    pipeline_name = str(summary.get("pipeline", "?"))
    run_date = str(summary.get("run_date", "?"))
    body = [
        _header(summary, winner, metric),
        _candidates_section(candidates, winner_index, metric, winner),
        '<div class="cols">',
        _test_section(summary, metric),
        _overfitting_section(summary, metric),
        "</div>",
        _plots_section(figures),
        '<div class="cols">',
        _rows_section(summary, lineage),
        _lineage_section(lineage),
        "</div>",
        _extra_section(summary),
        "<footer>Generated by mlpipe (<code>pipeline.model.report</code>) from the run's summary "
        "and lineage. Self-contained: every plot is embedded; nothing is loaded from elsewhere."
        "</footer>",
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
            f"<title>Training report: {_e(pipeline_name)} {_e(run_date)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            f'<body data-images-expected="{len(figures)}">',
            "<main>",
            *[part for part in body if part],
            "</main>",
            f"<script>{_IMAGES_LOADED_SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_report(path: Path, html: str) -> Path:
    """Write the page (UTF-8), creating the parent folder; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def _header(summary: Mapping[str, Any], winner: Mapping[str, Any], metric: str) -> str:
    folds = len(winner.get("cv_folds") or [])
    direction = "higher is better" if higher_is_better(metric) else "lower is better"
    test = summary.get("test") or {}
    test_value = test.get(metric, (summary.get("overfitting") or {}).get(f"test_{metric}"))
    cards = [
        _card(
            "winner",
            _e(winner.get("candidate", "?")),
            _params_html(winner.get("params") or {}),
        ),
        _card(
            f"cross-validation {metric}",
            f'{_num(winner.get("cv_mean"))} <span class="small muted">± '
            f"{_num(winner.get('cv_std'))}</span>",
            f"mean ± std over {folds} folds ({direction})",
        ),
        _card(
            f"test {metric}",
            _num(test_value),
            "held out from every training and tuning step",
        ),
        _gate_card(summary.get("gate")),
    ]
    return "\n".join(
        [
            "<header>",
            f"<h1>Training report: {_e(summary.get('pipeline', '?'))}</h1>",
            f'<p class="muted">Run date <strong>{_e(summary.get("run_date", "?"))}</strong>'
            f" · selection metric <strong>{_e(metric)}</strong> ({direction})"
            + (f" · {folds}-fold cross-validation" if folds else "")
            + "</p>",
            '<div class="cards">',
            *cards,
            "</div>",
            '<nav><a href="#candidates">Candidates</a><a href="#test">Test set</a>'
            '<a href="#overfitting">Overfitting</a><a href="#plots">Plots</a>'
            '<a href="#rows">Rows</a><a href="#lineage">Lineage</a></nav>',
            "</header>",
        ]
    )


def _card(label: str, value_html: str, detail_html: str) -> str:
    return (
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value">{value_html}</div><div class="detail">{detail_html}</div></div>'
    )


def _gate_card(gate: Any) -> str:
    if dataclasses.is_dataclass(gate) and not isinstance(gate, type):
        gate = dataclasses.asdict(gate)  # a GateDecision passed as it is
    if not isinstance(gate, Mapping):
        return _card(
            "champion gate",
            '<span class="badge unknown" id="gate">not recorded</span>',
            "the run's summary has no gate decision",
        )
    promoted = bool(gate.get("promoted"))
    badge = (
        '<span class="badge promoted" id="gate" data-promoted="true">promoted to champion</span>'
        if promoted
        else '<span class="badge not-promoted" id="gate" data-promoted="false">not promoted</span>'
    )
    detail = _e(gate.get("reason", ""))
    compared = [
        f"{label} {_num(gate[key])}"
        for key, label in (
            ("challenger_metric", "challenger"),
            ("champion_metric", "champion"),
        )
        if gate.get(key) is not None
    ]
    if compared:
        detail += f"<br>{' vs '.join(compared)}"
    return _card("champion gate", badge, detail)


def _candidates_section(
    candidates: list[dict[str, Any]],
    winner_index: int | None,
    metric: str,
    winner: Mapping[str, Any],
) -> str:
    if not candidates:
        return (
            '<section id="candidates"><h2>Candidates</h2><p>No candidates recorded.</p></section>'
        )
    n_folds = max(len(c.get("folds") or []) for c in candidates)
    values = [_float(v) for c in candidates for v in (c.get("folds") or [])]
    finite = [v for v in values if v is not None]
    lo, hi = _padded_range(finite)
    grid_keys = _varying_params(candidates)
    positions = _grid_positions(candidates)

    def fraction(i: int) -> float:
        return _fraction(candidates[i])

    order = sorted(range(len(candidates)), key=lambda i: candidate_rank(candidates[i], metric))
    winner_mean = _float(winner.get("cv_mean"))
    head = [
        '<th class="num">rank</th><th>candidate</th><th>grid point</th><th>parameters</th>',
        *[f'<th class="num">fold {k + 1}</th>' for k in range(n_folds)],
        '<th class="num">mean</th><th class="num">std</th><th class="num">vs winner</th>',
        f'<th>fold spread <span class="small">({_num(lo)} – {_num(hi)})</span></th>',
    ]
    rows = []
    for rank, i in enumerate(order, start=1):
        c = candidates[i]
        name = str(c.get("candidate", "?"))
        folds = list(c.get("folds") or [])
        is_winner = i == winner_index
        mean = _float(c.get("mean"))
        delta = (
            "—" if is_winner or mean is None or winner_mean is None else _signed(mean - winner_mean)
        )
        pos, total = positions[i]
        cells = [
            f'<td class="num">{rank}</td>',
            f'<td class="name"><strong>{_e(name)}</strong>'
            + (' <span class="badge win">winner</span>' if is_winner else "")
            + (
                f' <span class="badge">halving: stopped at {fraction(i):.0%} of the rows</span>'
                if fraction(i) < 1.0
                else ""
            )
            + "</td>",
            f'<td class="num">{pos} of {total}</td>',
            f'<td class="params">{_params_html(c.get("params") or {}, grid_keys.get(name, set()))}</td>',
            *[
                f'<td class="num fold">{_num(folds[k]) if k < len(folds) else ""}</td>'
                for k in range(n_folds)
            ],
            f'<td class="num"><strong>{_num(c.get("mean"))}</strong></td>',
            f'<td class="num">{_num(c.get("std"))}</td>',
            f'<td class="num">{delta}</td>',
            f"<td>{_spread_svg(folds, mean, lo, hi, winner=is_winner)}</td>",
        ]
        attrs = ' class="winner" data-winner="true"' if is_winner else ""
        rows.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    direction = "best first" if higher_is_better(metric) else "best (lowest) first"
    return "\n".join(
        [
            '<section id="candidates">',
            f"<h2>Candidates and grid points: {_e(metric)} on every fold</h2>",
            f'<p class="muted small">{len(candidates)} grid points, {direction}. Parameters in '
            "bold vary across the candidate's grid. Spread: the bar spans the lowest to the highest "
            "fold, dots are the folds, the dark tick is the mean; all rows share one scale.</p>",
            f'<table class="candidates"><thead><tr>{"".join(head)}</tr></thead>',
            f"<tbody>{''.join(rows)}</tbody></table>",
            "</section>",
        ]
    )


def _test_section(summary: Mapping[str, Any], metric: str) -> str:
    test: Mapping[str, Any] = summary.get("test") or {}
    rows = []
    for key, value in test.items():
        if key in _CONFUSION or key == "threshold":
            continue
        cls = ' class="key"' if key == metric else ""
        rows.append(f'<tr{cls}><td>{_e(key)}</td><td class="num">{_num(value)}</td></tr>')
    parts = [
        '<section id="test">',
        "<h2>Held-out test set</h2>",
        '<p class="muted small">Rows held out from every training and tuning step; the '
        "selection metric is in bold.</p>",
        f'<table class="metrics"><thead><tr><th>metric</th><th class="num">value</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>",
    ]
    if all(k in test for k in _CONFUSION):
        parts += [
            "<h3>Confusion counts at the decision threshold</h3>",
            '<table class="confusion"><thead><tr><th></th><th class="num">predicted 0</th>'
            '<th class="num">predicted 1</th></tr></thead><tbody>'
            f'<tr><th>actual 0</th><td class="num">{_count(test["tn"])} <span class="small muted">'
            f'TN</span></td><td class="num">{_count(test["fp"])} <span class="small muted">FP'
            "</span></td></tr>"
            f'<tr><th>actual 1</th><td class="num">{_count(test["fn"])} <span class="small muted">'
            f'FN</span></td><td class="num">{_count(test["tp"])} <span class="small muted">TP'
            "</span></td></tr></tbody></table>",
        ]
    threshold = summary.get("threshold", test.get("threshold"))
    parts.append('<h3 id="threshold">Decision threshold</h3>')
    if threshold is None:
        parts.append("<p>None: not a classification model (the model predicts values).</p>")
    else:
        parts.append(
            f'<p><strong class="threshold">{_num(threshold)}</strong>: a score at or above it '
            "predicts the positive class. It comes from the out-of-fold cross-validation scores "
            "(or a fixed value in the configuration), never from test rows.</p>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _overfitting_section(summary: Mapping[str, Any], metric: str) -> str:
    gap: Mapping[str, Any] = summary.get("overfitting") or {}
    if not gap:
        return ""
    stages = [
        ("train", f"train_{metric}", "training split (the data the final model was fitted on)"),
        ("cross-validation", f"cv_{metric}", "winner's mean over the folds"),
        ("test", f"test_{metric}", "held out"),
    ]
    shown = [(label, _float(gap.get(key)), note) for label, key, note in stages if key in gap]
    scale = max((abs(v) for _, v, _ in shown if v is not None), default=0.0) or 1.0
    rows = [
        f'<tr><td>{_e(label)} <span class="small muted">{_e(note)}</span></td>'
        f'<td class="num">{_num(value)}</td><td class="barcell">'
        f"{_bar(0.0 if value is None else abs(value) / scale)}</td></tr>"
        for label, value, note in shown
    ]
    used = {key for _, key, _ in stages}
    for key, value in gap.items():
        if key not in used:
            label = _GAP_LABELS.get(key, key)
            rows.append(
                f'<tr><td>{_e(label)} <span class="small muted">{_e(key)}</span></td>'
                f'<td class="num">{_signed_any(value)}</td><td></td></tr>'
            )
    sentences = []
    test_value = _float(gap.get(f"test_{metric}"))
    for label, key in (("Train", f"train_{metric}"), ("Cross-validation", f"cv_{metric}")):
        value = _float(gap.get(key))
        if value is None or test_value is None:
            continue
        diff = value - test_value if higher_is_better(metric) else test_value - value
        word = "better" if diff >= 0 else "worse"
        sentences.append(f"{label} is {word} than test by {_fmt(abs(diff))}.")
    return "\n".join(
        [
            '<section id="overfitting">',
            f"<h2>Overfitting check: {_e(metric)}</h2>",
            '<table class="overfitting"><thead><tr><th>where</th><th class="num">value</th>'
            f"<th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>",
            f'<p class="note">{_e(" ".join(sentences))} A train score far better than test means the '
            "model memorised its training rows; cross-validation close to test means the "
            "selection estimate can be trusted.</p>"
            if sentences
            else "",
            "</section>",
        ]
    )


def _plots_section(figures: list[str]) -> str:
    if not figures:
        return '<section id="plots"><h2>Plots</h2><p>No plots for this run.</p></section>'
    return "\n".join(
        [
            '<section id="plots">',
            "<h2>Plots (test set)</h2>",
            '<div class="figures">',
            *figures,
            "</div>",
            "</section>",
        ]
    )


def _rows_section(summary: Mapping[str, Any], lineage: Mapping[str, Any]) -> str:
    rows: Mapping[str, Any] = summary.get("rows") or lineage.get("rows") or {}
    out = []
    train = _float(rows.get("train"))
    for key, value in rows.items():
        label = _ROW_LABELS.get(key)
        share = ""
        if label is None and key.startswith("train_label_"):
            label = f"training rows with label {key.removeprefix('train_label_')}"
            v = _float(value)
            if v is not None and train:
                share = f"{v / train:.2%}"
        out.append(
            f'<tr><td>{_e(label or key)}</td><td class="num">{_count(value)}</td>'
            f'<td class="num muted">{_e(share)}</td></tr>'
        )
    return "\n".join(
        [
            '<section id="rows">',
            "<h2>Rows</h2>",
            '<table class="rows"><thead><tr><th></th><th class="num">rows</th>'
            '<th class="num">share of training</th></tr></thead>'
            f"<tbody>{''.join(out)}</tbody></table>",
            "</section>",
        ]
    )


def _lineage_section(lineage: Mapping[str, Any]) -> str:
    inputs: Mapping[str, Any] = lineage.get("inputs") or {}
    tags: Mapping[str, Any] = lineage.get("tags") or {}
    durations: Mapping[str, Any] = lineage.get("durations_s") or {}
    input_rows = []
    for name, info in inputs.items():
        info = info if isinstance(info, Mapping) else {"path": info}
        version = info.get("version")
        input_rows.append(
            f"<tr><td>{_e(name)}</td><td><code>{_e(info.get('path', ''))}</code></td>"
            f'<td class="num">{"—" if version is None else _e(version)}</td></tr>'
        )
    ordered = [k for k in _TAG_LABELS if k in tags] + [k for k in tags if k not in _TAG_LABELS]
    tag_rows = [
        f"<tr><td>{_e(_TAG_LABELS.get(k, k))}</td><td><code>{_e(tags[k])}</code></td></tr>"
        for k in ordered
    ]
    seconds = {k: _float(v) for k, v in durations.items()}
    longest = max((v for v in seconds.values() if v is not None), default=0.0) or 1.0
    duration_rows = [
        f'<tr><td>{_e(k.replace("_", " "))}</td><td class="num">{_duration(v)}</td>'
        f'<td class="barcell">{_bar(0.0 if v is None else v / longest)}</td></tr>'
        for k, v in seconds.items()
    ]
    total = sum(v for v in seconds.values() if v is not None)
    if duration_rows:
        duration_rows.append(
            f'<tr class="key"><td>total</td><td class="num">{_duration(total)}</td><td></td></tr>'
        )
    parts = ['<section id="lineage">', "<h2>Lineage</h2>"]
    if input_rows:
        parts.append(
            '<h3>Input tables</h3><table class="inputs"><thead><tr><th>table</th><th>path</th>'
            f'<th class="num">Delta version</th></tr></thead><tbody>{"".join(input_rows)}'
            "</tbody></table>"
        )
    if tag_rows:
        parts.append(
            f'<h3>Code and libraries</h3><table class="tags"><tbody>{"".join(tag_rows)}'
            "</tbody></table>"
        )
    if duration_rows:
        parts.append(
            '<h3>Durations per step</h3><table class="durations"><thead><tr><th>step</th>'
            f'<th class="num">time</th><th></th></tr></thead><tbody>{"".join(duration_rows)}'
            "</tbody></table>"
        )
    if len(parts) == 2:
        parts.append("<p>No lineage recorded.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _extra_section(summary: Mapping[str, Any]) -> str:
    """Summary fields this page does not lay out otherwise, so none is silently dropped."""
    known = {
        "pipeline",
        "run_date",
        "metric",
        "winner",
        "candidates",
        "test",
        "overfitting",
        "threshold",
        "rows",
        "gate",
    }
    extra = [(k, v) for k, v in summary.items() if k not in known]
    if not extra:
        return ""
    rows = [f"<tr><td>{_e(k)}</td><td><code>{_e(_plain(v))}</code></td></tr>" for k, v in extra]
    return (
        '<section id="more"><h2>More from the summary</h2><table class="more"><tbody>'
        f"{''.join(rows)}</tbody></table></section>"
    )


# --------------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------------


def _figure(path: Path) -> str:
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE) or len(data) < 24:
        raise ValueError(f"{path} is not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    title = plot_title(path)
    wide = ' class="wide"' if width > 1.3 * height else ""
    return (
        f"<figure{wide}><figcaption>{_e(title)} "
        f'<span class="small muted">{_e(path.name)}</span></figcaption>'
        f'<img src="{uri}" width="{width}" height="{height}" alt="{_e(title)}"></figure>'
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


def _spread_svg(
    folds: Sequence[Any], mean: float | None, lo: float, hi: float, *, winner: bool
) -> str:
    width, height, pad = 170, 18, 5
    values = [v for v in (_float(f) for f in folds) if v is not None]

    def x(v: float) -> float:
        return round(pad + (v - lo) / (hi - lo) * (width - 2 * pad), 1)

    colour = "#9a6700" if winner else "#0969da"
    parts = [
        f'<svg class="spread" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img">',
        f"<title>{_e(_spread_text(values, mean))}</title>",
        f'<line x1="{pad}" y1="9" x2="{width - pad}" y2="9" stroke="#d1d9e0" stroke-width="1"/>',
    ]
    if values:
        x0, x1 = x(min(values)), x(max(values))
        parts.append(
            f'<rect x="{x0}" y="5" width="{max(1.0, round(x1 - x0, 1))}" height="8" rx="2" '
            f'fill="{colour}" fill-opacity="0.4"/>'
        )
        parts += [f'<circle cx="{x(v)}" cy="9" r="2.2" fill="{colour}"/>' for v in values]
    if mean is not None and math.isfinite(mean):
        xm = x(mean)
        parts.append(
            f'<line class="mean" x1="{xm}" y1="2" x2="{xm}" y2="16" stroke="#1f2328" '
            'stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _spread_text(values: list[float], mean: float | None) -> str:
    if not values:
        return "no fold values"
    return (
        f"min {_fmt(min(values))}, mean {_fmt(mean)}, max {_fmt(max(values))} "
        f"over {len(values)} folds"
    )


def _bar(fraction: float) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return f'<div class="bar" style="width: {pct:.1f}%"></div>'


def _params_html(params: Mapping[str, Any], bold: Iterable[str] = ()) -> str:
    if not params:
        return '<span class="muted">defaults</span>'
    strong = set(bold)
    return " ".join(
        ('<code class="grid">' if k in strong else "<code>") + f"{_e(k)}={_e(_plain(v))}</code>"
        for k, v in params.items()
    )


def _winner_index(candidates: list[dict[str, Any]], winner: Mapping[str, Any]) -> int | None:
    """The position of the winning grid point in `candidates` (name and params; folds on ties)."""
    matches = [
        i
        for i, c in enumerate(candidates)
        if c.get("candidate") == winner.get("candidate")
        and (c.get("params") or {}) == (winner.get("params") or {})
    ]
    if len(matches) > 1:
        by_folds = [i for i in matches if candidates[i].get("folds") == winner.get("cv_folds")]
        matches = by_folds or matches
    return matches[0] if matches else None


def _varying_params(candidates: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per candidate, the parameter names whose value differs between its grid points."""
    seen: dict[str, dict[str, set[str]]] = {}
    for c in candidates:
        values = seen.setdefault(str(c.get("candidate", "?")), {})
        for k, v in (c.get("params") or {}).items():
            values.setdefault(k, set()).add(_plain(v))
    return {name: {k for k, vs in values.items() if len(vs) > 1} for name, values in seen.items()}


def _grid_positions(candidates: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(1-based position within its candidate's grid, grid size) for every row."""
    totals: dict[str, int] = {}
    out = []
    for c in candidates:
        name = str(c.get("candidate", "?"))
        totals[name] = totals.get(name, 0) + 1
        out.append((totals[name], name))
    return [(pos, totals[name]) for pos, name in out]


def _fraction(candidate: Mapping[str, Any]) -> float:
    """The share of the training rows the candidate was last evaluated on (1 without halving)."""
    return _float(candidate.get("fraction")) or 1.0


def candidate_rank(candidate: Mapping[str, Any], metric: str) -> tuple[float, float]:
    """Sort key of a summary's candidate: points evaluated on all rows first (successive halving
    stops the others on a sample), then the best mean CV metric; a missing mean sorts last."""
    return -_fraction(candidate), _sort_key(_float(candidate.get("mean")), metric)


def _sort_key(mean: float | None, metric: str) -> float:
    if mean is None or math.isnan(mean):
        return math.inf
    return -mean if higher_is_better(metric) else mean


def _padded_range(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.01, 0.001)
    return lo - pad, hi + pad


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _fmt(value: Any, digits: int = 4) -> str:
    """A number with `digits` decimals (plain text, unescaped); other values as text."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    return f"{value:.{digits}f}"


def _num(value: Any, digits: int = 4) -> str:
    """A metric for HTML (escaped)."""
    return _e(_fmt(value, digits))


def _signed(value: float) -> str:
    return _e(f"{value:+.4f}".replace("-", "−"))


def _signed_any(value: Any) -> str:
    v = _float(value)
    return _num(value) if v is None else _signed(v)


def _count(value: Any) -> str:
    v = _float(value)
    if v is None or not v.is_integer():
        return _num(value)
    return _e(f"{int(v):,}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return _e(f"{seconds:.1f} s")
    minutes, rest = divmod(seconds, 60)
    return _e(f"{int(minutes)} min {rest:04.1f} s")


def _plain(value: Any) -> str:
    """A parameter or field value as text: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
