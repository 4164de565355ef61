"""The train stage: choose a model by k-fold cross-validation, evaluate it once on held-out data,
track everything in MLflow, register it, and promote it only when it beats the champion.

Cross-validation is our own loop rather than `CrossValidator`, for three reasons:
* preprocessing (imputer, scaler, selectors, PCA, indexers) is fitted once per fold on that fold's
  training rows and the assembled vectors are cached, instead of being refitted for every grid
  point (the same estimates, a fraction of the work);
* every candidate's metric on every fold is kept (CrossValidator only exposes averages);
* a score histogram per fold lets the decision threshold be chosen on out-of-fold predictions,
  never on test rows.
No fitted sub-model is kept: each is evaluated and dropped, so driver memory does not grow with the
grid.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from pipeline.config.models import AppConfig
from pipeline.config.stages import CandidateSpec, TrainSpec
from pipeline.errors import ConfigError, RunError
from pipeline.features.transforms import EVENT_DATE, LABEL
from pipeline.io.audit import LedgerEntry, audited
from pipeline.io.delta import is_delta_table, read_delta, table_version
from pipeline.model import bootstrap, sampling
from pipeline.model.candidates import grid_points, make_estimator, model_summary
from pipeline.model.compiled import scoring_tags
from pipeline.model.evaluate import (
    HIGHER_IS_BETTER,
    Histogram,
    better,
    binary_metrics,
    choose_threshold,
    plot_binary,
    plot_importances,
    regression_metrics,
    score_histogram,
    selection_metric,
)
from pipeline.model.preprocess import build_preprocessing, choose_pca_k, feature_names
from pipeline.model.registry import GateDecision, GateInputs, gate_and_promote, log_and_register
from pipeline.model.report import candidate_rank, render_report, write_report
from pipeline.paths import PipelinePaths
from pipeline.tracking import ensure_experiment

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

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


@dataclass
class TrainResult:
    """What a training run produced and decided."""

    mlflow_run_id: str
    model_name: str
    model_version: str
    winner: GridResult
    results: list[GridResult]
    test_metrics: dict[str, float]
    train_metric: float
    threshold: float | None
    decision: GateDecision
    rows: dict[str, int]
    features_version: int
    durations: dict[str, float]
    report_dir: Path
    metric: str

    def summary(self) -> str:
        """A few lines for the console."""
        lines = [
            f"candidates (cross-validated {self.results and len(self.results[0].fold_metrics)}-fold):"
        ]
        for cand in _best_per_candidate(self.results, self.metric):
            lines.append(
                f"  {cand.candidate:<22} {self.metric} {cand.mean:.4f} ± {cand.std:.4f}  {cand.params}"
            )
        lines.append(f"winner: {self.winner.candidate} {self.winner.params}")
        shown = {
            k: round(v, 4)
            for k, v in self.test_metrics.items()
            if k not in ("tp", "fp", "tn", "fn")
        }
        lines.append(f"test: {shown}")
        lines.append(
            f"model: {self.model_name} version {self.model_version}; gate: "
            f"{'promoted to champion' if self.decision.promoted else 'not promoted'} ({self.decision.reason})"
        )
        return "\n".join(lines)


def _train_spec(config: AppConfig) -> TrainSpec:
    spec = config.require_pipeline()
    inputs = "recommend" if spec.task == "recommendation" else "model"
    if spec.train is None or spec.features is None or getattr(spec, inputs) is None:
        raise ConfigError(
            f"training needs the `features`, `{inputs}` and `train` sections", key="pipeline.train"
        )
    return spec.train


def model_name(config: AppConfig) -> str:
    """The registered model name of the pipeline."""
    spec = config.require_pipeline()
    return (
        spec.train.model_name if spec.train and spec.train.model_name else None
    ) or f"mlpipe-{spec.name}"


def training_data(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, version: int
) -> DataFrame:
    """Labelled feature rows of the training window ending at the run date."""
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    first = run_date - dt.timedelta(days=spec.nightly.train_lookback_days - 1)
    return (
        read_delta(spark, PipelinePaths.of(config).features, version)
        .where(F.col(LABEL).isNotNull())
        .where((F.col(EVENT_DATE) >= F.lit(first)) & (F.col(EVENT_DATE) <= F.lit(run_date)))
    )


def split(spark: SparkSession, config: AppConfig, data: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Train/test split as configured (stratified, random or by time), spread evenly over the
    cores (see `sampling.spread`)."""
    spec = config.require_pipeline()
    tspec = _train_spec(config)
    assert spec.features is not None
    key, s = spec.features.key, tspec.split
    if s.kind == "time":
        from pyspark.sql import functions as F

        [cut] = data.select(
            F.unix_micros(F.col(spec.features.event_time)).alias("t")
        ).approxQuantile("t", [1.0 - s.test_fraction], 0.0)
        cutoff = dt.datetime.fromtimestamp(cut / 1e6, tz=dt.timezone.utc).replace(tzinfo=None)
        train, test = sampling.split_by_time(data, time_col=spec.features.event_time, cutoff=cutoff)
    elif s.kind == "stratified" and spec.task == "binary_classification":
        train, test = sampling.split_stratified(
            data, key=key, test_fraction=s.test_fraction, seed=s.seed
        )
    else:
        train, test = sampling.split_random(
            data, key=key, test_fraction=s.test_fraction, seed=s.seed
        )
    cores = spark.sparkContext.defaultParallelism
    return sampling.spread(train, key, cores), sampling.spread(test, key, cores)


