"""The nightly flow: ingest -> features -> (retrain when due) -> score, for one run date, in one
Spark application; and backfill, the same for a range of dates in order.

Resumable: a stage whose latest audit row for the date succeeded (or was a no-op) is skipped on a
rerun, so a failed night resumes where it stopped, and every stage is idempotent anyway. A date is
done only for the data it saw: ingest always runs (files may have landed late, and it is a no-op
when none did); the features of a date are due again when bronze gained rows of the date's event
window after they were built; its scores are due again when its features were rebuilt after them.
The whole flow holds the pipeline's lease (`pipeline.io.lease`): one writer at a time, on any host.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config.models import AppConfig
from pipeline.errors import RunError
from pipeline.faults import crash_point
from pipeline.features.runner import SEEN_BATCH, label_horizon_days, run_features
from pipeline.ingest.runner import run_ingest
from pipeline.io.audit import NOOP, SKIPPED, SUCCEEDED, LedgerEntry, read_audit, write_audit
from pipeline.io.delta import is_delta_table, read_delta
from pipeline.io.lease import tables_lease
from pipeline.model.registry import champion_version
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.tracking import configure_mlflow
from pipeline.train.runner import TrainResult, record_unrecorded_promotion, run_train

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
        # In the pipeline's order, whatever order the stages were recorded in (one pass records
        # a date's ingest after its features and scores).
        order = sorted(self.stages, key=lambda k: STAGES.index(k) if k in STAGES else len(STAGES))
        done = ", ".join(f"{k}: {self.stages[k]}" for k in order)
        return f"nightly {self.run_date}: {done}" + "".join(f"\n  {m}" for m in self.messages)


# A backfill longer than this prints one summary for the range; every night's own summary goes to
# the run's log file.
BACKFILL_NIGHTS_SHOWN = 7


def backfill_summary(results: list[NightlyResult]) -> str:
    """What a backfill did, in a few lines whatever the range: the dates, each training and its
    outcome, how many dates each stage ran, skipped or was not due for, and the dates left
    unscored. Short ranges show every night."""
    if len(results) <= BACKFILL_NIGHTS_SHOWN:
        return "\n".join(r.summary() for r in results)
    first, last = results[0].run_date, results[-1].run_date
    lines = [f"backfill {first}..{last}: {len(results)} dates"]
    trainings = [
        f"{r.run_date} (v{r.trained.model_version}, "
        f"{'promoted' if r.trained.decision.promoted else 'not promoted'})"
        for r in results
        if r.trained is not None
    ]
    lines.append(f"  trained {len(trainings)} time(s): {', '.join(trainings) or 'never'}")
    for stage in STAGES:
        outcomes: dict[str, int] = {}
        for r in results:
            if stage in r.stages:
                # "not due (champion v3 is current)" and the like: counted by their kind.
                kind = r.stages[stage].split(" (", 1)[0]
                outcomes[kind] = outcomes.get(kind, 0) + 1
        if outcomes:
            counts = ", ".join(f"{kind} {n}" for kind, n in outcomes.items())
            lines.append(f"  {stage}: {counts}")
    unscored = [str(r.run_date) for r in results if r.stages.get("score", "").startswith("not ")]
    if unscored:
        shown = ", ".join(unscored[:5]) + (
            f" and {len(unscored) - 5} more" if len(unscored) > 5 else ""
        )
        lines.append(f"  not scored: {shown}")
    return "\n".join(lines)


def _latest_rows(spark: SparkSession, audit: str, run_date: dt.date) -> list[Any]:
    """The latest audit row of each stage (and source) for the date, skips left out."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return (
        read_audit(spark, audit)
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


def late_rows(
    spark: SparkSession, config: AppConfig, run_date: dt.date, seen_batch: float | None
) -> bool:
    """Whether bronze holds rows of the date's event window from a batch after `seen_batch`."""
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    features = spec.require_features()
    bronze = PipelinePaths.of(config).bronze(spec.feature_source)
    if seen_batch is None or not is_delta_table(spark, bronze):
        return False
    first = run_date - dt.timedelta(days=label_horizon_days(features))
    event_date = F.to_date(F.col(features.time_column))
    late = read_delta(spark, bronze).where(
        (F.col("_batch_id") > F.lit(int(seen_batch)))
        & (event_date >= F.lit(first))
        & (event_date <= F.lit(run_date))
    )
    return bool(late.limit(1).count())


