"""The ingest stage: new raw files -> bronze (+ quarantine, ingest log, audit), exactly once.

See docs/ARCHITECTURE.md ("Ingest: exactly once without streaming") for the protocol: the batch's
files are logged as `planned` before any data is written, the data goes in with Delta's idempotent
writes keyed by the batch id, and the files are then logged as `committed`. A run killed at any
point resumes the same batch, and Delta ignores the commits that had already happened.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig, SourceSpec
from pipeline.errors import RunError
from pipeline.faults import crash_point
from pipeline.ingest.transforms import (
    REASON,
    ROW_REASONS,
    accepted_rows,
    rejected_rows,
    validate_records,
    with_lineage,
)
from pipeline.io.audit import NOOP, LedgerEntry, audited
from pipeline.io.delta import append_idempotent, is_delta_table, read_delta, table_version
from pipeline.io.quarantine import RECORD_DDL, append_quarantine, quarantine_rows
from pipeline.io.raw import (
    CORRUPT,
    SOURCE_FILE,
    RawFile,
    describe_error,
    has_header,
    list_files,
    read_columns,
    read_strings,
)
from pipeline.paths import PipelinePaths

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

PLANNED, COMMITTED = "planned", "committed"
LOG_DDL = (
    "source STRING NOT NULL, batch_id BIGINT NOT NULL, file_path STRING NOT NULL, "
    "file_size BIGINT, file_modified TIMESTAMP, status STRING NOT NULL, outcome STRING, "
    "run_id STRING NOT NULL, recorded_at TIMESTAMP NOT NULL"
)


@dataclass
class _Batch:
    batch_id: int
    files: list[RawFile]
    resumed: bool


@dataclass
class _Plan:
    """How each file of a batch will be read, or why it is quarantined whole."""

    groups: dict[tuple[str, ...], list[str]] = field(default_factory=lambda: defaultdict(list))
    file_reasons: dict[str, tuple[str, str]] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)


def run_ingest(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> list[LedgerEntry]:
    """Ingest every source of the pipeline; one audit row per source. Raises on failure."""
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    entries: list[LedgerEntry] = []
    for name, source in spec.sources.items():
        entry = LedgerEntry(
            run_id=run_id, pipeline=spec.name, stage="ingest", run_date=run_date, source=name
        )
        with audited(spark, paths.audit, entry):
            _ingest_source(spark, paths, name, source, entry)
        entries.append(entry)
    return entries


def _ingest_source(
    spark: SparkSession,
    paths: PipelinePaths,
    name: str,
    source: SourceSpec,
    entry: LedgerEntry,
) -> None:
    from pyspark.sql import functions as F

    app_id = f"mlpipe-ingest-{paths.pipeline}-{name}"
    listed = list_files(spark, paths.source_path(name))
    batch = _next_batch(spark, paths.ingest_log, name, listed, source, entry.run_id)
    if batch is None:
        entry.finish(NOOP, "no new files")
        return
    entry.batch_id = batch.batch_id
    entry.files_read = len(batch.files)
    if batch.resumed:
        log.warning(
            "resuming batch %s of %s/%s left by an interrupted run",
            batch.batch_id,
            paths.pipeline,
            name,
        )
    crash_point("after_plan")

    plan = _plan_files(spark, source, [f.path for f in batch.files])
    validated, counts = _validate(spark, source, plan)

    bronze_path = paths.bronze(name)
    evolve = source.schema_evolution == "add"
    if validated is not None:
        bronze_df = with_lineage(
            accepted_rows(validated, source.columns, plan.extras),
            run_id=entry.run_id,
            batch_id=batch.batch_id,
        )
        append_idempotent(
            bronze_df, bronze_path, app_id=app_id, version=batch.batch_id, merge_schema=evolve
        )
    crash_point("after_bronze")

    quarantine_df = quarantine_rows(
        _refused(spark, validated, source, plan),
        pipeline=paths.pipeline,
        source=name,
        run_id=entry.run_id,
        batch_id=batch.batch_id,
        run_date=entry.run_date,
    )
    append_quarantine(quarantine_df, paths.quarantine, app_id=app_id, version=batch.batch_id)
    crash_point("after_quarantine")

    outcomes = {f.path: plan.file_reasons.get(f.path, ("ingested", ""))[0] for f in batch.files}
    _log_files(spark, paths.ingest_log, name, batch, COMMITTED, entry.run_id, outcomes)
    crash_point("after_log")
    if validated is not None:
        validated.unpersist()

    # The ledger counts what was read against what actually landed in the tables for this batch.
    entry.rows_read = sum(counts.values())
    entry.quarantined_by_reason = {k: v for k, v in counts.items() if k is not None}
    entry.rows_accepted = (
        read_delta(spark, bronze_path).where(F.col("_batch_id") == batch.batch_id).count()
        if is_delta_table(spark, bronze_path)
        else 0
    )
    entry.rows_quarantined = (
        read_delta(spark, paths.quarantine)
        .where(
            (F.col("source") == name)
            & (F.col("batch_id") == batch.batch_id)
            & F.col("reason").isin(*ROW_REASONS)
        )
        .count()
    )
    entry.files_quarantined = len(plan.file_reasons)
    for reason, _ in plan.file_reasons.values():
        key = f"file:{reason}"
        entry.quarantined_by_reason[key] = entry.quarantined_by_reason.get(key, 0) + 1
    for table, path in (("bronze", bronze_path), ("quarantine", paths.quarantine)):
        version = table_version(spark, path)
        if version is not None:
            entry.table_versions[table] = version
    entry.reconcile()
    entry.finish()


def _next_batch(
    spark: SparkSession,
    log_path: str,
    source_name: str,
    listed: list[RawFile],
    source: SourceSpec,
    run_id: str,
) -> _Batch | None:
    """Resume an interrupted batch, or plan a new one from the files not seen before."""
    from pyspark.sql import functions as F

    seen: set[str] = set()
    last_batch = 0
    pending: dict[int, list[RawFile]] = {}
    if is_delta_table(spark, log_path):
        rows = read_delta(spark, log_path).where(F.col("source") == source_name).collect()
        committed_batches = {r["batch_id"] for r in rows if r["status"] == COMMITTED}
        for r in rows:
            seen.add(r["file_path"])
            last_batch = max(last_batch, int(r["batch_id"]))
            if r["status"] == PLANNED and r["batch_id"] not in committed_batches:
                pending.setdefault(int(r["batch_id"]), []).append(
                    RawFile(r["file_path"], int(r["file_size"]), r["file_modified"])
                )
    if pending:
        batch_id = min(pending)
        files = sorted(pending[batch_id], key=lambda f: (f.modified, f.path))
        return _Batch(batch_id, files, resumed=True)

    new_files = [f for f in listed if f.path not in seen]
    if source.max_files_per_batch:
        new_files = new_files[: source.max_files_per_batch]
    if not new_files:
        return None
    batch = _Batch(last_batch + 1, new_files, resumed=False)
    _log_files(spark, log_path, source_name, batch, PLANNED, run_id, {})
    return batch


def _log_files(
    spark: SparkSession,
    log_path: str,
    source_name: str,
    batch: _Batch,
    status: str,
    run_id: str,
    outcomes: dict[str, str],
) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        (
            source_name,
            batch.batch_id,
            f.path,
            f.size,
            f.modified,
            status,
            outcomes.get(f.path),
            run_id,
            now,
        )
        for f in batch.files
    ]
    df = spark.createDataFrame(rows, schema=LOG_DDL)
    # planned = 2b-1, committed = 2b: one idempotent, increasing transaction version per write.
    version = 2 * batch.batch_id - (1 if status == PLANNED else 0)
    append_idempotent(df, log_path, app_id=f"mlpipe-ingest-log-{source_name}", version=version)


def _plan_files(spark: SparkSession, source: SourceSpec, files: list[str]) -> _Plan:
    """Check each file's columns against the declared schema before any data is written."""
    declared = {c.name.lower(): c.name for c in source.columns}
    required = {c.name.lower() for c in source.columns if not c.nullable}
    if has_header(source):
        found = read_columns(spark, files, source)
    else:
        found = {p: [c.name for c in source.columns] for p in files}
    plan = _Plan()
    unexpected: dict[str, list[str]] = {}
    for path in files:
        cols = found.get(path)
        if cols is None:
            plan.file_reasons[path] = ("unreadable_file", "the file's columns could not be read")
            continue
        lowered = [c.lower() for c in cols]
        missing = sorted(declared[c] for c in required if c not in lowered)
        if missing:
            plan.file_reasons[path] = ("missing_required_column", f"missing: {', '.join(missing)}")
            continue
        extra = [c for c in cols if c.lower() not in declared]
        if extra:
            unexpected[path] = extra
            for col in extra:
                if col not in plan.extras:
                    plan.extras.append(col)
        # Read with the file's own names mapped onto the declared spelling.
        plan.groups[tuple(declared.get(c.lower(), c) for c in cols)].append(path)
    if unexpected and source.schema_evolution == "fail":
        listing = "; ".join(f"{p}: {', '.join(cols)}" for p, cols in sorted(unexpected.items()))
        raise RunError(
            f"unexpected new column(s) in {len(unexpected)} file(s) ({listing}). Nothing was "
            "written. Declare the columns in the source's `columns`, or set "
            "`schema_evolution: add` to add them to bronze."
        )
    return plan


