"""The HTML training report: the whole page's structure from a realistic fraud run (every grid
point and fold, the winner, test metrics, overfitting check, threshold, rows, lineage), escaping of
every value, PNGs embedded byte for byte, and a render in headless Chromium (DOM content, every
image decoded, a non-blank screenshot of the expected size).

The sample's plots are made by the pipeline's own plot functions from a synthetic score histogram.
`docs/img/report.png` is made with this file's rendering code:

    .venv/bin/python -m tests.test_report docs/img/report.png
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import itertools
import os
import random
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pipeline.model.evaluate import (
    BINS,
    HIGHER_IS_BETTER,
    Histogram,
    choose_threshold,
    plot_binary,
    plot_importances,
)
from pipeline.model.report import (
    higher_is_better,
    plot_title,
    render_report,
    write_report,
)

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_CHROMIUM = (
    f"{CHROMIUM} is missing: the browser test renders the report with Debian's `chromium` "
    "package. Install it with `apt-get update && apt-get install -y chromium` (.ci/run does this "
    "in CI when run as root)."
)
HOSTILE = '<script>alert("x")</script>'
SCREEN = (1200, 2000)


# --------------------------------------------------------------------------------------------------
# A realistic fraud run: 2 logistic-regression grid points and a GBT, 3 folds, areaUnderPR ~0.8
# --------------------------------------------------------------------------------------------------


def _grid_point(candidate: str, params: dict[str, Any], folds: list[float]) -> dict[str, Any]:
    return {
        "candidate": candidate,
        "params": params,
        "folds": folds,
        "mean": statistics.fmean(folds),
        "std": statistics.pstdev(folds),
    }


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


def sample_run(out_dir: Path) -> tuple[dict[str, Any], dict[str, Any], list[Path]]:
    """(summary, lineage, plots) shaped exactly like pipeline.train.runner writes them."""
    metric = "areaUnderPR"
    candidates = [
        _grid_point(
            "logreg",
            {"maxIter": 50, "elasticNetParam": 0.0, "regParam": 0.001},
            [0.7424, 0.7681, 0.7513],
        ),
        _grid_point(
            "logreg",
            {"maxIter": 50, "elasticNetParam": 0.0, "regParam": 0.01},
            [0.7309, 0.7597, 0.7442],
        ),
        _grid_point(
            "gbt", {"maxIter": 30, "stepSize": 0.2, "maxDepth": 4}, [0.8121, 0.7953, 0.8237]
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
    rows = {"train": 79_496, "test": 19_874, "train_label_0": 78_692, "train_label_1": 804}
    summary: dict[str, Any] = {
        "pipeline": "fraud",
        "run_date": "2026-01-10",
        "metric": metric,
        "winner": {
            "candidate": win["candidate"],
            "params": win["params"],
            "cv_mean": win["mean"],
            "cv_std": win["std"],
            "cv_folds": win["folds"],
        },
        "candidates": candidates,
        "test": test,
        "overfitting": {
            f"train_{metric}": train_metric,
            f"cv_{metric}": win["mean"],
            f"test_{metric}": test[metric],
            "overfit_gap_train_minus_test": train_metric - test[metric],
            "overfit_gap_cv_minus_test": win["mean"] - test[metric],
        },
        "threshold": threshold,
        "rows": rows,
        "gate": {
            "promoted": True,
            "reason": f"{metric} {test[metric]:.4f} vs champion v3 0.7811 "
            f"(gain {test[metric] - 0.7811:+.4f}, margin 0.002)",
        },
    }
    tables = "file:///srv/mlpipe/data/tables/fraud"
    lineage: dict[str, Any] = {
        "tags": {
            "git_commit": "909d9b8c41e7a0f3d2b65e8c1a4f7d90e3b2c615",
            "spark_version": "4.2.0",
            "pyspark_version": "4.2.0",
            "delta_version": "4.4.0",
            "mlflow_version": "3.17.2",
            "run_id": "3f6c2a9e-8d41-4b7a-9c0e-5a1d2b3c4e5f",
            "run_date": "2026-01-10",
        },
        "inputs": {
            "features": {"path": f"{tables}/features", "version": 14},
            "bronze": {"path": f"{tables}/bronze/transactions", "version": 10},
        },
        "rows": rows,
        "durations_s": {
            "split": 6.412,
            "cross_validation": 148.305,
            "refit": 31.877,
            "evaluate": 12.094,
            "log_and_gate": 18.551,
        },
    }
    plots = plot_binary(hist, test, out_dir)
    importance = plot_importances(
        {
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
            "device_type=mobile": 0.022,
        },
        out_dir,
    )
    assert importance is not None
    return summary, lineage, [*plots, importance]


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], dict[str, Any], list[Path]]:
    return sample_run(tmp_path_factory.mktemp("plots"))


@pytest.fixture(scope="module")
def page(run: tuple[dict[str, Any], dict[str, Any], list[Path]]) -> str:
    return render_report(*run)


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


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


# --------------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------------


def test_every_grid_point_and_fold_is_in_the_candidates_table_best_first(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]], page: str
) -> None:
    summary = run[0]
    dom = Page(page)
    head, *rows = dom.tables["candidates"]
    assert head[1][:4] == ["rank", "candidate", "grid point", "parameters"]
    assert head[1][4:7] == ["fold 1", "fold 2", "fold 3"]
    assert head[1][7:10] == ["mean", "std", "vs winner"]
    assert len(rows) == len(summary["candidates"]) == 3
    expected = sorted(summary["candidates"], key=lambda c: -c["mean"])
    for rank, ((_, cells), cand) in enumerate(zip(rows, expected, strict=True), start=1):
        assert cells[0] == str(rank)
        assert cells[1].removesuffix(" winner") == cand["candidate"]
        assert cells[3] == params_text(cand["params"])
        assert cells[4:7] == [f"{v:.4f}" for v in cand["folds"]]
        assert cells[7:9] == [f"{cand['mean']:.4f}", f"{cand['std']:.4f}"]
    by_params = {cells[3]: cells for _, cells in rows}
    assert by_params[params_text(summary["candidates"][0]["params"])][2] == "1 of 2"
    assert by_params[params_text(summary["candidates"][1]["params"])][2] == "2 of 2"
    assert by_params[params_text(summary["candidates"][2]["params"])][2] == "1 of 1"
    # one spread chart per grid point: a range bar, a dot per fold and the mean tick
    assert page.count('<svg class="spread"') == 3
    assert page.count('<line class="mean"') == 3
    assert page.count("<circle ") == 9


def test_the_winner_is_marked_in_the_table_and_the_header(page: str) -> None:
    dom = Page(page)
    marked = [cells for attrs, cells in dom.tables["candidates"] if attrs.get("data-winner")]
    assert len(marked) == 1
    assert marked[0][1] == "gbt winner"
    assert marked[0][9] == "—"  # no difference from itself
    others = [cells for attrs, cells in dom.tables["candidates"][1:] if not attrs]
    assert all(cells[9].startswith("−") for cells in others)  # all worse than the winner
    assert page.count('class="winner"') == 1
    assert '<div class="label">winner</div><div class="value">gbt</div>' in page


def test_a_winner_among_grid_points_of_one_candidate_is_told_apart_by_its_params(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]],
) -> None:
    summary = copy.deepcopy(run[0])
    second = summary["candidates"][1]
    summary["winner"] = {
        "candidate": "logreg",
        "params": dict(second["params"]),
        "cv_mean": second["mean"],
        "cv_std": second["std"],
        "cv_folds": second["folds"],
    }
    dom = Page(render_report(summary, run[1], []))
    [marked] = [cells for attrs, cells in dom.tables["candidates"] if attrs.get("data-winner")]
    assert marked[3] == params_text(second["params"])
    assert marked[2] == "2 of 2"


def test_points_stopped_by_successive_halving_rank_below_the_finalists(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]],
) -> None:
    summary = copy.deepcopy(run[0])
    # The best mean belongs to a point evaluated on a third of the rows only.
    stopped = summary["candidates"][1]
    stopped["fraction"], stopped["mean"] = 1 / 3, 0.99
    for c in summary["candidates"]:
        c.setdefault("fraction", 1.0)
    dom = Page(render_report(summary, run[1], []))
    _, *rows = dom.tables["candidates"]
    assert rows[-1][1][3] == params_text(stopped["params"])
    assert rows[-1][1][1].endswith("halving: stopped at 33% of the rows")
    assert all("halving" not in cells[1] for _, cells in rows[:-1])


@pytest.mark.parametrize(
    ("gate", "badge"),
    [
        ({"promoted": True, "reason": "first model"}, "promoted to champion"),
        ({"promoted": False, "reason": "champion is better"}, "not promoted"),
        (None, "not recorded"),
    ],
)
def test_the_header_shows_the_gate_decision(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]],
    gate: dict[str, Any] | None,
    badge: str,
) -> None:
    summary = copy.deepcopy(run[0])
    if gate is None:
        del summary["gate"]
    else:
        summary["gate"] = gate
    text = render_report(summary, run[1], [])
    dom = Page(text)
    assert dom.by_id["gate"] == badge
    if gate is not None:
        assert gate["reason"] in text
        assert f'data-promoted="{str(gate["promoted"]).lower()}"' in text


def test_a_gate_decision_object_is_accepted_too(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]],
) -> None:
    from pipeline.model.registry import GateDecision

    summary = copy.deepcopy(run[0])
    summary["gate"] = GateDecision(False, "areaUnderPR 0.7900 vs champion v3 0.7950", 0.79, 0.795)
    text = render_report(summary, run[1], [])
    assert Page(text).by_id["gate"] == "not promoted"
    assert "vs champion v3 0.7950<br>challenger 0.7900 vs champion 0.7950" in text


def test_test_metrics_confusion_threshold_and_overfitting(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]], page: str
) -> None:
    summary = run[0]
    dom = Page(page)
    metrics = {cells[0]: cells[1] for _, cells in dom.tables["metrics"][1:]}
    shown = {
        k: v for k, v in summary["test"].items() if k not in ("tp", "fp", "tn", "fn", "threshold")
    }
    assert metrics == {k: f"{v:.4f}" for k, v in shown.items()}
    t = summary["test"]
    assert dom.tables["confusion"][1:] == [
        ({}, ["actual 0", f"{int(t['tn']):,} TN", f"{int(t['fp']):,} FP"]),
        ({}, ["actual 1", f"{int(t['fn']):,} FN", f"{int(t['tp']):,} TP"]),
    ]
    assert f'<strong class="threshold">{summary["threshold"]:.4f}</strong>' in page
    overfit = [cells for _, cells in dom.tables["overfitting"][1:]]
    gap = summary["overfitting"]
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


def test_rows_and_lineage(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]], page: str
) -> None:
    _, lineage, _ = run
    dom = Page(page)
    assert [cells for _, cells in dom.tables["rows"][1:]] == [
        ["training rows", "79,496", ""],
        ["test rows (held out)", "19,874", ""],
        ["training rows with label 0", "78,692", "98.99%"],
        ["training rows with label 1", "804", "1.01%"],
    ]
    assert [cells for _, cells in dom.tables["inputs"][1:]] == [
        ["features", lineage["inputs"]["features"]["path"], "14"],
        ["bronze", lineage["inputs"]["bronze"]["path"], "10"],
    ]
    tags = {cells[0]: cells[1] for _, cells in dom.tables["tags"]}
    assert tags == {
        "git commit": lineage["tags"]["git_commit"],
        "Spark": "4.2.0",
        "PySpark": "4.2.0",
        "Delta Lake (delta-spark)": "4.4.0",
        "MLflow": "3.17.2",
        "run id": lineage["tags"]["run_id"],
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


def test_plots_are_embedded_byte_for_byte_and_titled_from_their_file_names(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]], page: str
) -> None:
    plots = run[2]
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


def test_every_value_is_escaped(run: tuple[dict[str, Any], dict[str, Any], list[Path]]) -> None:
    summary, lineage, plots = copy.deepcopy(run)
    evil_img = '<img src="x" onerror="alert(1)">'
    summary["pipeline"] = f"fraud {evil_img}"
    summary["candidates"][0]["params"]["family"] = HOSTILE
    summary["candidates"][2]["candidate"] = f"gbt{evil_img}"
    summary["winner"]["candidate"] = f"gbt{evil_img}"
    summary["gate"]["reason"] = f"reason {HOSTILE}"
    summary["test"][f"odd{evil_img}"] = 1.0
    summary["rows"][f"train_label_{evil_img}"] = 3
    summary["extra_field"] = {"note": HOSTILE}
    lineage["inputs"]["features"]["path"] = f"file:///t/{HOSTILE}"
    lineage["tags"]["git_commit"] = HOSTILE
    lineage["durations_s"][f"step{evil_img}"] = 1.0
    text = render_report(summary, lineage, plots[:2])

    assert HOSTILE not in text
    assert '<img src="x"' not in text
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
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
    [csp] = [
        a["content"] for t, a in dom.starts if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert "default-src 'none'" in csp
    assert "img-src data:" in csp
    [script] = dom.raw["script"]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_rendering_is_deterministic_and_written_as_utf8(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]], page: str, tmp_path: Path
) -> None:
    assert render_report(*run) == page
    out = write_report(tmp_path / "a" / "b" / "report.html", page)
    assert out == tmp_path / "a" / "b" / "report.html"
    assert out.read_text(encoding="utf-8") == page


def test_a_non_png_file_is_rejected(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]], tmp_path: Path
) -> None:
    fake = tmp_path / "roc_curve.png"
    fake.write_bytes(b"GIF89a not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        render_report(run[0], run[1], [fake])


def test_a_regression_run_sorts_lower_first_and_has_no_threshold(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]],
) -> None:
    cands = [
        _grid_point("rf", {"maxDepth": 5}, [3.1, 3.3, 3.2]),
        _grid_point("rf", {"maxDepth": 8}, [2.7, 2.9, 2.8]),
    ]
    summary = {
        "pipeline": "maintenance",
        "run_date": "2026-01-10",
        "metric": "rmse",
        "winner": {
            "candidate": "rf",
            "params": {"maxDepth": 8},
            "cv_mean": cands[1]["mean"],
            "cv_std": cands[1]["std"],
            "cv_folds": cands[1]["folds"],
        },
        "candidates": cands,
        "test": {"rmse": 2.95, "mae": 2.1, "r2": 0.71},
        "overfitting": {"train_rmse": 2.2, "cv_rmse": 2.8, "test_rmse": 2.95},
        "threshold": None,
        "rows": {"train": 1000, "test": 250},
    }
    text = render_report(summary, {"tags": {}, "inputs": {}, "durations_s": {}}, [])
    dom = Page(text)
    rows = dom.tables["candidates"][1:]
    assert [cells[3] for _, cells in rows] == ["maxDepth=8", "maxDepth=5"]
    assert rows[0][0].get("data-winner") == "true"
    assert "lower is better" in text
    assert "None: not a classification model" in text
    assert "confusion" not in dom.tables
    assert "Train is better than test by 0.7500." in text
    assert "No plots for this run." in text


def test_metric_directions_match_the_evaluation_module() -> None:
    for metric, higher in HIGHER_IS_BETTER.items():
        assert higher_is_better(metric) is higher, metric


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


def dump_dom(html_file: Path) -> str:
    """The DOM after the page's load event, serialised by Chromium."""
    return chromium("--virtual-time-budget=5000", "--dump-dom", html_file.as_uri())


