"""History in one pass: `backfill` over a range leaves the tables and the ledger that running the
nightly flow for every date of the range leaves (night by night, the reference): for an event
label that matures over days (features rewritten as labels become known, training as of its
date), killed at each of its commit points and run again; and for recommendations. Tables are
read back through delta-rs."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from pipeline.backfill import run_backfill
from pipeline.nightly import NightlyResult
from pipeline.paths import PipelinePaths
from tests.helpers import ROOT
from tests.test_faults import CHILD_ENV, World, assert_same_tables, world

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800)]

# Card transactions whose label is a chargeback of the same user within two days: a night
# rewrites the features of its last two days as chargebacks arrive. Rows without a time and
# repeated ids exercise the features ledger; a NaN amount the scoring quarantine.
CHARGEBACKS = """
name: cb
task: binary_classification
sources:
  tx:
    format: csv
    options: {header: true}
    columns:
      - {name: id, type: string, nullable: false}
      - {name: user, type: string, nullable: false}
      - {name: ts, type: timestamp, format: "yyyy-MM-dd HH:mm:ss"}
      - {name: x, type: double}
      - {name: kind, type: string}
  back:
    format: csv
    options: {header: true}
    columns:
      - {name: user, type: string, nullable: false}
      - {name: cb_ts, type: timestamp, nullable: false, format: "yyyy-MM-dd HH:mm:ss"}
features:
  source: tx
  key: [id]
  entity: user
  event_time: ts
  windows: [{column: "*", aggs: [count], over: [1d]}]
  label:
    event: {source: back, time: cb_ts, within: 2d}
model:
  numeric: [x, events_count_1d]
  categorical: [kind]
  impute: {strategy: median}
train:
  metric: areaUnderROC
  folds: 2
  split: {kind: stratified, test_fraction: 0.25, seed: 3}
  candidates:
    - {name: lr, algorithm: logistic_regression, params: {maxIter: 20, regParam: 0.01}}
nightly: {retrain_every_days: 3, retrain_on_drift: false}
"""

RATINGS = """
name: rs
task: recommendation
sources:
  ev:
    format: csv
    options: {header: true}
    columns:
      - {name: user_id, type: string, nullable: false}
      - {name: item_id, type: string, nullable: false}
      - {name: event_type, type: string, nullable: false}
      - {name: event_time, type: timestamp, nullable: false, format: "yyyy-MM-dd HH:mm:ss"}
features:
  key: [user_id, item_id, event_type, event_time]
  entity: user_id
  event_time: event_time
  label: {expr: "CASE event_type WHEN 'purchase' THEN 3.0 ELSE 1.0 END"}
recommend: {user: user_id, item: item_id, strength: label}
train:
  metric: ndcg_at_k
  top_k: 5
  folds: 2
  seed: 7
  split: {kind: time, test_fraction: 0.2}
  candidates:
    - {name: als, algorithm: als, params: {implicitPrefs: true, maxIter: 5, rank: 4, regParam: 0.1}}
