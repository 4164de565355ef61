"""Faults: commands killed with SIGKILL (driver and JVM, the whole process group) at every commit
point and at seeded random moments, then run again, leave every table exactly as a clean run
leaves it: no row lost, none duplicated, the same ledger. Tables are read back through an
independent reader (delta-rs), not through the Spark code under test.

The random moments come from MLPIPE_FAULT_SEED (printed with every failure): a failing seed
reproduces with `MLPIPE_FAULT_SEED=<seed> make test-faults`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import SparkSession

from pipeline.config import AppConfig
from pipeline.ingest.runner import run_ingest
from pipeline.nightly import run_nightly
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.tracking import configure_mlflow
from tests.helpers import ROOT, make_config
from tests.test_ingest import HEADER
from tests.test_ingest import SPEC as INGEST_SPEC
from tests.test_nightly import SPEC as NIGHTLY_SPEC
from tests.test_nightly import day_lines, drop_day

pytestmark = [pytest.mark.faults, pytest.mark.timeout(3600)]

SEED = int(os.environ.get("MLPIPE_FAULT_SEED", "20261202"))
# How many random kills must land: ingest, scoring, nightly (MLPIPE_FAULT_KILLS=20,10,5).
INGEST_KILLS, SCORE_KILLS, NIGHTLY_KILLS = (
    int(n) for n in os.environ.get("MLPIPE_FAULT_KILLS", "20,10,5").split(",")
)
CHILD_ENV = {**os.environ, "MLPIPE_CRASH_AT": ""}

# Columns that name a run or a moment, not the data: they differ between any two runs.
VOLATILE = {
    "_ingested_at",
    "_run_id",
    "_batch_id",
    "run_id",
    "batch_id",
    "quarantined_at",
    "scored_at",
    "recorded_at",
    "started_at",
    "finished_at",
    "duration_s",
    "mlflow_run_id",
    "model_version",
    "features_version",
    "table_versions",
    "file_modified",
    "message",
}
LEDGER_KEY = ("pipeline", "stage", "source", "run_date")
LEDGER_COUNTS = (
    "status",
    "files_read",
    "files_quarantined",
    "rows_read",
    "rows_accepted",
    "rows_quarantined",
    "rows_dropped",
    "quarantined_by_reason",
    "dropped_by_reason",
)


# ---------------------------------------------------------------------------------------------
# Running and killing commands


@dataclass
class World:
    """One pipeline's configuration, storage and MLflow store under `tmp`."""

    tmp: Path
    name: str
    cfg: AppConfig
    sets: list[str] = field(default_factory=list)

    @property
    def tables(self) -> Path:
        return self.tmp / "tables" / self.name

    def argv(self, command: str, day: dt.date, *extra: str) -> list[str]:
        args = [sys.executable, "-m", "pipeline", command, "--pipeline", self.name]
        args += ["--env", "test", "--run-date", str(day), "--conf-dir", str(self.tmp / "conf")]
        for item in self.sets:
            args += ["--set", item]
        return [*args, *extra]


def world(tmp: Path, spec: str, name: str, *extra: str) -> World:
    sets = [
        f"storage.landing={tmp / 'landing'}",
        f"storage.tables={tmp / 'tables'}",
        f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"mlflow.artifact_location={tmp}/artifacts",
        f"storage.reports={tmp}/reports",
        *extra,
    ]
    return World(tmp, name, make_config(tmp, spec, name=name, overrides=sets[2:]), sets)


def crash_at(w: World, command: str, day: dt.date, point: str) -> None:
    """Run `command` until it dies at crash point `point` (SIGKILL from inside, as kill -9)."""
    env = {**CHILD_ENV, "MLPIPE_CRASH_AT": point}
    done = subprocess.run(
        w.argv(command, day), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr[-3000:])


