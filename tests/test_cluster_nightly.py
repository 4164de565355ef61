"""The nightly flow under spark-submit on a real standalone cluster, for two run dates, with data
and tables on a real HDFS and runs, artifacts and the registry on a real MLflow tracking server."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.generate import generate
from pipeline.io.delta import read_delta
from tests.helpers import ROOT
from tests.infra import HdfsInfo, SparkStandaloneInfo

pytestmark = pytest.mark.cluster
pytest_plugins = ["tests.infra"]

DAYS = [dt.date(2026, 2, 1), dt.date(2026, 2, 2)]
SMALL_TRAINING = [
    "pipeline.train.folds=2",
    "pipeline.train.parallelism=1",
    "pipeline.train.candidates=[{name: logreg, algorithm: logistic_regression, params: {maxIter: 30}}]",
]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_nightly_via_spark_submit_on_cluster_hdfs_and_mlflow_server(
    spark: SparkSession,
    spark_standalone_info: SparkStandaloneInfo,
    hdfs_cluster_info: HdfsInfo,
    mlflow_server: str,
    tmp_path: Path,
) -> None:
    root = f"{hdfs_cluster_info.uri}/it-nightly"
    local = tmp_path / "landing"
    generate("fraud", str(local), days=len(DAYS), rows_per_day=4000, start_date=DAYS[0], seed=3)
    for args in (
        ["-mkdir", "-p", f"{root}/landing"],
        ["-put", str(local), f"{root}/landing/fraud"],
    ):
        result = hdfs_cluster_info.fs(*args)
        assert result.returncode == 0, result.stderr

    sets = [
        f"storage.landing={root}/landing",
        f"storage.tables={root}/tables",
        f"storage.reports={tmp_path / 'reports'}",
        f"mlflow.tracking_uri={mlflow_server}",
        *SMALL_TRAINING,
    ]
    for day in DAYS:
        cmd = [
            str(ROOT / "scripts" / "submit"),
            "--master",
            spark_standalone_info.master_url,
            "nightly",
            "--",
            "--pipeline",
            "fraud",
            "--env",
            "cluster",
            "--run-date",
            str(day),
        ]
        for item in sets:
            cmd += ["--set", item]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-5000:]}"
        assert f"nightly {day}" in done.stdout

    tables = f"{root}/tables/fraud"
    preds = read_delta(spark, f"{tables}/predictions")
    counts = {r.run_date: r["count"] for r in preds.groupBy("run_date").count().collect()}
    assert set(counts) == set(DAYS)
    audit = read_delta(spark, f"{tables}/audit").where(F.col("status") != "skipped")
    ledger = sorted((r.run_date, r.stage, r.status) for r in audit.collect())
    assert ledger == sorted(
        [(DAYS[0], s, "succeeded") for s in ("ingest", "features", "train", "score")]
        + [
            (DAYS[1], "ingest", "noop"),
            (DAYS[1], "features", "succeeded"),
            (DAYS[1], "score", "succeeded"),
        ]
    )
    for r in audit.where(F.col("stage") == "score").collect():
        assert r.rows_read == r.rows_accepted + r.rows_quarantined
        assert counts[r.run_date] == r.rows_accepted

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    champion = client.get_model_version_by_alias("mlpipe-fraud", "champion")
    assert {r.model_version for r in preds.select("model_version").distinct().collect()} == {
        str(champion.version)
    }
    assert champion.run_id is not None
    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "evaluation")}
    assert "evaluation/report.html" in artifacts

    state = get_json(f"{spark_standalone_info.web_url}/json/")
    apps = [a for a in state["completedapps"] if a["name"].startswith("mlpipe-nightly-fraud")]
    assert len(apps) == 2, state["completedapps"]
    assert all(a["state"] == "FINISHED" and a["cores"] >= 1 for a in apps)
