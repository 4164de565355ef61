"""The few lines `mlpipe train` prints when a run is done."""

from __future__ import annotations

from pipeline.report import text
from pipeline.report.summary import CONFUSION, TrainingSummary, is_count


def render_console(summary: TrainingSummary) -> str:
    """Each candidate's best grid point, the winner, the test metrics and the gate's decision."""
    metric = summary.metric
    lines = [f"candidates (cross-validated {summary.folds}-fold):"]
    for point in summary.best_per_candidate():
        lines.append(
            f"  {point.candidate:<22} {metric} {text.number(point.mean)} ± "
            f"{text.number(point.std)}  {point.params}"
        )
    winner = summary.winning
    lines.append(f"winner: {winner.candidate} {winner.params}")
    shown = {
        k: (round(v) if is_count(k) and float(v).is_integer() else round(v, 4))
        for k, v in summary.test.items()
        if k not in CONFUSION
    }
    lines.append(f"test: {shown}")
    model = (
        "not registered"
        if summary.model_name is None
        else f"{summary.model_name} version {summary.model_version}"
    )
    gate = summary.gate
    decision = text.gate_badge(gate) + (f" ({gate.reason})" if gate is not None else "")
    lines.append(f"model: {model}; gate: {decision}")
    return "\n".join(lines)
