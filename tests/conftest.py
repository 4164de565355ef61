"""Shared fixtures: one Spark session with Delta for the whole run, and an isolated data folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipeline.config import AppConfig
from tests.helpers import CONF_DIR


def pytest_configure(config: pytest.Config) -> None:
    # Everything the suite writes (tables, MLflow store, landing files) goes to a temporary folder,
    # including what subprocesses started by tests write: they inherit the environment.
    if "MLPIPE_DATA" not in os.environ or os.environ.get("MLPIPE_TEST_KEEP_DATA") != "1":
        os.environ["MLPIPE_DATA"] = tempfile.mkdtemp(prefix="mlpipe-test-")
    os.environ["MLPIPE_ENV"] = "test"
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The suite's data folder ($MLPIPE_DATA)."""
    return Path(os.environ["MLPIPE_DATA"])


@pytest.fixture(scope="session")
def app_config() -> AppConfig:
    """The `test` environment's project configuration."""
    from pipeline.config import load_config

    return load_config(env="test", conf_dir=CONF_DIR)


@pytest.fixture(scope="session")
def spark(app_config: AppConfig) -> Iterator[SparkSession]:
    """One local[2] SparkSession with Delta for the whole test run."""
    from pipeline.session import build_spark

    session = build_spark(app_config.spark, app_name="mlpipe-tests")
    yield session
    session.stop()


@pytest.fixture
def tmp_uri(tmp_path: Path) -> str:
    """A fresh file:// folder for one test's tables."""
    return "file://" + str(tmp_path)
