"""Which landing files a batch takes: the ingest log, and a file's identity.

A file is known by its path, size and modification time. Against the log's last record of each
path, a listed file is

* **new** (a path never recorded, or one that vanished before it could be read): it is read;
* **already accounted for** (same path, size and time): it is left alone;
* **changed** (same path, another size or time: rewritten or appended in place): the source's
  `on_change` says what happens — `quarantine` (the default) records it whole with reason
  `file_changed` and reads nothing, so the rows already in bronze stay as they are and a person
  decides; `reingest` reads it again as a new version;
* **moved** (a new path whose name, size and time match a recorded file that is no longer listed
  at its old path): recorded as moved and not read again.

A file modified less than the source's `settle` age ago is not eligible yet (a copy may still be
in progress); it is taken by a later run.

The log is written ahead of the data: a batch's files are recorded `planned` (with what the batch
will do with each) before anything is read, and `committed` (with what it did) once the batch's
rows, quarantined records and audit row are in their tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.config.sources import SourceSpec
from pipeline.io.delta import append_idempotent, is_delta_table, read_delta
from pipeline.io.raw import RawFile

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PLANNED, COMMITTED = "planned", "committed"
# What a batch does with a file (planned) or did (committed).
READ, INGESTED, CHANGED, MOVED, VANISHED = "read", "ingested", "file_changed", "moved", "vanished"
LOG_DDL = (
    "source STRING NOT NULL, batch_id BIGINT NOT NULL, file_path STRING NOT NULL, "
    "file_size BIGINT, file_modified TIMESTAMP, status STRING NOT NULL, outcome STRING, "
    "run_id STRING NOT NULL, recorded_at TIMESTAMP NOT NULL, detail STRING"
)


@dataclass(frozen=True)
class LoggedFile:
    """One row of the ingest log."""

    batch_id: int
    file: RawFile
    status: str
    outcome: str | None
    detail: str | None


@dataclass
class Batch:
    """The files of one batch and what it does with each: `files` are read; `changed` (path ->
    detail) are quarantined whole as changed; `moved` (path -> old path) only recorded."""

    batch_id: int
    files: list[RawFile]
    resumed: bool
    changed: dict[str, str] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)
    changed_files: list[RawFile] = field(default_factory=list)
    moved_files: list[RawFile] = field(default_factory=list)

    @property
    def all_files(self) -> list[RawFile]:
        return [*self.files, *self.changed_files, *self.moved_files]


@dataclass(frozen=True)
class Listing:
    """What the log says of the landing folder's files."""

    last_batch: int
    pending: Batch | None  # a batch planned by a run that did not commit it
    new: list[RawFile]
    changed: dict[str, tuple[RawFile, str]]  # path -> (file as listed now, what changed)
    moved: dict[str, tuple[RawFile, str]]  # new path -> (file, its old path)
    settling: int  # files too recent to be eligible


def read_log(spark: SparkSession, log_path: str, source: str) -> list[LoggedFile]:
    """Every log row of one source, oldest first."""
    from pyspark.sql import functions as F

    if not is_delta_table(spark, log_path):
        return []
    table = read_delta(spark, log_path)
    detail = F.col("detail") if "detail" in table.columns else F.lit(None).cast("string")
    rows = (
        table.where(F.col("source") == source)
        .select("batch_id", "file_path", "file_size", "file_modified", "status", "outcome", detail)
        .orderBy("batch_id", "recorded_at")
        .collect()
    )
    return [
        LoggedFile(
            int(r["batch_id"]),
            RawFile(r["file_path"], int(r["file_size"]), r["file_modified"]),
            r["status"],
            r["outcome"],
            r["detail"],
        )
        for r in rows
    ]


