"""A training run in MLflow: one parent run (a child per candidate), the summary and its report,
the registered model version and the champion gate."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import lineage, tracking
from pipeline.config.models import AppConfig
from pipeline.io.audit import LedgerEntry
from pipeline.io.delta import table_version
from pipeline.model.compiled import scoring_tags
from pipeline.model.evaluate import HIGHER_IS_BETTER
from pipeline.model.registry import LEDGER_TAG, GateDecision, gate_and_promote, log_and_register
from pipeline.paths import PipelinePaths
from pipeline.report import ReportFiles, write_report_files
from pipeline.report.console import render_console
from pipeline.report.summary import (
    GateOutcome,
    GridPoint,
    ScoreHistogram,
    TableInput,
    TrainingSummary,
)
from pipeline.tracking import ensure_experiment
from pipeline.train.evaluation import Evaluation
from pipeline.train.search import GridResult, best_per_candidate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced and decided."""

    mlflow_run_id: str
    model_name: str
    model_version: str
    decision: GateDecision
    summary: TrainingSummary
    report_dir: Path
    features_version: int

    @property
    def winner(self) -> GridPoint:
        return self.summary.winning

    @property
    def results(self) -> list[GridPoint]:
        return self.summary.candidates

    @property
    def test_metrics(self) -> dict[str, float]:
        return self.summary.test

    @property
    def threshold(self) -> float | None:
        return self.summary.threshold

    @property
    def rows(self) -> dict[str, int]:
        return self.summary.rows

    def describe(self) -> str:
        """The lines `mlpipe train` prints."""
        return render_console(self.summary)


@dataclass(frozen=True)
class RunInfo:
    """Where and when a training run happens."""

    run_date: dt.date
    run_id: str
    features_version: int
    report_dir: Path


def track_register_gate(
    spark: SparkSession,
    config: AppConfig,
    ev: Evaluation,
    info: RunInfo,
    durations: dict[str, float],
    lap: Callable[[str], None],
    entry: LedgerEntry,
) -> TrainResult:
    """Log the evaluation to MLflow, write the report, register the model and gate it; fill
    `entry`, the run's ledger row, as it goes."""
    import mlflow
    from mlflow import MlflowClient

    spec = config.require_pipeline()
    tspec = spec.require_train()
    paths = PipelinePaths.of(config)
    name = spec.model_name
    summary = build_summary(spark, config, ev, info, durations)
    experiment_id = ensure_experiment(config.mlflow, spec.name)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train {spec.name} {info.run_date}"
    ) as parent:
        _log_candidates(experiment_id, ev, tspec.metric)
        tracking.log_params(
            {
                "winner": ev.winner.candidate,
                **{f"winner.{k}": str(v) for k, v in ev.winner.params.items()},
                "metric": tspec.metric,
                "folds": tspec.folds,
                "seed": tspec.seed,
                "split": tspec.split.kind,
                "search": tspec.search.kind,
                "features_table": paths.features,
                "features_version": info.features_version,
                "decision_threshold": "" if ev.threshold is None else f"{ev.threshold:.6f}",
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in ev.test_metrics.items()})
        mlflow.log_metrics(summary.overfitting | {"cv_fits": float(summary.fits)})
        tracking.log_dict(
            config.model_dump(mode="json", exclude={"mlflow"}), "config_snapshot.json"
        )
        tracking.log_dict(_lineage_json(summary), "lineage.json")
        tracking.set_tags(summary.tags)
        tracking.log_dict({"feature_importance": ev.importances}, "feature_importance.json")
        # The evaluation is logged before registration, so a registry failure still leaves it.
        _log_report(write_report_files(summary, info.report_dir))

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
                "features_version": str(info.features_version),
                "run_date": str(info.run_date),
                "pipeline": spec.name,
                **scoring,
            },
        )
        _log_lineage(parent.info.run_id, config, ev, info, version)
        entry.rows_read = ev.rows["train"] + ev.rows["test"]
        entry.rows_accepted = entry.rows_read
        entry.table_versions["features"] = info.features_version
        entry.metrics = {f"test_{k}": v for k, v in ev.test_metrics.items()} | {
            "cv_mean": ev.winner.mean
        }

        def decided(decision: GateDecision) -> None:
            entry.message = (
                f"model {name} v{version}: "
                f"{'promoted' if decision.promoted else 'not promoted'} ({decision.reason})"
            )
            # The ledger row as it will be written, on the version, before the alias moves: a
            # run killed after the move leaves a champion whose row the next run writes from it.
            MlflowClient().set_model_version_tag(name, version, LEDGER_TAG, entry.to_json())

        decision = gate_and_promote(
            name,
            version,
            ev.final,
            ev.gate,
            margin=tspec.gate.margin,
            higher_is_better=HIGHER_IS_BETTER[ev.gate.metric],
            confidence=tspec.gate.confidence,
            decided=decided,
        )
        tracking.set_tags({"gate.promoted": str(decision.promoted), "gate.reason": decision.reason})
        outcome = GateOutcome(
            promoted=decision.promoted,
            reason=decision.reason,
            metric=ev.gate.metric,
            margin=tspec.gate.margin,
            challenger_metric=decision.challenger_metric,
            champion_metric=decision.champion_metric,
            champion_version=decision.champion_version,
            gain_lower_bound=decision.gain_lower_bound,
        )
        summary = summary.with_outcome(outcome, name, version)
        _log_report(write_report_files(summary, info.report_dir))
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
        run_id = parent.info.run_id
    return TrainResult(
        run_id, name, version, decision, summary, info.report_dir, info.features_version
    )


