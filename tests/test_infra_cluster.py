"""spark-submit through scripts/submit: the command it builds, and a real run of `check` on a Spark
standalone cluster (scripts/spark-cluster.sh) logging to an MLflow server (scripts/mlflow-server.sh).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import ROOT

if TYPE_CHECKING:  # imported by pytest as a plugin (below), not here: keeps its asserts rewritten
    from tests.infra import SparkStandaloneInfo

pytest_plugins = ["tests.infra"]

SUBMIT = ROOT / "scripts" / "submit"
STAGES = ["ingest", "features", "train", "score", "nightly", "backfill", "check"]


def submit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SUBMIT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _option(command: str, name: str) -> str:
    """The value of `name` in a rendered command (one option per line)."""
    for line in command.splitlines():
        parts = shlex.split(line.strip().rstrip("\\"))
        if len(parts) >= 2 and parts[0] == name:
            return parts[1]
    raise AssertionError(f"{name} not in:\n{command}")


@pytest.mark.parametrize("stage", STAGES)
def test_dry_run_prints_the_full_command(stage: str) -> None:
    result = submit("--dry-run", "--master", "spark://127.0.0.1:7077", stage, "--", "--env", "x")
    assert result.returncode == 0, result.stderr
    command = result.stdout

    jars = _option(command, "--jars").split(",")
    assert any(Path(j).name.startswith("delta-spark_4.2_2.13-") for j in jars)
    assert all(Path(j).is_file() for j in jars)
    package = Path(_option(command, "--py-files"))
    assert package.is_file()
    assert package.parent == ROOT / ".cache" / "dist"
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in command
    assert (
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog" in command
    )
    assert f"spark.pyspark.python={ROOT / '.venv' / 'bin' / 'python'}" in command
    assert "spark.driver.host=127.0.0.1" in command
    assert f"MLPIPE_CONF_DIR={ROOT / 'conf'}" in command
    assert command.rstrip().endswith(f"{ROOT / 'jobs' / stage}.py --env x")


def test_package_zip_is_rebuilt_only_when_sources_change() -> None:
    first = _option(submit("--dry-run", "check").stdout, "--py-files")
    mtime = os.stat(first).st_mtime_ns
    second = _option(submit("--dry-run", "check").stdout, "--py-files")
    assert first == second
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        assert "pipeline/__init__.py" in names
        assert "pipeline/cli.py" in names
        assert not any("__pycache__" in n for n in names)
    assert os.stat(second).st_mtime_ns >= mtime


def test_cluster_deploy_mode_ships_the_configuration() -> None:
    result = submit("--dry-run", "--master", "yarn", "--deploy-mode", "cluster", "train")
    assert result.returncode == 0, result.stderr
    archive = _option(result.stdout, "--archives")
    assert archive.endswith(".zip#conf")
    assert Path(archive.split("#")[0]).is_file()
    assert "spark.yarn.appMasterEnv.MLPIPE_CONF_DIR=conf" in result.stdout
    assert "MLPIPE_CONF_DIR=/" not in result.stdout
    assert "spark.driver.host" not in result.stdout  # executors on other hosts must reach it


def test_usage_errors_exit_2() -> None:
    standalone_cluster = submit(
        "--dry-run", "--master", "spark://127.0.0.1:7077", "--deploy-mode", "cluster", "check"
    )
    assert standalone_cluster.returncode == 2
    assert "not available for Python applications" in standalone_cluster.stderr
    assert submit("nosuchstage").returncode == 2
    assert submit("check", "--env", "cluster").returncode == 2  # job arguments belong after --


@pytest.mark.cluster
def test_check_runs_on_the_standalone_cluster(
    spark_standalone_info: SparkStandaloneInfo,
    spark_standalone: str,
    mlflow_server: str,
    tmp_path: Path,
) -> None:
    result = submit(
        "--master",
        spark_standalone,
        "check",
        "--",
        "--env",
        "cluster",
        "--set",
        f"storage.tables=file://{tmp_path / 'tables'}",
        "--set",
        f"storage.landing={tmp_path / 'landing'}",
        "--set",
        f"mlflow.tracking_uri={mlflow_server}",
        timeout=600,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-5000:]}"
    assert "stack check passed" in result.stdout
    assert (tmp_path / "tables" / "_check" / "delta_roundtrip" / "_delta_log").is_dir()

    # The run is on the tracking server, in the check's experiment.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name("mlpipe/_check")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rows_round_tripped"] == 1000
    assert run.info.run_id in result.stdout

    # The master ran the application to completion, with cores granted on the cluster ...
    state = get_json(f"{spark_standalone_info.web_url}/json/")
    apps = [a for a in state["completedapps"] if a["name"].startswith("mlpipe-check")]
    assert len(apps) == 1, state["completedapps"]
    app = apps[0]
    assert app["state"] == "FINISHED"
    assert app["cores"] >= 1
    assert not state["activeapps"]
    # ... and the worker launched its executor(s), which have finished with it.
    worker = get_json(f"{spark_standalone_info.worker_web_url}/json/")
    executors = [e for e in worker["finishedexecutors"] if e["appid"] == app["id"]]
    assert executors, worker["finishedexecutors"]
    assert not worker["executors"]
