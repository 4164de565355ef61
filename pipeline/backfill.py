"""History in one pass: `backfill --from A --to B` with the tables and ledger that running the
nightly flow for every date would leave, without paying each night's fixed costs.

The plan (`docs/design/one-pass-backfill.md`), for label horizon h and retraining cadence c:

* ingest once, on the first date (later nights would find no new file: their ledger rows say so);
* walk the dates in *segments*: a segment starts on a date, trains there when the schedule says
  (no champion, the champion older than the cadence, drift on the night before), and ends on the
  day before the next training is due (or on B);
* features: with h = 0 every date's rows are written in one job up front; with event labels each
  segment writes its event dates S-h..P in one job as known at the end of P, after writing S-h..S
  as known at the end of S for a training on S. Every partition E is last written as known at the
  end of a date >= min(E + h, B), as a night would leave it, and a training on T reads its window
  as known at the end of T;
* score the segment in one job with the champion loaded once; each date's predictions, quarantine,
  monitoring metrics (per date, in grouped aggregations) and MLflow run as a night would write;
  a date whose drift makes retraining due, or whose drift fails the run, ends the segment there;
* the ledger: a row per (stage, date) under the run id `<run id>-<date>`, each segment's rows in
  one write once its tables committed, so a stopped backfill resumes on the first date that is
  not done (every write replaces what it covers).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from pipeline import nightly
from pipeline.backfill_score import DAY, days, score_recommendations, score_supervised
from pipeline.config.models import AppConfig
from pipeline.errors import RunError
from pipeline.faults import crash_point
from pipeline.features.runner import (
    DUPLICATE_KEY,
    NULL_EVENT_TIME,
    SEEN_BATCH,
    UNKNOWN_LABEL,
    build_features,
    ingest_date,
    label_horizon_days,
    quarantine_records,
    read_bronze,
    store_features,
    unknown_label_detail,
    untimed_detail,
)
from pipeline.features.transforms import unknown_label
from pipeline.ingest.runner import run_ingest
from pipeline.io.audit import (
    FAILED,
    NOOP,
    SKIPPED,
    SUCCEEDED,
    LedgerEntry,
    read_audit,
    write_audit,
)
from pipeline.io.delta import is_delta_table, read_delta, table_version
from pipeline.io.lease import tables_lease
from pipeline.io.quarantine import replace_dates_quarantine
from pipeline.io.raw import describe_error
from pipeline.model.registry import Champion, champion_version
from pipeline.names import EVENT_DATE, RUN_DATE
from pipeline.nightly import (
    NightlyResult,
    dates_due_again,
    last_trained_on,
    retrain_due,
    unscored_entry,
)
from pipeline.paths import PipelinePaths
from pipeline.score.predictions import champion_and_features
from pipeline.tracking import configure_mlflow
from pipeline.train.runner import record_unrecorded_promotion, run_train

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def run_backfill(
    spark: SparkSession,
    config: AppConfig,
    *,
    first: dt.date,
    last: dt.date,
    run_id: str,
    night_by_night: bool = False,
) -> list[NightlyResult]:
    """Every date from `first` to `last` under one lease: in one pass (the default), or by running
    the nightly flow for each date in order (`night_by_night`)."""
    if night_by_night:
        return nightly.run_backfill(spark, config, first=first, last=last, run_id=run_id)
    if last < first:
        raise RunError(f"--to {last} is before --from {first}")
    paths = PipelinePaths.of(config)
    ttl = config.storage.lease_ttl_seconds
    with tables_lease(spark, paths, ttl, command="backfill", run_id=run_id):
        results = OnePass(spark, config, run_id).run(first, last)
        # Once at the end, as night by night does: the same ledger either way.
        done = nightly.maintain_if_due(spark, config, run_date=last, run_id=run_id)
        if results and done:
            results[-1].messages.append(done)
        return results


class OnePass:
    """One backfill in one pass (see the module's docstring); `run` does it."""

    def __init__(self, spark: SparkSession, config: AppConfig, run_id: str) -> None:
        self.spark, self.config, self.run_id = spark, config, run_id
        self.spec = config.require_pipeline()
        self.features = self.spec.require_features()
        self.paths = PipelinePaths.of(config)
        self.horizon = label_horizon_days(self.features)
        self.results: dict[dt.date, NightlyResult] = {}
        self.score_rows: dict[dt.date, int] = {}  # rows read by successful scoring, per date

    def rid(self, day: dt.date) -> str:
        return f"{self.run_id}-{day}"

    def night(self, day: dt.date) -> NightlyResult:
        return self.results.setdefault(day, NightlyResult(day, self.rid(day)))

    # -- the walk ------------------------------------------------------------------------------

    def run(self, first: dt.date, last: dt.date) -> list[NightlyResult]:
        configure_mlflow(self.config.mlflow)
        start, train_done = self._resume_point(first, last)
        if start is None:
            return [self.results[d] for d in sorted(self.results)]
        spark, paths, spec = self.spark, self.paths, self.spec
        for entry in run_ingest(spark, self.config, run_date=start, run_id=self.rid(start)):
            self.night(start).messages.append(entry.summary())
        self.night(start).stages["ingest"] = "ran"

        bronze_version = table_version(spark, paths.bronze(spec.feature_source))
        given = {n: table_version(spark, paths.bronze(n)) for n in spec.test_sources}
        bronze = read_bronze(
            spark, paths, self.features, spec.feature_source, bronze_version, given
        ).persist()
        self.versions = {f"bronze.{n}": v for n, v in given.items() if v is not None}
        if bronze_version is not None:
            self.versions["bronze"] = bronze_version
        seen = (
            read_delta(spark, paths.bronze(spec.feature_source), bronze_version)
            .agg({"_batch_id": "max"})
            .first()
        )
        self.seen_batch = float(seen[0]) if seen and seen[0] is not None else 0.0
        self.bronze = bronze
        self._features_counts(start, last)
        if self.horizon == 0:
            self._write_features(start, last)
        self.score_rows = self._earlier_score_rows(start)

        day = start
        while day <= last:
            if recorded := record_unrecorded_promotion(spark, self.config):
                self.night(day).messages.append(
                    f"train ledger row of run {recorded.run_id} written"
                )
            if day == start and train_done:
                due, why = False, "trained earlier for this date"
            else:
                due, why = retrain_due(spark, self.config, day)
            if due:
                if self.horizon:
                    self._write_features(day - dt.timedelta(days=self.horizon), day)
                trained = run_train(spark, self.config, run_date=day, run_id=self.rid(day))
                self.night(day).trained = trained
                self.night(day).stages["train"] = "ran"
                self.night(day).messages.append(
                    f"retrained ({why}): {trained.model_name} v{trained.model_version}, "
                    f"{'promoted' if trained.decision.promoted else 'not promoted'}"
                )
            else:
                self.night(day).stages["train"] = f"not due ({why})"
            end = self._segment_end(day, last)
            if self.horizon:
                self._write_features(day - dt.timedelta(days=self.horizon), end)
            end = self._segment(day, end, start)
            current = champion_version(self.spec.model_name)
            for served in days(day + DAY, end):  # the segment's other nights: not due
                self.night(served).stages["train"] = f"not due (champion v{current} is current)"
            day = end + DAY
        bronze.unpersist()
        for result in self.results.values():
            log.info(result.summary())
        return [self.results[d] for d in sorted(self.results)]

    def _resume_point(self, first: dt.date, last: dt.date) -> tuple[dt.date | None, bool]:
        """The first date of the range that is not done (None: all are), and whether its training
        already ran. Dates before it get the rows a rerun night writes for a done stage."""
        from pyspark.sql import functions as F

        paths = self.paths
        if not is_delta_table(self.spark, paths.audit):
            return first, False
        latest: dict[tuple[str, dt.date], str] = {}
        for r in (
            read_audit(self.spark, paths.audit)
            .where(
                F.col("stage").isin("features", "train", "score")
                & (F.col("run_date") >= F.lit(first))
                & (F.col("run_date") <= F.lit(last))
                & (F.col("status") != SKIPPED)
            )
            .orderBy("finished_at")
            .select("stage", "run_date", "status")
            .collect()
        ):
            latest[(r["stage"], r["run_date"])] = r["status"]
        again = dates_due_again(self.spark, self.config)

        def done(stage: str, day: dt.date) -> bool:
            return latest.get((stage, day)) in (SUCCEEDED, NOOP) and stage not in again.get(day, [])

        start = next(
            (d for d in days(first, last) if not (done("features", d) and done("score", d))), None
        )
        skipped = []
        for day in days(first, start - DAY if start else last):
            for stage in ("features", "train", "score"):
                if done(stage, day):
                    self.night(day).stages[stage] = "done before"
                    skipped.append(
                        LedgerEntry(
                            self.rid(day),
                            self.spec.name,
                            stage,
                            day,
                            status=SKIPPED,
                            message="completed earlier for this date",
                        ).finish()
                    )
        write_audit(self.spark, paths.audit, skipped)
        if start is not None and start > first:
            log.info("backfill resumes on %s: the dates before it are done", start)
        return start, start is not None and done("train", start)

    def _segment_end(self, day: dt.date, last: dt.date) -> dt.date:
        """The last date the current champion serves before a training is due on the cadence
        (counted from the last training, as `retrain_due` counts it)."""
        name = self.spec.model_name
        every = self.spec.nightly.retrain_every_days
        if champion_version(name) is None:
            return day  # no champion: this date is not scored, and the next one trains again
        if not every:
            return last
        trained_on = last_trained_on(name, day)
        if trained_on is None:
            return day
        due = trained_on + dt.timedelta(days=every)
        return max(day, min(last, due - DAY))

    # -- features ------------------------------------------------------------------------------

    def _write_features(self, first: dt.date, last: dt.date) -> None:
        """The feature rows of event dates first..last as known at the end of `last`."""
        _, rows = build_features(
            self.spark, self.paths, self.features, bronze=self.bronze, first=first, last=last
        )
        unknown = unknown_label(self.features.label)
        if unknown is not None:
            rows = rows.where(~unknown)
        log.info("writing the feature rows of %s..%s", first, last)
        store_features(rows, self.paths, first=first, last=last)
        crash_point("backfill.after_features")

    def _features_counts(self, start: dt.date, last: dt.date) -> None:
        """Every date's feature-ledger counts but the rows written, from grouped aggregations;
        and the quarantined rows of every date, replaced in one commit."""
        from pyspark.sql import functions as F

        spec, h = self.features, self.horizon
        target, rows = build_features(
            self.spark,
            self.paths,
            spec,
            bronze=self.bronze,
            first=start - dt.timedelta(days=h),
            last=last,
        )
        # The run dates D that read a row of event date E: E..E+h, within the range.
        covering = F.explode(
            F.sequence(
                F.greatest(F.col(EVENT_DATE), F.lit(start)),
                F.least(F.date_add(F.col(EVENT_DATE), h), F.lit(last)),
            )
        )
        per_run_date = target.select(EVENT_DATE, *spec.key_columns).withColumn(RUN_DATE, covering)
        n = {r[RUN_DATE]: int(r["count"]) for r in per_run_date.groupBy(RUN_DATE).count().collect()}
        distinct = {
            r[RUN_DATE]: int(r["count"])
            for r in per_run_date.drop(EVENT_DATE).distinct().groupBy(RUN_DATE).count().collect()
        }
        self.in_range = {d: (n[d], distinct.get(d, 0)) for d in n}
        ingested_on = ingest_date(self.bronze)
        untimed = self.bronze.where(
            F.col(spec.time_column).isNull() & ingested_on.between(F.lit(start), F.lit(last))
        )
        records = quarantine_records(
            untimed, NULL_EVENT_TIME, untimed_detail(spec), run_date=ingested_on
        )
        self.untimed = {
            r["d"]: int(r["count"])
            for r in untimed.groupBy(ingested_on.alias("d")).count().collect()
        }
        unknown = unknown_label(spec.label)
        self.unknown: dict[dt.date, int] = {}
        if unknown is not None:  # a label column (h = 0): a row's run date is its event date
            unlabelled = rows.where(unknown)
            records = records.unionByName(
                quarantine_records(
                    unlabelled,
                    UNKNOWN_LABEL,
                    unknown_label_detail(spec),
                    run_date=F.col(EVENT_DATE),
                )
            )
            self.unknown = {
                r[EVENT_DATE]: int(r["count"])
                for r in unlabelled.groupBy(EVENT_DATE).count().collect()
            }
        replace_dates_quarantine(
            records,
            self.paths.quarantine,
            pipeline=self.paths.pipeline,
            source="features",
            run_ids=self.run_id,
            first=start,
            last=last,
        )

    def _features_entries(self, first: dt.date, last: dt.date) -> list[LedgerEntry]:
        """The features ledger rows of dates first..last, the rows written read back."""
        from pyspark.sql import functions as F

        h = dt.timedelta(days=self.horizon)
        written = {
            r[EVENT_DATE]: int(r["count"])
            for r in read_delta(self.spark, self.paths.features)
            .where(F.col(EVENT_DATE).between(F.lit(first - h), F.lit(last)))
            .groupBy(EVENT_DATE)
            .count()
            .collect()
        }
        version = table_version(self.spark, self.paths.features)
        entries = []
        for day in days(first, last):
            entry = LedgerEntry(self.rid(day), self.spec.name, "features", day)
            n, keys = self.in_range.get(day, (0, 0))
            without_time = self.untimed.get(day, 0)
            entry.rows_read = n + without_time
            entry.table_versions.update(self.versions)
            entry.metrics[SEEN_BATCH] = self.seen_batch
            if entry.rows_read == 0:
                entry.finish(NOOP, f"no bronze rows with event dates {day - h}..{day}")
            else:
                if n:
                    entry.drop(UNKNOWN_LABEL, self.unknown.get(day, 0))
                    entry.rows_accepted = sum(written.get(d, 0) for d in days(day - h, day))
                entry.drop(DUPLICATE_KEY, n - keys)
                entry.drop(NULL_EVENT_TIME, without_time)
                if version is not None:
                    entry.table_versions["features"] = version
                entry.reconcile()
                entry.finish()
            entries.append(entry)
        return entries

    # -- scoring -------------------------------------------------------------------------------

    def _segment(self, first: dt.date, last: dt.date, start: dt.date) -> dt.date:
        """Score first..last with the current champion and write the segment's ledger; the date
        the segment ended on (earlier than `last` when drift makes retraining due)."""
        # Finished before scoring starts, as a night's: a features row newer than the date's
        # scoring row would make the scores due again (`pipeline.nightly.due_again`).
        features = self._features_entries(first, last)
        if champion_version(self.spec.model_name) is None:
            # No model has passed the gate yet (the segment is this one date, see
            # `_segment_end`): the date is not scored, as its night leaves it.
            unscored = unscored_entry(
                self.spec.name, self.rid(first), first, self.night(first).trained
            )
            self._ledger(first, first, start, features[:1], {first: unscored})
            return first
        try:
            champ, features_version = champion_and_features(self.spark, self.spec, self.paths)
            if self.spec.task == "recommendation":
                scored = score_recommendations(self, champ, features_version, first, last)
            else:
                scored = score_supervised(self, champ, features_version, first, last)
        except Exception as exc:
            # The night of `first` would have failed in its scoring: its ledger says so.
            entry = LedgerEntry(self.rid(first), self.spec.name, "score", first)
            self._ledger(
                first,
                first,
                start,
                features[:1],
                {first: entry.finish(FAILED, describe_error(exc))},
            )
            raise
        end = max(scored) if scored else last
        self._ledger(first, end, start, features[: (end - first).days + 1], scored)
        stopped = [e for e in scored.values() if e.status == FAILED]
        if stopped:  # drift beyond the failure threshold: the flow stops there, as its night does
            raise RunError(stopped[0].message or "scoring failed")
        return end

    def _ledger(
        self,
        first: dt.date,
        end: dt.date,
        start: dt.date,
        features: list[LedgerEntry],
        scored: dict[dt.date, LedgerEntry],
    ) -> None:
        """The segment's ledger rows in one write: ingest (no new file after the first date),
        features and scoring of every date, once the segment's tables committed."""
        ingest = [
            LedgerEntry(self.rid(d), self.spec.name, "ingest", d, source=name).finish(
                NOOP, "no new files"
            )
            for d in days(first, end)
            if d != start
            for name in self.spec.sources
        ]
        write_audit(
            self.spark, self.paths.audit, ingest + features + [scored[d] for d in sorted(scored)]
        )
        crash_point("backfill.after_ledger")
        for entry in features:
            assert entry.run_date is not None
            self.night(entry.run_date).messages.append(entry.summary())
            self.night(entry.run_date).stages["features"] = "ran"
        for day, entry in scored.items():
            if entry.status == SKIPPED:
                self.night(day).messages.append(entry.message or "")
                self.night(day).stages["score"] = "not scored (no champion yet)"
            else:
                self.night(day).messages.append(entry.summary())
                self.night(day).stages["score"] = "ran"
            self.night(day).stages.setdefault("ingest", "ran")

    def _earlier_score_rows(self, start: dt.date) -> dict[dt.date, int]:
        """Rows read by each successful scoring run before `start` (the trailing mean's input)."""
        from pyspark.sql import functions as F

        if not is_delta_table(self.spark, self.paths.audit):
            return {}
        rows = (
            read_audit(self.spark, self.paths.audit)
            .where(
                (F.col("stage") == "score")
                & (F.col("status") == SUCCEEDED)
                & (F.col("run_date") < F.lit(start))
            )
            .groupBy("run_date")
            .agg(F.max("rows_read").alias("n"))
            .collect()
        )
        return {r["run_date"]: int(r["n"]) for r in rows}

    def trailing_mean(self, day: dt.date) -> float | None:
        """As `pipeline.score.observe.trailing_rows`: the last 7 successful scoring dates."""
        prior = sorted((d for d in self.score_rows if d < day), reverse=True)[:7]
        return sum(self.score_rows[d] for d in prior) / len(prior) if prior else None

    def entries(
        self, champ: Champion, features_version: int, first: dt.date, last: dt.date
    ) -> dict[dt.date, LedgerEntry]:
        entries = {}
        for day in days(first, last):
            entry = LedgerEntry(self.rid(day), self.spec.name, "score", day)
            entry.table_versions["features"] = features_version
            entry.metrics["model_version"] = float(champ.version)
            entries[day] = entry
        return entries
