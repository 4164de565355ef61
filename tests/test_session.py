"""The session builder: settings for local mode, and a live session with Delta on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipeline.config.models import SparkConfig
from pipeline.errors import RunError
from pipeline.session import delta_jars, local_cores, session_conf, shuffle_partitions


@pytest.mark.parametrize(
    ("master", "cores"), [("local[3]", 3), ("local[1]", 1), ("local", 1), ("local[2,4]", 2)]
)
def test_local_cores_are_read_from_the_master(master: str, cores: int) -> None:
    assert local_cores(master) == cores


def test_auto_shuffle_partitions_scale_with_local_cores() -> None:
    assert shuffle_partitions(SparkConfig(master="local[3]")) == 6
    assert shuffle_partitions(SparkConfig(master="local[3]", shuffle_partitions=11)) == 11


def test_local_session_conf_pins_loopback_delta_jars_and_interpreter() -> None:
    conf = session_conf(SparkConfig(master="local[2]", conf={"spark.sql.adaptive.enabled": False}))
    assert conf["spark.driver.host"] == "127.0.0.1"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.pyspark.python"] == sys.executable
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.sql.adaptive.enabled"] == "false"
    jars = conf["spark.jars"].split(",")
    assert any(Path(j).name.startswith("delta-spark_4.2_2.13-") for j in jars)
    assert all(Path(j).is_file() for j in jars)


def test_missing_jars_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="run `make setup`"):
        delta_jars(SparkConfig(jars_dir=str(tmp_path)))


def test_live_session_has_delta_and_test_settings(spark: SparkSession) -> None:
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.master == "local[2]"
    assert spark.sql("SELECT 1 AS one").collect()[0].one == 1
