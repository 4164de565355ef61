"""Delta tables on a real HDFS (scripts/hdfs.sh), written and read by the suite's local Spark."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import types as T

if TYPE_CHECKING:  # imported by pytest as a plugin (below), not here: keeps its asserts rewritten
    from tests.infra import HdfsInfo

pytest_plugins = ["tests.infra"]
pytestmark = pytest.mark.hdfs

# Nullable columns only: Delta reads every column back as nullable (NOT NULL is a table constraint).
SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("name", T.StringType()),
        T.StructField("amount", T.DecimalType(12, 2)),
        T.StructField("score", T.DoubleType()),
        T.StructField("event_date", T.DateType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("flag", T.BooleanType()),
    ]
)
ROWS = [
    (1, "alpha", Decimal("10.50"), 0.25, dt.date(2026, 1, 1), dt.datetime(2026, 1, 1, 8, 30), True),
    (
        2,
        "béta",
        Decimal("-3.00"),
        None,
        dt.date(2026, 1, 2),
        dt.datetime(2026, 1, 2, 23, 59),
        False,
    ),
    (3, None, None, 1e-9, None, None, None),
]


def _log_files(spark: SparkSession, table: str) -> list[str]:
    """The commit files in the table's `_delta_log`, listed by Spark's binaryFile source."""
    listing = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.json")
        .load(f"{table}/_delta_log")
        .select("path", "length")
        .collect()
    )
    assert all(row.length > 0 for row in listing)
    return sorted(row.path for row in listing)


def test_delta_table_round_trips_on_hdfs(spark: SparkSession, hdfs_cluster: str) -> None:
    table = f"{hdfs_cluster}/mlpipe-tests/{uuid.uuid4().hex}/roundtrip"
    written = spark.createDataFrame(ROWS, SCHEMA)

    written.write.format("delta").mode("overwrite").save(table)
    read_back = spark.read.format("delta").load(table)
    assert_df_equality(written, read_back, ignore_row_order=True)

    spark.createDataFrame([(4, "delta", None, None, None, None, True)], SCHEMA).write.format(
        "delta"
    ).mode("append").save(table)
    assert spark.read.format("delta").load(table).count() == len(ROWS) + 1
    # Time travel reads the first commit back from HDFS unchanged.
    first = spark.read.format("delta").option("versionAsOf", 0).load(table)
    assert_df_equality(written, first, ignore_row_order=True)

    log = _log_files(spark, table)
    assert [path.rsplit("/", 1)[1] for path in log] == [
        "00000000000000000000.json",
        "00000000000000000001.json",
    ]
    assert all(path.startswith(f"{hdfs_cluster}/") for path in log)


def test_delta_log_is_on_hdfs_itself(
    spark: SparkSession, hdfs_cluster_info: HdfsInfo, hdfs_cluster: str
) -> None:
    """HDFS's own client (not Spark) sees the table's files on the namenode."""
    folder = f"/mlpipe-tests/{uuid.uuid4().hex}/events"
    spark.range(0, 100).write.format("delta").save(f"{hdfs_cluster}{folder}")

    listed = hdfs_cluster_info.fs("-ls", "-C", f"{folder}/_delta_log")
    assert listed.returncode == 0, listed.stderr
    assert f"{folder}/_delta_log/00000000000000000000.json" in listed.stdout.split()

    data_files = hdfs_cluster_info.fs("-ls", "-C", folder)
    assert any(name.endswith(".parquet") for name in data_files.stdout.split())
