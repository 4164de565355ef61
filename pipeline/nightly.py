"""The nightly flow: ingest -> features -> (retrain when due) -> score, for one run date, in one
Spark application; and backfill, the same for a range of dates in order.

Resumable: a stage whose latest audit row for the date succeeded (or was a no-op) is skipped on a
rerun, so a failed night resumes where it stopped, and every stage is idempotent anyway. A lock
file stops two nightly runs of the same pipeline from overlapping on one scheduler host.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.errors import RunError
from pipeline.features.runner import run_features
from pipeline.ingest.runner import run_ingest
from pipeline.io.audit import NOOP, SKIPPED, SUCCEEDED, LedgerEntry, read_audit, write_audit
from pipeline.io.delta import is_delta_table
from pipeline.model.registry import champion_version
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.tracking import configure_mlflow
from pipeline.train.runner import TrainResult, run_train

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGES = ("ingest", "features", "train", "score")


@dataclass
class NightlyResult:
    """What each stage of one night did."""

    run_date: dt.date
    run_id: str
    stages: dict[str, str] = field(default_factory=dict)  # stage -> ran / skipped (done) / not due
    messages: list[str] = field(default_factory=list)
    trained: TrainResult | None = None

    def summary(self) -> str:
        done = ", ".join(f"{k}: {v}" for k, v in self.stages.items())
        return f"nightly {self.run_date}: {done}" + "".join(f"\n  {m}" for m in self.messages)


@contextlib.contextmanager
def pipeline_lock(config: AppConfig) -> Iterator[None]:
    """An exclusive, non-blocking lock per pipeline and table location; RunError when held."""
    spec = config.require_pipeline()
    digest = hashlib.sha1(PipelinePaths.of(config).audit.encode()).hexdigest()[:12]
    lock_dir = Path(os.environ.get("MLPIPE_LOCK_DIR", Path(tempfile.gettempdir()) / "mlpipe-locks"))
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{spec.name}-{digest}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                f"another nightly run of '{spec.name}' is in progress (lock {path})"
            ) from None
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def completed_stages(spark: SparkSession, config: AppConfig, run_date: dt.date) -> set[str]:
    """Stages whose latest audit row for the date is a success or a no-op."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    paths = PipelinePaths.of(config)
    if not is_delta_table(spark, paths.audit):
        return set()
    latest = (
        read_audit(spark, paths.audit)
        .where(
            (F.col("run_date") == F.lit(run_date))
            & F.col("stage").isin(*STAGES)
            & (F.col("status") != SKIPPED)
        )
        .withColumn(
            "_n",
            F.row_number().over(
                Window.partitionBy("stage", "source").orderBy(F.col("finished_at").desc())
            ),
        )
        .where(F.col("_n") == 1)
        .collect()
    )
    by_stage: dict[str, list[str]] = {}
    for row in latest:
        by_stage.setdefault(row["stage"], []).append(row["status"])
    return {
        s for s, statuses in by_stage.items() if all(st in (SUCCEEDED, NOOP) for st in statuses)
    }


def retrain_due(spark: SparkSession, config: AppConfig, run_date: dt.date) -> tuple[bool, str]:
    """Retrain when there is no champion, the champion is older than the cadence, or the last
    scoring run saw feature drift above the warning threshold."""
    from mlflow import MlflowClient
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    if spec.train is None:
        return False, "no train section"
    configure_mlflow(config.mlflow)
    name = spec.model_name
    version = champion_version(name)
    if version is None:
        return True, "no champion yet"
    tags = MlflowClient().get_model_version(name, version).tags
    trained_on = dt.date.fromisoformat(tags["run_date"]) if tags.get("run_date") else None
    every = spec.nightly.retrain_every_days
    if every and trained_on is not None and (run_date - trained_on).days >= every:
        return True, f"champion trained on {trained_on}, cadence {every} days"
    paths = PipelinePaths.of(config)
    if spec.nightly.retrain_on_drift and is_delta_table(spark, paths.audit):
        last = (
            read_audit(spark, paths.audit)
            .where((F.col("stage") == "score") & (F.col("run_date") < F.lit(run_date)))
            .orderBy(F.col("finished_at").desc())
            .select("metrics")
            .first()
        )
        if last is not None and last["metrics"]:
            drift = max(
                (
                    v
                    for k, v in last["metrics"].items()
                    if k.startswith("psi.") and k != "psi.score"
                ),
                default=0.0,
            )
            if drift >= spec.monitor.psi_warn:
                return (
                    True,
                    f"feature drift PSI {drift:.3f} >= {spec.monitor.psi_warn} on the last scoring run",
                )
    return False, f"champion v{version} is current"


def run_nightly(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> NightlyResult:
    """One night for one date (the caller holds the lock)."""
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    result = NightlyResult(run_date, run_id)
    done = completed_stages(spark, config, run_date)
    for stage in STAGES:
        if stage in done:
            result.stages[stage] = "done before"
            write_audit(
                spark,
                paths.audit,
                [
                    LedgerEntry(
                        run_id,
                        spec.name,
                        stage,
                        run_date,
                        status=SKIPPED,
                        message="completed earlier for this date",
                    ).finish()
                ],
            )
            continue
        if stage == "ingest":
            for entry in run_ingest(spark, config, run_date=run_date, run_id=run_id):
                result.messages.append(entry.summary())
        elif stage == "features":
            result.messages.append(
                run_features(spark, config, run_date=run_date, run_id=run_id).summary()
            )
        elif stage == "train":
            due, why = retrain_due(spark, config, run_date)
            if not due:
                result.stages[stage] = f"not due ({why})"
                continue
            trained = result.trained = run_train(spark, config, run_date=run_date, run_id=run_id)
            result.messages.append(
                f"retrained ({why}): {trained.model_name} v{trained.model_version}, "
                f"{'promoted' if trained.decision.promoted else 'not promoted'}"
            )
        else:
            result.messages.append(
                run_score(spark, config, run_date=run_date, run_id=run_id).summary()
            )
        result.stages[stage] = "ran"
    log.info(result.summary())
    return result


def run_backfill(
    spark: SparkSession, config: AppConfig, *, first: dt.date, last: dt.date, run_id: str
) -> list[NightlyResult]:
    """Every date from `first` to `last`, in order, in this one Spark application."""
    if last < first:
        raise RunError(f"--to {last} is before --from {first}")
    results = []
    day = first
    while day <= last:
        results.append(run_nightly(spark, config, run_date=day, run_id=f"{run_id}-{day}"))
        day += dt.timedelta(days=1)
    return results
