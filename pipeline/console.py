"""What a command shows on the console, and the run's log file that keeps everything else.

By default the console shows what a person running the pipeline needs: one line as each stage
starts and one as it ends (rows in, out, quarantined, time, rows/s), cross-validation progress,
the gate's decision, warnings and handled faults in one line each, and the command's summary at
the end. Everything — those lines, every library's log, the JVM's own output (Spark's and
Hadoop's log4j lines, Java stack traces of faults the pipeline handled), MLflow's messages — goes
to a log file per run, `<storage.logs>/<command>-<UTC time>-<pid>.log`, whose path is printed first
and again with an error.

The JVM writes to the process's file descriptor 2 directly (it is a child of this process), so
while a run is on, descriptor 2 is the log file and Python's `sys.stderr` writes to a copy of the
terminal's descriptor. `--verbose` keeps the old behaviour: everything on the console, at DEBUG.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from pipeline.redact import RedactingFilter, RedactingStream

# Loggers whose INFO lines a person running the pipeline wants on the console; every other
# logger reaches the console only from WARNING up, and libraries never do (their warnings are
# about their machinery: they stay in the log file).
CONSOLE_INFO = (
    "pipeline.stage",  # a stage starts
    "pipeline.io.audit",  # a stage ends: its ledger line
    "pipeline.train.search",  # cross-validation progress
    "pipeline.train.runner",
    "pipeline.model.registry",  # the gate's decision
    "pipeline.nightly",
    "pipeline.backfill",
    "pipeline.ingest.runner",
)
OWN = ("pipeline", "mlpipe")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(asctime)s %(message)s"
VERBOSE_ENV = "MLPIPE_VERBOSE"  # set for the run: the session builder reads it

stage_log = logging.getLogger("pipeline.stage")


def verbose() -> bool:
    """Whether this run shows everything on the console (`--verbose`)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def stage_started(stage: str, pipeline: str, what: str) -> None:
    """The console line of a stage that starts (its end is its ledger line)."""
    stage_log.info("%s %s: %s ...", stage, pipeline, what)


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        own = name.split(".", 1)[0] in OWN
        if name == "mlpipe.trace":  # tracebacks: the log file only
            return False
        if record.levelno >= logging.WARNING:
            return own
        return record.levelno >= logging.INFO and any(
            name == n or name.startswith(n + ".") for n in CONSOLE_INFO
        )


def _terminal(saved_fd: int) -> TextIO | RedactingStream:
    """Where Python's stderr writes while descriptor 2 is the log file: the terminal's copy
    `saved_fd` when stderr wrote to descriptor 2, else stderr as it is (a test's capture, a
    redirected stream); always through the redactor."""
    current = sys.stderr
    inner = current.inner if isinstance(current, RedactingStream) else current
    try:
        fd = inner.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd != 2:
        return current
    raw = io.TextIOWrapper(
        os.fdopen(saved_fd, "wb", buffering=0, closefd=False),
        encoding=getattr(inner, "encoding", None) or "utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    return RedactingStream(raw)


def log_file_path(folder: Path, command: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return folder / f"{command}-{stamp}-{os.getpid()}.log"


@contextmanager
def run_console(command: str, logs: Path, *, show_all: bool) -> Iterator[Path | None]:
    """Set up the console and the run's log file for one command; yields the log file's path
    (None with `show_all`, which logs everything to the console as before)."""
    root = logging.getLogger()
    if show_all:
        os.environ[VERBOSE_ENV] = "1"
        logging.basicConfig(level=logging.DEBUG, format=FILE_FORMAT)
        try:
            yield None
        finally:
            os.environ.pop(VERBOSE_ENV, None)
        return

    logs.mkdir(parents=True, exist_ok=True)
    path = log_file_path(logs, command)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    terminal: Any = _terminal(saved_fd)
    previous_stderr = sys.stderr
    previous_level = root.level
    previous_handlers = list(root.handlers)
    # MLflow prints run and experiment links to stdout; they go to the log file below instead.
    suppress = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    previous_suppress = os.environ.get(suppress)
    os.environ[suppress] = "true"
    file_handler = logging.StreamHandler(
        io.TextIOWrapper(os.fdopen(os.dup(log_fd), "wb", buffering=0), write_through=True)
    )
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    file_handler.setLevel(logging.INFO)
    file_handler.addFilter(RedactingFilter())
    console = logging.StreamHandler(terminal)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT, datefmt="%H:%M:%S"))
    console.addFilter(_ConsoleFilter())
    console.addFilter(RedactingFilter())
    for handler in previous_handlers:
        root.removeHandler(handler)
    root.addHandler(file_handler)
    root.addHandler(console)
    root.setLevel(logging.INFO)
    # From here the JVM (started later, inheriting descriptor 2) and any native library write to
    # the log file; Python's stderr still reaches the terminal.
    os.dup2(log_fd, 2)
    sys.stderr = terminal
    print(f"log: {path}", file=terminal)
    try:
        yield path
    finally:
        sys.stdout.flush()
        terminal.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        os.close(log_fd)
        sys.stderr = previous_stderr
        root.removeHandler(file_handler)
        root.removeHandler(console)
        file_handler.close()
        for handler in previous_handlers:
            root.addHandler(handler)
        root.setLevel(previous_level)
        if previous_suppress is None:
            os.environ.pop(suppress, None)
        else:
            os.environ[suppress] = previous_suppress
