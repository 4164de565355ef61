"""Airflow DAGs for mlpipe's nightly job: one DAG per pipeline, one run per date, dates in order.

Each DAG `mlpipe_nightly_<pipeline>` has one task, `nightly`, a SparkSubmitOperator that runs

    spark-submit ... <home>/jobs/nightly.py --pipeline <pipeline> --run-date {{ ds }} --env cluster

(ingest -> features -> (retrain when due) -> score in one Spark application). Runs catch up from
the start date, one date at a time (`max_active_runs=1`) and only after the previous date succeeded
(`depends_on_past`): the same guarantees as `mlpipe backfill`. A rerun of a date is safe because
every stage is idempotent. docs/SCHEDULING.md describes the set-up.

Schedule. `@daily` as a *data-interval* timetable in UTC, stated explicitly: the run for date D
starts after D has ended (at 00:00 UTC on D+1) and gets `{{ ds }}` = D, the completed day, as the
cron wrapper's default `--run-date` (yesterday) does. A plain `schedule="@daily"` means that in
Airflow 2, but in Airflow 3 (`[scheduler] create_cron_data_intervals = False`, the default) it
would be a trigger timetable whose `{{ ds }}` is the day the run *starts*, whose data has not
arrived yet.

Configuration. Every setting is read, first match wins, from

1. an environment variable of the process that parses this file (the DAG processor); it is read
   once per parse and baked into the DAG;
2. an Airflow Variable, read by the task when it runs (a Jinja template, `var.value.get`), so
   parsing never touches the metadata database for it; the pipeline list is the exception: it
   decides which DAGs exist, so its Variable is read at parse time (only when the environment
   variable is not set);
3. the default.

| setting | environment variable | Airflow Variable | default |
| --- | --- | --- | --- |
| pipelines (one DAG each) | MLPIPE_PIPELINES | mlpipe_pipelines | fraud |
| project folder | MLPIPE_HOME | mlpipe_home | the checkout holding this file, else /opt/mlpipe |
| package zip (--py-files) | MLPIPE_PY_FILES | mlpipe_py_files | <home>/dist/pipeline.zip |
| Delta jars (--jars) | MLPIPE_JARS | mlpipe_jars | <home>/.cache/jars/delta/*.jar |
| Python of driver/executors | MLPIPE_PYTHON | mlpipe_python | <home>/.venv/bin/python |
| mlpipe configuration folder | MLPIPE_CONF_DIR | mlpipe_conf_dir | <home>/conf |
| first date to run | MLPIPE_START_DATE | (none) | 2026-01-01 |

Pipelines are a comma- or space-separated list (`fraud,churn`) or a JSON list (`["fraud"]`).
Spark expands the glob in `--jars`. The package zip has a stable name so that the DAG need not
know the content hash in the name `scripts/submit` gives it; docs/SCHEDULING.md shows how to build
it. Where spark-submit runs (the Airflow worker) the paths must exist, `spark-submit` must be on the
PATH (the connection may only name `spark-submit`, `spark2-submit` or `spark3-submit`), and the
connection `spark_default` gives the master and deploy mode (client mode: the driver runs on the
worker and reads the configuration folder in place, as with `scripts/submit`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

try:  # Airflow 3: the Task SDK
    from airflow.sdk import DAG, CronDataIntervalTimetable, Variable
except ImportError:  # Airflow 2.9+ (and an Airflow 3.0 SDK without the timetable)
    from airflow import DAG
    from airflow.models import Variable
    from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)

DEFAULT_PIPELINES = ["fraud"]
DEFAULT_HOME = "/opt/mlpipe"
DEFAULT_START_DATE = "2026-01-01"
PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as scripts/nightly.sh; a valid dag id


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "mlpipe",
    "depends_on_past": True,  # date D runs only once D-1 succeeded
    # Airflow retries any failure, a configuration error (exit 2) included: it then fails again
    # within seconds, before any data is touched. A rerun of a run failure resumes the date.
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=6),
}


def pipeline_names() -> list[str]:
    """The pipelines to schedule: $MLPIPE_PIPELINES, else the Variable mlpipe_pipelines, else fraud."""
    raw = os.environ.get("MLPIPE_PIPELINES", "").strip()
    if not raw:
        try:
            raw = str(Variable.get("mlpipe_pipelines", None) or "").strip()
        except Exception as exc:  # e.g. no metadata database: schedule the default list
            log.warning("mlpipe: cannot read the Variable mlpipe_pipelines (%s)", exc)
            raw = ""
    return parse_pipelines(raw) if raw else list(DEFAULT_PIPELINES)


def parse_pipelines(raw: str) -> list[str]:
    """`fraud,churn`, `fraud churn` or `["fraud", "churn"]` as a list of valid, distinct names."""
    if raw.startswith("["):
        values = json.loads(raw)
        if not isinstance(values, list):
            raise ValueError(f"mlpipe pipelines: expected a JSON list, got {raw!r}")
        names = [str(v).strip() for v in values]
    else:
        names = re.split(r"[,\s]+", raw)
    names = [n for n in names if n]
    bad = [n for n in names if not PIPELINE_NAME.match(n)]
    if bad:
        raise ValueError(f"mlpipe pipelines: invalid pipeline name(s) {bad} in {raw!r}")
    return list(dict.fromkeys(names))


def _fallback_home() -> str:
    """The checkout this file is in (`<home>/deploy/airflow/`), if it is one; else /opt/mlpipe."""
    parents = Path(__file__).resolve().parents
    if len(parents) > 2 and (parents[2] / "jobs" / "nightly.py").is_file():
        return str(parents[2])
    return DEFAULT_HOME


def _home_expr() -> str:
    """A Jinja expression for the project folder."""
    home = os.environ.get("MLPIPE_HOME")
    if home:
        return json.dumps(home.rstrip("/"))
    return f"var.value.get({json.dumps('mlpipe_home')}, {json.dumps(_fallback_home())})"


def setting(env: str, variable: str, under_home: str) -> str:
    """A templated path: $env (at parse time), else Variable `variable` (at run time), else
    `<home>/<under_home>`."""
    value = os.environ.get(env)
    if value:
        return value
    default = f"{_home_expr()} ~ {json.dumps('/' + under_home)}"
    return "{{ var.value.get(" + json.dumps(variable) + ", " + default + ") }}"


def project_spark_conf() -> dict[str, str]:
    """Delta Lake's settings as every launcher passes them, read from the project's
    `pipeline/sparkconf.py` (plain constants: the Airflow environment needs no mlpipe install):
    the checkout this file is in, else $MLPIPE_HOME."""
    candidates = [Path(__file__).resolve().parents[2]]
    if os.environ.get("MLPIPE_HOME"):
        candidates.append(Path(os.environ["MLPIPE_HOME"]))
    for home in candidates:
        source = home / "pipeline" / "sparkconf.py"
        if source.is_file():
            namespace: dict[str, Any] = {}
            exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), namespace)
            return dict(namespace["DELTA_CONF"])
    raise ImportError(
        "mlpipe: pipeline/sparkconf.py not found in "
        + " or ".join(str(c) for c in candidates)
        + "; deploy this DAG from the project checkout or set MLPIPE_HOME to it"
    )


DELTA_CONF = project_spark_conf()
HOME = "{{ " + _home_expr() + " }}"
PY_FILES = setting("MLPIPE_PY_FILES", "mlpipe_py_files", "dist/pipeline.zip")
JARS = setting("MLPIPE_JARS", "mlpipe_jars", ".cache/jars/delta/*.jar")
PYTHON = setting("MLPIPE_PYTHON", "mlpipe_python", ".venv/bin/python")
CONF_DIR = setting("MLPIPE_CONF_DIR", "mlpipe_conf_dir", "conf")
START_DATE = datetime.combine(
    date.fromisoformat(os.environ.get("MLPIPE_START_DATE") or DEFAULT_START_DATE),
    datetime.min.time(),
    tzinfo=timezone.utc,
)


def make_dag(pipeline: str) -> DAG:
    """The nightly DAG of one pipeline."""
    with DAG(
        dag_id=f"mlpipe_nightly_{pipeline}",
        description=f"mlpipe nightly for pipeline {pipeline}: ingest, features, retrain, score",
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=START_DATE,
        catchup=True,  # every date from the start date gets its run ...
        max_active_runs=1,  # ... one at a time, in date order
        default_args=DEFAULT_ARGS,
        tags=["mlpipe", pipeline],
        doc_md=__doc__,
    ) as dag:
        SparkSubmitOperator(
            task_id="nightly",
            conn_id="spark_default",
            name=f"mlpipe-nightly-{pipeline}",
            application=f"{HOME}/jobs/nightly.py",
            application_args=[
                "--pipeline",
                pipeline,
                "--run-date",
                "{{ ds }}",
                "--env",
                "cluster",
            ],
            py_files=PY_FILES,
            jars=JARS,
            conf={
                **DELTA_CONF,
                "spark.pyspark.python": PYTHON,
                "spark.pyspark.driver.python": PYTHON,
            },
            env_vars={"MLPIPE_CONF_DIR": CONF_DIR},
        )
    return dag


for _pipeline in pipeline_names():
    globals()[f"mlpipe_nightly_{_pipeline}"] = make_dag(_pipeline)
