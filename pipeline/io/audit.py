"""The audit table: one ledger row per stage run (and per source for ingest)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import LedgerMismatchError
from pipeline.io.raw import describe_error
from pipeline.redact import redact

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

AUDIT_DDL = (
    "run_id STRING NOT NULL, pipeline STRING NOT NULL, stage STRING NOT NULL, run_date DATE, "
    "source STRING, status STRING NOT NULL, started_at TIMESTAMP, finished_at TIMESTAMP, "
    "duration_s DOUBLE, batch_id BIGINT, files_read BIGINT, files_quarantined BIGINT, "
    "rows_read BIGINT, rows_accepted BIGINT, rows_quarantined BIGINT, rows_dropped BIGINT, "
    "quarantined_by_reason MAP<STRING, BIGINT>, table_versions MAP<STRING, BIGINT>, "
    "metrics MAP<STRING, DOUBLE>, message STRING, dropped_by_reason MAP<STRING, BIGINT>"
)

SUCCEEDED, FAILED, NOOP, SKIPPED = "succeeded", "failed", "noop", "skipped"
log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A fresh run id (shared by every stage of one nightly run)."""
    return uuid.uuid4().hex


@dataclass
class LedgerEntry:
    """What one stage run read, kept, rejected and wrote; appended to the audit table."""

    run_id: str
    pipeline: str
    stage: str
    run_date: dt.date | None
    source: str | None = None
    status: str = SUCCEEDED
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    finished_at: dt.datetime | None = None
    batch_id: int | None = None
    files_read: int = 0
    files_quarantined: int = 0
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_dropped: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    table_versions: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    message: str | None = None

    def drop(self, reason: str, rows: int) -> None:
        """Count `rows` dropped for `reason` (every dropped row has one)."""
        if rows:
            self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + rows
            self.rows_dropped += rows

    def reconcile(self) -> None:
        """Rows read must equal accepted + quarantined + dropped, and every dropped row must
        have a reason; otherwise the run fails."""
        if sum(self.dropped_by_reason.values()) != self.rows_dropped:
            raise LedgerMismatchError(
                f"{self.stage} of {self.pipeline}: {self.rows_dropped} rows dropped, "
                f"{sum(self.dropped_by_reason.values())} of them with a reason"
            )
        accounted = self.rows_accepted + self.rows_quarantined + self.rows_dropped
        if self.rows_read != accounted:
            raise LedgerMismatchError(
                f"{self.stage} of {self.pipeline}"
                f"{'/' + self.source if self.source else ''}: rows read ({self.rows_read}) != "
                f"accepted ({self.rows_accepted}) + quarantined ({self.rows_quarantined}) + "
                f"dropped ({self.rows_dropped})"
            )

    def finish(self, status: str | None = None, message: str | None = None) -> LedgerEntry:
        """Stamp the end time (and status/message)."""
        self.finished_at = dt.datetime.now(dt.timezone.utc)
        if status is not None:
            self.status = status
        if message is not None:
            self.message = message
        return self

    def as_row(self) -> dict[str, Any]:
        """The entry as a row of the audit table."""
        finished = self.finished_at or dt.datetime.now(dt.timezone.utc)
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "stage": self.stage,
            "run_date": self.run_date,
            "source": self.source,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": finished,
            "duration_s": (finished - self.started_at).total_seconds(),
            "batch_id": self.batch_id,
            "files_read": self.files_read,
            "files_quarantined": self.files_quarantined,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "rows_dropped": self.rows_dropped,
            "quarantined_by_reason": dict(self.quarantined_by_reason),
            "table_versions": dict(self.table_versions),
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "message": redact(self.message) if self.message else None,
            "dropped_by_reason": dict(self.dropped_by_reason),
        }

    def to_json(self) -> str:
        """The entry as JSON (kept where a crash cannot lose it before the row is written), its
        message redacted as the row's is."""
        row = self.as_row() | {"finished_at": None, "duration_s": None}
        row["started_at"] = self.started_at.isoformat()
        row["run_date"] = None if self.run_date is None else self.run_date.isoformat()
        return json.dumps(row, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LedgerEntry:
        """The entry `to_json` wrote (not yet finished)."""
        data = json.loads(text)
        fields = {
            k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "finished_at"
        }
        fields["started_at"] = dt.datetime.fromisoformat(data["started_at"])
        if data.get("run_date"):
            fields["run_date"] = dt.date.fromisoformat(data["run_date"])
        return cls(**fields)

    def summary(self) -> str:
        """One line for the console."""
        src = f"/{self.source}" if self.source else ""
        parts = [f"{self.stage}{src} {self.status}:"]
        if self.stage == "ingest":
            parts.append(f"files {self.files_read} (quarantined whole: {self.files_quarantined}),")
        parts.append(f"rows read {self.rows_read:,}, accepted {self.rows_accepted:,}")
        if self.rows_quarantined or self.quarantined_by_reason:
            reasons = json.dumps(self.quarantined_by_reason, sort_keys=True)
            parts.append(f", quarantined {self.rows_quarantined:,} {reasons}")
        if self.rows_dropped:
            reasons = json.dumps(self.dropped_by_reason, sort_keys=True)
            parts.append(f", dropped {self.rows_dropped:,} {reasons}")
        line = " ".join(parts).replace(" ,", ",")
        if self.finished_at is not None:
            seconds = (self.finished_at - self.started_at).total_seconds()
            line += f", in {seconds:.1f} s"
            if self.rows_read and seconds > 0:
                line += f" ({self.rows_read / seconds:,.0f} rows/s)"
        return line + (f" - {self.message}" if self.message else "")


def write_audit(
    spark: SparkSession, path: str, entries: list[LedgerEntry], *, once_as: str | None = None
) -> None:
    """Append ledger entries to the audit table (created on first use).

    With `once_as` (a writer id) and one entry with a batch id, the row is written once per
    (writer, batch): a rerun of a batch that already recorded its row adds nothing (Delta's
    idempotent writes), so a batch's audit row survives a crash after it and is never doubled.
    """
    if not entries:
        return
    df = spark.createDataFrame([e.as_row() for e in entries], schema=AUDIT_DDL)
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if once_as is not None and len(entries) == 1 and entries[0].batch_id is not None:
        writer = writer.option("txnAppId", once_as).option("txnVersion", str(entries[0].batch_id))
    writer.save(path)


@contextlib.contextmanager
def audited(
    spark: SparkSession, path: str, entry: LedgerEntry, *, once_as: str | None = None
) -> Iterator[LedgerEntry]:
    """Append `entry` to the audit table when the block ends: as it is on success (once per
    batch with `once_as`, see `write_audit`), as `failed` with the error when the block raises
    (the error then propagates; every failed attempt is its own row)."""
    try:
        yield entry
    except BaseException as exc:
        entry.finish(FAILED, describe_error(exc))
        try:
            write_audit(spark, path, [entry])
        except Exception:  # the original failure matters more than its audit row
            log.exception("could not write the failed run's audit row")
        raise
    if entry.finished_at is None:
        entry.finish()
    write_audit(spark, path, [entry], once_as=once_as)
    log.info(entry.summary())


def read_audit(spark: SparkSession, path: str) -> DataFrame:
    """The audit table."""
    return spark.read.format("delta").load(path)
