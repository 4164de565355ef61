"""Model selection by k-fold cross-validation: every grid point of every candidate on every fold,
or successive halving; the winner is the best mean on all rows.

This module knows neither Spark nor MLflow. What a fold is, how its shared preprocessing is fitted
and how one grid point is scored on it is a *fold preparer*'s business (supervised learning and
recommendation each have theirs): given a fold number and the share of the fold's training rows to
use, it fits what the grid points share, caches it, and returns an evaluator per grid point and a
`release` for its caches. The loop calls `release` in a `finally`, so a failing fit never leaves
cached folds behind (as MLlib's `CrossValidator._fit` unpersists its folds).

Why our own loop rather than `CrossValidator`:
* preprocessing is fitted once per fold instead of once per grid point (the same estimates, a
  fraction of the work);
* every candidate's metric on every fold is kept, not only the averages;
* a classifier's score histogram per fold lets the threshold be chosen on out-of-fold scores.
No fitted sub-model is kept: each is evaluated and dropped, so driver memory does not grow with the
grid.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.stages import CandidateSpec, SearchSpec, TrainSpec
from pipeline.model.evaluate import HIGHER_IS_BETTER, better
from pipeline.model.histogram import Histogram

log = logging.getLogger(__name__)


@dataclass
class GridResult:
    """One grid point of one candidate: its parameters and its metric on every fold."""

    candidate: str
    algorithm: str
    index: int
    params: dict[str, Any]
    fold_metrics: list[float] = field(default_factory=list)
    histogram: Histogram | None = None
    # Successive halving: the share of each fold's training rows of the last rung this point was
    # evaluated on (1.0 = all rows), and its mean metric at every rung it reached.
    fraction: float = 1.0
    rungs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.fold_metrics)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.fold_metrics) if len(self.fold_metrics) > 1 else 0.0


# Scores one grid point on a prepared fold: its metric, and the score histogram for classifiers.
FoldEvaluator = Callable[[GridResult], tuple[float, Histogram | None]]


@dataclass(frozen=True)
class PreparedFold:
    """A fold made ready for its grid points: an evaluator, and what frees its caches."""

    evaluate: FoldEvaluator
    release: Callable[[], None]


# (fold number, share of the fold's training rows) -> the prepared fold.
FoldPreparer = Callable[[int, float], PreparedFold]


def grid_points(candidate: CandidateSpec) -> list[dict[str, Any]]:
    """Every combination of the candidate's grid, merged over its fixed params (in a stable order)."""
    keys = sorted(candidate.grid)
    combos = itertools.product(*[candidate.grid[k] for k in keys]) if keys else [()]
    return [{**candidate.params, **dict(zip(keys, values, strict=True))} for values in combos]


def halving_fractions(points: int, factor: int, min_fraction: float) -> list[float]:
    """Shares of the training rows per rung: 1/factor^(R-1), ..., 1/factor, 1 with
    R = floor(log_factor(points)) + 1 rungs, floored at `min_fraction`."""
    rungs = 1
    while factor**rungs <= points:
        rungs += 1
    fractions = {max(min_fraction, float(factor) ** (i - rungs + 1)) for i in range(rungs)}
    return sorted(fractions | {1.0})


def cross_validate(
    candidates: Sequence[CandidateSpec],
    *,
    folds: int,
    metric: str,
    search: SearchSpec,
    prepare: FoldPreparer,
    parallelism: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[GridResult]:
    """Every grid point of every candidate on every fold, or successive halving.

    With halving, each rung asks the preparer for a share of every fold's training rows,
    evaluates the surviving points on the whole validation fold, and keeps the best 1/factor.
    """
    results = [
        GridResult(c.name, c.algorithm, i, params)
        for c in candidates
        for i, params in enumerate(grid_points(c))
    ]
    fractions = (
        halving_fractions(len(results), search.factor, search.min_fraction)
        if search.kind == "halving"
        else [1.0]
    )
    alive = results
    for rung, fraction in enumerate(fractions):
        for r in alive:
            r.fold_metrics, r.histogram, r.fraction = [], None, fraction
        for fold in range(folds):
            started = time.monotonic()
            _run_fold(prepare(fold, fraction), alive, parallelism)
            note = (
                f"fold {fold + 1}/{folds}: {len(alive)} grid point(s) on "
                f"{100 * fraction:.0f}% of the rows in {time.monotonic() - started:.1f}s"
            )
            log.info(note)
            if progress is not None:
                progress(note)
        for r in alive:
            r.rungs.append((fraction, r.mean))
        if rung < len(fractions) - 1:
            ranked = sorted(alive, key=lambda r: -r.mean if HIGHER_IS_BETTER[metric] else r.mean)
            alive = ranked[: max(1, math.ceil(len(alive) / search.factor))]
    return results


def search_candidates(
    spec: TrainSpec, prepare: FoldPreparer, progress: Callable[[str], None] | None = None
) -> list[GridResult]:
    """`cross_validate` as the `train` section configures it."""
    return cross_validate(
        spec.candidates,
        folds=spec.folds,
        metric=spec.metric,
        search=spec.search,
        prepare=prepare,
        parallelism=spec.parallelism,
        progress=progress,
    )


def _run_fold(prepared: PreparedFold, points: list[GridResult], parallelism: int) -> None:
    def run(result: GridResult) -> None:
        value, hist = prepared.evaluate(result)
        result.fold_metrics.append(value)
        if hist is not None:
            result.histogram = hist if result.histogram is None else result.histogram + hist

    try:
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            list(pool.map(run, points))
    finally:
        prepared.release()


def best_per_candidate(results: list[GridResult], metric: str) -> list[GridResult]:
    """Each candidate's best grid point: one evaluated on all rows beats one stopped on a sample."""
    best: dict[str, GridResult] = {}
    for r in results:
        held = best.get(r.candidate)
        if (
            held is None
            or r.fraction > held.fraction
            or (r.fraction == held.fraction and better(metric, r.mean, held.mean))
        ):
            best[r.candidate] = r
    return list(best.values())


def pick_winner(results: list[GridResult], metric: str) -> GridResult:
    """The grid point with the best mean cross-validation metric on all rows (first on ties)."""
    finalists = [r for r in results if r.fraction == 1.0] or results
    winner = finalists[0]
    for r in finalists[1:]:
        if better(metric, r.mean, winner.mean):
            winner = r
    return winner
