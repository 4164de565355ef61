"""Deterministic, realistic sample raw files for the shipped use cases (`mlpipe generate`).

Each use case module builds a day's records as a pandas DataFrame with numpy only (vectorised);
`common` adds the mess (nulls, duplicates, malformed lines) and writes the landing files:

    <out>/<source>/<YYYY-MM-DD>/<source>-<YYYY-MM-DD>-<part>.csv[.gz]

Local outputs (plain paths, file://) are written with Python; any other Hadoop URI through the
active SparkSession, as Spark part files in the same folders. docs/DATASETS.md describes the data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.uris import normalize_uri
from pipeline.errors import ConfigError
from pipeline.generate import churn, fraud, maintenance, recommendation
from pipeline.generate.common import (
    DEFAULT_ROWS_PER_FILE,
    DayBatch,
    active_spark,
    is_local,
    write_local,
    write_spark,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "USE_CASES",
    "DayBatch",
    "DayReport",
    "GenerateReport",
    "Settings",
    "check_request",
    "generate",
    "generate_batches",
]

USE_CASES: tuple[str, ...] = ("fraud", "maintenance", "recommendation", "churn")

# Optional per-use-case tuning (rates of fraud, failures, mess, drift); defaults are documented.
Settings = (
    fraud.FraudSettings
    | maintenance.MaintenanceSettings
    | recommendation.RecommendationSettings
    | churn.ChurnSettings
)
_MODULES: dict[str, Any] = {
    "fraud": fraud,
    "maintenance": maintenance,
    "recommendation": recommendation,
    "churn": churn,
}
_SETTINGS: dict[str, type] = {
    "fraud": fraud.FraudSettings,
    "maintenance": maintenance.MaintenanceSettings,
    "recommendation": recommendation.RecommendationSettings,
    "churn": churn.ChurnSettings,
}


@dataclass(frozen=True)
class DayReport:
    """What was written for one source and day.

    `rows` counts data lines (header excluded): distinct records + duplicates + malformed lines.
    `positives` counts label-1 records among the distinct ones (None where there is no label).
    """

    source: str
    day: dt.date
    files: tuple[str, ...]
    rows: int
    malformed: int
    duplicates: int
    positives: int | None

    @property
    def records(self) -> int:
        """Distinct well-formed records."""
        return self.rows - self.malformed - self.duplicates

    @property
    def label_rate(self) -> float | None:
        """Share of positives among the distinct records."""
        if self.positives is None or self.records == 0:
            return None
        return self.positives / self.records


@dataclass(frozen=True)
class GenerateReport:
    """The outcome of one `generate` call: one entry per source and day."""

    use_case: str
    out: str
    seed: int
    days: tuple[DayReport, ...]

    def summary(self) -> str:
        """A printable table of files, rows, mess and label rates."""
        head = ("source", "day", "files", "rows", "malformed", "duplicates", "positives", "rate")
        body = [
            (
                d.source,
                d.day.isoformat(),
                str(len(d.files)),
                str(d.rows),
                str(d.malformed),
                str(d.duplicates),
                "-" if d.positives is None else str(d.positives),
                "-" if d.label_rate is None else f"{d.label_rate:.2%}",
            )
            for d in self.days
        ]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        lines = [f"generated '{self.use_case}' (seed {self.seed}) into {self.out}"]
        for row in [head, *body]:
            cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


def _check_sizes(
    use_case: str, days: int, rows_per_day: int, rows_per_file: int, seed: int
) -> None:
    if use_case not in USE_CASES:
        raise ConfigError(f"unknown use case '{use_case}' (known: {', '.join(USE_CASES)})")
    for name, value in (
        ("days", days),
        ("rows_per_day", rows_per_day),
        ("rows_per_file", rows_per_file),
    ):
        if value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    minimum = int(_MODULES[use_case].MIN_ROWS_PER_DAY)
    if rows_per_day < minimum:
        raise ConfigError(
            f"use case '{use_case}' needs rows_per_day >= {minimum}, got {rows_per_day}"
        )


def generate_batches(
    use_case: str,
    *,
    days: int,
    rows_per_day: int,
    start_date: dt.date,
    seed: int,
    settings: Settings | None = None,
) -> Iterator[DayBatch]:
    """The in-memory batches of a range of days, in date order (sources in declared order)."""
    _check_sizes(use_case, days, rows_per_day, 1, seed)
    if settings is not None and not isinstance(settings, _SETTINGS[use_case]):
        raise ConfigError(
            f"settings for '{use_case}' must be {_SETTINGS[use_case].__name__}, "
            f"got {type(settings).__name__}"
        )
    day_generator: Callable[..., list[DayBatch]] = _MODULES[use_case].generate_day
    for offset in range(days):
        day = start_date + dt.timedelta(days=offset)
        yield from day_generator(day, rows_per_day, seed, settings)


def generate(
    use_case: str,
    out: str,
    *,
    days: int,
    rows_per_day: int,
    start_date: dt.date,
    seed: int,
    gzip: bool = False,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    settings: Settings | None = None,
    spark: SparkSession | None = None,
) -> GenerateReport:
    """Write `days` daily drops of a use case's sources under `out` (a path or Hadoop URI).

    A local folder is written with Python; any other URI through `spark` (default: the active
    session).
    """
    _check_sizes(use_case, days, rows_per_day, rows_per_file, seed)
    uri = _normalized(out)
    if is_local(uri):
        spark = None
    elif spark is None:
        spark = active_spark()
    reports: list[DayReport] = []
    for batch in generate_batches(
        use_case,
        days=days,
        rows_per_day=rows_per_day,
        start_date=start_date,
        seed=seed,
        settings=settings,
    ):
        if spark is None:
            files = write_local(uri, batch, gzip=gzip, rows_per_file=rows_per_file)
        else:
            files = write_spark(spark, uri, batch, gzip=gzip, rows_per_file=rows_per_file)
        reports.append(
            DayReport(
                source=batch.source,
                day=batch.day,
                files=tuple(files),
                rows=batch.rows,
                malformed=len(batch.malformed),
                duplicates=batch.duplicates,
                positives=batch.positives,
            )
        )
    return GenerateReport(use_case=use_case, out=uri, seed=seed, days=tuple(reports))


def check_request(use_case: str, out: str, *, days: int, rows_per_day: int, seed: int) -> bool:
    """Validate a request before anything starts (a `ConfigError` when it is wrong); True when the
    output is remote (written through Spark), False when it is a local folder."""
    _check_sizes(use_case, days, rows_per_day, DEFAULT_ROWS_PER_FILE, seed)
    return not is_local(_normalized(out))


def _normalized(out: str) -> str:
    """The output location as a Hadoop URI (relative paths against the cwd); a ConfigError if bad."""
    try:
        return normalize_uri(out, Path.cwd())
    except ValueError as exc:
        raise ConfigError(f"output location: {exc}") from None
