"""Ingest from hdfs:// into Delta tables on hdfs:// (a real single-node HDFS, scripts/hdfs.sh)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from pipeline.ingest.runner import run_ingest
from pipeline.io.delta import read_delta
from pipeline.paths import PipelinePaths
from tests.helpers import make_config
from tests.infra import HdfsInfo
from tests.test_ingest import BRONZE_DDL, HEADER, SPEC, bronze

pytestmark = pytest.mark.hdfs
pytest_plugins = ["tests.infra"]


def test_ingest_from_hdfs_into_delta_on_hdfs(
    spark: SparkSession, hdfs_cluster_info: HdfsInfo, tmp_path: Path
) -> None:
    root = f"{hdfs_cluster_info.uri}/it-ingest"
    cfg = make_config(
        tmp_path,
        SPEC.format(fmt="csv", options="{header: true}", evolution="fail"),
        overrides=[f"storage.landing={root}/landing", f"storage.tables={root}/tables"],
    )
    local = tmp_path / "day1.csv"
    local.write_text(
        "\n".join([HEADER, "1,1.5,a,1,2026-01-01 00:00:00", "2,-3,b,2,2026-01-01 01:00:00"]) + "\n"
    )
    target = PipelinePaths.of(cfg).source_path("tx")
    for args in (["-mkdir", "-p", target], ["-put", str(local), f"{target}/day1.csv"]):
        result = hdfs_cluster_info.fs(*args)
        assert result.returncode == 0, result.stderr

    [entry] = run_ingest(spark, cfg, run_date=dt.date(2026, 1, 1), run_id="hdfs-1")

    paths = PipelinePaths.of(cfg)
    assert paths.bronze("tx").startswith("hdfs://")
    expected = spark.createDataFrame(
        [("1", 1.5, "a", 1, dt.datetime(2026, 1, 1), "day1.csv", 1)], BRONZE_DDL
    )
    assert_df_equality(bronze(spark, cfg), expected, ignore_nullable=True)
    [q] = read_delta(spark, paths.quarantine).collect()
    assert (q.reason, q.source_file.startswith("hdfs://")) == ("out_of_range", True)
    assert (entry.rows_read, entry.rows_accepted, entry.rows_quarantined) == (2, 1, 1)
    # A rerun finds nothing new on HDFS.
    [again] = run_ingest(spark, cfg, run_date=dt.date(2026, 1, 1), run_id="hdfs-2")
    assert again.status == "noop"