@pytest.mark.browser
def test_chromium_renders_the_page_with_every_image(
    run: tuple[dict[str, Any], dict[str, Any], list[Path]], page: str, tmp_path: Path
) -> None:
    import numpy as np
    from matplotlib.image import imread

    html_file = write_report(tmp_path / "report.html", page)
    started = time.monotonic()
    dom = dump_dom(html_file)
    n = len(run[2])
    assert f'data-images-loaded="{n}"' in dom, re.findall(r"<body[^>]*>", dom)
    assert "Training report: fraud" in dom
    for cand in run[0]["candidates"]:
        for value in cand["folds"]:
            assert f"{value:.4f}" in dom
    assert 'data-winner="true"' in dom

    shot = screenshot(html_file, tmp_path / "report.png")
    pixels = imread(str(shot))
    assert pixels.shape[:2] == (SCREEN[1], SCREEN[0])
    grey = np.asarray(pixels[..., :3], dtype=float).mean(axis=2)
    assert grey.std() > 0.05, "the screenshot is blank"
    assert (grey < 0.9).mean() > 0.03, "the screenshot is almost all white"
    print(f"chromium: DOM dump and screenshot in {time.monotonic() - started:.1f}s")


def main(argv: list[str]) -> int:
    """Write a screenshot of the sample fraud report (for docs/img/report.png)."""
    if len(argv) != 2:
        print("usage: python -m tests.test_report OUT.png", file=sys.stderr)
        return 2
    out = Path(argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="mlpipe-report-") as tmp:
        summary, lineage, plots = sample_run(Path(tmp))
        html_file = write_report(Path(tmp) / "report.html", render_report(summary, lineage, plots))
        screenshot(html_file, out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
