"""Delta table reads and writes used by every stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


# Delta's optimistic-concurrency conflicts (another writer committed first); in Python they do not
# share a base class, so they are named once here.
_CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentDeleteReadException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "DeltaConcurrentModificationException",
    "MetadataChangedException",
    "ProtocolChangedException",
)


def is_commit_conflict(exc: BaseException) -> bool:
    """True for Delta's commit conflicts, by their typed exceptions (`pipeline.session` installs
    their conversion from Java errors)."""
    import delta.exceptions

    return isinstance(exc, tuple(getattr(delta.exceptions, name) for name in _CONFLICTS))


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
    df: DataFrame,
    path: str,
    predicate: str,
    *,
    partition_by: list[str] | None = None,
    merge_schema: bool = False,
) -> None:
    """Atomically replace the rows matching `predicate` (e.g. one run date) with `df`; with
    `merge_schema`, columns `df` adds are added to the table (older rows: null)."""
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)


def txn_version(spark: SparkSession, path: str, app_id: str) -> int | None:
    """The last transaction version Delta recorded for `app_id` on the table (None if none).

    Delta skips an idempotent write whose version is not above this one, so a writer that lost
    track of its versions must learn it before writing. It is read from the table's log as the
    Delta protocol lays it out: `txn` actions in the last checkpoint and in the commits after it.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    log = f"{path.rstrip('/')}/_delta_log"
    txn = "txn STRUCT<appId: STRING, version: BIGINT>"
    checkpoint = -1
    try:
        last = spark.read.schema("version BIGINT").json(f"{log}/_last_checkpoint").first()
        if last is not None and last["version"] is not None:
            checkpoint = int(last["version"])
    except AnalysisException:  # no checkpoint yet
        pass
    versions: list[int] = []
    if checkpoint >= 0:
        found = (
            spark.read.schema(txn)
            .parquet(f"{log}/{checkpoint:020d}.checkpoint*.parquet")
            .where(F.col("txn.appId") == app_id)
            .agg(F.max("txn.version"))
            .first()
        )
        if found is not None and found[0] is not None:
            versions.append(int(found[0]))
    commits = (
        spark.read.schema(txn)
        .json(f"{log}/*.json")
        .withColumn(
            "_commit", F.regexp_extract(F.col("_metadata.file_path"), r"(\d{20})\.json$", 1)
        )
        .where((F.col("txn.appId") == app_id) & (F.col("_commit").cast("long") > checkpoint))
        .agg(F.max("txn.version"))
        .first()
    )
    if commits is not None and commits[0] is not None:
        versions.append(int(commits[0]))
    return max(versions) if versions else None
