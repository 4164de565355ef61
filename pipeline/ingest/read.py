"""Reading a batch: each file's columns checked before any data is written, every record read as
strings and validated, and a file that cannot be read isolated (quarantined whole, or recorded as
vanished when it was deleted after it was listed)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.config.sources import SourceSpec
from pipeline.errors import RunError
from pipeline.ingest.transforms import REASON, rejected_rows, validate_records
from pipeline.io.quarantine import RECORD_DDL
from pipeline.io.raw import (
    BLOCK,
    CORRUPT,
    POSITION,
    SOURCE_FILE,
    describe_error,
    file_exists,
    has_header,
    read_columns,
    read_strings,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass
class ReadPlan:
    """How each file of a batch is read, or why it is refused whole (`file_reasons`), or that it
    is gone (`vanished`)."""

    groups: dict[tuple[str, ...], list[str]] = field(default_factory=lambda: defaultdict(list))
    file_reasons: dict[str, tuple[str, str]] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)

    def refuse(self, spark: SparkSession, path: str, reason: str, detail: str) -> None:
        """Refuse a file whole, or record it as vanished if it no longer exists."""
        if file_exists(spark, path):
            self.file_reasons[path] = (reason, detail)
            # The handled fault's one console line (the JVM's stack trace is in the run's log).
            log.warning("%s quarantined whole (%s): %s", path.rsplit("/", 1)[-1], reason, detail)
        else:
            log.warning("%s was deleted after it was listed; recorded as vanished", path)
            self.vanished.append(path)


def plan_files(spark: SparkSession, source: SourceSpec, files: list[str]) -> ReadPlan:
    """Check each file's columns against the declared schema before any data is written."""
    declared = {c.name.lower(): c.name for c in source.columns}
    required = {c.name.lower() for c in source.columns if not c.nullable}
    if has_header(source):
        found = read_columns(spark, files, source)
    else:
        found = {p: [c.name for c in source.columns] for p in files}
    plan = ReadPlan()
    unexpected: dict[str, list[str]] = {}
    for path in files:
        cols = found.get(path)
        if cols is None:
            plan.refuse(spark, path, "unreadable_file", "the file's columns could not be read")
            continue
        lowered = [c.lower() for c in cols]
        missing = sorted(declared[c] for c in required if c not in lowered)
        if missing:
            plan.file_reasons[path] = ("missing_required_column", f"missing: {', '.join(missing)}")
            continue
        extra = [c for c in cols if c.lower() not in declared]
        if extra:
            unexpected[path] = extra
            for col in extra:
                if col not in plan.extras:
                    plan.extras.append(col)
        # Read with the file's own names mapped onto the declared spelling.
        plan.groups[tuple(declared.get(c.lower(), c) for c in cols)].append(path)
    if unexpected and source.schema_evolution == "fail":
        listing = "; ".join(f"{p}: {', '.join(cols)}" for p, cols in sorted(unexpected.items()))
        raise RunError(
            f"unexpected new column(s) in {len(unexpected)} file(s) ({listing}). Nothing was "
            "written. Declare the columns in the source's `columns`, or set "
            "`schema_evolution: add` to add them to bronze."
        )
    return plan


def _read_plan(spark: SparkSession, source: SourceSpec, plan: ReadPlan) -> DataFrame | None:
    from pyspark.sql import functions as F

    wanted = [c.name for c in source.columns] + plan.extras
    parts: list[DataFrame] = []
    for cols, group in plan.groups.items():
        df = read_strings(spark, group, source, cols)
        parts.append(
            df.select(
                *[
                    F.col(f"`{c}`") if c in cols else F.lit(None).cast("string").alias(c)
                    for c in wanted
                ],
                F.col(CORRUPT),
                F.col(SOURCE_FILE),
                F.col(BLOCK),
                F.col(POSITION),
            )
        )
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return validate_records(out, source.columns, plan.extras)


def validate(
    spark: SparkSession, source: SourceSpec, plan: ReadPlan
) -> tuple[DataFrame | None, dict[str | None, int]]:
    """Validate the batch's rows (cached) and count them by reason; isolate files that fail."""
    validated = _read_plan(spark, source, plan)
    if validated is None:
        return None, {}
    try:
        validated = validated.persist()
        return validated, _count_by_reason(validated)
    except Exception as exc:
        validated.unpersist()
        log.info(
            "reading the batch failed (%s); checking its files one by one", describe_error(exc)
        )
    for cols, group in list(plan.groups.items()):
        for path in list(group):
            try:
                read_strings(spark, [path], source, cols).count()
            except Exception as exc:
                plan.refuse(spark, path, "unreadable_file", describe_error(exc))
                group.remove(path)
        if not group:
            del plan.groups[cols]
    validated = _read_plan(spark, source, plan)
    if validated is None:
        return None, {}
    validated = validated.persist()
    return validated, _count_by_reason(validated)


def _count_by_reason(validated: DataFrame) -> dict[str | None, int]:
    return {r[REASON]: int(r["count"]) for r in validated.groupBy(REASON).count().collect()}


def refused_records(
    spark: SparkSession,
    validated: DataFrame | None,
    source: SourceSpec,
    plan: ReadPlan,
    changed: dict[str, str],
) -> DataFrame:
    """The batch's refused records: its bad rows, and one row per file refused whole (unreadable,
    missing a required column, or changed after it was ingested)."""
    file_rows = [
        (None, path, reason, detail) for path, (reason, detail) in sorted(plan.file_reasons.items())
    ]
    file_rows += [(None, path, "file_changed", detail) for path, detail in sorted(changed.items())]
    frame = spark.createDataFrame(file_rows, schema=RECORD_DDL)
    if validated is not None:
        frame = rejected_rows(validated, source.columns, plan.extras).unionByName(frame)
    return frame
