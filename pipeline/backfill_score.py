"""Scoring of one backfill segment (`pipeline.backfill`): every date of it in one job with the
champion loaded once, the predictions of the segment in one commit, each date's ledger row and
monitoring (grouped aggregations, one MLflow run per date) as its night would write them.

`run` is the `pipeline.backfill.OnePass` whose segment this is.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.faults import crash_point
from pipeline.io.audit import (
    FAILED,
    NOOP,
    LedgerEntry,
)
from pipeline.io.delta import read_delta, table_version
from pipeline.io.quarantine import replace_dates_quarantine
from pipeline.model import ranking
from pipeline.model.compiled import SCORING_TAG
from pipeline.names import EVENT_DATE, RUN_DATE
from pipeline.score import monitor
from pipeline.score.observe import log_monitoring, score_lineage
from pipeline.score.predictions import write_predictions
from pipeline.score.recommend import COLD_START, recommendation_rows
from pipeline.score.runner import model_inputs, non_finite_records, score_keys, score_rows

if TYPE_CHECKING:
    from pipeline.model.registry import Champion

log = logging.getLogger(__name__)


DAY = dt.timedelta(days=1)


def days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    """The dates first..last, in order."""
    day = first
    while day <= last:
        yield day
        day += DAY


def score_supervised(
    run: Any, champ: Champion, features_version: int, first: dt.date, last: dt.date
) -> dict[dt.date, LedgerEntry]:
    from pyspark.sql import functions as F

    spark, spec, paths = run.spark, run.spec, run.paths
    table = read_delta(spark, paths.features, features_version)
    rows = table.where(F.col(EVENT_DATE).between(F.lit(first), F.lit(last)))
    model_spec, inputs = model_inputs(spec, rows)
    keys = score_keys(spec)
    rows = rows.persist()
    counts = {r[EVENT_DATE]: int(r["count"]) for r in rows.groupBy(EVENT_DATE).count().collect()}
    entries: dict[dt.date, LedgerEntry] = run.entries(champ, features_version, first, last)
    numeric = list(model_spec.numeric)

    # Drift and nulls per date, before anything is written: a date whose drift fails the run
    # or makes retraining due ends the segment there, as its night would end the flow.
    trained_on = (
        dt.date.fromisoformat(champ.tags["run_date"]) if champ.tags.get("run_date") else first
    )
    ref_version = (
        int(champ.tags["features_version"]) if champ.tags.get("features_version") else None
    )
    lo, hi = spec.nightly.training_window(trained_on)
    reference = read_delta(spark, paths.features, ref_version).where(
        F.col(EVENT_DATE).between(F.lit(lo), F.lit(hi))
    )
    psi = monitor.psi_by_column_per(
        reference, rows, numeric, EVENT_DATE, keys=[d for d in counts if counts[d]]
    )
    nulls = monitor.null_rates_by(rows, numeric + list(model_spec.categorical), EVENT_DATE)
    end = last
    for day in days(first, last):
        if not counts.get(day):
            continue
        worst = max(psi.get(day, {}).values(), default=0.0)
        fails = spec.monitor.psi_fail is not None and worst >= spec.monitor.psi_fail
        drifts = spec.nightly.retrain_on_drift and worst >= spec.monitor.psi_warn
        if fails or (drifts and day < last):
            end = day
            break
    entries = {d: e for d, e in entries.items() if d <= end}
    rows_in = rows.where(F.col(EVENT_DATE) <= F.lit(end))

    predictions, bad_rows, path = score_rows(
        spec,
        champ,
        rows_in,
        model_spec,
        keys=keys,
        features_version=features_version,
        run_date=F.col(EVENT_DATE),
    )
    log.info("writing predictions for %s..%s (scored through %s)", first, end, path)
    write_predictions(predictions, paths.predictions, first, last=end)
    crash_point("backfill.after_predictions")
    records = non_finite_records(bad_rows, keys, inputs, run_date=F.col(EVENT_DATE))
    replace_dates_quarantine(
        records,
        paths.quarantine,
        pipeline=spec.name,
        source="score",
        run_ids=run.run_id,
        first=first,
        last=end,
    )
    quarantined = {
        r[EVENT_DATE]: int(r["count"]) for r in bad_rows.groupBy(EVENT_DATE).count().collect()
    }
    all_predictions = read_delta(spark, paths.predictions)
    written = {
        r[RUN_DATE]: int(r["count"])
        for r in all_predictions.where(F.col(RUN_DATE).between(F.lit(first), F.lit(end)))
        .groupBy(RUN_DATE)
        .count()
        .collect()
    }
    version_written = table_version(spark, paths.predictions)
    scoring_dates = [d for d in entries if counts.get(d)]
    score_psi = monitor.score_psi_by_date(all_predictions, scoring_dates)
    rows.unpersist()
    for day, entry in entries.items():
        entry.rows_read = counts.get(day, 0)
        if not entry.rows_read:
            entry.finish(NOOP, f"no feature rows for {day}")
            continue
        entry.rows_accepted = written.get(day, 0)
        entry.rows_quarantined = quarantined.get(day, 0)
        if entry.rows_quarantined:
            entry.quarantined_by_reason = {"non_finite_value": entry.rows_quarantined}
        if version_written is not None:
            entry.table_versions["predictions"] = version_written
        report = monitor.assess(
            spec.monitor,
            feature_psi=psi.get(day, {}),
            score_psi=score_psi.get(day),
            nulls=nulls.get(day, {}),
            rows_today=entry.rows_read,
            trailing_mean=run.trailing_mean(day),
        )
        entry.metrics.update(report.metrics)
        entry.reconcile()
        log_monitoring(
            run.config.mlflow,
            spec.name,
            day,
            report,
            model_name=champ.name,
            model_version=champ.version,
            inputs=score_lineage(run.paths, entry),
            tags={SCORING_TAG: path},
        )
        if report.failures:
            entry.finish(
                FAILED,
                "data drift beyond the failure threshold (predictions were written): "
                + "; ".join(report.failures),
            )
            break
        entry.finish(message="; ".join(report.warnings) or None)
        run.score_rows[day] = entry.rows_read
    return entries


def score_recommendations(
    run: Any, champ: Champion, features_version: int, first: dt.date, last: dt.date
) -> dict[dt.date, LedgerEntry]:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark, spec, paths = run.spark, run.spec, run.paths
    r = spec.require_recommend()
    k = spec.train.top_k if spec.train else 10
    table = read_delta(spark, paths.features, features_version)
    users = (
        table.where(F.col(EVENT_DATE).between(F.lit(first), F.lit(last)))
        .select(F.col(EVENT_DATE).alias(RUN_DATE), r.user)
        .distinct()
        .persist()
    )
    counts = {row[RUN_DATE]: int(row["count"]) for row in users.groupBy(RUN_DATE).count().collect()}
    entries: dict[dt.date, LedgerEntry] = run.entries(champ, features_version, first, last)
    active = [d for d in entries if counts.get(d)]
    if active:
        # What each date's users did in that date's training window: an interaction of
        # event date E is in the window of the dates E..E+lookback-1.
        lookback = spec.nightly.train_lookback_days
        window_dates = F.explode(
            F.sequence(
                F.greatest(F.col(EVENT_DATE), F.lit(first)),
                F.least(F.date_add(F.col(EVENT_DATE), lookback - 1), F.lit(last)),
            )
        )
        lo = spec.nightly.training_window(first)[0]
        seen = (
            table.where(F.col(EVENT_DATE).between(F.lit(lo), F.lit(last)))
            .select(EVENT_DATE, r.user, r.item)
            .withColumn(RUN_DATE, window_dates)
            .join(users, [RUN_DATE, r.user], "left_semi")
            .select(RUN_DATE, r.user, r.item)
            .distinct()
            .persist()
        )
        # Each date asks for as many items as a night would (`ranking.fetch_size`): k more
        # than its users' most seen items; the model is asked once, for the most of them.
        need = {d: k for d in active}
        if r.exclude_seen:
            for most in (
                seen.groupBy(RUN_DATE, r.user)
                .count()
                .groupBy(RUN_DATE)
                .agg(F.max("count").alias("most"))
                .collect()
            ):
                need[most[RUN_DATE]] = k + min(int(most["most"]), r.max_seen)
        fetch = spark.createDataFrame(list(need.items()), f"{RUN_DATE} date, _n int")
        candidates = ranking.recommend(champ.model, users, max(need.values()), r)
        by_model = Window.partitionBy(r.user).orderBy(F.col(ranking.SCORE).desc(), F.col(r.item))
        candidates = (
            candidates.withColumn("_c", F.row_number().over(by_model))
            .join(users, r.user)
            .join(F.broadcast(fetch), RUN_DATE)
            .where(F.col("_c") <= F.col("_n"))
        )
        if r.exclude_seen:
            candidates = candidates.join(seen, [RUN_DATE, r.user, r.item], "left_anti")
        order = Window.partitionBy(RUN_DATE, r.user).orderBy(
            F.col(ranking.SCORE).desc(), F.col(r.item)
        )
        ranked = candidates.withColumn(ranking.RANK, F.row_number().over(order)).where(
            F.col(ranking.RANK) <= k
        )
        predictions = recommendation_rows(ranked, r, champ, features_version, F.col(RUN_DATE))
        log.info("writing recommendations for %s..%s", first, last)
        write_predictions(predictions, paths.predictions, first, last=last)
        crash_point("backfill.after_predictions")
        seen.unpersist()
    users.unpersist()
    stats: dict[Any, Any] = (
        {
            row[RUN_DATE]: row
            for row in read_delta(spark, paths.predictions)
            .where(F.col(RUN_DATE).between(F.lit(first), F.lit(last)))
            .groupBy(RUN_DATE)
            .agg(F.countDistinct(r.user).alias("users"), F.countDistinct(r.item).alias("items"))
            .collect()
        }
        if active
        else {}
    )
    version_written = table_version(spark, paths.predictions)
    item_indexer: Any = champ.model.stages[1]
    catalogue = len(item_indexer.labels)
    row: Any
    for day, entry in entries.items():
        entry.rows_read = counts.get(day, 0)
        if not entry.rows_read:
            entry.finish(NOOP, f"no interactions on {day}")
            continue
        row = stats.get(day)
        entry.rows_accepted = int(row["users"]) if row is not None else 0
        entry.drop(COLD_START, entry.rows_read - entry.rows_accepted)
        if version_written is not None:
            entry.table_versions["predictions"] = version_written
        entry.reconcile()
        report = monitor.assess(
            spec.monitor,
            feature_psi={},
            score_psi=None,
            nulls={},
            rows_today=entry.rows_read,
            trailing_mean=run.trailing_mean(day),
        )
        report.metrics["cold_start_users"] = float(entry.rows_dropped)
        report.metrics["catalogue_coverage"] = (int(row["items"]) if row is not None else 0) / max(
            1, catalogue
        )
        entry.metrics.update(report.metrics)
        log_monitoring(
            run.config.mlflow,
            spec.name,
            day,
            report,
            model_name=champ.name,
            model_version=champ.version,
            inputs=score_lineage(run.paths, entry),
        )
        message = [f"{entry.rows_dropped} user(s) unknown to the model (cold start)"] * bool(
            entry.rows_dropped
        )
        entry.finish(message="; ".join(message + report.warnings) or None)
        run.score_rows[day] = entry.rows_read
    return entries