def _read_plan(spark: SparkSession, source: SourceSpec, plan: _Plan) -> DataFrame | None:
    from pyspark.sql import functions as F

    wanted = [c.name for c in source.columns] + plan.extras
    parts: list[DataFrame] = []
    for cols, group in plan.groups.items():
        df = read_strings(spark, group, source, cols)
        parts.append(
            df.select(
                *[
                    F.col(f"`{c}`") if c in cols else F.lit(None).cast("string").alias(c)
                    for c in wanted
                ],
                F.col(CORRUPT),
                F.col(SOURCE_FILE),
            )
        )
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return validate_records(out, source.columns, plan.extras)


def _validate(
    spark: SparkSession, source: SourceSpec, plan: _Plan
) -> tuple[DataFrame | None, dict[str | None, int]]:
    """Validate the batch's rows (cached) and count them by reason; isolate unreadable files."""
    validated = _read_plan(spark, source, plan)
    if validated is None:
        return None, {}
    try:
        validated = validated.persist()
        return validated, _count_by_reason(validated)
    except Exception as exc:
        validated.unpersist()
        log.warning(
            "reading the batch failed (%s); checking its files one by one", describe_error(exc)
        )
    for cols, group in list(plan.groups.items()):
        for path in list(group):
            try:
                read_strings(spark, [path], source, cols).count()
            except Exception as exc:
                plan.file_reasons[path] = ("unreadable_file", describe_error(exc))
                group.remove(path)
        if not group:
            del plan.groups[cols]
    validated = _read_plan(spark, source, plan)
    if validated is None:
        return None, {}
    validated = validated.persist()
    return validated, _count_by_reason(validated)


def _count_by_reason(validated: DataFrame) -> dict[str | None, int]:
    return {r[REASON]: int(r["count"]) for r in validated.groupBy(REASON).count().collect()}


def _refused(
    spark: SparkSession, validated: DataFrame | None, source: SourceSpec, plan: _Plan
) -> DataFrame:
    """The batch's refused records: its bad rows, and one row per file refused whole."""
    file_rows = [
        (None, path, reason, detail) for path, (reason, detail) in sorted(plan.file_reasons.items())
    ]
    frame = spark.createDataFrame(file_rows, schema=RECORD_DDL)
    if validated is not None:
        frame = rejected_rows(validated, source.columns, plan.extras).unionByName(frame)
    return frame
