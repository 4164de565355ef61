"""The quarantine table: every row a stage refuses, with the reason, kept for a person to look at.

Ingest puts bad records and unreadable files here, scoring puts rows it cannot score; both build
their rows with `quarantine_rows` and append them with `append_quarantine`, so the table has one
layout and one write protocol whoever writes it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pipeline.io.delta import append_idempotent, is_delta_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# What a stage supplies for each refused row; the rest of the layout is added here.
RECORD_COLUMNS = ("raw_record", "source_file", "reason", "detail")
RECORD_DDL = "raw_record STRING, source_file STRING, reason STRING, detail STRING"


def quarantine_rows(
    records: DataFrame,
    *,
    pipeline: str,
    source: str,
    run_id: str,
    batch_id: int,
    run_date: dt.date | None,
) -> DataFrame:
    """`records` (raw_record, source_file, reason, detail) in the quarantine table's layout."""
    from pyspark.sql import functions as F

    return records.select(
        *RECORD_COLUMNS,
        F.lit(pipeline).alias("pipeline"),
        F.lit(source).alias("source"),
        F.lit(run_id).alias("run_id"),
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.lit(run_date).cast("date").alias("run_date"),
        F.current_timestamp().alias("quarantined_at"),
    )


def append_quarantine(rows: DataFrame, path: str, *, app_id: str, version: int) -> None:
    """Append quarantined rows once per (writer, version) (Delta's idempotent writes)."""
    append_idempotent(rows, path, app_id=app_id, version=version)


def replace_quarantine(rows: DataFrame, path: str, *, source: str, run_date: dt.date) -> None:
    """Replace what a stage quarantined for a run date (its rows of `source` and `run_date`) with
    `rows`, in one atomic commit: a rerun of the date leaves exactly its latest rows."""
    _replace(rows, path, f"source = '{source}' AND run_date = '{run_date}'")


def replace_dates_quarantine(
    records: DataFrame,
    path: str,
    *,
    pipeline: str,
    source: str,
    run_ids: str,
    first: dt.date,
    last: dt.date,
) -> None:
    """`replace_date_quarantine` for every run date `first`..`last` in one commit: `records` carry
    their `run_date`; each row's run id is `run_ids` followed by `-` and its run date (the run id
    of that date's stage in a one-pass backfill)."""
    from pyspark.sql import functions as F

    rows = records.select(
        *RECORD_COLUMNS,
        F.lit(pipeline).alias("pipeline"),
        F.lit(source).alias("source"),
        F.concat(F.lit(f"{run_ids}-"), F.col("run_date").cast("string")).alias("run_id"),
        F.lit(0).cast("long").alias("batch_id"),
        F.col("run_date").cast("date").alias("run_date"),
        F.current_timestamp().alias("quarantined_at"),
    )
    _replace(rows, path, f"source = '{source}' AND run_date >= '{first}' AND run_date <= '{last}'")


def _replace(rows: DataFrame, path: str, predicate: str) -> None:
    if not is_delta_table(rows.sparkSession, path):
        if rows.limit(1).count() == 0:
            return  # nothing to keep, and no table to replace in
        rows.write.format("delta").mode("append").save(path)
        return
    rows.write.format("delta").mode("overwrite").option("replaceWhere", predicate).save(path)


def replace_date_quarantine(
    records: DataFrame, path: str, *, pipeline: str, source: str, run_id: str, run_date: dt.date
) -> None:
    """What a stage after ingest (features, score) rejects for a run date: `records` (raw_record,
    source_file, reason, detail) in the table's layout, replacing its earlier rows of the date."""
    rows = quarantine_rows(
        records, pipeline=pipeline, source=source, run_id=run_id, batch_id=0, run_date=run_date
    )
    replace_quarantine(rows, path, source=source, run_date=run_date)
