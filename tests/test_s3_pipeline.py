"""The shipped fraud pipeline with raw files and Delta tables in a bucket of a real S3 API server
(moto on loopback, scripts/s3-server.sh) through Hadoop's S3A connector: ingest -> features ->
train -> score, each `mlpipe` command in a fresh process, read back with delta-rs (an independent
reader) and compared with the same commands on local storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas.testing as pdt
import pytest

from tests.helpers import CONF_DIR, ROOT
from tests.infra import S3ServerInfo

pytestmark = pytest.mark.s3
pytest_plugins = ["tests.infra"]

BUCKET = "mlpipe-it"
DATES = ("2026-01-01", "2026-01-02")
# Placeholder credentials for the loopback server; the secret is a canary that no output may show.
ACCESS_KEY = "AKIAMLPIPETEST000001"
SECRET_KEY = "s3-canary-9f1c2e7ab44d0c61"
# One deterministic candidate: the two runs (S3 and local) must train the same model.
FAST = [
    "pipeline.train.folds=2",
    "pipeline.train.candidates=[{name: logreg, algorithm: logistic_regression, "
    "params: {maxIter: 20, regParam: 0.01}}]",
]
# The test overlay's Spark settings plus the S3A connector pointed at the loopback server.
OVERLAY = """\
spark:
  master: "local[2]"
  driver_memory: 3g
  shuffle_partitions: 4
  log_level: ERROR
  conf:
    spark.default.parallelism: 4
    spark.hadoop.fs.s3a.endpoint: "{endpoint}"
    spark.hadoop.fs.s3a.endpoint.region: us-east-1
    spark.hadoop.fs.s3a.path.style.access: true
    spark.hadoop.fs.s3a.connection.ssl.enabled: false
storage:
  landing: {storage}/landing
  tables: {storage}/tables
"""


def _client(server: S3ServerInfo) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


def _mlpipe(
    conf: Path, env: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    sets = [a for s in FAST for a in ("--set", s)] if args[0] in ("train", "nightly") else []
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--conf-dir", str(conf), *sets],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


# On S3 each stage on its own for the first date, then the nightly flow for the next date; the
# local run does one night per date.
STAGE_BY_STAGE = [(stage, DATES[0]) for stage in ("ingest", "features", "train", "score")] + [
    ("nightly", DATES[1])
]
# What the S3 run's ledger holds: each stage's row per date (the second night's training is not due).
LEDGER = [*STAGE_BY_STAGE[:4], *((stage, DATES[1]) for stage in ("ingest", "features", "score"))]
NIGHTS = [("nightly", day) for day in DATES]


def _run_all(
    root: Path, storage: str, server: S3ServerInfo, env_name: str, steps: list[tuple[str, str]]
) -> list[str]:
    """`steps` (command, run date), each in a fresh process; the outputs of every command."""
    conf = root / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / env_name).mkdir()
    (conf / env_name / "project.yml").write_text(
        OVERLAY.format(endpoint=server.endpoint, storage=storage)
    )
    cwd = root / "cwd"
    cwd.mkdir()
    env = {
        **os.environ,
        "MLPIPE_DATA": str(root / "data"),
        "MLPIPE_ENV": env_name,
        "PYTHONPATH": str(ROOT),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1",  # short JVMs: start-up speed only
    }
    for leaked in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLPIPE_CRASH_AT"):
        env.pop(leaked, None)
    outputs = []
    for stage, day in steps:
        done = _mlpipe(conf, env, cwd, stage, "--pipeline", "fraud", "--run-date", day)
        assert done.returncode == 0, (
            f"mlpipe {stage} {day} on {storage} exited {done.returncode}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
        outputs += [done.stdout, done.stderr]
    assert list(cwd.iterdir()) == [], "a command wrote into the working directory"
    return outputs


def _volatile(column: str) -> bool:
    """Columns naming a run or a time of writing."""
    return column.endswith(("run_id", "_at"))


def _relative(frame: Any) -> Any:
    """Raw files' locations as paths below the landing folder, whichever storage they are on."""
    for column in [c for c in frame.columns if c.endswith("source_file")]:
        frame[column] = frame[column].str.split("/landing/", n=1).str[-1]
    return frame


