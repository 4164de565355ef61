"""Delta table reads and writes used by every stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def is_delta_table(spark: SparkSession, path: str) -> bool:
    """True when `path` holds a Delta table."""
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def read_delta(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """Read a Delta table, optionally as of a version."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def table_version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version of a Delta table, None when there is no table."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return int(row[0]) if row is not None else None


def append_idempotent(
    df: DataFrame,
    path: str,
    *,
    app_id: str,
    version: int,
    merge_schema: bool = False,
    partition_by: list[str] | None = None,
) -> None:
    """Append `df` once per (app_id, version): Delta skips a commit it has already seen.

    This is Delta's idempotent-write protocol (`txnAppId`/`txnVersion`): a rerun after a crash
    re-executes the write and Delta ignores it when that version was already committed.
    """
    writer = (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", str(version))
    )
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)


def overwrite_where(
    df: DataFrame, path: str, predicate: str, *, partition_by: list[str] | None = None
) -> None:
    """Atomically replace the rows matching `predicate` (e.g. one run date) with `df`."""
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)
