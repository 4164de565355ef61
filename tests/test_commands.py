"""Every command the README shows, each in its own fresh process, in the order a person runs them.

No state is shared between the commands but the configuration and the tables: each one starts its
own Python interpreter (and Spark, and MLflow client), from an empty working directory that must
still be empty at the end. The shipped fraud pipeline runs on a few days of generated data; each
step checks its exit code and what it wrote, read back from the tables and the registry.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import AppConfig, load_config
from pipeline.io.delta import read_delta
from pipeline.paths import PipelinePaths
from tests.helpers import CONF_DIR, ROOT

pytestmark = pytest.mark.commands

DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(5)]
ROWS_PER_DAY = 2500
# The shipped pipeline with a smaller search, so the suite stays quick.
FAST = [
    "--set",
    "pipeline.train.folds=2",
    "--set",
    "pipeline.train.candidates.0.grid.regParam=[0.01]",
    "--set",
    "pipeline.train.candidates.1.params.n_estimators=10",
]


@dataclass
class Shell:
    """Runs `mlpipe` in a fresh interpreter with the suite's data folder and an empty cwd."""

    data: Path
    cwd: Path
    env: dict[str, str]

    def run(
        self, *args: str, crash: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        env = {**self.env, "MLPIPE_CRASH_AT": crash} if crash else self.env
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(
            f"mlpipe {' '.join(args[:3])}: exit {result.returncode}, {time.monotonic() - started:.1f}s"
        )
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (
            f"mlpipe {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
        return result.stdout

    def config(self) -> AppConfig:
        return load_config("fraud", env="test", conf_dir=CONF_DIR)


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Shell:
    data = tmp_path_factory.mktemp("commands-data")
    cwd = tmp_path_factory.mktemp("commands-cwd")
    env = {
        **os.environ,
        "MLPIPE_DATA": str(data),
        "MLPIPE_ENV": "test",
        "MLPIPE_CONF_DIR": str(CONF_DIR),
        "PYTHONPATH": str(ROOT),
        # Each child is a short-lived JVM on a few thousand rows: start-up is most of its time,
        # and the quick JIT tier halves that. It changes speed only, never a result.
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1",
    }
    # Whatever the parent process configured must not help the children.
    for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLPIPE_CRASH_AT"):
        env.pop(leaked, None)
    return Shell(data, cwd, env)


def _with_data(shell: Shell) -> AppConfig:
    """The configuration the children resolve (same MLPIPE_DATA)."""
    old = os.environ.get("MLPIPE_DATA")
    os.environ["MLPIPE_DATA"] = str(shell.data)
    try:
        return shell.config()
    finally:
        if old is not None:
            os.environ["MLPIPE_DATA"] = old


def _versions(spark: SparkSession, path: str, day: dt.date) -> set[str]:
    rows = read_delta(spark, path).where(F.col("run_date") == F.lit(day))
    return {r[0] for r in rows.select("model_version").distinct().collect()}


def _day(spark: SparkSession, path: str, day: dt.date) -> DataFrame:
    return read_delta(spark, path).where(F.col("run_date") == F.lit(day))


def _champion(cfg: AppConfig) -> str:
    """The registry's champion version, read with a client of our own."""
    client = MlflowClient(
        tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.tracking_uri
    )
    return str(client.get_model_version_by_alias("mlpipe-fraud", "champion").version)


def _audit(spark: SparkSession, cfg: AppConfig, day: dt.date) -> dict[str, str]:
    rows = (
        read_delta(spark, PipelinePaths.of(cfg).audit)
        .where(F.col("run_date") == F.lit(day))
        .orderBy("finished_at")
        .collect()
    )
    return {r["stage"]: r["status"] for r in rows}


def test_each_readme_command_runs_on_its_own_in_a_fresh_process(
    shell: Shell, spark: SparkSession
) -> None:
    cfg = _with_data(shell)
    paths = PipelinePaths.of(cfg)
    d1, d2, d3, d4, d5 = (str(d) for d in DAYS)

    shell.ok("generate", "fraud", "--days", "5", "--rows-per-day", str(ROWS_PER_DAY))
    landing = Path(paths.source_path("transactions").removeprefix("file://"))
    assert sorted(p.name for p in landing.iterdir()) == [d1, d2, d3, d4, d5]

    # Stage by stage for the first date(s): each a process of its own.
    shell.ok("ingest", "--pipeline", "fraud", "--run-date", d2)
    bronze = read_delta(spark, paths.bronze("transactions"))
    assert bronze.select("_source_file").distinct().count() == len(list(landing.rglob("*.csv")))

    shell.ok("features", "--pipeline", "fraud", "--run-date", d2)
    features = read_delta(spark, paths.features)
    assert [str(r[0]) for r in features.select("event_date").distinct().collect()] == [d2]

    train_out = shell.ok("train", "--pipeline", "fraud", "--run-date", d2, *FAST)
    assert "promoted to champion" in train_out

    # A resumed night: ingest, features and training already ran for the date (above, each in a
    # process of its own); the nightly flow looks for new files (none), skips the rest and scores
    # with the champion.
    resumed = shell.ok("nightly", "--pipeline", "fraud", "--run-date", d2)
    assert "ingest: ran, features: done before, train: done before, score: ran" in resumed
    features = read_delta(spark, paths.features)
    scored = read_delta(spark, paths.predictions).where(F.col("run_date") == F.lit(DAYS[1]))
    assert scored.count() == features.count()
    assert _versions(spark, paths.predictions, DAYS[1]) == {_champion(cfg)} == {"1"}

    # Scoring the date again on its own replaces its predictions with the same rows.
    before = sorted(scored.drop("scored_at").collect())
    score_out = shell.ok("score", "--pipeline", "fraud", "--run-date", d2)
    assert "score succeeded" in score_out
    again = read_delta(spark, paths.predictions).where(F.col("run_date") == F.lit(DAYS[1]))
    assert sorted(again.drop("scored_at").collect()) == before

    status_out = shell.ok("status", "--pipeline", "fraud")
    assert "champion: mlpipe-fraud v1" in status_out

    # A next night, every stage in one process (training is not due: the champion is a day old).
    shell.ok("nightly", "--pipeline", "fraud", "--run-date", d3)
    assert _audit(spark, cfg, DAYS[2]) == {
        "ingest": "noop",
        "features": "succeeded",
        "score": "succeeded",
    }
    # The same night again: no new file, every other stage was done; nothing is written but the
    # ingest's no-op and the skips.
    before = sorted(_day(spark, paths.predictions, DAYS[2]).collect())
    again_out = shell.ok("nightly", "--pipeline", "fraud", "--run-date", d3)
    stages = next(line for line in again_out.splitlines() if line.startswith(f"nightly {d3}:"))
    assert stages.startswith(f"nightly {d3}: ingest: ran, features: done before, train: not due")
    assert stages.rstrip().endswith("score: done before")
    assert "no new files" in again_out
    assert sorted(_day(spark, paths.predictions, DAYS[2]).collect()) == before

    # Two more nights in one process.
    shell.ok("backfill", "--pipeline", "fraud", "--from", d4, "--to", d5)
    assert _audit(spark, cfg, DAYS[4])["score"] == "succeeded"
    dated = read_delta(spark, paths.predictions).select("run_date").distinct().collect()
    assert sorted(str(r[0]) for r in dated) == [d2, d3, d4, d5]

    # Nothing was ever written to the working directory (no stray mlflow.db, spark-warehouse, ...).
    assert sorted(p.name for p in shell.cwd.iterdir()) == []