def _log_lineage(
    run_id: str, config: AppConfig, ev: Evaluation, info: RunInfo, version: str
) -> None:
    """The feature table version the run learned from and was tested on, as MLflow dataset
    inputs, and the test metrics on the registered version's logged model with their dataset."""
    spec = config.require_pipeline()
    first, last = spec.nightly.training_window(info.run_date)
    part = f"event dates {first}..{last}, {spec.require_train().split.kind} split"
    features = PipelinePaths.of(config).features
    frame = ev.example.select(*[c for c in ev.example.columns if not c.startswith("_")])
    train, test = (
        lineage.DeltaInput(
            f"features.{side}",
            features,
            info.features_version,
            ev.rows[side],
            part=f"{part}: {side} rows",
            context=context,
            frame=frame,
        )
        for side, context in (("train", lineage.TRAINING), ("test", lineage.EVALUATION))
    )
    lineage.log_inputs(run_id, [train, test])
    model_id = lineage.version_model_id(spec.model_name, version)
    test_metrics = {f"test_{k}": v for k, v in ev.test_metrics.items()}
    lineage.log_model_metrics(run_id, test_metrics, model_id=model_id, dataset=test)


def _log_candidates(experiment_id: str, ev: Evaluation, metric: str) -> None:
    """One child run per candidate: its best grid point's params and every fold's metric."""
    import mlflow

    for cand in best_per_candidate(ev.results, metric):
        with mlflow.start_run(experiment_id=experiment_id, run_name=cand.candidate, nested=True):
            tracking.log_params(
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
                for r in ev.results
                if r.candidate == cand.candidate
            ]
            tracking.log_dict({"metric": metric, "grid": grid}, "cv_grid.json")
            winner = cand.candidate == ev.winner.candidate and cand.index == ev.winner.index
            tracking.set_tags({"winner": str(winner)})


def _log_report(files: ReportFiles) -> None:
    import mlflow

    for path in [*files.plots, files.summary_json, files.summary_md, files.html]:
        mlflow.log_artifact(str(path), "evaluation")


def build_summary(
    spark: SparkSession,
    config: AppConfig,
    ev: Evaluation,
    info: RunInfo,
    durations: dict[str, float],
) -> TrainingSummary:
    """The run's typed summary (before registration and the gate)."""
    spec = config.require_pipeline()
    tspec = spec.require_train()
    paths = PipelinePaths.of(config)
    metric = tspec.metric
    points = [_point(r) for r in ev.results]
    winner = ev.results.index(ev.winner)
    gap = {
        f"train_{metric}": ev.train_metric,
        f"cv_{metric}": ev.winner.mean,
        f"test_{metric}": ev.test_metric,
        "overfit_gap_train_minus_test": ev.train_metric - ev.test_metric,
        "overfit_gap_cv_minus_test": ev.winner.mean - ev.test_metric,
    }
    bronze = paths.bronze(spec.feature_source)
    histogram = (
        ScoreHistogram(list(ev.test_histogram.positives), list(ev.test_histogram.totals))
        if ev.test_histogram is not None
        else None
    )
    return TrainingSummary(
        pipeline=spec.name,
        task=spec.task,
        run_date=str(info.run_date),
        metric=metric,
        folds=tspec.folds,
        search=tspec.search.kind,
        split=tspec.split.kind,
        fits=sum(len(r.rungs) for r in ev.results) * tspec.folds,
        candidates=points,
        winner=winner,
        test=dict(ev.test_metrics),
        overfitting=gap,
        threshold=ev.threshold,
        rows=dict(ev.rows),
        importances=dict(ev.importances),
        test_histogram=histogram,
        ranking=ev.ranking,
        inputs={
            "features": TableInput(paths.features, info.features_version),
            "bronze": TableInput(bronze, table_version(spark, bronze)),
        },
        tags=_code_tags(spark, info),
        durations_s=dict(durations),
    )


def _point(r: GridResult) -> GridPoint:
    return GridPoint(
        candidate=r.candidate,
        algorithm=r.algorithm,
        params=dict(r.params),
        folds=list(r.fold_metrics),
        fraction=r.fraction,
        rungs=list(r.rungs),
    )


def _code_tags(spark: SparkSession, info: RunInfo) -> dict[str, str]:
    """The code and library versions of the run (MLflow tags, and the report's lineage)."""
    from importlib.metadata import PackageNotFoundError, version

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
        delta_version = version("delta-spark")
    except PackageNotFoundError:
        delta_version = "unknown"
    return {
        "git_commit": commit,
        "spark_version": spark.version,
        "pyspark_version": pyspark.__version__,
        "delta_version": delta_version,
        "mlflow_version": mlflow.__version__,
        "run_id": info.run_id,
        "run_date": str(info.run_date),
    }


def _lineage_json(summary: TrainingSummary) -> dict[str, Any]:
    """`lineage.json`, as older readers of the run expect it."""
    return {
        "tags": summary.tags,
        "inputs": {k: {"path": v.path, "version": v.version} for k, v in summary.inputs.items()},
        "rows": summary.rows,
        "durations_s": summary.durations_s,
    }
