"""Kill-and-rerun: an ingest killed with SIGKILL between any two of its commits, then run again,
leaves every good row in bronze exactly once (and every bad row in quarantine exactly once)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from pipeline.ingest.runner import run_ingest
from pipeline.io.delta import read_delta
from pipeline.paths import PipelinePaths
from tests.helpers import ROOT, make_config
from tests.test_ingest import HEADER, SPEC, drop

pytestmark = pytest.mark.faults

ARGS = ["--pipeline", "t", "--env", "test", "--run-date", "2026-01-05"]


def ingest_subprocess(tmp_path: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLPIPE_CRASH_AT": crash_at or ""}
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "ingest",
        *ARGS,
        "--conf-dir",
        str(tmp_path / "conf"),
        "--set",
        f"storage.landing={tmp_path / 'landing'}",
        "--set",
        f"storage.tables={tmp_path / 'tables'}",
    ]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def rows(i0: int, n: int, day: str) -> list[str]:
    good = [f"{i},{i % 900}.5,a,{i % 7},{day} 10:00:00" for i in range(i0, i0 + n)]
    return [HEADER, *good, f"bad{i0},-1,a,1,{day} 10:00:00", f"{i0}x,1,2,3"]


def contents(spark: SparkSession, path: str, cols: list[str]) -> DataFrame:
    return read_delta(spark, path).select(*cols)


def test_kill_at_every_commit_point_then_rerun_ingests_exactly_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    spec = SPEC.format(fmt="csv", options="{header: true}", evolution="fail")
    cfg = make_config(tmp_path, spec)
    drop(cfg, "a.csv", rows(0, 300, "2026-01-01"))
    drop(cfg, "b.csv", rows(1000, 200, "2026-01-02"))

    # Each run dies at a later point of the same batch; the next one resumes it.
    for point in ("after_plan", "after_bronze", "after_quarantine", "after_log"):
        result = ingest_subprocess(tmp_path, point)
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
    # A new file, and a crash right after its bronze commit.
    drop(cfg, "c.csv", rows(5000, 100, "2026-01-03"))
    assert ingest_subprocess(tmp_path, "after_bronze").returncode == -signal.SIGKILL
    final = ingest_subprocess(tmp_path, None)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "ingest/tx succeeded" in final.stdout

    # The same files ingested once, without interruptions, into another place.
    clean_dir = tmp_path / "clean"
    clean_cfg = make_config(clean_dir, spec)
    landed = Path(PipelinePaths.of(cfg).source_path("tx").removeprefix("file://"))
    for name in ("a.csv", "b.csv", "c.csv"):
        drop(clean_cfg, name, (landed / name).read_bytes())
    run_ingest(spark, clean_cfg, run_date=dt.date(2026, 1, 5), run_id="clean")

    cols = ["id", "amount", "kind", "qty", "ts"]
    crashed, clean = PipelinePaths.of(cfg), PipelinePaths.of(clean_cfg)
    crashed_bronze = contents(spark, crashed.bronze("tx"), cols)
    assert crashed_bronze.count() == 600  # 300 + 200 + 100 good rows, none twice
    assert_df_equality(
        crashed_bronze, contents(spark, clean.bronze("tx"), cols), ignore_row_order=True
    )
    qcols = ["raw_record", "reason", "detail"]
    assert_df_equality(
        contents(spark, crashed.quarantine, qcols),
        contents(spark, clean.quarantine, qcols),
        ignore_row_order=True,
    )
