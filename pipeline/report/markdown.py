"""`summary.md`: the training summary as Markdown, for a pull request, a wiki or a terminal."""

from __future__ import annotations

from typing import Any

from pipeline.report import text
from pipeline.report.summary import TrainingSummary


def render_markdown(summary: TrainingSummary) -> str:
    """The run as Markdown: candidates best first, the winner, test metrics (counts as whole
    numbers), the baseline comparison of a recommender, the overfitting check, gate and rows."""
    metric = summary.metric
    lines = [
        f"# Training report: {summary.pipeline} ({summary.run_date})",
        "",
        f"Selection metric: **{metric}** ({summary.folds}-fold cross-validation, "
        f"{text.direction(metric)}).",
        "",
    ]
    halving = summary.search == "halving" or any(p.fraction < 1.0 for p in summary.candidates)
    head = ["candidate", "params", *(["rows"] if halving else []), "folds", "mean", "std"]
    lines += _table_head(head)
    for point in summary.ranked():
        cells = [
            point.candidate,
            f"`{point.params}`",
            *([f"{point.fraction:.0%}"] if halving else []),
            ", ".join(text.number(v) for v in point.folds),
            text.number(point.mean),
            text.number(point.std),
        ]
        lines.append(_row(cells))
    winner = summary.winning
    lines += [
        "",
        f"**Winner:** {winner.candidate} `{winner.params}`",
        "",
        "## Test set (held out from every training and tuning step)",
        "",
        *_table_head(["metric", "value"]),
        *[_row([k, text.value_text(k, v)]) for k, v in summary.test.items()],
        "",
    ]
    if summary.threshold is not None:
        lines += [
            f"Decision threshold **{text.number(summary.threshold)}**: "
            f"{text.threshold_note(summary)}",
            "",
        ]
    if summary.ranking is not None:
        r = summary.ranking
        lines += [
            "## Against the most-popular baseline",
            "",
            f"Top {r.k} for {text.count(r.users)} held-out users.",
            "",
            *_table_head(["metric", "model", "most popular", "lift"]),
            *[_row(list(row)) for row in text.ranking_rows(summary)],
            "",
        ]
    lines += [
        "## Overfitting check",
        "",
        *_table_head(["", "value"]),
        *[_row([k, text.number(v)]) for k, v in summary.overfitting.items()],
    ]
    notes = text.overfitting_notes(summary)
    if notes:
        lines += ["", *[f"- {note}" for note in notes], "", f"Tolerance: {text.TOLERANCE_RULE}."]
    if summary.gate is not None:
        gate = summary.gate
        comparison = text.gate_comparison(gate)
        lines += [
            "",
            "## Champion gate",
            "",
            f"**{text.gate_badge(gate)}**: {gate.reason}"
            + (f" ({comparison})" if comparison else ""),
        ]
        if summary.model_name is not None:
            lines += ["", f"Model {summary.model_name} version {summary.model_version}."]
    if summary.rows:
        lines += [
            "",
            "## Rows",
            "",
            *_table_head(["", "rows"]),
            *[_row([text.row_label(summary, k), text.count(v)]) for k, v in summary.rows.items()],
        ]
    return "\n".join(lines) + "\n"


def _table_head(names: list[str]) -> list[str]:
    return [_row(names), _row(["---"] * len(names))]


def _row(cells: list[Any]) -> str:
    # A pipe inside a value would end its cell.
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
