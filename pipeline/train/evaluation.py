"""What the task-specific part of training (supervised or recommendation) hands to tracking, the
registry and the gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.model.histogram import Histogram
from pipeline.model.registry import GateInputs
from pipeline.report.summary import RankingComparison
from pipeline.train.search import GridResult

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame


@dataclass
class Evaluation:
    """A chosen, refitted and tested model, with everything needed to log, register and gate it.

    `train_metric` is the selection metric on the rows the final model was fitted on (the
    overfitting check), `test_metric` the same on the held-out test set. `release` frees the
    cached splits once everything is logged.
    """

    results: list[GridResult]
    winner: GridResult
    final: PipelineModel
    test_metrics: dict[str, float]
    train_metric: float
    test_metric: float
    threshold: float | None
    importances: dict[str, float]
    rows: dict[str, int]
    example: DataFrame  # model input rows, for the logged signature and the scoring check
    gate: GateInputs
    release: Callable[[], None]
    test_histogram: Histogram | None = None
    ranking: RankingComparison | None = None
