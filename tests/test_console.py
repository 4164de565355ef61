"""The console a person reads: a command in a fresh process prints where its log file is, one
line as each stage starts and ends, a handled fault (a truncated gzip file) in one line with its
reason, and its summary; the JVM's output, library logs and Java stack traces go to the run's log
file only. `--verbose` shows everything; a failure still exits non-zero with one clear message."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import AppConfig
from tests.helpers import ROOT, make_config
from tests.test_ingest import HEADER, SPEC, drop

RUN_DATE = "2026-01-05"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def console(self) -> str:
        return self.out + self.err

    def log_file(self) -> Path:
        found = re.findall(r"^log: (\S+)$", self.err, flags=re.M)
        assert len(found) == 1, self.err
        return Path(found[0])


def mlpipe(tmp: Path, command: str, *extra: str) -> Run:
    """`mlpipe COMMAND` in a fresh process on the world under `tmp`; `extra` comes last (a
    later `--set` wins)."""
    argv = [sys.executable, "-m", "pipeline", command, "--pipeline", "t", "--env", "test"]
    argv += ["--conf-dir", str(tmp / "conf"), "--run-date", RUN_DATE]
    for item in (f"storage.landing={tmp / 'landing'}", f"storage.tables={tmp / 'tables'}"):
        argv += ["--set", item]
    argv += list(extra)
    env = {**os.environ, "MLPIPE_DATA": str(tmp / "data")}
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AppConfig]:
    tmp = tmp_path_factory.mktemp("console")
    cfg = make_config(tmp, SPEC.format(fmt="csv", options="{header: true}", evolution="fail"))
    drop(cfg, "good.csv", [HEADER, *[f"{i},1.0,a,1,2026-01-05 00:00:00" for i in range(50)]])
    whole = gzip.compress(
        ("\n".join([HEADER] + [f"{i},1.0,a,1,2026-01-05 00:00:00" for i in range(2000)])).encode()
    )
    drop(cfg, "truncated.csv.gz", whole[: len(whole) // 2])
    return tmp, cfg


MACHINERY = (
    "WARN ",  # log4j lines of Spark and Hadoop
    "Using Spark's default log4j profile",
    "WARNING: Using incubator modules",
    "py4j",
    "\tat ",  # a Java stack trace
    "[Stage ",  # the progress bar
    "mlflow",
)


def test_a_quiet_run_shows_its_stages_and_a_handled_fault_in_one_line_and_logs_the_rest(
    landed: tuple[Path, AppConfig],
) -> None:
    tmp, _ = landed
    run = mlpipe(tmp, "ingest")
    assert run.code == 0, run.err

    console = run.console
    for noise in MACHINERY:
        assert noise not in console, (noise, console)
    lines = run.err.splitlines()
    assert lines[0].startswith("log: ")
    # One line as the stage starts, one as it ends with its counts, time and rate.
    assert any(re.search(r"ingest t: 2026-01-05, new files of tx \.\.\.$", ln) for ln in lines)
    end = [ln for ln in lines if "ingest/tx succeeded:" in ln]
    assert len(end) == 1, console
    assert re.search(r"files 2 \(quarantined whole: 1\), rows read 50, accepted 50", end[0])
    assert re.search(r", in \d+\.\d s \([\d,]+ rows/s\)", end[0])
    # The truncated gzip: one line with the file and its reason.
    fault = [ln for ln in lines if "truncated.csv.gz" in ln]
    assert len(fault) == 1, console
    assert "quarantined whole (unreadable_file)" in fault[0]
    assert len(lines) <= 8, console  # nothing else

    # The log file has all of it: the same lines, the JVM's output and the fault's stack trace.
    log = run.log_file()
    assert log.parent == tmp / "data" / "logs"
    text = log.read_text()
    assert "ingest/tx succeeded:" in text
    assert "truncated.csv.gz quarantined whole" in text
    assert "WARN " in text  # Spark's and Hadoop's own log lines
    assert "\tat " in text  # the stack trace of the unreadable file


def test_verbose_shows_everything_on_the_console_and_writes_no_log_file(
    landed: tuple[Path, AppConfig],
) -> None:
    tmp, _ = landed
    logs = tmp / "data" / "logs"
    before = set(logs.glob("*.log")) if logs.exists() else set()
    run = mlpipe(tmp, "ingest", "--verbose")  # no new files: a quick run
    assert run.code == 0, run.err
    assert "log: " not in run.err
    assert "DEBUG py4j" in run.err
    assert "Using Spark's default log4j profile" in run.err  # the JVM's own output
    assert (set(logs.glob("*.log")) if logs.exists() else set()) == before


def test_a_failing_command_exits_1_with_one_clear_message_and_the_log_path(
    landed: tuple[Path, AppConfig],
) -> None:
    tmp, _ = landed
    blocked = tmp / "not-a-folder"
    blocked.write_text("a file where the tables should go\n")
    run = mlpipe(tmp, "ingest", "--set", f"storage.tables={blocked}")
    assert run.code == 1, run.console
    [message] = [ln for ln in run.err.splitlines() if ln.startswith("mlpipe ingest: failed: ")]
    assert message.endswith("(run with -v for the traceback)")
    # The Java exception's own message, not py4j's "An error occurred while calling o81.save".
    assert "An error occurred while calling" not in message
    assert "Exception" in message
    log = run.log_file()
    assert f"mlpipe ingest: the run's log: {log}" in run.err
    for noise in MACHINERY:
        assert noise not in run.console, (noise, run.console)
    assert "Traceback" in log.read_text()  # the details are in the log


def test_a_long_backfill_prints_one_summary_of_the_range_not_every_night() -> None:
    from types import SimpleNamespace
    from typing import Any

    from pipeline.model.registry import GateDecision
    from pipeline.nightly import NightlyResult, backfill_summary

    first = dt.date(2026, 1, 1)
    results = []
    for d in range(30):
        night = NightlyResult(first + dt.timedelta(days=d), f"r-{d}")
        night.stages["ingest"] = "ran"
        night.stages["features"] = "ran"
        if d in (0, 1, 14):
            promoted = d == 1
            trained: Any = SimpleNamespace(
                model_version=str(d + 1), decision=GateDecision(promoted, "reason")
            )
            night.trained = trained
            night.stages["train"] = "ran"
        else:
            night.stages["train"] = "not due (champion v2 is current)"
        night.stages["score"] = "not scored (no champion yet)" if d == 0 else "ran"
        night.messages.append(f"score succeeded: rows read {d}")
        results.append(night)

    text = backfill_summary(results)
    assert text.splitlines() == [
        "backfill 2026-01-01..2026-01-30: 30 dates",
        "  trained 3 time(s): 2026-01-01 (v1, not promoted), 2026-01-02 (v2, promoted), "
        "2026-01-15 (v15, not promoted)",
        "  ingest: ran 30",
        "  features: ran 30",
        "  train: ran 3, not due 27",
        "  score: not scored 1, ran 29",
        "  not scored: 2026-01-01",
    ]
    # A short range keeps every night's own summary.
    assert backfill_summary(results[:3]) == "\n".join(r.summary() for r in results[:3])