def _table(uri: str, server: S3ServerInfo) -> Any:
    """A Delta table as pandas, read by delta-rs (not Spark)."""
    from deltalake import DeltaTable

    options = None
    if uri.startswith("s3"):
        uri = "s3://" + uri.removeprefix("s3a://")
        options = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
    return DeltaTable(uri, storage_options=options).to_pandas()


def test_fraud_pipeline_on_s3a_matches_local_storage(
    s3_server_info: S3ServerInfo, tmp_path: Path
) -> None:
    server, s3 = s3_server_info, _client(s3_server_info)
    s3.create_bucket(Bucket=BUCKET)

    # The raw files: generated locally, landed in the bucket and in a local folder alike.
    local = tmp_path / "local"
    landing = local / "data" / "landing"
    generate = ["generate", "fraud", "--days", "2", "--rows-per-day", "1500"]
    generate += ["--start-date", DATES[0], "--env", "test", "--set", f"storage.landing={landing}"]
    subprocess.run(
        [sys.executable, "-m", "pipeline", *generate],
        cwd=ROOT,
        env={**os.environ, "MLPIPE_DATA": str(tmp_path / "gen")},
        check=True,
        capture_output=True,
    )
    files = sorted(p for p in landing.rglob("*") if p.is_file())
    assert len(files) >= 2
    for path in files:
        s3.upload_file(str(path), BUCKET, f"mlpipe/landing/{path.relative_to(landing)}")

    on_s3 = f"s3a://{BUCKET}/mlpipe"
    outputs = _run_all(tmp_path / "s3", on_s3, server, "s3", STAGE_BY_STAGE)
    _run_all(local, str(local / "data"), server, "local-it", NIGHTS)

    # Everything the S3 run wrote is in the bucket, none of it on the local disk.
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    for table in ("bronze/transactions", "features", "predictions", "audit", "ingest_log"):
        assert any(k.startswith(f"mlpipe/tables/fraud/{table}/_delta_log/") for k in keys), table
    assert not (tmp_path / "s3" / "data" / "tables").exists()

    # The same rows, whichever storage: bronze, features and each date's predictions. Columns
    # naming a run or a time differ by construction; raw files are compared by their path below
    # the landing folder.
    for table in ("bronze/transactions", "features", "predictions"):
        remote = _relative(_table(f"{on_s3}/tables/fraud/{table}", server))
        mine = _relative(_table(f"{local / 'data' / 'tables' / 'fraud' / table}", server))
        keep = [c for c in mine.columns if not _volatile(c)]
        assert list(remote.columns) == list(mine.columns), table
        remote_rows = remote[keep].sort_values(keep, ignore_index=True)
        mine_rows = mine[keep].sort_values(keep, ignore_index=True)
        assert len(mine_rows) > 0, table
        pdt.assert_frame_equal(remote_rows, mine_rows, check_exact=False, rtol=1e-9, atol=1e-9)
    predictions = _table(f"{on_s3}/tables/fraud/predictions", server)
    assert sorted(predictions["run_date"].astype(str).unique()) == list(DATES)

    # The ledger on S3 has each stage's row for each date, with the counts the local run's
    # ledger has for the same stage and date.
    def ledger(uri: str) -> dict[tuple[str, str], tuple[str, int, int, int, int]]:
        rows = _table(uri, server).sort_values("finished_at")
        return {
            (r.stage, str(r.run_date)): (
                r.status,
                r.rows_read,
                r.rows_accepted,
                r.rows_quarantined,
                r.rows_dropped,
            )
            for r in rows.itertuples()
            if r.status in ("succeeded", "noop")
        }

    remote_ledger = ledger(f"{on_s3}/tables/fraud/audit")
    local_ledger = ledger(str(local / "data" / "tables" / "fraud" / "audit"))
    assert set(LEDGER) == set(remote_ledger)
    assert {k: local_ledger.get(k) for k in remote_ledger} == remote_ledger

    # The secret key reaches no output: console, the runs' log files, the MLflow store.
    logs = sorted((tmp_path / "s3" / "data").rglob("*"))
    texts = [*outputs, *(p.read_bytes().decode("utf-8", "replace") for p in logs if p.is_file())]
    assert not [t for t in texts if SECRET_KEY in t]
