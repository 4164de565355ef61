"""Real infrastructure for integration tests: a single-node HDFS, a Spark standalone cluster and an
MLflow tracking server, each started by the project's own script on free loopback ports with its
state in a temporary folder, and always stopped (by pid, by that script) when the session ends.

A test module that needs them registers this module as a plugin:

    pytest_plugins = ["tests.infra"]

and asks for `hdfs_cluster` (the `hdfs://127.0.0.1:PORT` URI), `spark_standalone` (the master URL),
`mlflow_server` (the tracking URI), or the `*_info` fixtures for ports, web addresses and folders.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT

SCRIPTS = ROOT / "scripts"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 180  # seconds a script may take to report its service ready
STOP_TIMEOUT = 90


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def run_script(
    script: str, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `scripts/<script> ARGS...` and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *(str(a) for a in args)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@contextmanager
def running(
    script: str,
    start_args: Sequence[str | Path],
    stop_args: Sequence[str | Path],
    env: dict[str, str] | None = None,
) -> Iterator[None]:
    """`script start ...` now, `script stop ...` afterwards, also when the start or a test failed."""
    try:
        started = run_script(script, "start", *start_args, env=env, timeout=START_TIMEOUT)
        if started.returncode != 0:
            pytest.fail(f"scripts/{script} start failed:\n{_output(started)}", pytrace=False)
        yield
    finally:
        stopped = run_script(script, "stop", *stop_args, env=env, timeout=STOP_TIMEOUT)
        if stopped.returncode != 0:
            raise RuntimeError(f"scripts/{script} stop failed:\n{_output(stopped)}")


@dataclass(frozen=True)
class HdfsInfo:
    """A running single-node HDFS."""

    uri: str  # hdfs://127.0.0.1:PORT
    web_url: str  # the namenode's web UI and JMX
    dir: Path  # data, client configuration, log and pid file

    def fs(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Hadoop's FsShell against this HDFS (`scripts/hdfs.sh fs -- ARGS`), Spark-free."""
        return run_script("hdfs.sh", "fs", "--dir", self.dir, "--", *args)


@dataclass(frozen=True)
class SparkStandaloneInfo:
    """A running Spark standalone cluster: one master, one worker."""

    master_url: str  # spark://127.0.0.1:PORT
    web_url: str  # the master's web UI; JSON state at <web_url>/json/
    worker_web_url: str  # the worker's web UI; JSON state (with its executors) at <...>/json/
    dir: Path


@dataclass(frozen=True)
class MlflowServerInfo:
    """A running MLflow tracking server."""

    tracking_uri: str  # http://127.0.0.1:PORT
    dir: Path


@pytest.fixture(scope="session")
def hdfs_cluster_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HdfsInfo]:
    """A single-node HDFS for the session (scripts/hdfs.sh), fresh and formatted."""
    folder = tmp_path_factory.mktemp("hdfs")
    port, http_port = free_port(), free_port()
    args: list[str | Path] = ["--dir", folder]
    with running("hdfs.sh", ["--port", str(port), "--http-port", str(http_port), *args], args):
        yield HdfsInfo(f"hdfs://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{http_port}", folder)


@pytest.fixture(scope="session")
def hdfs_cluster(hdfs_cluster_info: HdfsInfo) -> str:
    """The `hdfs://127.0.0.1:PORT` URI of the session's HDFS."""
    return hdfs_cluster_info.uri


@pytest.fixture(scope="session")
def spark_standalone_info(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SparkStandaloneInfo]:
    """A Spark standalone master and worker for the session (scripts/spark-cluster.sh)."""
    folder = tmp_path_factory.mktemp("spark")
    port, web, worker_web = free_port(), free_port(), free_port()
    args: list[str | Path] = ["--dir", folder]
    start: list[str | Path] = [
        "--port",
        str(port),
        "--webui-port",
        str(web),
        "--worker-webui-port",
        str(worker_web),
    ]
    with running("spark-cluster.sh", [*start, *args], args):
        yield SparkStandaloneInfo(
            master_url=f"spark://{LOOPBACK}:{port}",
            web_url=f"http://{LOOPBACK}:{web}",
            worker_web_url=f"http://{LOOPBACK}:{worker_web}",
            dir=folder,
        )


@pytest.fixture(scope="session")
def spark_standalone(spark_standalone_info: SparkStandaloneInfo) -> str:
    """The `spark://127.0.0.1:PORT` master URL of the session's standalone cluster."""
    return spark_standalone_info.master_url


@pytest.fixture(scope="session")
def mlflow_server_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServerInfo]:
    """An MLflow tracking server for the session (scripts/mlflow-server.sh), SQLite-backed."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    args: list[str | Path] = ["--dir", folder]
    # Explicit stores: a developer's MLFLOW_BACKEND_STORE_URI must not point the tests elsewhere.
    stores: list[str | Path] = [
        *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
        *("--artifacts-destination", folder / "artifacts"),
    ]
    with running("mlflow-server.sh", ["--port", str(port), *stores, *args], args):
        yield MlflowServerInfo(f"http://{LOOPBACK}:{port}", folder)


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_info: MlflowServerInfo) -> str:
    """The `http://127.0.0.1:PORT` tracking URI of the session's MLflow server."""
    return mlflow_server_info.tracking_uri


@dataclass(frozen=True)
class S3ServerInfo:
    """A running S3-compatible API server (moto, scripts/s3-server.sh) on loopback."""

    endpoint: str  # http://127.0.0.1:PORT
    dir: Path


@pytest.fixture(scope="session")
def s3_server_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3ServerInfo]:
    """An S3 API server for the session (scripts/s3-server.sh), its buckets in memory."""
    folder = tmp_path_factory.mktemp("s3")
    port = free_port()
    args: list[str | Path] = ["--dir", folder]
    with running("s3-server.sh", ["--port", str(port), *args], args):
        yield S3ServerInfo(f"http://{LOOPBACK}:{port}", folder)
