"""Presentation of a training run, apart from the modelling code.

One typed `TrainingSummary` (`pipeline.report.summary`) is rendered four ways: the HTML page
(`html`, a Jinja2 template), `summary.md` (`markdown`), PNG plots (`plots`) and the console lines
(`console`); `text` holds the words and number formats they share. Nothing here imports Spark,
MLflow or the training code, and nothing in `pipeline.model` imports this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.redact import redact
from pipeline.report.html import render_html
from pipeline.report.markdown import render_markdown
from pipeline.report.plots import draw_plots
from pipeline.report.summary import TrainingSummary

__all__ = ["ReportFiles", "TrainingSummary", "write_report_files"]


@dataclass(frozen=True)
class ReportFiles:
    """The files of a run's report."""

    summary_json: Path
    summary_md: Path
    html: Path
    plots: list[Path]


def write_report_files(summary: TrainingSummary, out_dir: Path) -> ReportFiles:
    """Draw the plots, then write summary.json (summary.to_dict(), indent 2), summary.md and
    report.html into out_dir (created); all UTF-8. Writing again replaces the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = draw_plots(summary, out_dir)
    summary_json = out_dir / "summary.json"
    # Through the redactor: the report quotes paths, URIs and messages (pipeline.redact).
    summary_json.write_text(
        redact(json.dumps(summary.to_dict(), indent=2)) + "\n", encoding="utf-8"
    )
    summary_md = out_dir / "summary.md"
    summary_md.write_text(redact(render_markdown(summary)), encoding="utf-8")
    html = out_dir / "report.html"
    html.write_text(redact(render_html(summary, plots)), encoding="utf-8")
    return ReportFiles(summary_json, summary_md, html, plots)