nightly: {retrain_every_days: 2, train_lookback_days: 4}
"""

FIRST = dt.date(2026, 5, 1)


def dates(n: int) -> list[dt.date]:
    return [FIRST + dt.timedelta(days=d) for d in range(n)]


def land(w: World, source: str, day: dt.date, lines: list[str]) -> None:
    folder = Path(PipelinePaths.of(w.cfg).source_path(source).removeprefix("file://")) / str(day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{source}.csv").write_text("\n".join(lines) + "\n")


def land_chargebacks(w: World, days: list[dt.date]) -> None:
    for day in days:
        rng = random.Random(str(day))
        risky = {f"u{i}" for i in rng.sample(range(20), 6)}
        tx, back = ["id,user,ts,x,kind"], ["user,cb_ts"]
        for i in range(120):
            user = f"u{rng.randrange(20)}"
            ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=720 * i)
            x = rng.gauss(1.0 if user in risky else 0.0, 1.0)
            tx.append(f"{day}-{i},{user},{ts:%Y-%m-%d %H:%M:%S},{x:.4f},{'ab'[i % 2]}")
        tx.append(f"{day}-0,u1,{day} 00:00:01,0.5,a")  # the same id later: a duplicate key
        tx.append(f"{day}-nt,u2,,0.5,b")  # no event time: quarantined by the features stage
        tx.append(f"{day}-nan,u3,{day} 12:00:30,NaN,a")  # scored rows refuse a NaN amount
        for user in sorted(risky):
            back.append(f"{user},{day} {rng.randrange(24):02d}:30:00")
        land(w, "tx", day, tx)
        land(w, "back", day, back)


def land_ratings(w: World, days: list[dt.date], *, learnable: bool = True) -> None:
    for day in days:
        rng = random.Random(str(day))
        lines = ["user_id,item_id,event_type,event_time"]
        for i in range(150):
            # Five groups of users, each with its own six items: a model of the users beats
            # recommending the most popular items, so the gate lets a first model in.
            user = rng.randrange(25)
            item = (user % 5) * 6 + rng.randrange(6) if rng.random() < 0.9 else rng.randrange(30)
            if not learnable:  # no tastes, only popular items: nothing beats their popularity
                item = min(int(rng.expovariate(0.4)), 29)
            kind = "purchase" if rng.random() < 0.2 else "view"
            ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=500 * i)
            lines.append(f"u{user},i{item},{kind},{ts:%Y-%m-%d %H:%M:%S}")
        lines.append(f"new{day:%d},i1,view,{day} 23:00:00")  # a user no model has seen yet
        land(w, "ev", day, lines)


def score_metrics(w: World) -> dict[Any, dict[str, float]]:
    """The monitoring metrics of the latest successful scoring row of each date."""
    rows = DeltaTable(str(w.tables / "audit")).to_pyarrow_table().to_pylist()
    out: dict[Any, dict[str, float]] = {}
    for r in sorted(rows, key=lambda r: r["finished_at"]):
        if r["stage"] == "score" and r["status"] == "succeeded":
            out[r["run_date"]] = dict(r["metrics"])
    return out


def assert_same_monitoring(one_pass: World, nightly: World) -> None:
    got, want = score_metrics(one_pass), score_metrics(nightly)
    assert want
    assert sorted(got) == sorted(want)
    for day, metrics in want.items():
        assert sorted(got[day]) == sorted(metrics), day
        for key, value in metrics.items():
            # PSI bins are deciles from Spark's quantile sketch, whose answer may move by a rank
            # with the order the table's files are merged in (the two worlds' files differ); the
            # score PSI's come from a grouped percentile there, approxQuantile here. The counts,
            # null rates and row ratios are exact.
            tolerance = 0.05 if key == "psi.score" else 0.01 if key.startswith("psi.") else 1e-9
            assert got[day][key] == pytest.approx(value, abs=tolerance), (day, key)


def backfill_argv(w: World, first: dt.date, last: dt.date) -> list[str]:
    args = [sys.executable, "-m", "pipeline", "backfill", "--pipeline", w.name, "--env", "test"]
    args += [
        "--from",
        str(first),
        "--to",
        str(last),
        "--conf-dir",
        str(w.tmp / "conf"),
    ]
    for item in w.sets:
        args += ["--set", item]
    return args


HISTORY = [FIRST - dt.timedelta(days=2), FIRST - dt.timedelta(days=1)]
"""Two days landed before the range: their rows' labels have matured by its first date, so the
first night has labelled rows to train on (its own rows' labels are still unknown)."""


def assert_same_run(one_pass: World, nightly: World) -> None:
    assert_same_tables(one_pass, nightly)
    assert_same_monitoring(one_pass, nightly)


def test_a_one_pass_backfill_killed_at_each_commit_point_then_rerun_leaves_what_every_night_leaves(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The event label: features rewritten as labels mature, training as of its date, two
    segments (trained on the first date and on the cadence)."""
    days = dates(4)
    crashed = world(tmp_path / "crashed", CHARGEBACKS, "cb")
    nightly = world(tmp_path / "nightly", CHARGEBACKS, "cb")
    for w in (crashed, nightly):
        land_chargebacks(w, HISTORY + days)
    by_night = run_backfill(
        spark, nightly.cfg, first=days[0], last=days[-1], run_id="n", night_by_night=True
    )
    assert [r.run_date for r in by_night if r.trained is not None] == [days[0], days[3]]

    # Each run dies the first time it reaches the point and resumes what the last one left:
    # after the first segment's predictions (before its ledger: the segment is done again),
    # then in the second segment's features, written as of its training date (the first
    # segment's ledger is in: the run resumes on the second segment's first date).
    for point in ("backfill.after_predictions", "backfill.after_features"):
        env = {**CHILD_ENV, "MLPIPE_CRASH_AT": point}
        done = subprocess.run(
            backfill_argv(crashed, days[0], days[-1]),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == -9, (point, done.returncode, done.stderr[-3000:])
    done = subprocess.run(
        backfill_argv(crashed, days[0], days[-1]),
        env=CHILD_ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(crashed, nightly)


def both_ways(
    spark: SparkSession, tmp_path: Path, days: list[dt.date], *, learnable: bool
) -> tuple[World, World, list[NightlyResult], list[NightlyResult]]:
    """The ratings backfilled over `days` night by night and in one pass, in their own worlds:
    (night-by-night world, one-pass world, their results)."""
    nightly = world(tmp_path / "nightly", RATINGS, "rs")
    one_pass = world(tmp_path / "onepass", RATINGS, "rs")
    for w in (nightly, one_pass):
        land_ratings(w, HISTORY + days, learnable=learnable)
    by_night = run_backfill(
        spark, nightly.cfg, first=days[0], last=days[-1], run_id="n", night_by_night=True
    )
    results = run_backfill(spark, one_pass.cfg, first=days[0], last=days[-1], run_id="o")
    return nightly, one_pass, by_night, results


def test_a_one_pass_backfill_of_recommendations_leaves_what_every_night_leaves(
    spark: SparkSession, tmp_path: Path
) -> None:
    days = dates(4)
    nightly, one_pass, by_night, results = both_ways(spark, tmp_path, days, learnable=True)

    # Trained on the same dates (the first, then on the cadence), scored every date.
    trained = [r.run_date for r in by_night if r.trained is not None]
    assert [r.run_date for r in results if r.trained is not None] == trained == days[::2]
    assert [r.run_date for r in results] == days
    assert_same_run(one_pass, nightly)

    # Run again over the same range: every date is done, nothing is written but skip rows.
    again = run_backfill(spark, one_pass.cfg, first=days[0], last=days[-1], run_id="o2")
    assert [r.stages.get("score") for r in again] == ["done before"] * len(days)
    assert_same_run(one_pass, nightly)


def test_dates_before_any_model_passes_the_gate_are_left_unscored_and_retrained_in_both_modes(
    spark: SparkSession, tmp_path: Path
) -> None:
    # A new pipeline whose first models do not beat the most-popular baseline: no champion, so
    # no date can be scored. Each night says so in the ledger and succeeds; the next night
    # trains again (no champion yet), and the dates stay due for scoring.
    days = dates(2)
    nightly, one_pass, by_night, results = both_ways(spark, tmp_path, days, learnable=False)

    for run in (by_night, results):
        assert [r.run_date for r in run if r.trained is not None] == days
        assert all(r.trained is not None and not r.trained.decision.promoted for r in run)
        assert [r.stages["score"] for r in run] == ["not scored (no champion yet)"] * 2
    assert_same_tables(one_pass, nightly)
    rows = DeltaTable(str(one_pass.tables / "audit")).to_pyarrow_table().to_pylist()
    unscored = sorted(
        (r["run_date"], r["status"], r["message"]) for r in rows if r["stage"] == "score"
    )
    assert [(d, status) for d, status, _ in unscored] == [(d, "skipped") for d in days]
    for _, _, message in unscored:
        assert message.startswith("not scored: no model has passed the gate yet (mlpipe-rs v")
        assert "most-popular baseline" in message
    assert not (one_pass.tables / "predictions").exists()


def test_a_challenger_refused_by_the_gate_waits_for_the_next_cadence_date_in_both_modes(
    spark: SparkSession, tmp_path: Path
) -> None:
    # Every challenger loses (a gate margin of 0.5 AUC): the first model stays champion. The
    # cadence (2 days) counts from the last training, so a refused challenger is retried two
    # days later, not on every night after the champion's own cadence ran out.
    from tests.test_nightly import SPEC as NIGHTLY
    from tests.test_nightly import day_lines, drop_day

    spec = NIGHTLY.replace(
        "nightly: {retrain_every_days: 30, retrain_on_drift: false}",
        "nightly: {retrain_every_days: 2, retrain_on_drift: false}",
    ).replace("  candidates:\n", "  gate: {margin: 0.5}\n  candidates:\n")
    days = dates(5)
    nightly = world(tmp_path / "nightly", spec, "nt")
    one_pass = world(tmp_path / "onepass", spec, "nt")
    for w in (nightly, one_pass):
        for day in days:
            drop_day(w.cfg, day, day_lines(day, 120))
    by_night = run_backfill(
        spark, nightly.cfg, first=days[0], last=days[-1], run_id="n", night_by_night=True
    )
    results = run_backfill(spark, one_pass.cfg, first=days[0], last=days[-1], run_id="o")
    for run in (by_night, results):
        trained = [r for r in run if r.trained is not None]
        assert [r.run_date for r in trained] == [days[0], days[2], days[4]]
        assert [r.trained.decision.promoted for r in trained if r.trained] == [True, False, False]
        assert run[3].stages["train"].startswith("not due (champion v1 is current")
    assert_same_run(one_pass, nightly)