def assign_folds(spark: SparkSession, config: AppConfig, train: DataFrame) -> DataFrame:
    """The training rows with `_fold`: blocks of time for a time split, stratified by label for a
    classifier, by key hash otherwise; spread evenly over the cores."""
    spec = config.require_pipeline()
    tspec = _train_spec(config)
    assert spec.features is not None
    if tspec.split.kind == "time":
        folded = sampling.with_time_folds(
            train, time_col=spec.features.event_time, folds=tspec.folds
        )
    else:
        folded = sampling.with_folds(
            train,
            key=spec.features.key,
            folds=tspec.folds,
            seed=tspec.seed,
            label=LABEL if spec.task == "binary_classification" else None,
        )
    return sampling.spread(folded, spec.features.key, spark.sparkContext.defaultParallelism)


def rebalance(df: DataFrame, config: AppConfig, *, seed: int) -> tuple[DataFrame, str | None]:
    """Apply the configured class rebalancing to training rows (never to test rows)."""
    tspec = _train_spec(config)
    spec = config.require_pipeline()
    assert spec.features is not None
    if tspec.rebalance.kind == "none" or spec.task != "binary_classification":
        return df, None
    counts = {float(r[LABEL]): int(r["count"]) for r in df.groupBy(LABEL).count().collect()}
    if tspec.rebalance.kind == "weight":
        return sampling.with_class_weights(df, sampling.balanced_weights(counts)), sampling.WEIGHT
    minority = min(counts, key=lambda k: counts[k])
    majority = max(counts, key=lambda k: counts[k])
    keep = min(1.0, tspec.rebalance.majority_ratio * counts[minority] / max(1, counts[majority]))
    out = sampling.downsample_majority(
        df, keep_fraction=keep, majority=majority, key=spec.features.key, seed=seed
    )
    return out, None


# A fold's evaluator: fitted on the fold's training rows, it scores one grid point on the fold's
# validation rows (metric, and the score histogram for classifiers); `release` frees its caches.
FoldEvaluator: TypeAlias = "Callable[[GridResult], tuple[float, Histogram | None]]"
FoldPreparer: TypeAlias = (
    "Callable[[DataFrame, DataFrame, int], tuple[FoldEvaluator, Callable[[], None]]]"
)


def halving_fractions(points: int, factor: int, min_fraction: float) -> list[float]:
    """Shares of the training rows per rung: 1/factor^(R-1), ..., 1/factor, 1 with
    R = floor(log_factor(points)) + 1 rungs, floored at `min_fraction`."""
    rungs = 1
    while factor**rungs <= points:
        rungs += 1
    fractions = {max(min_fraction, float(factor) ** (i - rungs + 1)) for i in range(rungs)}
    return sorted(fractions | {1.0})


