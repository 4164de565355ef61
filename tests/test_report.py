"""The training report, rendered from one `TrainingSummary`: the HTML page's whole structure from a
realistic fraud run (every grid point and fold, the winner, test metrics, overfitting check,
threshold, rows, lineage), escaping of every value, PNGs embedded byte for byte, the plots, the
Markdown and console renderings, the report files, and a render in headless Chromium (DOM content,
every image decoded, parameter chips never broken, a non-blank screenshot of the expected size).

The sample's plots are drawn by the report's own plot functions from a synthetic score histogram.
A recommendation run has its own tests in tests/test_report_recommend.py. `docs/img/report.png`
is made with this file's rendering code:

    .venv/bin/python -m tests.test_report docs/img/report.png
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.model.evaluate import HIGHER_IS_BETTER, choose_threshold
from pipeline.model.histogram import BINS, Histogram
from pipeline.report import write_report_files
from pipeline.report.console import render_console
from pipeline.report.html import plot_title, render_html
from pipeline.report.markdown import render_markdown
from pipeline.report.plots import draw_plots, importance_figure
from pipeline.report.summary import (
    GateOutcome,
    GridPoint,
    ScoreHistogram,
    TableInput,
    TrainingSummary,
    higher_is_better,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.transforms import BboxBase

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_CHROMIUM = (
    f"{CHROMIUM} is missing: the browser test renders the report with Debian's `chromium` "
    "package. Install it with `apt-get update && apt-get install -y chromium` (.ci/run does this "
    "in CI when run as root)."
)
HOSTILE = '<script>alert("x")</script>'
SCREEN = (1200, 2000)

Run = tuple[TrainingSummary, list[Path]]


# --------------------------------------------------------------------------------------------------
# A realistic fraud run: 2 logistic-regression grid points and a GBT, 3 folds, areaUnderPR ~0.8
# --------------------------------------------------------------------------------------------------


def _scores(seed: int) -> Histogram:
    """Scores of 19,874 rows with 201 frauds, overlapping enough for an AUC-PR near 0.8."""
    rng = random.Random(seed)
    pos, tot = [0.0] * (BINS + 1), [0.0] * (BINS + 1)
    for i in range(19_874):
        y = 1 if i < 201 else 0
        if y:
            s = rng.betavariate(1.5, 4) if rng.random() < 0.15 else rng.betavariate(6, 1.5)
        else:
            s = rng.betavariate(2, 2.5) if rng.random() < 0.01 else rng.betavariate(1, 25)
        b = min(BINS, int(s * BINS))
        tot[b] += 1
        pos[b] += y
    return Histogram(tuple(pos), tuple(tot))


def _area(points: list[tuple[float, float]]) -> float:
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(points))


IMPORTANCES = {
    "amount_to_mean_7d": 0.214,
    "is_foreign": 0.162,
    "events_count_1h": 0.131,
    "amount_log": 0.108,
    "is_night": 0.083,
    "merchant_category=electronics": 0.061,
    "account_age_days": 0.052,
    "amount_max_24h": 0.047,
    "channel=web": 0.039,
    "events_count_24h": 0.034,
    "customer_age": 0.027,
    "device_type=mobile": -0.022,
}


def sample_summary() -> TrainingSummary:
    """The summary of a fraud run, shaped like the training code builds it."""
    metric = "areaUnderPR"
    candidates = [
        GridPoint(
            "logreg",
            "logistic_regression",
            {"maxIter": 50, "elasticNetParam": 0.0, "regParam": 0.001},
            [0.7424, 0.7681, 0.7513],
            rungs=[(1.0, 0.7539)],
        ),
        GridPoint(
            "logreg",
            "logistic_regression",
            {"maxIter": 50, "elasticNetParam": 0.0, "regParam": 0.01},
            [0.7309, 0.7597, 0.7442],
            rungs=[(1.0, 0.7449)],
        ),
        GridPoint(
            "gbt",
            "gbt",
            {"maxIter": 30, "stepSize": 0.2, "maxDepth": 4},
            [0.8121, 0.7953, 0.8237],
            rungs=[(1.0, 0.8104)],
        ),
    ]
    win = candidates[2]
    # chosen like the runner does, on out-of-fold scores (another draw), never on test rows
    threshold = choose_threshold(_scores(seed=11), "max_f1")
    hist = _scores(seed=7)
    roc, pr = hist.curves()
    tp, fp, tn, fn = hist.confusion_at(threshold)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    test = {
        "areaUnderROC": _area(roc),
        "areaUnderPR": _area(pr),
        "accuracy": (tp + tn) / (tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall),
        "log_loss": 0.0291,
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
    train_metric = 0.8614
    tables = "file:///srv/mlpipe/data/tables/fraud"
    return TrainingSummary(
        pipeline="fraud",
        task="binary_classification",
        run_date="2026-01-10",
        metric=metric,
        folds=3,
        search="grid",
        fits=9,
        candidates=candidates,
        winner=2,
        test=test,
        overfitting={
            f"train_{metric}": train_metric,
            f"cv_{metric}": win.mean,
            f"test_{metric}": test[metric],
            "overfit_gap_train_minus_test": train_metric - test[metric],
            "overfit_gap_cv_minus_test": win.mean - test[metric],
        },
        threshold=threshold,
        rows={"train": 79_496, "test": 19_874, "train_label_0": 78_692, "train_label_1": 804},
        importances=IMPORTANCES,
        test_histogram=ScoreHistogram(list(hist.positives), list(hist.totals)),
        inputs={
            "features": TableInput(f"{tables}/features", 14),
            "bronze": TableInput(f"{tables}/bronze/transactions", 10),
        },
        tags={
            "git_commit": "909d9b8c41e7a0f3d2b65e8c1a4f7d90e3b2c615",
            "spark_version": "4.2.0",
            "pyspark_version": "4.2.0",
            "delta_version": "4.4.0",
            "mlflow_version": "3.17.2",
            "run_id": "3f6c2a9e-8d41-4b7a-9c0e-5a1d2b3c4e5f",
            "run_date": "2026-01-10",
        },
        durations_s={
            "split": 6.412,
            "cross_validation": 148.305,
            "refit": 31.877,
            "evaluate": 12.094,
            "log_and_gate": 18.551,
        },
        gate=GateOutcome(
            promoted=True,
            reason=f"{metric} {test[metric]:.4f} vs champion v3 0.7811 "
            f"(gain {test[metric] - 0.7811:+.4f}, margin 0.002)",
            metric=metric,
            margin=0.002,
            challenger_metric=test[metric],
            champion_metric=0.7811,
            champion_version="3",
        ),
        model_name="fraud_model",
        model_version="4",
        split="time",
    )


def sample_run(out_dir: Path) -> Run:
    """(summary, plots): the fraud summary and the plots drawn from it."""
    summary = sample_summary()
    return summary, draw_plots(summary, out_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return sample_run(tmp_path_factory.mktemp("plots"))


@pytest.fixture(scope="module")
def page(run: Run) -> str:
    return render_html(*run)


def replace(summary: TrainingSummary, **changes: object) -> TrainingSummary:
    """A copy of `summary` with some fields changed."""
    return dataclasses.replace(summary, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# A small DOM of the page (stdlib parser) that also checks that every element is closed in order
# --------------------------------------------------------------------------------------------------

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "wbr", "source", "area", "base"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    rows: list[tuple[dict[str, str], list[str]]] = field(default_factory=list)


class Page(HTMLParser):
    """Start tags, the text of elements with an id, and every table's rows (cell texts)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[Element] = []
        self.starts: list[tuple[str, dict[str, str]]] = []
        self.by_id: dict[str, str] = {}
        self.tables: dict[str, list[tuple[dict[str, str], list[str]]]] = {}
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed elements: {[e.tag for e in self.stack]}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.starts.append((tag, a))
        if tag not in VOID:
            self.stack.append(Element(tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        element = self.stack.pop()
        assert element.tag == tag, f"</{tag}> closes <{element.tag}>"
        text = " ".join("".join(element.text).split())
        if "id" in element.attrs:
            self.by_id[element.attrs["id"]] = text
        if tag in ("script", "style"):
            self.raw[tag].append("".join(element.text))
        elif tag in ("td", "th") and (row := self._open("tr")):
            row.cells.append(text)
        elif tag == "tr" and (table := self._open("table")):
            table.rows.append((element.attrs, element.cells))
        elif tag == "table":
            self.tables[element.attrs.get("class", "")] = element.rows

    def _open(self, tag: str) -> Element | None:
        return next((e for e in reversed(self.stack) if e.tag == tag), None)

    def images(self) -> list[dict[str, str]]:
        return [a for tag, a in self.starts if tag == "img"]


def params_text(params: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def notes_of(page: str) -> str:
    """The text of the overfitting section's notes."""
    return " ".join(
        " ".join(n.split()) for n in re.findall(r'<p class="note">(.*?)</p>', page, re.S)
    )


# --------------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------------


def test_every_grid_point_and_fold_is_in_the_candidates_table_best_first(
    run: Run, page: str
) -> None:
    summary = run[0]
    dom = Page(page)
    head, *rows = dom.tables["candidates"]
    assert head[1][:4] == ["rank", "candidate", "grid point", "parameters"]
    assert head[1][4:7] == ["fold 1", "fold 2", "fold 3"]
    assert head[1][7:10] == ["mean", "std", "vs winner"]
    assert len(rows) == len(summary.candidates) == 3
    expected = sorted(summary.candidates, key=lambda c: -c.mean)
    for rank, ((_, cells), cand) in enumerate(zip(rows, expected, strict=True), start=1):
        assert cells[0] == str(rank)
        assert cells[1].removesuffix(" winner") == cand.candidate
        assert cells[3] == params_text(cand.params)
        assert cells[4:7] == [f"{v:.4f}" for v in cand.folds]
        assert cells[7:9] == [f"{cand.mean:.4f}", f"{cand.std:.4f}"]
    by_params = {cells[3]: cells for _, cells in rows}
    assert by_params[params_text(summary.candidates[0].params)][2] == "1 of 2"
    assert by_params[params_text(summary.candidates[1].params)][2] == "2 of 2"
    assert by_params[params_text(summary.candidates[2].params)][2] == "1 of 1"
    # one spread chart per grid point: a range bar, a dot per fold and the mean tick
    assert page.count('<svg class="spread"') == 3
    assert page.count('<line class="mean"') == 3
    assert page.count("<circle ") == 9
    # the parameter that varies across logreg's grid is in bold, the others are not
    assert page.count('<code class="chip grid">regParam=') == 2
    assert '<code class="chip grid">maxIter=' not in page


def test_the_fold_spreads_share_one_scale(run: Run, page: str) -> None:
    width, pad = 170, 5
    folds = [v for p in run[0].candidates for v in p.folds]
    dots = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', page)]
    # the lowest fold of all sits near the left end and the highest near the right end
    assert min(dots) == pytest.approx(pad + (width - 2 * pad) * 0.08 / 1.16, abs=0.1)
    assert max(dots) == pytest.approx(width - pad - (width - 2 * pad) * 0.08 / 1.16, abs=0.1)
    assert len(dots) == len(folds)


def test_the_winner_is_marked_in_the_table_and_the_header(page: str) -> None:
    dom = Page(page)
    marked = [cells for attrs, cells in dom.tables["candidates"] if attrs.get("data-winner")]
    assert len(marked) == 1
    assert marked[0][1] == "gbt winner"
    assert marked[0][9] == "—"  # no difference from itself
    others = [cells for attrs, cells in dom.tables["candidates"][1:] if not attrs]
    assert all(cells[9].startswith("−") for cells in others)  # all worse than the winner
    assert page.count('class="winner"') == 1
    assert dom.by_id["card-winner"] == "winner gbt maxIter=30 stepSize=0.2 maxDepth=4"
    assert dom.by_id["card-cv"].startswith("cross-validation areaUnderPR 0.8104 ± 0.0117")


def test_a_winner_among_grid_points_of_one_candidate_is_told_apart_by_its_params(
    run: Run,
) -> None:
    summary = replace(run[0], winner=1)
    dom = Page(render_html(summary, []))
    [marked] = [cells for attrs, cells in dom.tables["candidates"] if attrs.get("data-winner")]
    assert marked[3] == params_text(summary.candidates[1].params)
    assert marked[2] == "2 of 2"


def test_points_stopped_by_successive_halving_rank_below_the_finalists(run: Run) -> None:
    # The best mean belongs to a point evaluated on a third of the rows only.
    points = list(run[0].candidates)
    stopped = dataclasses.replace(points[1], folds=[0.99, 0.99, 0.99], fraction=1 / 3)
    points[1] = stopped
    dom = Page(render_html(replace(run[0], candidates=points, search="halving"), []))
    _, *rows = dom.tables["candidates"]
    assert rows[-1][1][3] == params_text(stopped.params)
    assert rows[-1][1][1].endswith("halving: stopped at 33% of the rows")
    assert all("halving" not in cells[1] for _, cells in rows[:-1])


@pytest.mark.parametrize(
    ("gate", "badge"),
    [
        (GateOutcome(True, "first model", "areaUnderPR", 0.002), "promoted to champion"),
        (GateOutcome(False, "champion is better", "areaUnderPR", 0.002), "not promoted"),
        (None, "not recorded"),
    ],
)
def test_the_header_shows_the_gate_decision(run: Run, gate: GateOutcome | None, badge: str) -> None:
    text = render_html(replace(run[0], gate=gate), [])
    dom = Page(text)
    assert dom.by_id["gate"] == badge
    if gate is not None:
        assert gate.reason in text
        assert f'data-promoted="{str(gate.promoted).lower()}"' in text
    else:
        assert "data-promoted" not in text


def test_the_gate_card_compares_challenger_and_champion_and_names_the_model(run: Run) -> None:
    gate = GateOutcome(
        False,
        "areaUnderPR 0.7900 vs champion v3 0.7950",
        "areaUnderPR",
        0.002,
        challenger_metric=0.79,
        champion_metric=0.795,
        champion_version="3",
        gain_lower_bound=-0.011,
    )
    dom = Page(render_html(replace(run[0], gate=gate), []))
    assert dom.by_id["gate"] == "not promoted"
    assert dom.by_id["card-gate"] == (
        "champion gate not promoted areaUnderPR 0.7900 vs champion v3 0.7950 "
        "challenger 0.7900 vs champion 0.7950 gain lower bound −0.0110 model fraud_model version 4"
    )


def test_test_metrics_confusion_threshold_and_overfitting(run: Run, page: str) -> None:
    summary = run[0]
    dom = Page(page)
    metrics = {cells[0]: cells[1] for _, cells in dom.tables["metrics"][1:]}
    shown = {
        k: v for k, v in summary.test.items() if k not in ("tp", "fp", "tn", "fn", "threshold")
    }
    assert metrics == {k: f"{v:.4f}" for k, v in shown.items()}
    t = summary.test
    assert dom.tables["confusion"][1:] == [
        ({}, ["actual 0", f"{int(t['tn']):,} TN", f"{int(t['fp']):,} FP"]),
        ({}, ["actual 1", f"{int(t['fn']):,} FN", f"{int(t['tp']):,} TP"]),
    ]
    assert f'<strong class="threshold">{summary.threshold:.4f}</strong>' in page
    overfit = [cells for _, cells in dom.tables["overfitting"][1:]]
    gap = summary.overfitting
    assert [c[1] for c in overfit[:3]] == [
        f"{gap['train_areaUnderPR']:.4f}",
        f"{gap['cv_areaUnderPR']:.4f}",
        f"{gap['test_areaUnderPR']:.4f}",
    ]
    assert [c[0].split()[0] for c in overfit[:3]] == ["train", "cross-validation", "test"]
    assert overfit[3] == [
        "gap: train − test overfit_gap_train_minus_test",
        f"{gap['overfit_gap_train_minus_test']:+.4f}",
        "",
    ]
    train_gap = gap["train_areaUnderPR"] - gap["test_areaUnderPR"]
    assert f"Train is better than test by {train_gap:.4f}." in page


def test_rows_and_lineage(run: Run, page: str) -> None:
    summary = run[0]
    dom = Page(page)
    assert [cells for _, cells in dom.tables["rows"][1:]] == [
        ["training rows", "79,496", ""],
        ["test rows (held out)", "19,874", ""],
        ["training rows with label 0", "78,692", "98.99%"],
        ["training rows with label 1", "804", "1.01%"],
    ]
    assert [cells for _, cells in dom.tables["inputs"][1:]] == [
        ["features", summary.inputs["features"].path, "14"],
        ["bronze", summary.inputs["bronze"].path, "10"],
    ]
    tags = {cells[0]: cells[1] for _, cells in dom.tables["tags"]}
    assert tags == {
        "git commit": summary.tags["git_commit"],
        "Spark": "4.2.0",
        "PySpark": "4.2.0",
        "Delta Lake (delta-spark)": "4.4.0",
        "MLflow": "3.17.2",
        "run id": summary.tags["run_id"],
        "run date": "2026-01-10",
    }
    durations = [cells[:2] for _, cells in dom.tables["durations"][1:]]
    assert durations == [
        ["split", "6.4 s"],
        ["cross validation", "2 min 28.3 s"],
        ["refit", "31.9 s"],
        ["evaluate", "12.1 s"],
        ["log and gate", "18.6 s"],
        ["total", "3 min 37.2 s"],
    ]
    # a table without a recorded Delta version shows a dash
    inputs = {"features": TableInput("file:///t/features", None)}
    dom = Page(render_html(replace(summary, inputs=inputs, tags={}, durations_s={}), []))
    assert dom.tables["inputs"][1:] == [({}, ["features", "file:///t/features", "—"])]
    assert "tags" not in dom.tables
    assert "durations" not in dom.tables


def test_plots_are_embedded_byte_for_byte_and_titled_from_their_file_names(
    run: Run, page: str
) -> None:
    plots = run[1]
    dom = Page(page)
    images = dom.images()
    assert len(images) == len(plots) == 5
    for img, path in zip(images, plots, strict=True):
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        data = path.read_bytes()
        assert base64.b64decode(img["src"][len(prefix) :], validate=True) == data
        width, height = struct.unpack(">II", data[16:24])
        assert (img["width"], img["height"]) == (str(width), str(height))
        assert img["alt"] == plot_title(path)
    captions = re.findall(r"<figcaption>(.*?) <span", page)
    assert captions == [
        "ROC curve",
        "Precision-recall curve",
        "Confusion matrix",
        "Calibration",
        "Feature importance",
    ]
    assert f'data-images-expected="{len(plots)}"' in page


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("roc_curve.png", "ROC curve"),
        ("pr_curve.png", "Precision-recall curve"),
        ("lift_by_decile.png", "Lift by decile"),
        ("cv-roc.png", "CV ROC"),
        ("residuals.png", "Residuals"),
    ],
)
def test_plot_titles(name: str, title: str) -> None:
    assert plot_title(Path(name)) == title


def test_every_value_is_escaped(run: Run) -> None:
    summary, plots = run
    evil_img = '<img src="x" onerror="alert(1)">'
    points = list(summary.candidates)
    points[0] = dataclasses.replace(points[0], params={**points[0].params, "family": HOSTILE})
    points[2] = dataclasses.replace(points[2], candidate=f"gbt{evil_img}")
    assert summary.gate is not None
    hostile = replace(
        summary,
        pipeline=f"fraud {evil_img}",
        candidates=points,
        gate=dataclasses.replace(summary.gate, reason=f"reason {HOSTILE}"),
        test={**summary.test, f"odd{evil_img}": 1.0},
        rows={**summary.rows, f"train_label_{evil_img}": 3},
        inputs={**summary.inputs, "features": TableInput(f"file:///t/{HOSTILE}", 14)},
        tags={**summary.tags, "git_commit": HOSTILE},
        durations_s={**summary.durations_s, f"step{evil_img}": 1.0},
        model_name=f"model{evil_img}",
    )
    text = render_html(hostile, plots[:2])

    assert HOSTILE not in text
    assert '<img src="x"' not in text
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert f"family={escaped}" in text
    assert f"reason {escaped}" in text
    assert f"file:///t/{escaped}" in text
    dom = Page(text)
    assert [tag for tag, _ in dom.starts].count("script") == 1  # the page's own
    assert len(dom.images()) == 2  # only the plots
    assert not [a for _, a in dom.starts if any(k.startswith("on") for k in a)]
    assert dom.by_id["candidates"].count('alert("x")') == 1  # shown as text
    [marked] = [cells for attrs, cells in dom.tables["candidates"] if attrs.get("data-winner")]
    assert marked[1] == f"gbt{evil_img} winner"


def test_the_page_is_self_contained(page: str) -> None:
    dom = Page(page)
    for tag, attrs in dom.starts:
        for key in ("src", "href", "action", "data", "poster"):
            if key in attrs:
                assert attrs[key].startswith(("data:image/png;base64,", "#")), (tag, key)
        assert tag not in ("link", "iframe", "object", "embed", "base")
    # no attribute points anywhere (the lineage's table paths are text, not references)
    urls = [
        v
        for _, a in dom.starts
        for v in a.values()
        if re.match(r"\s*([a-z][a-z0-9+.-]*:[^ ]|//)", v, re.I)
    ]
    assert all(v.startswith("data:image/png;base64,") for v in urls), urls
    [css] = dom.raw["style"]
    assert not re.search(r"@import|@font-face|url\(", css)
    assert '"Segoe UI"' in css  # the style sheet is embedded as it is, not escaped
    [csp] = [
        a["content"] for t, a in dom.starts if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert "default-src 'none'" in csp
    assert "img-src data:" in csp
    [script] = dom.raw["script"]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_rendering_is_deterministic(run: Run, page: str) -> None:
    assert render_html(*run) == page
    assert render_html(sample_summary(), run[1]) == page


def test_a_non_png_file_is_rejected(run: Run, tmp_path: Path) -> None:
    fake = tmp_path / "roc_curve.png"
    fake.write_bytes(b"GIF89a not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        render_html(run[0], [fake])


def regression_summary() -> TrainingSummary:
    points = [
        GridPoint("rf", "random_forest", {"maxDepth": 5}, [3.1, 3.3, 3.2]),
        GridPoint("rf", "random_forest", {"maxDepth": 8}, [2.7, 2.9, 2.8]),
    ]
    return TrainingSummary(
        pipeline="maintenance",
        task="regression",
        run_date="2026-01-10",
        metric="rmse",
        folds=3,
        search="grid",
        fits=6,
        candidates=points,
        winner=1,
        test={"rmse": 2.95, "mae": 2.1, "r2": 0.71},
        overfitting={"train_rmse": 2.2, "cv_rmse": 2.8, "test_rmse": 2.95},
        threshold=None,
        rows={"train": 1000, "test": 250},
    )


def test_a_regression_run_sorts_lower_first_and_has_no_threshold(tmp_path: Path) -> None:
    summary = regression_summary()
    text = render_html(summary, [])
    dom = Page(text)
    rows = dom.tables["candidates"][1:]
    assert [cells[3] for _, cells in rows] == ["maxDepth=8", "maxDepth=5"]
    assert rows[0][0].get("data-winner") == "true"
    assert "lower is better" in text
    assert "best (lowest) first" in text
    assert "None: not a classification model" in text
    assert '<strong class="threshold">' not in text
    assert "confusion" not in dom.tables
    assert "Train is better than test by 0.7500." in text
    assert "No plots for this run." in text
    assert "No lineage recorded." in text
    # a regression run gets no classification plots: importances only, when there are any
    assert draw_plots(summary, tmp_path / "none") == []
    with_importances = replace(summary, importances={"age": 0.4, "load": -0.2})
    assert [p.name for p in draw_plots(with_importances, tmp_path)] == ["feature_importance.png"]


def test_a_run_without_candidates_still_renders() -> None:
    dom = Page(render_html(replace(regression_summary(), candidates=[], winner=0), []))
    assert dom.by_id["candidates"] == "Candidates No candidates recorded."
    assert "candidates" not in dom.tables


def test_metric_directions_match_the_evaluation_module() -> None:
    for metric, higher in HIGHER_IS_BETTER.items():
        assert higher_is_better(metric) is higher, metric


# --------------------------------------------------------------------------------------------------
# The overfitting note follows the numbers (tolerance: 0.02, or 5% of the test value if larger)
# --------------------------------------------------------------------------------------------------


def _with_values(train: float, cv: float, test: float, **changes: object) -> TrainingSummary:
    m = "areaUnderPR"
    values = {f"train_{m}": train, f"cv_{m}": cv, f"test_{m}": test}
    return replace(sample_summary(), overfitting=values, **changes)


def test_cross_validation_close_to_test_is_trusted() -> None:
    notes = notes_of(render_html(_with_values(0.80, 0.79, 0.78), []))
    assert "Cross-validation is better than test by 0.0100." in notes
    assert "cross-validation close to test, so the selection estimate can be trusted" in notes
    assert "off from test" not in notes


def test_cross_validation_far_from_test_is_not_trusted_and_says_why() -> None:
    # 0.81 vs 0.70: 0.11 apart, more than the tolerance of max(0.02, 5% of 0.70) = 0.035
    notes = notes_of(render_html(_with_values(0.85, 0.81, 0.70), []))
    assert "can be trusted" not in notes
    assert "The cross-validation estimate is off from test by 0.1100" in notes
    assert "more than the tolerance (0.0350)" in notes
    assert "later period than the folds (a time split)" in notes
    assert "this run has 19,874 test rows" in notes
    assert "leakage" in notes  # cross-validation is the better one
    # without a time split, the note does not claim one
    notes = notes_of(render_html(_with_values(0.85, 0.81, 0.70, split="random"), []))
    assert "time split" not in notes
    # cross-validation worse than test: not leakage
    notes = notes_of(render_html(_with_values(0.85, 0.60, 0.70), []))
    assert "Cross-validation is worse than test by 0.1000." in notes
    assert "leakage" not in notes


def test_the_tolerance_is_relative_for_errors_on_a_large_scale() -> None:
    m = "rmse"
    close = replace(regression_summary(), overfitting={f"cv_{m}": 310.0, f"test_{m}": 300.0})
    assert "can be trusted" in notes_of(render_html(close, []))  # 10 ≤ 5% of 300
    far = replace(regression_summary(), overfitting={f"cv_{m}": 280.0, f"test_{m}": 300.0})
    assert "off from test by 20.0000" in notes_of(render_html(far, []))


def test_train_far_better_than_test_is_memorisation_and_close_is_not() -> None:
    notes = notes_of(render_html(_with_values(0.95, 0.80, 0.80), []))
    assert "Train is better than test by 0.1500." in notes
    assert "the model memorised part of its training rows" in notes
    notes = notes_of(render_html(_with_values(0.81, 0.80, 0.80), []))
    assert "no sign that the model memorised its training rows" in notes
    assert "memorised part" not in notes


# --------------------------------------------------------------------------------------------------
# Plots, Markdown, console, files
# --------------------------------------------------------------------------------------------------


def outside(inner: BboxBase, outer: BboxBase, slack: float = 0.5) -> bool:
    """Whether `inner` sticks out of `outer` by more than `slack` (in their units)."""
    return bool(
        inner.x0 < outer.x0 - slack
        or inner.y0 < outer.y0 - slack
        or inner.x1 > outer.x1 + slack
        or inner.y1 > outer.y1 + slack
    )


def assert_nothing_cut_off(fig: Figure) -> None:
    """Every drawn artist of `fig` (titles, tick labels, legends) lies inside the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    drawn = fig.get_tightbbox(renderer)  # inches, over what was drawn
    assert drawn is not None
    assert not outside(drawn, fig.bbox_inches, slack=0.01), (drawn, fig.bbox_inches)


def test_the_feature_importance_title_and_names_fit_inside_the_figure() -> None:
    long_name = "merchant_category_description=consumer_electronics_and_home_appliances"
    for importances in (IMPORTANCES, {**IMPORTANCES, long_name: 0.3}):
        fig = importance_figure(importances)
        assert_nothing_cut_off(fig)
        [title] = [t for t in fig.texts if t.get_text()]  # the figure's own title
        assert title.get_text().replace("\n", " ") == (
            "Feature importance / coefficient (original feature names)"
        )
        extent = title.get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]
        assert not outside(extent, fig.bbox), (extent, fig.bbox)
    # the top 20 by magnitude, the largest on top, with their original names
    many = {f"f{i:02d}": (-1) ** i * i / 100 for i in range(30)}
    labels = [t.get_text() for t in importance_figure(many).axes[0].get_yticklabels()]
    assert labels == [f"f{i:02d}" for i in range(10, 30)]


def test_no_text_of_any_plot_is_cut_off(run: Run) -> None:
    from pipeline.report import plots

    summary = run[0]
    for make in (
        plots.roc_figure,
        plots.pr_figure,
        plots.confusion_figure,
        plots.calibration_figure,
    ):
        assert_nothing_cut_off(make(summary))


def test_the_confusion_plot_counts_come_from_the_histogram(run: Run) -> None:
    from pipeline.report.plots import confusion_figure, histogram_of

    summary = run[0]
    assert summary.threshold is not None
    tp, fp, tn, fn = histogram_of(summary).confusion_at(summary.threshold)
    fig = confusion_figure(summary)
    shown = [t.get_text() for t in fig.axes[0].texts]
    assert shown == [f"{round(v):,}" for v in (tn, fp, fn, tp)]
    # and they agree with the test metrics' counts shown in the page's table
    assert (tp, fp, tn, fn) == tuple(summary.test[k] for k in ("tp", "fp", "tn", "fn"))


def test_markdown_has_the_candidates_best_first_the_winner_and_the_test_set(run: Run) -> None:
    md = render_markdown(run[0])
    lines = md.splitlines()
    assert lines[0] == "# Training report: fraud (2026-01-10)"
    assert "Selection metric: **areaUnderPR** (3-fold cross-validation, higher is better)." in md
    table = [line for line in lines if line.startswith(("| gbt", "| logreg"))]
    assert [row.split(" | ")[0] for row in table] == ["| gbt", "| logreg", "| logreg"]
    assert "| 0.8121, 0.7953, 0.8237 | 0.8104 | 0.0117 |" in table[0]
    assert "**Winner:** gbt `{'maxIter': 30, 'stepSize': 0.2, 'maxDepth': 4}`" in md
    tp = int(run[0].test["tp"])
    assert f"| tp | {tp} |" in md  # a count, not 157.0000
    assert "| areaUnderPR | 0.7979 |" in md
    assert "**promoted to champion**: areaUnderPR 0.7979 vs champion v3" in md
    assert "| training rows | 79,496 |" in md
    assert "no sign that the model memorised" not in md
    assert "the model memorised part of its training rows" in md


def test_the_console_lines(run: Run) -> None:
    summary = run[0]
    lines = render_console(summary).splitlines()
    assert lines[0] == "candidates (cross-validated 3-fold):"
    params = summary.candidates[2].params
    assert lines[1] == f"  gbt                    areaUnderPR 0.8104 ± 0.0117  {params}"
    assert lines[2].startswith("  logreg                 areaUnderPR 0.7539 ± 0.0107  {")
    assert lines[3] == "winner: gbt {'maxIter': 30, 'stepSize': 0.2, 'maxDepth': 4}"
    assert lines[4].startswith("test: {'areaUnderROC': ")
    assert "'tp'" not in lines[4]
    assert lines[5] == (
        f"model: fraud_model version 4; gate: promoted to champion ({summary.gate.reason})"  # type: ignore[union-attr]
    )
    before = render_console(replace(summary, gate=None, model_name=None, model_version=None))
    assert before.splitlines()[-1] == "model: not registered; gate: not recorded"


def test_the_report_files_are_written_and_summary_json_reads_back(tmp_path: Path) -> None:
    summary = sample_summary()
    out = tmp_path / "a" / "b"
    files = write_report_files(summary, out)
    assert {p.name for p in out.iterdir()} == {
        "summary.json",
        "summary.md",
        "report.html",
        "roc_curve.png",
        "pr_curve.png",
        "confusion_matrix.png",
        "calibration.png",
        "feature_importance.png",
    }
    assert files.summary_json == out / "summary.json"
    assert [p.parent for p in files.plots] == [out] * 5
    data = json.loads(files.summary_json.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(summary.to_dict()))
    assert TrainingSummary.from_dict(data) == summary
    assert files.summary_md.read_text(encoding="utf-8") == render_markdown(summary)
    assert files.html.read_text(encoding="utf-8") == render_html(summary, files.plots)


# --------------------------------------------------------------------------------------------------
# Headless Chromium
# --------------------------------------------------------------------------------------------------


def chromium(*args: str, timeout: float = 120) -> str:
    """Run headless Chromium with a fresh profile; its stdout. Fails (never skips) without it."""
    if not CHROMIUM.exists():
        pytest.fail(INSTALL_CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="mlpipe-chromium-", ignore_cleanup_errors=True) as prof:
        command = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={prof}",
            *args,
        ]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, so leftovers can be ended by its id
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # the browser is still running, so its process group is still ours to end
            _end_group(proc.pid)
            out, err = proc.communicate()
            raise AssertionError(f"chromium did not finish in {timeout}s:\n{err[-3000:]}") from None
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{err[-3000:]}"
    return out


def _end_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def screenshot(html_file: Path, out: Path, size: tuple[int, int] = SCREEN) -> Path:
    """A PNG of the page's first `size` pixels (width, height) as Chromium renders it."""
    chromium(
        f"--screenshot={out}",
        f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=5000",
        html_file.as_uri(),
    )
    assert out.is_file(), f"chromium wrote no screenshot at {out}"
    return out


def dump_dom(html_file: Path, *, width: int = SCREEN[0]) -> str:
    """The DOM after the page's load event, serialised by Chromium (window `width` pixels)."""
    return chromium(
        f"--window-size={width},{SCREEN[1]}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        html_file.as_uri(),
    )


def write_page(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_renders_with_every_image(page: str, images: int, tmp_path: Path) -> str:
    """Chromium's DOM of `page` after it loaded every one of its `images`; checks a screenshot
    of it is neither blank nor almost all white."""
    import numpy as np
    from matplotlib.image import imread

    html_file = write_page(tmp_path / "report.html", page)
    started = time.monotonic()
    dom = dump_dom(html_file)
    assert f'data-images-loaded="{images}"' in dom, re.findall(r"<body[^>]*>", dom)
    shot = screenshot(html_file, tmp_path / "report.png")
    pixels = imread(str(shot))
    assert pixels.shape[:2] == (SCREEN[1], SCREEN[0])
    grey = np.asarray(pixels[..., :3], dtype=float).mean(axis=2)
    assert grey.std() > 0.05, "the screenshot is blank"
    assert (grey < 0.9).mean() > 0.03, "the screenshot is almost all white"
    print(f"chromium: DOM dump and screenshot in {time.monotonic() - started:.1f}s")
    return dom


@pytest.mark.browser
def test_chromium_renders_the_page_with_every_image(run: Run, page: str, tmp_path: Path) -> None:
    dom = assert_renders_with_every_image(page, len(run[1]), tmp_path)
    assert "Training report: fraud" in dom
    for cand in run[0].candidates:
        for value in cand.folds:
            assert f"{value:.4f}" in dom
    assert 'data-winner="true"' in dom


# Counts, once the page has loaded, the parameter chips and those whose text the browser laid out
# on more than one line (a name=value broken inside). Only for the probe copy of the page below.
_CHIP_PROBE = """<script>
window.addEventListener("load", function () {
  var chips = document.querySelectorAll("td.params code"), broken = 0, stacked = 0;
  for (var i = 0; i < chips.length; i++) {
    var range = document.createRange();
    range.selectNodeContents(chips[i]);
    var rects = range.getClientRects(), tops = {};
    for (var j = 0; j < rects.length; j++) { tops[Math.round(rects[j].top)] = true; }
    if (Object.keys(tops).length > 1) { broken++; }
    var next = chips[i].nextElementSibling;
    if (next && next.getBoundingClientRect().top > chips[i].getBoundingClientRect().top + 2) {
      stacked++;
    }
  }
  document.body.dataset.chips = String(chips.length);
  document.body.dataset.brokenChips = String(broken);
  document.body.dataset.stackedChips = String(stacked);
});
</script>"""


@pytest.mark.browser
def test_a_parameter_chip_never_breaks_inside_its_name_and_value(page: str, tmp_path: Path) -> None:
    # On a narrow screen the parameters column is squeezed: chips may go onto the next line, but
    # a chip such as `regParam=0.001` must never be split across lines. The probe script needs
    # the page without its Content-Security-Policy (which allows only the page's own script).
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    probe = probe.replace("</body>", f"{_CHIP_PROBE}</body>")
    dom = dump_dom(write_page(tmp_path / "probe.html", probe), width=520)
    [body] = re.findall(r"<body[^>]*>", dom)
    assert 'data-chips="9"' in body, body
    assert 'data-stacked-chips="0"' not in body, f"the column was not squeezed: {body}"
    assert 'data-broken-chips="0"' in body, body


def main(argv: list[str]) -> int:
    """Write a screenshot of the sample fraud report (for docs/img/report.png)."""
    if len(argv) != 2:
        print("usage: python -m tests.test_report OUT.png", file=sys.stderr)
        return 2
    out = Path(argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="mlpipe-report-") as tmp:
        files = write_report_files(sample_summary(), Path(tmp))
        screenshot(files.html, out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