@dataclass
class Killer:
    """Kills commands at seeded random moments, and counts the kills that landed."""

    rng: random.Random
    landed: int = 0
    missed: int = 0
    moments: list[float] = field(default_factory=list)

    def run(self, argv: list[str], low: float, high: float) -> bool:
        """Start `argv` in its own process group and SIGKILL the group `low`..`high` s later.

        True when the kill landed; False when the command finished first (it must succeed).
        """
        delay = self.rng.uniform(low, high)
        proc = subprocess.Popen(
            argv,
            env=CHILD_ENV,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the JVM and Python workers share the group: all die
        )
        try:
            _, err = proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            self.landed += 1
            self.moments.append(round(delay, 2))
            return True
        assert proc.returncode == 0, (f"seed {SEED}", argv[3], proc.returncode, err[-3000:])
        self.missed += 1
        return False


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def calibrate(w: World, command: str, day: dt.date) -> float:
    """Seconds one uninterrupted run of `command` takes in a fresh process (kills fall inside)."""
    env = CHILD_ENV
    started = time.monotonic()
    done = subprocess.run(
        w.argv(command, day), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Reading tables back through delta-rs, without what names a run


def _canonical(value: Any, root: str) -> Any:
    if isinstance(value, float):
        # Seven digits: two fits of one model on the same rows in another order differ in the last
        # bits of a float sum, nothing more.
        return None if math.isnan(value) else float(f"{value:.7g}")
    if isinstance(value, str):
        return value.replace(root, "<root>")
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v, root)) for k, v in value.items()))
    if isinstance(value, list):
        items = [_canonical(v, root) for v in value]
        return (
            tuple(sorted(items, key=repr))
            if items and isinstance(items[0], tuple)
            else tuple(items)
        )
    return value


def rows_of(path: Path, root: Path, *, drop: Iterable[str] = VOLATILE) -> Counter[tuple[Any, ...]]:
    """The rows of a Delta table as a multiset, volatile columns left out, paths made relative."""
    table = DeltaTable(str(path)).to_pyarrow_table()
    keep = sorted(c for c in table.column_names if c not in set(drop))
    return Counter(
        tuple((c, _canonical(r[c], str(root))) for c in keep)
        for r in table.select(keep).to_pylist()
    )


def ledger_of(path: Path, root: Path) -> Counter[tuple[Any, ...]]:
    """What the ledger says about each (stage, source, date): its latest successful row's counts."""
    rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["finished_at"] or r["started_at"]):
        if r["status"] in ("succeeded", "noop"):
            latest[tuple(r[k] for k in LEDGER_KEY)] = r
    # An ingest ledger row is per batch: sum the batches of a source (batching may differ).
    totals: Counter[tuple[Any, ...]] = Counter()
    for r in rows:
        if r["stage"] == "ingest" and r["status"] == "succeeded" and r["batch_id"] is not None:
            for c in ("files_read", "rows_read", "rows_accepted", "rows_quarantined"):
                totals[(r["source"], c)] += r[c]
    return Counter(
        [
            *(
                tuple((c, _canonical(r[c], str(root))) for c in (*LEDGER_KEY, *LEDGER_COUNTS))
                for key, r in latest.items()
                if key[1] != "ingest"
            ),
            *((k, v) for k, v in sorted(totals.items())),
        ]
    )


def committed_files(path: Path, root: Path) -> Counter[tuple[Any, ...]]:
    """The ingest log's files that reached an outcome, with size and outcome (not batch)."""
    rows = rows_of(path, root, drop=VOLATILE | {"status", "detail"})
    return Counter({k: v for k, v in rows.items() if ("outcome", None) not in k})


def delta_tables(base: Path) -> list[Path]:
    return sorted(
        p.parent.relative_to(base)
        for p in base.rglob("_delta_log")
        if p.parent.name != "_lease"  # who held the lease when: differs by construction
    )


def _stage_date(row: tuple[Any, ...]) -> tuple[Any, Any]:
    """(stage, run date) of a ledger row from `ledger_of` (None for the ingest totals)."""
    fields = {item[0]: item[1] for item in row if isinstance(item, tuple) and len(item) == 2}
    return fields.get("stage"), fields.get("run_date")


def assert_same_tables(
    crashed: World,
    clean: World,
    *,
    ledger: bool = True,
    skip: Iterable[str] = (),
) -> None:
    """Every table of `crashed` holds exactly the rows of the same table of `clean`."""
    tables = delta_tables(clean.tables)
    assert delta_tables(crashed.tables) == tables
    for rel in tables:
        if str(rel) in skip:
            continue
        a, b = crashed.tables / rel, clean.tables / rel
        if rel.name == "audit":
            got, want = ledger_of(a, crashed.tmp), ledger_of(b, clean.tmp)
            if not ledger:
                continue
        elif rel.name == "ingest_log":
            # Which files were committed, with their size and outcome (batching may differ).
            got, want = committed_files(a, crashed.tmp), committed_files(b, clean.tmp)
        else:
            got, want = rows_of(a, crashed.tmp), rows_of(b, clean.tmp)
        missing, extra = want - got, got - want
        report = f"seed {SEED}: table {rel}: lost e.g. {list(missing)[:2]}, extra {list(extra)[:2]}"
        assert not missing, f"{sum(missing.values())} rows lost; {report}"
        assert not extra, f"{sum(extra.values())} rows extra; {report}"


# ---------------------------------------------------------------------------------------------
# Ingest


