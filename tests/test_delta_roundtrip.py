"""Delta Lake works for real here: writes, replaceWhere, time travel, schema enforcement, and the
files are read back by an independent Delta implementation (delta-rs)."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable as RsDeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import Row, SparkSession
from pyspark.sql import types as T

from tests.helpers import local_path

SCHEMA = T.StructType(
    [
        T.StructField("run_date", T.DateType(), False),
        T.StructField("entity", T.StringType(), False),
        T.StructField("score", T.DoubleType(), True),
    ]
)
D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


def test_delta_create_append_replace_where_time_travel(spark: SparkSession, tmp_uri: str) -> None:
    path = f"{tmp_uri}/predictions"
    day1 = spark.createDataFrame([(D1, "a", 0.1), (D1, "b", 0.2)], SCHEMA)
    day2 = spark.createDataFrame([(D2, "a", 0.3)], SCHEMA)
    day1.write.format("delta").partitionBy("run_date").save(path)
    day2.write.format("delta").mode("append").save(path)

    # Re-scoring day 1 replaces exactly day 1 and leaves day 2 alone.
    day1_again = spark.createDataFrame([(D1, "a", 0.9)], SCHEMA)
    (
        day1_again.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"run_date = '{D1}'")
        .save(path)
    )
    expected = spark.createDataFrame([(D1, "a", 0.9), (D2, "a", 0.3)], SCHEMA)
    current = spark.read.format("delta").load(path)
    assert_df_equality(current, expected, ignore_row_order=True, ignore_nullable=True)

    version0 = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert_df_equality(version0, day1, ignore_row_order=True, ignore_nullable=True)

    # An independent reader sees the same table, versions and rows.
    rs = RsDeltaTable(local_path(path))
    assert rs.version() == 2
    rows = sorted(rs.to_pyarrow_table().to_pylist(), key=lambda r: r["run_date"])
    assert rows == [
        {"run_date": D1, "entity": "a", "score": 0.9},
        {"run_date": D2, "entity": "a", "score": 0.3},
    ]
    rs.load_as_version(0)
    assert sorted(r["entity"] for r in rs.to_pyarrow_table().to_pylist()) == ["a", "b"]


def test_delta_schema_enforcement_rejects_wrong_type(spark: SparkSession, tmp_uri: str) -> None:
    path = f"{tmp_uri}/strict"
    spark.createDataFrame([(D1, "a", 0.1)], SCHEMA).write.format("delta").save(path)
    wrong = spark.createDataFrame([Row(run_date=D2, entity="b", score="high")])
    with pytest.raises(AnalysisException, match=r"(?i)merge|schema|type"):
        wrong.write.format("delta").mode("append").save(path)
    # The failed append changed nothing.
    assert_df_equality(
        spark.read.format("delta").load(path),
        spark.createDataFrame([(D1, "a", 0.1)], SCHEMA),
        ignore_nullable=True,
    )
