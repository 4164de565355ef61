"""Exceptions that the command line maps to exit codes and one readable message."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a failure the user can act on. Its message is shown as-is."""

    exit_code = 1


class ConfigError(PipelineError):
    """Configuration is missing, unreadable or invalid (exit code 2, raised before Spark starts)."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.line = line
        parts = (file, f"line {line}" if line else None, f"key '{key}'" if key else None)
        where = ", ".join(p for p in parts if p)
        super().__init__(f"{where}: {message}" if where else message)


class RunError(PipelineError):
    """A stage could not complete (exit code 1): missing input, failed reconciliation, ..."""

    exit_code = 1


class LedgerMismatchError(RunError):
    """Rows read did not equal rows accepted + quarantined (+ dropped): the run is failed."""


class LeaseHeldError(RunError):
    """Another command holds the pipeline's lease (exit code 75, EX_TEMPFAIL: try again later)."""

    exit_code = 75