def supervised_preparer(config: AppConfig, *, pca_k: int | None = None) -> FoldPreparer:
    """Per fold: fit preprocessing once on the fold's training rows and cache the vectors."""
    from pyspark.ml import Pipeline

    spec = config.require_pipeline()
    tspec = _train_spec(config)
    assert spec.model is not None
    model_spec = spec.model
    classification = spec.task == "binary_classification"
    by_candidate: dict[str, CandidateSpec] = {c.name: c for c in tspec.candidates}

    def prepare(
        fold_train: DataFrame, fold_valid: DataFrame, fold: int
    ) -> tuple[FoldEvaluator, Callable[[], None]]:
        fold_train, weight_col = rebalance(fold_train, config, seed=tspec.seed + fold)
        prep = Pipeline(
            stages=build_preprocessing(model_spec, classification=classification, pca_k=pca_k)
        ).fit(fold_train)
        keep = ["features", LABEL] + ([weight_col] if weight_col else [])
        tr = prep.transform(fold_train).select(*keep).persist()
        va = prep.transform(fold_valid).select("features", LABEL).persist()

        def evaluate(result: GridResult) -> tuple[float, Histogram | None]:
            estimator = make_estimator(
                by_candidate[result.candidate],
                result.params,
                seed=tspec.seed,
                weight_col=weight_col,
            )
            predictions = estimator.fit(tr).transform(va)
            metric = selection_metric(predictions, tspec.metric)
            return metric, score_histogram(predictions) if classification else None

        def release() -> None:
            tr.unpersist()
            va.unpersist()

        return evaluate, release

    return prepare


def cross_validate(
    spark: SparkSession,
    config: AppConfig,
    folded: DataFrame,
    *,
    pca_k: int | None = None,
    prepare: FoldPreparer | None = None,
    sample_key: list[str] | None = None,
) -> list[GridResult]:
    """Every grid point of every candidate on every fold (or successive halving, as configured).

    With halving, each rung samples every fold's training rows (a hash of `sample_key` and the
    seed, so reruns pick the same rows), fits the fold's preprocessing on that sample, evaluates
    the surviving points on the whole validation fold, and keeps the best 1/factor of them.
    """
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    tspec = _train_spec(config)
    assert spec.features is not None
    prepare = prepare or supervised_preparer(config, pca_k=pca_k)
    key = sample_key or list(spec.features.key)
    results = [
        GridResult(c.name, c.algorithm, i, params)
        for c in tspec.candidates
        for i, params in enumerate(grid_points(c))
    ]
    search = tspec.search
    fractions = (
        halving_fractions(len(results), search.factor, search.min_fraction)
        if search.kind == "halving"
        else [1.0]
    )
    alive = results
    for rung, fraction in enumerate(fractions):
        for r in alive:
            r.fold_metrics, r.histogram, r.fraction = [], None, fraction
        for fold in range(tspec.folds):
            started = time.monotonic()
            fold_train = folded.where(F.col(sampling.FOLD) != fold)
            if fraction < 1.0:
                fold_train = fold_train.where(
                    sampling.key_uniform(key, tspec.seed + fold, "halving") < F.lit(fraction)
                )
            evaluate, release = prepare(
                fold_train, folded.where(F.col(sampling.FOLD) == fold), fold
            )

            def run(result: GridResult, evaluate: FoldEvaluator = evaluate) -> None:
                metric, hist = evaluate(result)
                result.fold_metrics.append(metric)
                if hist is not None:
                    result.histogram = hist if result.histogram is None else result.histogram + hist

            with ThreadPoolExecutor(max_workers=tspec.parallelism) as pool:
                list(pool.map(run, alive))
            release()
            log.info(
                "fold %d/%d (%d points, %.0f%% of the rows) done in %.1fs",
                fold + 1,
                tspec.folds,
                len(alive),
                100 * fraction,
                time.monotonic() - started,
            )
        for r in alive:
            r.rungs.append((fraction, r.mean))
        if rung < len(fractions) - 1:
            ranked = sorted(
                alive, key=lambda r: -r.mean if HIGHER_IS_BETTER[tspec.metric] else r.mean
            )
            alive = ranked[: max(1, math.ceil(len(alive) / search.factor))]
    return results


