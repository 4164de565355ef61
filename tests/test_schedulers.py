"""Running the nightly job unattended: the cron wrapper (scripts/nightly.sh, run for real against a
fake `mlpipe`) and the Airflow DAG (deploy/airflow/mlpipe_nightly_dag.py: checked as source without
Airflow, executed against stand-in Airflow modules, and loaded by Airflow's DagBag when Airflow is
installed). Fast, no Spark.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import os
import re
import runpy
import signal
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = ROOT / "scripts" / "nightly.sh"
DAG_FILE = ROOT / "deploy" / "airflow" / "mlpipe_nightly_dag.py"
EX_TEMPFAIL = 75

# A stand-in for mlpipe (and scripts/submit). Each call is numbered n = 1, 2, ...; it records its
# arguments (one a line) in $FAKE_STATE/args.n and its cwd in cwd.n, prints a line, and exits with
# line n of $FAKE_STATE/codes (0 past the end). While $FAKE_STATE/hold.n exists, call n first marks
# started.n and waits (at most 30 s) for the test to remove it.
FAKE = r"""#!/usr/bin/env bash
set -euo pipefail
state="$FAKE_STATE"
n=$(( $(cat "$state/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$state/count"
printf '%s\n' "$@" >"$state/args.$n"
pwd >"$state/cwd.$n"
echo "fake mlpipe: call $n"
if [[ -e "$state/hold.$n" ]]; then
  touch "$state/started.$n"
  for _ in $(seq 600); do [[ -e "$state/hold.$n" ]] || break; sleep 0.05; done
fi
code=""
if [[ -f "$state/codes" ]]; then code="$(sed -n "${n}p" "$state/codes")"; fi
exit "${code:-0}"
"""


@dataclass
class Fake:
    """A fake mlpipe in a temporary folder, and the environment that makes the wrapper use it."""

    state: Path
    log_dir: Path
    env: dict[str, str]

    def codes(self, *codes: int) -> None:
        (self.state / "codes").write_text("".join(f"{c}\n" for c in codes))

    @property
    def calls(self) -> int:
        count = self.state / "count"
        return int(count.read_text()) if count.exists() else 0

    def args(self, n: int) -> list[str]:
        return (self.state / f"args.{n}").read_text().splitlines()

    def log(self, run_date: str, pipeline: str = "fraud") -> str:
        return (self.log_dir / pipeline / f"{run_date}.log").read_text()

    def run(
        self, *args: str, pipeline: str = "fraud", timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, pipeline=pipeline),
            env=self.env,
            cwd=self.state,  # not the project: the wrapper must find its way there
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def argv(self, *args: str, pipeline: str = "fraud") -> list[str]:
        return [
            str(WRAPPER),
            "--pipeline",
            pipeline,
            "--log-dir",
            str(self.log_dir),
            "--retry-delay",
            "0",
            *args,
        ]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    state = tmp_path / "fake"
    state.mkdir()
    binary = state / "mlpipe"
    binary.write_text(FAKE)
    binary.chmod(0o755)
    env = {
        **os.environ,
        "MLPIPE_BIN": str(binary),
        "MLPIPE_SUBMIT": str(binary),
        "FAKE_STATE": str(state),
    }
    return Fake(state=state, log_dir=tmp_path / "logs", env=env)


def yesterday_utc() -> str:
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()


def wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.02)


def end_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " end pipeline=" in line]


# --------------------------------------------------------------------------------------------------
# The cron wrapper


def test_the_wrapper_is_executable_and_documents_its_crontab_line() -> None:
    assert os.access(WRAPPER, os.X_OK)
    text = WRAPPER.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert re.search(r"^#\s+15 2 \* \* \* /\S+/scripts/nightly\.sh --pipeline fraud", text, re.M)


def test_default_run_date_is_yesterday_utc_and_the_job_runs_in_the_project(fake: Fake) -> None:
    before = yesterday_utc()
    result = fake.run()
    after = yesterday_utc()
    assert result.returncode == 0, result.stderr
    assert fake.calls == 1
    args = fake.args(1)
    assert args[:4] == ["nightly", "--pipeline", "fraud", "--run-date"]
    assert args[4] in {before, after}
    assert args[5:] == []
    assert (fake.state / "cwd.1").read_text().strip() == str(ROOT)
    log = fake.log(args[4])
    assert "fake mlpipe: call 1" in log


def test_passes_run_date_env_and_extra_arguments(fake: Fake) -> None:
    result = fake.run(
        "--run-date", "2026-01-01", "--env", "cluster", "--", "--set", "spark.master=local[1]"
    )
    assert result.returncode == 0, result.stderr
    assert fake.args(1) == [
        "nightly",
        "--pipeline",
        "fraud",
        "--run-date",
        "2026-01-01",
        "--env",
        "cluster",
        "--set",
        "spark.master=local[1]",
    ]


def test_submit_runs_scripts_submit_with_the_job_arguments_after_the_separator(fake: Fake) -> None:
    result = fake.run(
        "--run-date=2026-01-01", "--env=cluster", "--submit-arg", "--master=yarn", "--", "-v"
    )
    assert result.returncode == 0, result.stderr
    assert fake.args(1) == [
        "--master=yarn",
        "nightly",
        "--",
        "--pipeline",
        "fraud",
        "--run-date",
        "2026-01-01",
        "--env",
        "cluster",
        "-v",
    ]


def test_retries_run_failures_and_ends_with_success(fake: Fake) -> None:
    fake.codes(1, 1, 0)
    result = fake.run("--run-date", "2026-01-02", "--retries", "2")
    assert result.returncode == 0, result.stderr
    assert fake.calls == 3
    log = fake.log("2026-01-02")
    for n in (1, 2, 3):
        assert f"attempt {n} of 3: " in log
        assert f"fake mlpipe: call {n}" in log
    assert "attempt 1 of 3 exited 1" in log
    assert "attempt 3 of 3 exited 0" in log
    assert "exit=0 attempts=3" in end_lines(log)[-1]
    # stdout stays terse: the wrapper's own lines only, the job's output is in the log
    assert "fake mlpipe" not in result.stdout
    assert len(result.stdout.splitlines()) == 6  # 3 attempts, 2 "retrying", 1 summary
    assert "succeeded after 3 attempt(s)" in result.stdout


def test_gives_up_after_the_last_retry_with_exit_1(fake: Fake) -> None:
    fake.codes(1, 1, 1, 1)
    result = fake.run("--run-date", "2026-01-03", "--retries", "1")
    assert result.returncode == 1
    assert fake.calls == 2
    assert "exit=1 attempts=2" in end_lines(fake.log("2026-01-03"))[-1]
    assert "FAILED: run failure" in result.stderr


@pytest.mark.parametrize("code", [2, 3])
def test_never_retries_other_exit_codes(fake: Fake, code: int) -> None:
    fake.codes(code, 0)
    result = fake.run("--run-date", "2026-01-04", "--retries", "3")
    assert result.returncode == code
    assert fake.calls == 1
    assert f"exit={code} attempts=1" in end_lines(fake.log("2026-01-04"))[-1]
    if code == 2:
        assert "configuration error (not retried)" in result.stderr


def test_log_file_is_appended_with_start_and_end_lines_and_the_exit_code(fake: Fake) -> None:
    fake.codes(0, 2)
    assert fake.run("--run-date", "2026-01-05").returncode == 0
    assert fake.run("--run-date", "2026-01-05").returncode == 2
    log = fake.log("2026-01-05")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ nightly\.sh\[\d+\]: "
    starts = re.findall(stamp + r"start pipeline=fraud run_date=2026-01-05 .*", log)
    ends = re.findall(stamp + r"end pipeline=fraud run_date=2026-01-05 exit=(\d+) .*", log)
    assert len(starts) == 2
    assert ends == ["0", "2"]
    # in order: start, the job's output, end; then the second run
    first_end = log.index("exit=0 attempts=1")
    assert log.index("start pipeline") < log.index("fake mlpipe: call 1") < first_end
    assert first_end < log.index("fake mlpipe: call 2")


def test_exit_75_from_mlpipe_another_holder_of_the_lease_is_passed_on_and_not_retried(
    fake: Fake,
) -> None:
    # mlpipe exits 75 when another command holds the pipeline's lease (tests/test_integrity.py
    # checks the lease itself); the wrapper must neither retry nor report a run failure.
    fake.codes(EX_TEMPFAIL)
    result = fake.run("--run-date", "2026-01-06", "--retries", "3")
    assert result.returncode == EX_TEMPFAIL, result.stderr
    assert fake.calls == 1
    assert "another command holds the pipeline's lease" in result.stderr
    assert "exit=75 attempts=1" in end_lines(fake.log("2026-01-06"))[-1]


def test_sigterm_stops_the_job_and_ends_the_log(fake: Fake) -> None:
    hold = fake.state / "hold.1"
    hold.touch()
    wrapper = subprocess.Popen(
        fake.argv("--run-date", "2026-01-08"),
        env=fake.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(fake.state / "started.1")
        wrapper.send_signal(signal.SIGTERM)
        wrapper.communicate(timeout=10)
    finally:
        hold.unlink(missing_ok=True)
        if wrapper.poll() is None:
            wrapper.kill()
    assert wrapper.returncode == 128 + signal.SIGTERM
    log = fake.log("2026-01-08")
    assert "received SIGTERM" in log
    assert "exit=143 attempts=1" in end_lines(log)[-1]
    assert fake.run("--run-date", "2026-01-08").returncode == 0  # and the next run starts


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--pipeline"],
        ["--pipeline", "fraud", "--run-date", "2026-02-30"],
        ["--pipeline", "fraud", "--run-date", "yesterday"],
        ["--pipeline", "fraud", "--retries", "two"],
        ["--pipeline", "fraud", "--retry-delay", "-1"],
        ["--pipeline", "../etc"],
        ["--pipeline", "fraud", "--set", "a=b"],
    ],
)
def test_usage_errors_exit_2_without_running_anything(fake: Fake, args: list[str]) -> None:
    result = subprocess.run(
        [str(WRAPPER), *args], env=fake.env, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 2
    assert result.stderr.startswith("nightly.sh: ")
    assert fake.calls == 0


def test_a_missing_mlpipe_is_a_configuration_error(fake: Fake) -> None:
    env = {**fake.env, "MLPIPE_BIN": str(fake.state / "missing")}
    result = subprocess.run(
        [str(WRAPPER), "--pipeline", "fraud"], env=env, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 2
    assert "not an executable file" in result.stderr


def test_help_exits_0() -> None:
    result = subprocess.run([str(WRAPPER), "--help"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    assert "--retry-delay" in result.stdout


# --------------------------------------------------------------------------------------------------
# The Airflow DAG, without Airflow: its source


def _module() -> ast.Module:
    return ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def _keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg is not None}


def _module_value(tree: ast.Module, name: str) -> Any:
    """The literal value assigned to a module-level name (`ast.literal_eval`able only)."""
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(value)
    raise AssertionError(f"no module-level {name} in {DAG_FILE}")


def test_dag_file_declares_a_daily_catch_up_dag_per_pipeline() -> None:
    tree = _module()
    imports = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("airflow.providers.apache.spark.operators.spark_submit", "SparkSubmitOperator") in (
        imports
    )
    assert not {m for m, _ in imports if m and m.split(".")[0] in ("pyspark", "pipeline")}
    assert _module_value(tree, "DEFAULT_PIPELINES") == ["fraud"]

    # a factory: def make_dag(pipeline) -> one DAG whose id holds the pipeline's name ...
    factory = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "make_dag"
    )
    (dag_call,) = _calls(factory, "DAG")
    dag = _keywords(dag_call)
    dag_id = dag["dag_id"]
    assert isinstance(dag_id, ast.JoinedStr)
    assert any(
        isinstance(v, ast.FormattedValue)
        and isinstance(v.value, ast.Name)
        and v.value.id == "pipeline"
        for v in dag_id.values
    )
    assert ast.literal_eval(dag["catchup"]) is True
    assert ast.literal_eval(dag["max_active_runs"]) == 1
    schedule = dag["schedule"]  # "@daily", or a timetable built from it
    if isinstance(schedule, ast.Call):
        assert ast.literal_eval(schedule.args[0]) == "@daily"
        assert ast.literal_eval(_keywords(schedule)["timezone"]) == "UTC"
    else:
        assert ast.literal_eval(schedule) == "@daily"
    assert "start_date" in dag
    default_args = dag["default_args"]
    assert isinstance(default_args, ast.Name)
    defaults = {
        key.value: value
        for node in tree.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == default_args.id
        and isinstance(node.value, ast.Dict)
        for key, value in zip(node.value.keys, node.value.values, strict=True)
        if isinstance(key, ast.Constant)
    }
    assert ast.literal_eval(defaults["depends_on_past"]) is True
    assert ast.literal_eval(defaults["retries"]) >= 1
    assert "retry_delay" in defaults

    # ... with a SparkSubmitOperator running jobs/nightly.py for {{ ds }}
    (op_call,) = _calls(factory, "SparkSubmitOperator")
    op = _keywords(op_call)
    application = op["application"]
    assert isinstance(application, ast.JoinedStr)
    last = application.values[-1]
    assert isinstance(last, ast.Constant)
    assert last.value == "/jobs/nightly.py"
    app_args = op["application_args"]
    assert isinstance(app_args, ast.List)
    parts = [
        a.value if isinstance(a, ast.Constant) else f"<{a.id}>" if isinstance(a, ast.Name) else "?"
        for a in app_args.elts
    ]
    assert parts == ["--pipeline", "<pipeline>", "--run-date", "{{ ds }}", "--env", "cluster"]
    assert ast.literal_eval(op["conn_id"]) == "spark_default"
    assert ast.literal_eval(op["task_id"]) == "nightly"
    assert {"py_files", "jars", "conf"} <= set(op)
    conf = op["conf"]
    assert isinstance(conf, ast.Dict)
    spread = [
        v.id
        for k, v in zip(conf.keys, conf.values, strict=True)
        if k is None and isinstance(v, ast.Name)
    ]
    assert spread == ["DELTA_CONF"]
    # Delta's settings are read from the project's one home of them, not restated here.
    [assign] = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "DELTA_CONF" for t in node.targets)
    ]
    assert isinstance(assign.value, ast.Call)
    assert isinstance(assign.value.func, ast.Name)
    assert assign.value.func.id == "project_spark_conf"

    # and the module makes one per configured pipeline
    loops = [node for node in tree.body if isinstance(node, ast.For)]
    assert len(loops) == 1
    assert _calls(loops[0].iter, "pipeline_names")
    assert _calls(loops[0], "make_dag")


# --------------------------------------------------------------------------------------------------
# The Airflow DAG, without Airflow: executed against stand-in modules


class StubDAG:
    current: StubDAG | None = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.tasks: list[StubOperator] = []

    def __enter__(self) -> StubDAG:
        StubDAG.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        StubDAG.current = None


class StubOperator:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        assert StubDAG.current is not None, "operator created outside a DAG"
        StubDAG.current.tasks.append(self)


class StubTimetable:
    def __init__(self, cron: str, timezone: str) -> None:
        self.cron, self.timezone = cron, timezone


class StubVariable:
    values: dict[str, str] = {}  # noqa: RUF012

    @classmethod
    def get(cls, key: str, default: Any = None) -> Any:
        return cls.values.get(key, default)


@pytest.fixture
def stub_airflow(monkeypatch: pytest.MonkeyPatch) -> type[StubVariable]:
    """Stand-ins for the Airflow modules the DAG file imports (whether Airflow is installed or not)."""
    modules: dict[str, dict[str, object]] = {
        "airflow": {},
        "airflow.sdk": {
            "DAG": StubDAG,
            "CronDataIntervalTimetable": StubTimetable,
            "Variable": StubVariable,
        },
        "airflow.providers": {},
        "airflow.providers.apache": {},
        "airflow.providers.apache.spark": {},
        "airflow.providers.apache.spark.operators": {},
        "airflow.providers.apache.spark.operators.spark_submit": {
            "SparkSubmitOperator": StubOperator
        },
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    for env in ("MLPIPE_PIPELINES", "MLPIPE_HOME", "MLPIPE_PY_FILES", "MLPIPE_START_DATE"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(StubVariable, "values", {})
    return StubVariable


def _dags(namespace: dict[str, Any]) -> dict[str, StubDAG]:
    return {d.kwargs["dag_id"]: d for d in namespace.values() if isinstance(d, StubDAG)}


def _render(template: str, variables: dict[str, str], ds: str = "2026-01-01") -> str:
    jinja2 = pytest.importorskip("jinja2")
    return str(jinja2.Template(template).render(var={"value": variables}, ds=ds))


def test_dag_factory_makes_one_dag_per_configured_pipeline(
    stub_airflow: type[StubVariable], monkeypatch: pytest.MonkeyPatch
) -> None:
    dags = _dags(runpy.run_path(str(DAG_FILE)))
    assert list(dags) == ["mlpipe_nightly_fraud"]  # the default

    monkeypatch.setattr(stub_airflow, "values", {"mlpipe_pipelines": '["fraud", "churn"]'})
    assert list(_dags(runpy.run_path(str(DAG_FILE)))) == [
        "mlpipe_nightly_fraud",
        "mlpipe_nightly_churn",
    ]
    monkeypatch.setenv("MLPIPE_PIPELINES", "maintenance, churn maintenance")  # wins
    dags = _dags(runpy.run_path(str(DAG_FILE)))
    assert list(dags) == ["mlpipe_nightly_maintenance", "mlpipe_nightly_churn"]

    dag = dags["mlpipe_nightly_churn"]
    assert dag.kwargs["catchup"] is True
    assert dag.kwargs["max_active_runs"] == 1
    assert dag.kwargs["default_args"]["depends_on_past"] is True
    timetable = dag.kwargs["schedule"]
    assert (timetable.cron, timetable.timezone) == ("@daily", "UTC")
    assert dag.kwargs["start_date"] == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    (task,) = dag.tasks
    args = task.kwargs
    assert args["task_id"] == "nightly"
    assert args["conn_id"] == "spark_default"
    assert args["application_args"] == [
        "--pipeline",
        "churn",
        "--run-date",
        "{{ ds }}",
        "--env",
        "cluster",
    ]

    monkeypatch.setenv("MLPIPE_PIPELINES", "fraud,../x")
    with pytest.raises(ValueError, match="invalid pipeline name"):
        runpy.run_path(str(DAG_FILE))


def test_dag_paths_default_to_this_checkout_and_follow_variables_and_environment(
    stub_airflow: type[StubVariable], monkeypatch: pytest.MonkeyPatch
) -> None:
    (task,) = _dags(runpy.run_path(str(DAG_FILE)))["mlpipe_nightly_fraud"].tasks
    args = task.kwargs

    def rendered(variables: dict[str, str]) -> dict[str, str]:
        return {
            "application": _render(args["application"], variables),
            "py_files": _render(args["py_files"], variables),
            "jars": _render(args["jars"], variables),
            "python": _render(args["conf"]["spark.pyspark.python"], variables),
            "conf_dir": _render(args["env_vars"]["MLPIPE_CONF_DIR"], variables),
            "run_date": _render(args["application_args"][3], variables, ds="2026-03-04"),
        }

    assert rendered({}) == {
        "application": f"{ROOT}/jobs/nightly.py",
        "py_files": f"{ROOT}/dist/pipeline.zip",
        "jars": f"{ROOT}/.cache/jars/delta/*.jar",
        "python": f"{ROOT}/.venv/bin/python",
        "conf_dir": f"{ROOT}/conf",
        "run_date": "2026-03-04",
    }
    assert args["conf"]["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    # Airflow Variables, read when the task runs
    variables = {"mlpipe_home": "/srv/mlpipe", "mlpipe_py_files": "/artifacts/pipeline-1.zip"}
    got = rendered(variables)
    assert got["application"] == "/srv/mlpipe/jobs/nightly.py"
    assert got["py_files"] == "/artifacts/pipeline-1.zip"
    assert got["jars"] == "/srv/mlpipe/.cache/jars/delta/*.jar"
    # environment variables of the parsing process win
    monkeypatch.setenv("MLPIPE_HOME", "/opt/x/")
    monkeypatch.setenv("MLPIPE_START_DATE", "2026-06-01")
    dag = _dags(runpy.run_path(str(DAG_FILE)))["mlpipe_nightly_fraud"]
    args = dag.tasks[0].kwargs
    assert rendered(variables)["application"] == "/opt/x/jobs/nightly.py"
    assert rendered(variables)["py_files"] == "/artifacts/pipeline-1.zip"
    assert rendered({})["py_files"] == "/opt/x/dist/pipeline.zip"
    assert dag.kwargs["start_date"] == dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------------------------------
# The Airflow DAG, with Airflow (installed separately: pip install '.[airflow]' in its own venv)


def test_dag_loads_in_airflow_dagbag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))  # before Airflow is imported
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.delenv("MLPIPE_HOME", raising=False)
    pytest.importorskip("airflow")
    spark_submit = pytest.importorskip("airflow.providers.apache.spark.operators.spark_submit")
    from airflow.models import DagBag

    def load(pipelines: str | None) -> Any:
        if pipelines is None:
            monkeypatch.delenv("MLPIPE_PIPELINES", raising=False)
        else:
            monkeypatch.setenv("MLPIPE_PIPELINES", pipelines)
        kwargs: dict[str, Any] = {"dag_folder": str(DAG_FILE)}
        if "include_examples" in inspect.signature(DagBag).parameters:  # Airflow 2
            kwargs["include_examples"] = False
        bag = DagBag(**kwargs)
        assert bag.import_errors == {}
        return bag

    assert sorted(load(None).dag_ids) == ["mlpipe_nightly_fraud"]
    bag = load("fraud,churn")
    assert sorted(bag.dag_ids) == ["mlpipe_nightly_churn", "mlpipe_nightly_fraud"]
    for pipeline in ("fraud", "churn"):
        dag = bag.dags[f"mlpipe_nightly_{pipeline}"]  # (get_dag may ask the database)
        assert dag.catchup is True
        assert dag.max_active_runs == 1
        assert [t.task_id for t in dag.tasks] == ["nightly"]
        task = dag.get_task("nightly")
        assert isinstance(task, spark_submit.SparkSubmitOperator)
        assert task.depends_on_past is True
        assert task.retries == 2
        assert task.application.endswith("}}/jobs/nightly.py")
        assert task.application_args == [
            "--pipeline",
            pipeline,
            "--run-date",
            "{{ ds }}",
            "--env",
            "cluster",
        ]

    # The run for date D starts once D is over, and its {{ ds }} is D.
    from airflow.timetables.base import TimeRestriction

    dag = bag.dags["mlpipe_nightly_fraud"]
    timetable = dag.timetable
    try:  # Airflow 3: the scheduler's form of the DAG author's timetable
        from airflow.serialization.encoders import coerce_to_core_timetable

        timetable = coerce_to_core_timetable(timetable)
    except ImportError:  # Airflow 2: the same object
        pass
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert dag.start_date == start
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=start, latest=None, catchup=True),
    )
    assert first.data_interval.start == start  # the logical date: {{ ds }} = 2026-01-01
    assert first.run_after == start + dt.timedelta(days=1)


def test_the_logged_command_line_masks_secret_set_values_and_uri_passwords(fake: Fake) -> None:
    secret, password = "CANARY-s3-0f3a9c", "CANARY-pw-77d1"
    result = fake.run(
        "--run-date",
        "2026-01-06",
        "--",
        "--set",
        f"spark.conf.spark.hadoop.fs.s3a.secret.key={secret}",
        f"--set=mlflow.tracking_uri=http://mlpipe:{password}@127.0.0.1:5000",
        "--set",
        "spark.master=local[2]",
    )
    assert result.returncode == 0, result.stderr
    shown = fake.log("2026-01-06") + result.stdout + result.stderr
    assert secret not in shown
    assert password not in shown
    assert "spark.conf.spark.hadoop.fs.s3a.secret.key=***" in shown
    assert "http://mlpipe:***@127.0.0.1:5000" in shown
    assert "spark.master=local\\[2\\]" in shown  # other values shown as given (shell-quoted)
    # mlpipe itself gets them unchanged
    assert f"spark.conf.spark.hadoop.fs.s3a.secret.key={secret}" in fake.args(1)