def survey(
    logged: list[LoggedFile], listed: list[RawFile], spec: SourceSpec, now: dt.datetime
) -> Listing:
    """Classify the listed files against the log (see the module docstring)."""
    committed = {r.batch_id for r in logged if r.status == COMMITTED}
    last_batch = max((r.batch_id for r in logged), default=0)
    pending_rows = [r for r in logged if r.status == PLANNED and r.batch_id not in committed]
    pending = _pending(pending_rows) if pending_rows else None

    # The last committed record of each path: what the file was when it was accounted for.
    known: dict[str, LoggedFile] = {}
    for r in logged:
        if r.status == COMMITTED:
            known[r.file.path] = r
    accounted = {p: r for p, r in known.items() if r.outcome != VANISHED}
    listed_paths = {f.path for f in listed}
    gone = {
        (_name(r.file.path), r.file.size, r.file.modified): p
        for p, r in accounted.items()
        if p not in listed_paths
    }
    settle = dt.timedelta(seconds=spec.settle_seconds)
    new: list[RawFile] = []
    changed: dict[str, tuple[RawFile, str]] = {}
    moved: dict[str, tuple[RawFile, str]] = {}
    settling = 0
    for f in listed:
        if settle and _naive(f.modified) > now - settle:
            settling += 1
            continue
        record = accounted.get(f.path)
        if record is not None:
            if (record.file.size, _naive(record.file.modified)) != (f.size, _naive(f.modified)):
                changed[f.path] = (f, _what_changed(record.file, f))
            continue
        old = gone.get((_name(f.path), f.size, f.modified))
        if old is not None:
            moved[f.path] = (f, old)
        else:
            new.append(f)
    return Listing(last_batch, pending, new, changed, moved, settling)


def next_batch(listing: Listing, spec: SourceSpec) -> Batch | None:
    """The batch to plan from a listing (None when there is nothing to do)."""
    files = list(listing.new)
    batch = Batch(listing.last_batch + 1, [], resumed=False)
    for path, (f, detail) in sorted(listing.changed.items()):
        if spec.on_change == "reingest":
            files.append(f)
        else:
            batch.changed[path] = detail
            batch.changed_files.append(f)
    for path, (f, old) in sorted(listing.moved.items()):
        batch.moved[path] = old
        batch.moved_files.append(f)
    files.sort(key=lambda f: (f.modified, f.path))
    if spec.max_files_per_batch:
        files = files[: spec.max_files_per_batch]
    batch.files = files
    return batch if batch.all_files else None


def log_batch(
    spark: SparkSession,
    log_path: str,
    source: str,
    batch: Batch,
    status: str,
    run_id: str,
    outcomes: dict[str, tuple[str, str | None]] | None = None,
) -> None:
    """Record the batch's files as planned (what it will do) or committed (what it did)."""
    now = dt.datetime.now(dt.timezone.utc)
    planned: dict[str, tuple[str, str | None]] = {f.path: (READ, None) for f in batch.files}
    planned |= {p: (CHANGED, d) for p, d in batch.changed.items()}
    planned |= {p: (MOVED, old) for p, old in batch.moved.items()}
    recorded = outcomes if status == COMMITTED and outcomes is not None else planned
    rows = [
        (
            source,
            batch.batch_id,
            f.path,
            f.size,
            f.modified,
            status,
            recorded[f.path][0],
            run_id,
            now,
            recorded[f.path][1],
        )
        for f in batch.all_files
    ]
    df = spark.createDataFrame(rows, schema=LOG_DDL)
    # planned = 2b-1, committed = 2b: one idempotent, increasing transaction version per write.
    version = 2 * batch.batch_id - (1 if status == PLANNED else 0)
    append_idempotent(
        df, log_path, app_id=f"mlpipe-ingest-log-{source}", version=version, merge_schema=True
    )


def _pending(rows: list[LoggedFile]) -> Batch:
    """The oldest batch planned and not committed, as it was planned."""
    batch_id = min(r.batch_id for r in rows)
    batch = Batch(batch_id, [], resumed=True)
    for r in rows:
        if r.batch_id != batch_id:
            continue
        if r.outcome == CHANGED:
            batch.changed[r.file.path] = r.detail or ""
            batch.changed_files.append(r.file)
        elif r.outcome == MOVED:
            batch.moved[r.file.path] = r.detail or ""
            batch.moved_files.append(r.file)
        else:  # READ, or a log written before outcomes were planned
            batch.files.append(r.file)
    batch.files.sort(key=lambda f: (f.modified, f.path))
    return batch


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=None) if moment.tzinfo else moment


def _what_changed(before: RawFile, now: RawFile) -> str:
    stamp = "%Y-%m-%d %H:%M:%S"
    return (
        f"size {before.size:,} -> {now.size:,} bytes, modified "
        f"{_naive(before.modified):{stamp}} -> {_naive(now.modified):{stamp}} "
        "after it was ingested"
    )