def _best_per_candidate(results: list[GridResult], metric: str) -> list[GridResult]:
    best: dict[str, GridResult] = {}
    for r in results:
        # A point evaluated on all rows beats one eliminated early on a sample.
        if (
            r.candidate not in best
            or r.fraction > best[r.candidate].fraction
            or (
                r.fraction == best[r.candidate].fraction
                and better(metric, r.mean, best[r.candidate].mean)
            )
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


def fit_final(
    config: AppConfig, train: DataFrame, winner: GridResult, *, pca_k: int | None = None
) -> PipelineModel:
    """Refit preprocessing + the winning model on the whole training split."""
    from pyspark.ml import Pipeline

    spec = config.require_pipeline()
    tspec = _train_spec(config)
    assert spec.model is not None
    fit_df, weight_col = rebalance(train, config, seed=tspec.seed)
    candidate = next(c for c in tspec.candidates if c.name == winner.candidate)
    stages = build_preprocessing(
        spec.model, classification=spec.task == "binary_classification", pca_k=pca_k
    )
    stages.append(make_estimator(candidate, winner.params, seed=tspec.seed, weight_col=weight_col))
    return Pipeline(stages=stages).fit(fit_df)


def run_train(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> TrainResult:
    """Select, evaluate, log, register and gate; one audit row."""
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    entry = LedgerEntry(run_id=run_id, pipeline=spec.name, stage="train", run_date=run_date)
    with audited(spark, paths.audit, entry):
        return _run_train(spark, config, run_date=run_date, run_id=run_id, entry=entry)


@dataclass
class Evaluation:
    """What the task-specific part of training hands to tracking, the registry and the gate."""

    results: list[GridResult]
    winner: GridResult
    final: PipelineModel
    test_metrics: dict[str, float]
    train_metric: float
    test_metric: float
    threshold: float | None
    plots: list[Path]
    importances: dict[str, float]
    rows: dict[str, int]
    example: DataFrame  # model input rows, for the logged signature
    gate: GateInputs
    release: Callable[[], None]  # frees the cached splits once everything is logged


def _run_train(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str, entry: LedgerEntry
) -> TrainResult:
    spec = config.require_pipeline()
    _train_spec(config)
    paths = PipelinePaths.of(config)
    if not is_delta_table(spark, paths.features):
        raise RunError(f"no feature table at {paths.features}: run `mlpipe features` first")
    durations: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        durations[name] = round(now - clock, 3)
        clock = now

    features_version = table_version(spark, paths.features)
    assert features_version is not None
    data = training_data(spark, config, run_date=run_date, version=features_version)
    report_dir = Path(config.storage.reports) / spec.name / f"{run_date}-{run_id[:8]}"
    if spec.task == "recommendation":
        from pipeline.train.recommend import evaluate_recommender

        evaluation = evaluate_recommender(spark, config, data, report_dir=report_dir, lap=lap)
    else:
        evaluation = _evaluate_supervised(spark, config, data, report_dir=report_dir, lap=lap)
    entry.rows_read = evaluation.rows["train"] + evaluation.rows["test"]
    entry.rows_accepted = entry.rows_read
    result = _track_register_gate(
        spark,
        config,
        evaluation,
        run_date=run_date,
        run_id=run_id,
        features_version=features_version,
        durations=durations,
        report_dir=report_dir,
        lap=lap,
    )
    evaluation.release()
    entry.table_versions["features"] = features_version
    entry.metrics = {f"test_{k}": v for k, v in result.test_metrics.items()} | {
        "cv_mean": result.winner.mean
    }
    entry.message = (
        f"model {result.model_name} v{result.model_version}: "
        f"{'promoted' if result.decision.promoted else 'not promoted'} ({result.decision.reason})"
    )
    entry.finish()
    log.info("training done: %s", entry.message)
    return result


def _evaluate_supervised(
    spark: SparkSession,
    config: AppConfig,
    data: DataFrame,
    *,
    report_dir: Path,
    lap: Callable[[str], None],
) -> Evaluation:
    """Classification and regression: split, cross-validate, refit, evaluate on test."""
    spec = config.require_pipeline()
    tspec = _train_spec(config)
    assert spec.model is not None
    assert spec.features is not None
    classification = spec.task == "binary_classification"
    train, test = split(spark, config, data)
    train, test = train.persist(), test.persist()
    rows = {"train": train.count(), "test": test.count()}
    if rows["train"] == 0 or rows["test"] == 0:
        raise RunError(
            f"not enough labelled rows to train (train {rows['train']}, test {rows['test']}) "
            f"in the {spec.nightly.train_lookback_days} days of the training window"
        )
    if classification:
        for r in train.groupBy(LABEL).count().collect():
            rows[f"train_label_{int(r[LABEL])}"] = int(r["count"])
        if rows.get("train_label_1", 0) < tspec.folds:
            raise RunError(
                f"only {rows.get('train_label_1', 0)} positive training rows: too few for {tspec.folds} folds"
            )
    lap("split")

    folded = assign_folds(spark, config, train).persist()
    # PCA by explained variance: k is chosen once, on the training split (never on test rows).
    pca_k = choose_pca_k(spec.model, train, classification=classification)
    results = cross_validate(spark, config, folded, pca_k=pca_k)
    folded.unpersist()
    winner = pick_winner(results, tspec.metric)
    lap("cross_validation")

    final = fit_final(config, train, winner, pca_k=pca_k)
    names = feature_names(spec.model, final.stages[:-1])
    importances = model_summary(final.stages[-1], names)
    lap("refit")

    threshold: float | None = None
    plots: list[Path] = []
    test_pred = final.transform(test)
    if classification:
        assert winner.histogram is not None
        threshold = choose_threshold(
            winner.histogram,
            tspec.threshold.rule,
            min_precision=tspec.threshold.min_precision,
            fixed=tspec.threshold.value,
        )
        test_metrics, test_hist = binary_metrics(test_pred, threshold)
        plots = plot_binary(test_hist, test_metrics, report_dir)
    else:
        test_metrics = regression_metrics(test_pred)
    train_metric = selection_metric(final.transform(train), tspec.metric)
    # Only measured again when the test metrics lack it (a `.get` default would always run it).
    test_metric = (
        test_metrics[tspec.metric]
        if tspec.metric in test_metrics
        else selection_metric(test_pred, tspec.metric)
    )
    importance_plot = plot_importances(importances, report_dir)
    if importance_plot is not None:
        plots.append(importance_plot)
    lap("evaluate")

    gate_metric = tspec.gate.metric or tspec.metric

    def score(model: PipelineModel) -> float:
        return selection_metric(model.transform(test), gate_metric)

    def gains(challenger: PipelineModel, champion: PipelineModel) -> list[float]:
        return bootstrap.supervised_gains(
            challenger.transform(test),
            champion.transform(test),
            key=list(spec.features.key) if spec.features else [],
            metric=gate_metric,
            replicates=tspec.gate.bootstrap,
            seed=tspec.seed,
        )

    def release() -> None:
        train.unpersist()
        test.unpersist()

    return Evaluation(
        results=results,
        winner=winner,
        final=final,
        test_metrics=test_metrics,
        train_metric=train_metric,
        test_metric=test_metric,
        threshold=threshold,
        plots=plots,
        importances=importances,
        rows=rows,
        example=test,
        gate=GateInputs(gate_metric, score, gains if tspec.gate.bootstrap else None),
        release=release,
    )


def _track_register_gate(
    spark: SparkSession,
    config: AppConfig,
    ev: Evaluation,
    *,
    run_date: dt.date,
    run_id: str,
    features_version: int,
    durations: dict[str, float],
    report_dir: Path,
    lap: Callable[[str], None],
) -> TrainResult:
    """One MLflow parent run (a child per candidate), the report, the registry and the gate."""
    import mlflow

    spec = config.require_pipeline()
    tspec = _train_spec(config)
    paths = PipelinePaths.of(config)
    results, winner, metric = ev.results, ev.winner, tspec.metric
    halving = tspec.search.kind == "halving"
    name = model_name(config)
    experiment_id = ensure_experiment(config.mlflow, spec.name)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train {spec.name} {run_date}"
    ) as parent:
        for cand in _best_per_candidate(results, metric):
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=cand.candidate, nested=True
            ):
                mlflow.log_params(
                    {"algorithm": cand.algorithm, **{k: str(v) for k, v in cand.params.items()}}
                )
                metrics = {f"cv_{metric}_fold_{i}": v for i, v in enumerate(cand.fold_metrics)}
                metrics |= {
                    f"cv_{metric}_mean": cand.mean,
                    f"cv_{metric}_std": cand.std,
                    "cv_rows_fraction": cand.fraction,
                }
                mlflow.log_metrics(metrics)
                grid = [
                    {
                        "params": r.params,
                        "fold_metrics": r.fold_metrics,
                        "mean": r.mean,
                        "std": r.std,
                        "fraction": r.fraction,
                        "rungs": r.rungs,
                    }
                    for r in results
                    if r.candidate == cand.candidate
                ]
                mlflow.log_dict({"metric": metric, "grid": grid}, "cv_grid.json")
                mlflow.set_tag(
                    "winner", str(cand.candidate == winner.candidate and cand.index == winner.index)
                )
        lineage = _lineage(
            spark, config, paths, features_version, ev.rows, durations, run_date, run_id
        )
        fits = sum(len(r.rungs) for r in results) * tspec.folds
        mlflow.log_params(
            {
                "winner": winner.candidate,
                **{f"winner.{k}": str(v) for k, v in winner.params.items()},
                "metric": metric,
                "folds": tspec.folds,
                "seed": tspec.seed,
                "split": tspec.split.kind,
                "search": tspec.search.kind,
                "features_table": paths.features,
                "features_version": features_version,
                "decision_threshold": "" if ev.threshold is None else f"{ev.threshold:.6f}",
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in ev.test_metrics.items()})
        gap = {
            f"train_{metric}": ev.train_metric,
            f"cv_{metric}": winner.mean,
            f"test_{metric}": ev.test_metric,
            "overfit_gap_train_minus_test": ev.train_metric - ev.test_metric,
            "overfit_gap_cv_minus_test": winner.mean - ev.test_metric,
        }
        mlflow.log_metrics(gap | {"cv_fits": float(fits)})
        mlflow.log_dict(config.model_dump(mode="json", exclude={"mlflow"}), "config_snapshot.json")
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.set_tags({k: str(v) for k, v in lineage["tags"].items()})
        mlflow.log_dict({"feature_importance": ev.importances}, "feature_importance.json")
        summary: dict[str, Any] = {
            "pipeline": spec.name,
            "task": spec.task,
            "run_date": str(run_date),
            "metric": metric,
            "search": {"kind": tspec.search.kind, "fits": fits},
            "winner": {
                "candidate": winner.candidate,
                "params": winner.params,
                "cv_mean": winner.mean,
                "cv_std": winner.std,
                "cv_folds": winner.fold_metrics,
            },
            "candidates": [
                {
                    "candidate": r.candidate,
                    "params": r.params,
                    "folds": r.fold_metrics,
                    "mean": r.mean,
                    "std": r.std,
                    **({"fraction": r.fraction} if halving else {}),
                }
                for r in results
            ],
            "test": ev.test_metrics,
            "overfitting": gap,
            "threshold": ev.threshold,
            "rows": ev.rows,
        }
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (report_dir / "summary.md").write_text(_markdown(summary))
        for path in [*ev.plots, report_dir / "summary.json", report_dir / "summary.md"]:
            mlflow.log_artifact(str(path), "evaluation")

        # Whether scoring may use the compiled expression: checked once here, on test rows.
        scoring = (
            {}
            if spec.task == "recommendation"
            else scoring_tags(
                ev.final, ev.example, classification=spec.task == "binary_classification"
            )
        )
        version = log_and_register(
            spark,
            ev.final,
            ev.example,
            name=name,
            threshold=ev.threshold,
            tags={
                "features_version": str(features_version),
                "run_date": str(run_date),
                "pipeline": spec.name,
                **scoring,
            },
        )
        gate_metric = ev.gate.metric
        decision = gate_and_promote(
            name,
            version,
            ev.final,
            ev.gate,
            margin=tspec.gate.margin,
            higher_is_better=HIGHER_IS_BETTER[gate_metric],
            confidence=tspec.gate.confidence,
        )
        mlflow.set_tags({"gate.promoted": str(decision.promoted), "gate.reason": decision.reason})
        summary["gate"] = {"promoted": decision.promoted, "reason": decision.reason}
        summary["model"] = {"name": name, "version": version}
        html = render_report(summary, lineage, ev.plots)
        report = write_report(report_dir / "report.html", html)
        mlflow.log_artifact(str(report), "evaluation")
        mlflow.log_metrics(
            {
                k: v
                for k, v in {
                    "gate.challenger": decision.challenger_metric,
                    "gate.champion": decision.champion_metric,
                    "gate.gain_lower_bound": decision.gain_lower_bound,
                }.items()
                if v is not None
            }
        )
        lap("log_and_gate")
        mlflow.log_metrics({f"duration_s.{k}": v for k, v in durations.items()})
        mlflow_run_id = parent.info.run_id

    return TrainResult(
        mlflow_run_id,
        name,
        version,
        winner,
        results,
        ev.test_metrics,
        ev.train_metric,
        ev.threshold,
        decision,
        ev.rows,
        features_version,
        durations,
        report_dir,
        metric,
    )


