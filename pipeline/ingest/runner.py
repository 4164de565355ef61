"""The ingest stage: new raw files -> bronze (+ quarantine, ingest log, audit), exactly once.

See docs/ARCHITECTURE.md ("Ingest: exactly once without streaming") and docs/RELIABILITY.md. In
order, for each source:

1. survey the landing folder against the ingest log (`pipeline.ingest.files`): resume a batch an
   interrupted run planned, or plan a new one — after checking that the tables hold no batch the
   log does not know of (a lost or restored log) — and record its files as `planned`;
2. read and validate the batch's files, append the accepted rows to bronze and the refused ones to
   quarantine, both as Delta idempotent writes keyed by the batch id;
3. count what landed, and reconcile the ledger: a mismatch fails the run *before* the batch is
   committed, so every rerun resumes it and fails again until a person acts;
4. write the batch's audit row (once per batch, also across a crash), then record its files as
   `committed`.
A run killed anywhere resumes the same batch, and Delta ignores the commits that had happened.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.config.sources import SourceSpec
from pipeline.console import stage_started
from pipeline.errors import RunError
from pipeline.faults import crash_point
from pipeline.ingest.files import (
    COMMITTED,
    INGESTED,
    MOVED,
    PLANNED,
    VANISHED,
    Batch,
    log_batch,
    next_batch,
    read_log,
    survey,
)
from pipeline.ingest.read import ReadPlan, plan_files, refused_records, validate
from pipeline.ingest.transforms import ROW_REASONS, accepted_rows, with_lineage
from pipeline.io.audit import NOOP, LedgerEntry, audited
from pipeline.io.delta import (
    append_idempotent,
    is_delta_table,
    read_delta,
    table_version,
    txn_version,
)
from pipeline.io.lease import tables_lease
from pipeline.io.quarantine import append_quarantine, quarantine_rows
from pipeline.io.raw import (
    BLOCK,
    POSITION,
    SOURCE_ROW,
    list_files,
    record_numbers,
    with_record_numbers,
)
from pipeline.paths import PipelinePaths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def run_ingest(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> list[LedgerEntry]:
    """Ingest every source of the pipeline; one audit row per source. Raises on failure."""
    spec = config.require_pipeline()
    stage_started("ingest", spec.name, f"{run_date}, new files of {', '.join(spec.sources)}")
    paths = PipelinePaths.of(config)
    entries: list[LedgerEntry] = []
    ttl = config.storage.lease_ttl_seconds
    # Records are numbered in their file unless the features declare a key: keyed rows never
    # use the numbers, which cost an aggregation and a join per batch. (Without a features
    # section they are kept, so features added later without a key can still know each row.)
    numbered = spec.features is None or spec.features.key is None
    with tables_lease(spark, paths, ttl, command="ingest", run_id=run_id):
        for name, source in spec.sources.items():
            entry = LedgerEntry(
                run_id=run_id, pipeline=spec.name, stage="ingest", run_date=run_date, source=name
            )
            once_as = f"mlpipe-ingest-audit-{spec.name}-{name}"
            with audited(spark, paths.audit, entry, once_as=once_as):
                commit = _ingest_source(spark, paths, name, source, entry, numbered=numbered)
            if commit is not None:
                commit()  # the batch counts as done only once its audit row is in
                crash_point("ingest.after_log")
            entries.append(entry)
    return entries


def landed_counts(
    spark: SparkSession, paths: PipelinePaths, source: str, batch_id: int
) -> tuple[int, int]:
    """Rows of a batch that landed: (in bronze, quarantined as bad records), read back."""
    from pyspark.sql import functions as F

    bronze = paths.bronze(source)
    accepted = (
        read_delta(spark, bronze).where(F.col("_batch_id") == batch_id).count()
        if is_delta_table(spark, bronze)
        else 0
    )
    quarantined = (
        read_delta(spark, paths.quarantine)
        .where(
            (F.col("source") == source)
            & (F.col("batch_id") == batch_id)
            & F.col("reason").isin(*ROW_REASONS)
        )
        .count()
        if is_delta_table(spark, paths.quarantine)
        else 0
    )
    return accepted, quarantined


def _ingest_source(
    spark: SparkSession,
    paths: PipelinePaths,
    name: str,
    source: SourceSpec,
    entry: LedgerEntry,
    *,
    numbered: bool,
) -> Callable[[], None] | None:
    """Steps 1-3 for one source; the step-4 commit of the log to run after the audit row (None
    when there was nothing to do). `numbered`: bronze rows get `_source_row`."""
    app_id = f"mlpipe-ingest-{paths.pipeline}-{name}"
    batch, notes = _batch(spark, paths, name, source, entry.run_id, app_id)
    if batch is None:
        entry.finish(NOOP, "; ".join(["no new files", *notes]))
        return None
    entry.batch_id = batch.batch_id
    entry.files_read = len(batch.all_files)
    crash_point("ingest.after_plan")

    plan = plan_files(spark, source, [f.path for f in batch.files])
    validated, counts = validate(spark, source, plan)
    bronze_path = paths.bronze(name)
    if validated is not None:
        accepted = accepted_rows(validated, source.columns, plan.extras)
        if numbered:
            accepted = with_record_numbers(accepted, record_numbers(spark, validated))
        else:
            accepted = accepted.drop(BLOCK, POSITION)
        bronze_df = with_lineage(
            accepted, run_id=entry.run_id, batch_id=batch.batch_id, run_date=entry.run_date
        )
        append_idempotent(
            bronze_df,
            bronze_path,
            app_id=app_id,
            version=batch.batch_id,
            # Bronze written before rows were numbered gains `_source_row` (older rows: null).
            merge_schema=source.schema_evolution == "add"
            or (numbered and _lacks_row_numbers(spark, bronze_path)),
        )
    crash_point("ingest.after_bronze")

    records = refused_records(spark, validated, source, plan, batch.changed)
    quarantine_df = quarantine_rows(
        records,
        pipeline=paths.pipeline,
        source=name,
        run_id=entry.run_id,
        batch_id=batch.batch_id,
        run_date=entry.run_date,
    )
    append_quarantine(quarantine_df, paths.quarantine, app_id=app_id, version=batch.batch_id)
    crash_point("ingest.after_quarantine")
    if validated is not None:
        validated.unpersist()

    _ledger(spark, paths, name, batch, plan, counts, entry, notes)
    entry.reconcile()  # before the commit: a mismatch keeps the batch open, and failing
    entry.finish(message="; ".join(notes) or None)
    outcomes = _outcomes(batch, plan)

    def commit() -> None:
        log_batch(spark, paths.ingest_log, name, batch, COMMITTED, entry.run_id, outcomes)

    return commit


def _lacks_row_numbers(spark: SparkSession, bronze_path: str) -> bool:
    return (
        is_delta_table(spark, bronze_path)
        and SOURCE_ROW not in read_delta(spark, bronze_path).columns
    )


def _batch(
    spark: SparkSession,
    paths: PipelinePaths,
    name: str,
    source: SourceSpec,
    run_id: str,
    app_id: str,
) -> tuple[Batch | None, list[str]]:
    """The batch to run (resumed or newly planned and logged), and notes for the ledger."""
    logged = read_log(spark, paths.ingest_log, name)
    listed = list_files(spark, paths.source_path(name))
    listing = survey(logged, listed, source, dt.datetime.now())
    notes = [f"{listing.settling} file(s) not settled yet"] if listing.settling else []
    if listing.pending is not None:
        log.warning(
            "resuming batch %s of %s/%s left by an interrupted run",
            listing.pending.batch_id,
            paths.pipeline,
            name,
        )
        return listing.pending, notes
    batch = next_batch(listing, source)
    if batch is None:
        return None, notes
    _check_tables_behind_log(spark, paths, name, app_id, listing.last_batch)
    log_batch(spark, paths.ingest_log, name, batch, PLANNED, run_id)
    return batch, notes


def _check_tables_behind_log(
    spark: SparkSession, paths: PipelinePaths, name: str, app_id: str, last_batch: int
) -> None:
    """Fail when bronze or quarantine already committed a batch the log does not know of: Delta
    would silently skip the next batch's writes as already done."""
    for table, path in (("bronze", paths.bronze(name)), ("quarantine", paths.quarantine)):
        if not is_delta_table(spark, path):
            continue
        written = txn_version(spark, path, app_id)
        if written is not None and written > last_batch:
            raise RunError(
                f"the ingest log of source '{name}' ({paths.ingest_log}) knows batches up to "
                f"{last_batch} (the next one would be batch {last_batch + 1}), but the {table} "
                f"table has already committed batch {written} of this source (Delta transaction "
                f"'{app_id}'): the log was lost or restored from an older copy. Nothing was "
                "written. Restore the ingest log to its latest version (Delta keeps its history: "
                "RESTORE TABLE ... TO VERSION AS OF), then run again."
            )