def due_again(spark: SparkSession, config: AppConfig, run_date: dt.date) -> dict[str, str]:
    """Stages done earlier for the date that are due again, and why."""
    rows = _latest_rows(spark, PipelinePaths.of(config).audit, run_date)
    by_stage = {r["stage"]: r for r in rows if r["status"] in (SUCCEEDED, NOOP)}
    out: dict[str, str] = {}
    features = by_stage.get("features")
    if features is not None:
        seen = (features["metrics"] or {}).get(SEEN_BATCH)
        if late_rows(spark, config, run_date, seen):
            out["features"] = "rows of the date landed after its features were built"
    score = by_stage.get("score")
    if score is not None and (
        "features" in out
        or (features is not None and features["finished_at"] > score["finished_at"])
    ):
        out["score"] = "its features were rebuilt after it scored"
    return out


def dates_due_again(spark: SparkSession, config: AppConfig) -> dict[dt.date, list[str]]:
    """Every run date with a stage due again (see `due_again`), in one pass over the audit table
    and the ingest batches bronze gained since: what `status` shows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    if spec.features is None or not is_delta_table(spark, paths.audit):
        return {}
    latest = (
        read_audit(spark, paths.audit)
        .where(F.col("stage").isin("features", "score") & F.col("status").isin(SUCCEEDED, NOOP))
        .withColumn(
            "_n",
            F.row_number().over(
                Window.partitionBy("stage", "run_date").orderBy(F.col("finished_at").desc())
            ),
        )
        .where(F.col("_n") == 1)
        .collect()
    )
    features = {r["run_date"]: r for r in latest if r["stage"] == "features"}
    scores = {r["run_date"]: r for r in latest if r["stage"] == "score"}
    seen = {d: (r["metrics"] or {}).get(SEEN_BATCH) for d, r in features.items()}
    known = [v for v in seen.values() if v is not None]
    bronze = paths.bronze(spec.feature_source)
    batches: list[tuple[int, dt.date, dt.date]] = []
    if known and is_delta_table(spark, bronze):
        event_date = F.to_date(F.col(spec.features.time_column))
        batches = [
            (int(r[0]), r[1], r[2])
            for r in read_delta(spark, bronze)
            .where(F.col("_batch_id") > F.lit(int(min(known))))
            .groupBy("_batch_id")
            .agg(F.min(event_date), F.max(event_date))
            .collect()
            if r[1] is not None
        ]
    horizon = dt.timedelta(days=label_horizon_days(spec.features))
    out: dict[dt.date, list[str]] = {}
    for day, row in features.items():
        batch = seen.get(day)
        late = batch is not None and any(
            b > batch and lo <= day and hi >= day - horizon for b, lo, hi in batches
        )
        if late:
            out.setdefault(day, []).append("features")
        score = scores.get(day)
        if score is not None and (late or row["finished_at"] > score["finished_at"]):
            out.setdefault(day, []).append("score")
    return out


def completed_stages(spark: SparkSession, config: AppConfig, run_date: dt.date) -> set[str]:
    """Stages done for the date: the latest audit row is a success or a no-op, and no data the
    stage has not seen arrived since. Ingest is never done: new files may land at any time."""
    paths = PipelinePaths.of(config)
    if not is_delta_table(spark, paths.audit):
        return set()
    by_stage: dict[str, list[str]] = {}
    for row in _latest_rows(spark, paths.audit, run_date):
        by_stage.setdefault(row["stage"], []).append(row["status"])
    done = {
        s for s, statuses in by_stage.items() if all(st in (SUCCEEDED, NOOP) for st in statuses)
    }
    done.discard("ingest")
    return done - set(due_again(spark, config, run_date))


def last_trained_on(name: str, run_date: dt.date) -> dt.date | None:
    """The latest training date (a version's `run_date` tag) on or before `run_date`, of any
    version of the model, promoted or not: the cadence counts from the last training, so a
    champion that keeps beating its challengers is challenged on the cadence, not every night."""
    from mlflow import MlflowClient

    dates = [
        dt.date.fromisoformat(v.tags["run_date"])
        for v in MlflowClient().search_model_versions(f"name = '{name}'")
        if v.tags.get("run_date")
    ]
    return max((d for d in dates if d <= run_date), default=None)


def retrain_due(spark: SparkSession, config: AppConfig, run_date: dt.date) -> tuple[bool, str]:
    """Retrain when there is no champion, the last training is older than the cadence, or the
    last scoring run saw feature drift above the warning threshold."""
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    if spec.train is None:
        return False, "no train section"
    configure_mlflow(config.mlflow)
    name = spec.model_name
    version = champion_version(name)
    if version is None:
        return True, "no champion yet"
    every = spec.nightly.retrain_every_days
    trained_on = last_trained_on(name, run_date)
    if every and trained_on is not None and (run_date - trained_on).days >= every:
        return True, f"last trained on {trained_on}, cadence {every} days"
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


def unscored_entry(
    pipeline: str, run_id: str, run_date: dt.date, trained: TrainResult | None
) -> LedgerEntry:
    """The score row of a date with no champion to score it (the gate promoted none yet)."""
    why = "not scored: no model has passed the gate yet"
    if trained is not None and not trained.decision.promoted:
        why += f" ({trained.model_name} v{trained.model_version}: {trained.decision.reason})"
    return LedgerEntry(run_id, pipeline, "score", run_date, status=SKIPPED, message=why).finish()


def run_nightly(
    spark: SparkSession,
    config: AppConfig,
    *,
    run_date: dt.date,
    run_id: str,
    upkeep: bool = True,
) -> NightlyResult:
    """One night for one date, under the pipeline's lease, first maintaining the tables when
    their cadence says so (`upkeep=False`: never, as for the nights of a backfill, which
    maintains once at its end). First, because maintenance is what extends the time-travel
    retention of the feature version the champion pinned, which this night's monitoring reads."""
    paths = PipelinePaths.of(config)
    ttl = config.storage.lease_ttl_seconds
    with tables_lease(spark, paths, ttl, command="nightly", run_id=run_id):
        done = maintain_if_due(spark, config, run_date=run_date, run_id=run_id) if upkeep else None
        result = _night(spark, config, run_date=run_date, run_id=run_id)
        if done:
            result.messages.insert(0, done)
        return result


def maintain_if_due(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> str | None:
    """Maintain the pipeline's tables when `maintain.every_days` says it is time; what it did."""
    from pipeline.maintain import maintenance_due, run_maintain

    if not maintenance_due(spark, config, run_date):
        return None
    return run_maintain(spark, config, run_date=run_date, run_id=f"{run_id}-maintain").summary()


def _night(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> NightlyResult:
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    # Registry lookups below (the champion to score with) may come before any stage that would
    # configure tracking, e.g. on a resumed night whose training is done: configure it first.
    configure_mlflow(config.mlflow)
    result = NightlyResult(run_date, run_id)
    for stage in STAGES:
        # Decided stage by stage, after the ones before it ran: tonight's ingest may bring late
        # rows that make the date's features (and then its scores) due again.
        again = due_again(spark, config, run_date) if is_delta_table(spark, paths.audit) else {}
        if stage in again:
            result.messages.append(f"{stage} due again: {again[stage]}")
        if stage != "ingest" and stage in completed_stages(spark, config, run_date):
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
            if recorded := record_unrecorded_promotion(spark, config):
                result.messages.append(f"train ledger row of run {recorded.run_id} written")
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
            if champion_version(spec.model_name) is None:
                # The gate has promoted no model yet: nothing to score with. The date is not
                # done (its scores are due once a champion exists); the ledger says why.
                unscored = unscored_entry(spec.name, run_id, run_date, result.trained)
                write_audit(spark, paths.audit, [unscored])
                result.stages[stage] = "not scored (no champion yet)"
                result.messages.append(unscored.message or "")
                continue
            result.messages.append(
                run_score(spark, config, run_date=run_date, run_id=run_id).summary()
            )
        result.stages[stage] = "ran"
        crash_point(f"nightly.after_{stage}")
    log.info(result.summary())
    return result


def run_backfill(
    spark: SparkSession, config: AppConfig, *, first: dt.date, last: dt.date, run_id: str
) -> list[NightlyResult]:
    """Every date from `first` to `last`, in order, in this one Spark application."""
    if last < first:
        raise RunError(f"--to {last} is before --from {first}")
    paths = PipelinePaths.of(config)
    ttl = config.storage.lease_ttl_seconds
    results = []
    with tables_lease(spark, paths, ttl, command="backfill", run_id=run_id):
        day = first
        while day <= last:
            night = run_nightly(spark, config, run_date=day, run_id=f"{run_id}-{day}", upkeep=False)
            results.append(night)
            day += dt.timedelta(days=1)
        if results and (done := maintain_if_due(spark, config, run_date=last, run_id=run_id)):
            results[-1].messages.append(done)
    return results
