"""One writer at a time per pipeline: a lease that lives with the tables.

Every command that writes a pipeline's tables (ingest, features, train, score, nightly, backfill,
maintain, the demo) holds the pipeline's lease while it runs. The lease is a small Delta table
beside the pipeline's other tables (`<tables>/<pipeline>/_lease`), so it is seen by every host
that sees the tables — a scheduler on another machine, a driver in YARN or Kubernetes cluster
mode — which a lock file on the scheduler's disk is not.

The table is an event log: every acquire, renewal and release is one appended row with the next
*generation* number, and the append is a Delta idempotent write whose transaction version is that
generation (`txnAppId = mlpipe-lease-<pipeline>`). Of two writers that read generation n and both
write n + 1, Delta commits exactly one: the other's commit either fails with
`ConcurrentTransactionException` or, if it started later, is skipped as already seen. Each writer
then reads the latest event back and holds the lease only if that event is its own. This is as
atomic as Delta's commits on the file system: on HDFS and local disks it is; on S3 it needs Delta's
multi-cluster log store (docs/CLUSTER.md), like every other Delta write.

A holder renews its lease every `ttl / 3` from a background thread. A lease whose holder stopped
renewing (killed, its host gone) expires after `ttl`, and the next command takes it over; one held
by a process that no longer exists on this same host is taken over at once. A second command that
finds a live lease fails at once with `LeaseHeldError` (exit code 75, "try again later"), naming
the holder: host, pid, command, run id and since when.

Within one process the lease is re-entrant: `nightly` holds it and the stages it runs find it held.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import LeaseHeldError
from pipeline.io.delta import append_idempotent, is_commit_conflict, is_delta_table, read_delta

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipeline.paths import PipelinePaths

log = logging.getLogger(__name__)

LEASE_DDL = (
    "generation BIGINT NOT NULL, event STRING NOT NULL, lease_id STRING NOT NULL, "
    "host STRING NOT NULL, pid BIGINT NOT NULL, command STRING NOT NULL, run_id STRING, "
    "since TIMESTAMP NOT NULL, expires_at TIMESTAMP NOT NULL, recorded_at TIMESTAMP NOT NULL"
)
ACQUIRE, RENEW, RELEASE = "acquire", "renew", "release"


@dataclass(frozen=True)
class LeaseEvent:
    """The latest row of the lease table: who holds (or last held) the lease."""

    generation: int
    event: str
    lease_id: str
    host: str
    pid: int
    command: str
    run_id: str | None
    since: dt.datetime
    expires_at: dt.datetime

    def live(self, now: dt.datetime) -> bool:
        """Held and not expired, and (on this host) by a process that still exists."""
        if self.event == RELEASE or self.expires_at <= now:
            return False
        return not (self.host == socket.gethostname() and not _pid_alive(self.pid))

    def describe(self) -> str:
        return (
            f"{self.command} on host {self.host}, pid {self.pid}, run {self.run_id or '?'}, "
            f"since {self.since:%Y-%m-%d %H:%M:%S} UTC (lease expires "
            f"{self.expires_at:%H:%M:%S} UTC unless renewed)"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Lease:
    """The lease of one pipeline's tables (see the module docstring)."""

    def __init__(self, spark: SparkSession, path: str, pipeline: str, *, ttl: dt.timedelta) -> None:
        self.spark = spark
        self.path = path
        self.pipeline = pipeline
        self.ttl = ttl
        self.lease_id = uuid.uuid4().hex
        self.app_id = f"mlpipe-lease-{pipeline}"
        self._since: dt.datetime | None = None
        self._generation = 0
        self._command = ""
        self._run_id: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._write_lock = threading.Lock()

    def latest(self) -> LeaseEvent | None:
        """The latest event, or None before the first command."""
        from pyspark.sql import functions as F

        if not is_delta_table(self.spark, self.path):
            return None
        row = read_delta(self.spark, self.path).orderBy(F.col("generation").desc()).first()
        if row is None:
            return None
        return LeaseEvent(
            int(row["generation"]),
            row["event"],
            row["lease_id"],
            row["host"],
            int(row["pid"]),
            row["command"],
            row["run_id"],
            row["since"],
            row["expires_at"],
        )

    def acquire(self, command: str, run_id: str | None) -> None:
        """Take the lease, or raise `LeaseHeldError` naming its live holder."""
        now = _now()
        current = self.latest()
        if current is not None and current.live(now) and current.lease_id != self.lease_id:
            raise self._held(current)
        if current is not None and current.event != RELEASE and not current.live(now):
            log.warning(
                "taking over the lease of %s from a holder that is gone: %s",
                self.pipeline,
                current.describe(),
            )
        self._command, self._run_id, self._since = command, run_id, now
        generation = (current.generation if current else 0) + 1
        try:
            self._append(ACQUIRE, generation)
        except Exception as exc:
            if not is_commit_conflict(exc):
                raise
        won = self.latest()
        if won is None or won.lease_id != self.lease_id:
            raise self._held(won) if won is not None else LeaseHeldError("the lease was lost")
        self._generation = won.generation
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True, name="lease")
        self._renewer.start()

    def release(self) -> None:
        """Give the lease back (an idempotent no-op when it is no longer ours)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=60)
            self._renewer = None
        current = self.latest()
        if current is None or current.lease_id != self.lease_id or current.event == RELEASE:
            return
        try:
            self._append(RELEASE, current.generation + 1)
        except Exception as exc:  # the next command takes an expired lease over anyway
            log.warning("could not release the lease of %s: %s", self.pipeline, exc)

    def _renew_loop(self) -> None:
        interval = max(1.0, self.ttl.total_seconds() / 3)
        while not self._stop.wait(interval):
            try:
                current = self.latest()
                if current is None or current.lease_id != self.lease_id:
                    log.error("the lease of %s was taken over: %s", self.pipeline, current)
                    return
                self._append(RENEW, current.generation + 1)
            except Exception as exc:  # keep trying: a missed renewal is not yet an expiry
                log.warning("could not renew the lease of %s: %s", self.pipeline, exc)

    def _append(self, event: str, generation: int) -> None:
        now = _now()
        row = (
            generation,
            event,
            self.lease_id,
            socket.gethostname(),
            os.getpid(),
            self._command,
            self._run_id,
            self._since or now,
            now + self.ttl if event != RELEASE else now,
            now,
        )
        with self._write_lock:
            df = self.spark.createDataFrame([row], schema=LEASE_DDL)
            append_idempotent(df, self.path, app_id=self.app_id, version=generation)

    def _held(self, holder: LeaseEvent) -> LeaseHeldError:
        return LeaseHeldError(
            f"another command is writing the tables of '{self.pipeline}': {holder.describe()}. "
            "Nothing was done; run again once it has finished (or once its lease expired, if it "
            f"was killed: at most {_duration(self.ttl)})."
        )


def _duration(ttl: dt.timedelta) -> str:
    seconds = int(ttl.total_seconds())
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


_HELD: dict[str, tuple[Lease, int]] = {}  # lease table -> (lease, holders in this process)
_HELD_LOCK = threading.Lock()


def tables_lease(
    spark: SparkSession, paths: PipelinePaths, ttl_seconds: int, *, command: str, run_id: str | None
) -> contextlib.AbstractContextManager[Lease]:
    """The lease of the pipeline whose tables `paths` locates, held for a `with` block."""
    return holding(
        spark,
        paths.lease,
        paths.pipeline,
        command=command,
        run_id=run_id,
        ttl=dt.timedelta(seconds=ttl_seconds),
    )


@contextlib.contextmanager
def holding(
    spark: SparkSession,
    path: str,
    pipeline: str,
    *,
    command: str,
    run_id: str | None,
    ttl: dt.timedelta,
) -> Iterator[Lease]:
    """Hold the pipeline's lease for the block. Re-entrant within this process (nested stages,
    or threads of one command): the first holder acquires it, the last one out releases it."""
    with _HELD_LOCK:
        entry = _HELD.get(path)
        if entry is not None:
            _HELD[path] = (entry[0], entry[1] + 1)
            lease = entry[0]
        else:
            lease = Lease(spark, path, pipeline, ttl=ttl)
            lease.acquire(command, run_id)  # under the lock: one acquisition per process
            _HELD[path] = (lease, 1)
    try:
        yield lease
    finally:
        with _HELD_LOCK:
            held, count = _HELD[path]
            if count > 1:
                _HELD[path] = (held, count - 1)
                last = False
            else:
                del _HELD[path]
                last = True
        if last:
            lease.release()