def _ledger(
    spark: SparkSession,
    paths: PipelinePaths,
    name: str,
    batch: Batch,
    plan: ReadPlan,
    counts: dict[str | None, int],
    entry: LedgerEntry,
    notes: list[str],
) -> None:
    """The batch's ledger: what was read against what landed in the tables."""
    entry.rows_read = sum(counts.values())
    entry.quarantined_by_reason = {k: v for k, v in counts.items() if k is not None}
    entry.rows_accepted, entry.rows_quarantined = landed_counts(spark, paths, name, batch.batch_id)
    file_reasons = [reason for reason, _ in plan.file_reasons.values()]
    file_reasons += ["file_changed"] * len(batch.changed)
    entry.files_quarantined = len(file_reasons)
    for reason in file_reasons:
        key = f"file:{reason}"
        entry.quarantined_by_reason[key] = entry.quarantined_by_reason.get(key, 0) + 1
    if batch.moved:
        notes.append(f"{len(batch.moved)} file(s) moved, not read again")
    if plan.vanished:
        notes.append(f"{len(plan.vanished)} file(s) vanished before they could be read")
    for table, path in (("bronze", paths.bronze(name)), ("quarantine", paths.quarantine)):
        version = table_version(spark, path)
        if version is not None:
            entry.table_versions[table] = version


def _outcomes(batch: Batch, plan: ReadPlan) -> dict[str, tuple[str, str | None]]:
    """What the batch did with each file, for its committed log rows."""
    out: dict[str, tuple[str, str | None]] = {}
    for f in batch.files:
        if f.path in plan.vanished:
            out[f.path] = (VANISHED, None)
        elif f.path in plan.file_reasons:
            reason, detail = plan.file_reasons[f.path]
            out[f.path] = (reason, detail)
        else:
            out[f.path] = (INGESTED, None)
    out |= {p: ("file_changed", d) for p, d in batch.changed.items()}
    out |= {p: (MOVED, old) for p, old in batch.moved.items()}
    return out
