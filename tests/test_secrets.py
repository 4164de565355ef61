"""A secret canary: a random value in an environment variable, referenced from `spark.conf` (an
S3 secret key) and from the MLflow tracking URI's password, goes through a whole multi-day run
with training (`mlpipe backfill` in a fresh process, against a real MLflow server). Afterwards
every file the run could write (data folder, tables, MLflow store and artifacts, reports, logs)
and the process output are searched for it: zero hits."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

from tests.helpers import ROOT, make_config
from tests.infra import MlflowServerInfo
from tests.test_nightly import SPEC, day_lines, drop_day

pytest_plugins = ["tests.infra"]

DAYS = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(3)]


def hits(folder: Path, needle: bytes) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            found.append(str(path))
    return found


def test_a_secret_from_the_environment_reaches_no_output_of_a_multi_day_run(
    tmp_path: Path, mlflow_server_info: MlflowServerInfo
) -> None:
    canary = f"canary{secrets.token_hex(12)}"
    cfg = make_config(tmp_path, SPEC, name="nt")  # writes the private conf copy
    project = tmp_path / "conf" / "test" / "project.yml"
    doc = yaml.safe_load(project.read_text())
    doc["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] = "${MLPIPE_TEST_CANARY}"
    host = mlflow_server_info.tracking_uri.removeprefix("http://")
    doc["mlflow"] = {
        "tracking_uri": f"http://mlpipe:${{MLPIPE_TEST_CANARY}}@{host}",
        "artifact_location": f"{tmp_path}/artifacts",
    }
    project.write_text(yaml.safe_dump(doc))
    for day in DAYS:
        drop_day(cfg, day, day_lines(day, 200))

    sets = [
        f"storage.landing={tmp_path / 'landing'}",
        f"storage.tables={tmp_path / 'tables'}",
        f"storage.reports={tmp_path / 'reports'}",
    ]
    args = ["backfill", "--pipeline", "nt", "--env", "test", "--conf-dir", str(tmp_path / "conf")]
    args += ["--from", str(DAYS[0]), "--to", str(DAYS[-1]), "-v"]  # -v: tracebacks too
    for item in sets:
        args += ["--set", item]
    env = {
        **os.environ,
        "MLPIPE_TEST_CANARY": canary,
        "MLPIPE_DATA": str(tmp_path / "data"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    # The run did use the URI with the password: its model is in the server's registry.
    # (the registry named too: another test of this process may have set a default one)
    server = mlflow_server_info.tracking_uri
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    assert client.get_registered_model("mlpipe-nt").aliases.get("champion")
    assert (tmp_path / "reports").is_dir()

    needle = canary.encode()
    assert needle not in run.stdout.encode()
    assert needle not in run.stderr.encode()
    assert hits(tmp_path, needle) == []  # the conf files hold ${MLPIPE_TEST_CANARY}, not it
    assert hits(mlflow_server_info.dir, needle) == []