def batch_lines(i: int) -> list[str]:
    """File `i`: 40 good rows of their own ids, one bad amount, one unparseable line."""
    day = dt.date(2026, 1, 1) + dt.timedelta(days=i % 20)
    good = [f"{i * 1000 + k},{k % 90}.5,a,{k % 7},{day} 10:00:00" for k in range(40)]
    return [HEADER, *good, f"bad{i},-1,a,1,{day} 10:00:00", f"{i}x,1,2,3"]


def land(w: World, name: str, lines: list[str]) -> None:
    folder = Path(PipelinePaths.of(w.cfg).source_path("tx").removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{name}.part"
    part.write_text("\n".join(lines) + "\n")
    part.rename(folder / name)  # as a careful uploader does: the file appears whole


INGEST_DAY = dt.date(2026, 1, 25)


def test_ingest_killed_at_every_commit_point_and_at_20_random_moments_loses_and_doubles_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    spec = INGEST_SPEC.format(fmt="csv", options="{header: true}", evolution="fail")
    crashed, clean = world(tmp_path / "crashed", spec, "t"), world(tmp_path / "clean", spec, "t")
    killer = Killer(random.Random(SEED))

    def both(i: int) -> None:
        for w in (crashed, clean):
            land(w, f"f{i:03}.csv", batch_lines(i))

    # Every commit point of a batch, each followed by a rerun that resumes it.
    for i, point in enumerate(
        ("ingest.after_plan", "ingest.after_bronze", "ingest.after_quarantine", "ingest.after_log")
    ):
        both(i)
        crash_at(crashed, "ingest", INGEST_DAY, point)
        run_ingest(spark, crashed.cfg, run_date=INGEST_DAY, run_id=f"rerun-{i}")

    both(4)
    took = calibrate(crashed, "ingest", INGEST_DAY)
    # Random moments over the run: a killed run is resumed by the next one, sometimes a killed one
    # too, sometimes after more files landed.
    i = 5
    while killer.landed < INGEST_KILLS:
        assert killer.landed + killer.missed < 3 * INGEST_KILLS + 10, (
            f"seed {SEED}: kills keep missing ({took:.1f}s)"
        )
        both(i)
        killer.run(crashed.argv("ingest", INGEST_DAY), 0.2 * took, 1.1 * took)
        if killer.rng.random() < 0.6:
            run_ingest(spark, crashed.cfg, run_date=INGEST_DAY, run_id=f"rerun-{i}")
        i += 1
    run_ingest(spark, crashed.cfg, run_date=INGEST_DAY, run_id="final")
    # The clean reference: the same files, ingested once without interruption.
    run_ingest(spark, clean.cfg, run_date=INGEST_DAY, run_id="clean")

    assert_same_tables(crashed, clean)
    bronze = DeltaTable(str(crashed.tables / "bronze" / "tx")).to_pyarrow_table()
    assert bronze.num_rows == 40 * i  # every good row once
    assert len(set(bronze.column("id").to_pylist())) == 40 * i
    print(
        f"seed {SEED}: {killer.landed} kills landed at {killer.moments} s, {killer.missed} missed"
    )


def lease_holders(w: World) -> set[int]:
    """Pids that took the pipeline's lease so far (from its own table, through delta-rs)."""
    path = w.tables / "_lease"
    if not (path / "_delta_log").exists():
        return set()
    try:
        rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    except TableNotFoundError:  # its first commit is being written
        return set()
    return {r["pid"] for r in rows if r["event"] == "acquire"}


def test_a_second_ingest_while_the_first_holds_the_lease_exits_75_and_changes_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    spec = INGEST_SPEC.format(fmt="csv", options="{header: true}", evolution="fail")
    crashed, clean = world(tmp_path / "twice", spec, "t"), world(tmp_path / "once", spec, "t")
    for w in (crashed, clean):
        for i in range(3):
            land(w, f"f{i}.csv", batch_lines(i))
    run_ingest(spark, clean.cfg, run_date=INGEST_DAY, run_id="clean")

    first = subprocess.Popen(
        crashed.argv("ingest", INGEST_DAY),
        env=CHILD_ENV,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while first.pid not in lease_holders(crashed):
            assert first.poll() is None, "the first ingest ended without taking the lease"
            assert time.monotonic() < deadline, "the first ingest took no lease in 300 s"
            time.sleep(0.05)
        # Paused while holding the lease (a long GC pause, a stopped container): alive, not done.
        os.killpg(first.pid, signal.SIGSTOP)
        second = subprocess.run(
            crashed.argv("ingest", INGEST_DAY),
            env=CHILD_ENV,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 75, second.stderr[-3000:]
    assert "another command is writing the tables of 't'" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert "ingest on host" in second.stderr
    assert_same_tables(crashed, clean)


# ---------------------------------------------------------------------------------------------
# Features, train, score and the nightly flow

NIGHTS = [dt.date(2026, 3, 1) + dt.timedelta(days=d) for d in range(NIGHTLY_KILLS + 4)]
NIGHT_SPEC = NIGHTLY_SPEC.replace(
    "nightly: {retrain_every_days: 30, retrain_on_drift: false}",
    "nightly: {retrain_every_days: 1, retrain_on_drift: false}",
)


def land_night(w: World, day: dt.date) -> None:
    lines = day_lines(day, 150)
    lines[5] = lines[5].replace(lines[5].split(",")[3], "NaN", 1)  # one row scoring quarantines
    drop_day(w.cfg, day, lines)


# Stage runs as the clean reference world runs them: in this process, warm.
def night(spark: SparkSession, w: World, day: dt.date, run_id: str) -> None:
    configure_mlflow(w.cfg.mlflow)
    run_nightly(spark, w.cfg, run_date=day, run_id=run_id)


def test_stages_killed_at_every_commit_point_then_rerun_leave_the_tables_of_a_clean_run(
    spark: SparkSession, tmp_path: Path
) -> None:
    crashed = world(tmp_path / "crashed", NIGHT_SPEC, "nt")
    clean = world(tmp_path / "clean", NIGHT_SPEC, "nt")
    day = NIGHTS[0]
    for w in (crashed, clean):
        land_night(w, day)
    night(spark, clean, day, "clean")

    # One night, killed at each boundary in turn; each run resumes what the last one left.
    for point in (
        "features.after_write",
        "train.after_log_model",
        "train.after_register",
        "train.before_alias",
        "train.after_alias",
        "score.before_write",
        "score.after_write",
        "score.after_monitoring",
    ):
        crash_at(crashed, "nightly", day, point)
    night(spark, crashed, day, "rerun")
    # Killed after the alias moved, training has promoted its model but not yet written its
    # ledger row; the rerun finds the champion current, does not train again, and writes the
    # row the killed run left on the champion's version.
    assert_same_tables(crashed, clean)

    # Each boundary also holds for the stand-alone commands: they are the same functions, run
    # under the same lease (tests/test_commands.py runs each command in its own process).


def test_scoring_and_nightly_killed_at_random_moments_lose_and_double_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    crashed = world(tmp_path / "crashed", NIGHT_SPEC, "nt")
    clean = world(tmp_path / "clean", NIGHT_SPEC, "nt")
    killer = Killer(random.Random(SEED + 1))

    # Night 1 builds the champion in both worlds, uninterrupted (it calibrates nightly's length).
    for w in (crashed, clean):
        land_night(w, NIGHTS[0])
    night(spark, clean, NIGHTS[0], "clean-0")
    took_night = calibrate(crashed, "nightly", NIGHTS[0])

    # Nights, each killed once at a random moment of its run (training included: it retrains
    # every night), then resumed; until five kills landed.
    scored: list[dt.date] = []
    for k, day in enumerate(NIGHTS[1:], start=1):
        if killer.landed >= NIGHTLY_KILLS:
            break
        for w in (crashed, clean):
            land_night(w, day)
        night(spark, clean, day, f"clean-{k}")
        killer.run(crashed.argv("nightly", day), 0.2 * took_night, 0.9 * took_night)
        night(spark, crashed, day, f"rerun-{k}")
        scored.append(day)
    nightly_kills = killer.landed
    assert nightly_kills >= NIGHTLY_KILLS, f"seed {SEED}: only {nightly_kills} nightly kills landed"

    # Scoring alone, rerun over past nights and killed at random moments.
    took_score = calibrate(crashed, "score", NIGHTS[1])
    configure_mlflow(crashed.cfg.mlflow)
    while killer.landed - nightly_kills < SCORE_KILLS:
        assert killer.missed < 3 * SCORE_KILLS + 10, (
            f"seed {SEED}: kills keep missing ({took_score:.1f}s)"
        )
        day = killer.rng.choice(scored)
        if killer.run(crashed.argv("score", day), 0.25 * took_score, 1.1 * took_score):
            run_score(spark, crashed.cfg, run_date=day, run_id=f"rescore-{day}")
    configure_mlflow(clean.cfg.mlflow)
    for day in scored:
        run_score(spark, clean.cfg, run_date=day, run_id=f"clean-rescore-{day}")

    assert_same_tables(crashed, clean)
    print(f"seed {SEED}: kills at {killer.moments} s, {killer.missed} missed")
