"""The training summary: one typed object that every rendering of a training run reads.

Training builds it once (`pipeline.train.track`); the HTML page, the Markdown summary, the plots,
`summary.json` and the console lines are all made from it, so none of them can disagree with
another. It is plain data (standard library only, no Spark): it round-trips through JSON
(`to_dict` / `from_dict`), and a report can be rendered again from a saved `summary.json`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "expected_calibration_error"})
CONFUSION = ("tp", "fp", "tn", "fn")
# Values in `TrainingSummary.test` that count things (rows, users) rather than measure the model;
# they are shown as whole numbers. Everything in `TrainingSummary.rows` is a count too.
COUNTS = frozenset({*CONFUSION, "users"})

# Two estimates of the selection metric agree when they differ by at most AGREE_ABSOLUTE or by at
# most AGREE_RELATIVE of the test value, whichever is larger: 0.02 is noise for metrics on [0, 1]
# (areas, F1, accuracy), 5% is noise for errors on any scale (an RMSE of 3.0 may move by 0.15).
AGREE_ABSOLUTE = 0.02
AGREE_RELATIVE = 0.05


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is better."""
    return metric not in LOWER_IS_BETTER


def is_count(key: str) -> bool:
    """Whether the test value `key` is a count (shown as a whole number), not a metric."""
    return key in COUNTS


def agreement_tolerance(test: float) -> float:
    """How far another estimate may be from the test value and still agree with it."""
    return max(AGREE_ABSOLUTE, AGREE_RELATIVE * abs(test))


def advantage(metric: str, value: float, reference: float) -> float:
    """How much better `value` is than `reference` for `metric` (negative: worse)."""
    return value - reference if higher_is_better(metric) else reference - value


@dataclass(frozen=True)
class GridPoint:
    """One grid point of one candidate: its parameters and its metric on every fold.

    `fraction` is the share of each fold's training rows of the last rung it was evaluated on
    (successive halving; 1.0 = all rows), `rungs` its (fraction, mean) at every rung reached.
    """

    candidate: str
    algorithm: str
    params: dict[str, Any]
    folds: list[float]
    fraction: float = 1.0
    rungs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.folds) if self.folds else math.nan

    @property
    def std(self) -> float:
        return statistics.pstdev(self.folds) if len(self.folds) > 1 else 0.0


def rank_key(point: GridPoint, metric: str) -> tuple[float, float]:
    """Sort key of grid points: those evaluated on all rows first (halving stops the others on a
    sample), then the best mean; a missing mean sorts last."""
    mean = point.mean
    if mean is None or math.isnan(mean):
        return -point.fraction, math.inf
    return -point.fraction, (-mean if higher_is_better(metric) else mean)


@dataclass(frozen=True)
class ScoreHistogram:
    """Positives and rows per score bin of the test set (bin i covers [i/n, (i+1)/n))."""

    positives: list[float]
    totals: list[float]


@dataclass(frozen=True)
class RankingComparison:
    """A recommender against the most-popular baseline on the same held-out users."""

    k: int
    users: int
    model: dict[str, float]
    baseline: dict[str, float]


@dataclass(frozen=True)
class GateOutcome:
    """The champion/challenger decision."""

    promoted: bool
    reason: str
    metric: str
    margin: float
    challenger_metric: float | None = None
    champion_metric: float | None = None
    champion_version: str | None = None
    gain_lower_bound: float | None = None


@dataclass(frozen=True)
class TableInput:
    """A Delta table a run read: where, and which version."""

    path: str
    version: int | None


@dataclass(frozen=True)
class TrainingSummary:
    """Everything a person (or a later tool) needs to read a training run.

    `candidates` holds every grid point of every candidate; `winner` indexes into it. `test`
    holds the held-out metrics (classification: also the confusion counts `tp`, `fp`, `tn`, `fn`
    at `threshold`), `overfitting` the train / cross-validation / test values of the selection
    metric and their gaps. `test_histogram` (classification) and `ranking` (recommendation) are
    what the plots are drawn from. `split` is how test rows were held out (`time`, `random`,
    `stratified`; None when not recorded): it explains a gap between cross-validation and test.
    """

    pipeline: str
    task: str
    run_date: str
    metric: str
    folds: int
    search: str
    fits: int
    candidates: list[GridPoint]
    winner: int
    test: dict[str, float]
    overfitting: dict[str, float]
    threshold: float | None
    rows: dict[str, int]
    importances: dict[str, float] = field(default_factory=dict)
    test_histogram: ScoreHistogram | None = None
    ranking: RankingComparison | None = None
    inputs: dict[str, TableInput] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)
    gate: GateOutcome | None = None
    model_name: str | None = None
    model_version: str | None = None
    split: str | None = None

    @property
    def winning(self) -> GridPoint:
        """The winning grid point."""
        return self.candidates[self.winner]

    def selection_value(self, stage: str) -> float | None:
        """The selection metric on `stage` ("train", "cv" or "test"), from the overfitting check
        (the test value falls back to the test metrics); None when not recorded."""
        value = self.overfitting.get(f"{stage}_{self.metric}")
        if value is None and stage == "test":
            value = self.test.get(self.metric)
        return None if value is None or not math.isfinite(value) else float(value)

    def ranked(self) -> list[GridPoint]:
        """The grid points best first (see `rank_key`)."""
        return sorted(self.candidates, key=lambda p: rank_key(p, self.metric))

    def best_per_candidate(self) -> list[GridPoint]:
        """Each candidate's best grid point, best candidate first."""
        seen: dict[str, GridPoint] = {}
        for point in self.ranked():
            seen.setdefault(point.candidate, point)
        return list(seen.values())

    def with_outcome(
        self, gate: GateOutcome, model_name: str, model_version: str
    ) -> TrainingSummary:
        """The summary once the model is registered and gated."""
        return dataclasses.replace(
            self, gate=gate, model_name=model_name, model_version=model_version
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what `summary.json` holds); `from_dict` reads it back."""
        out = dataclasses.asdict(self)
        # Derived values, for readers of the JSON that do not recompute them.
        for point, data in zip(self.candidates, out["candidates"], strict=True):
            data["mean"], data["std"] = _finite(point.mean), point.std
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSummary:
        """A summary from `to_dict`'s output (extra keys, such as the derived means, ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["candidates"] = [
            GridPoint(
                candidate=c["candidate"],
                algorithm=c["algorithm"],
                params=dict(c["params"]),
                folds=[float(v) for v in c["folds"]],
                fraction=float(c.get("fraction", 1.0)),
                rungs=[(float(a), float(b)) for a, b in c.get("rungs", [])],
            )
            for c in data["candidates"]
        ]
        if data.get("test_histogram") is not None:
            values["test_histogram"] = ScoreHistogram(**data["test_histogram"])
        if data.get("ranking") is not None:
            values["ranking"] = RankingComparison(**data["ranking"])
        if data.get("gate") is not None:
            values["gate"] = GateOutcome(**data["gate"])
        values["inputs"] = {k: TableInput(**v) for k, v in (data.get("inputs") or {}).items()}
        values["rows"] = {k: int(v) for k, v in (data.get("rows") or {}).items()}
        return cls(**values)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