def _lineage(
    spark: SparkSession,
    config: AppConfig,
    paths: PipelinePaths,
    features_version: int,
    rows: dict[str, int],
    durations: dict[str, float],
    run_date: dt.date,
    run_id: str,
) -> dict[str, Any]:
    import subprocess

    import mlflow
    import pyspark

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                cwd=Path(__file__).resolve().parents[2],
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    try:
        from importlib.metadata import version

        delta_version = version("delta-spark")
    except Exception:
        delta_version = "unknown"
    spec = config.require_pipeline()
    source = (spec.features.source if spec.features else None) or next(iter(spec.sources))
    return {
        "tags": {
            "git_commit": commit,
            "spark_version": spark.version,
            "pyspark_version": pyspark.__version__,
            "delta_version": delta_version,
            "mlflow_version": mlflow.__version__,
            "run_id": run_id,
            "run_date": str(run_date),
        },
        "inputs": {
            "features": {"path": paths.features, "version": features_version},
            "bronze": {
                "path": paths.bronze(source),
                "version": table_version(spark, paths.bronze(source)),
            },
        },
        "rows": rows,
        "durations_s": durations,
    }


def _markdown(summary: dict[str, Any]) -> str:
    metric = summary["metric"]
    lines = [
        f"# Training report: {summary['pipeline']} ({summary['run_date']})",
        "",
        f"Selection metric: **{metric}** ({len(summary['winner']['cv_folds'])}-fold cross-validation).",
        "",
    ]
    halving = any("fraction" in c for c in summary["candidates"])
    if halving:
        lines += [
            "| candidate | params | rows | folds | mean | std |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
    else:
        lines += ["| candidate | params | folds | mean | std |", "| --- | --- | --- | --- | --- |"]
    for c in sorted(summary["candidates"], key=lambda c: candidate_rank(c, metric)):
        folds = ", ".join(f"{v:.4f}" for v in c["folds"])
        rows = f" {c['fraction']:.0%} |" if halving else ""
        lines.append(
            f"| {c['candidate']} | `{c['params']}` |{rows} {folds} | {c['mean']:.4f} | {c['std']:.4f} |"
        )
    lines += [
        "",
        f"**Winner:** {summary['winner']['candidate']} `{summary['winner']['params']}`",
        "",
        "## Test set (held out from every training and tuning step)",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v:.4f} |" for k, v in summary["test"].items()]
    lines += ["", "## Overfitting check", "", "| | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in summary["overfitting"].items()]
    return "\n".join(lines) + "\n"
