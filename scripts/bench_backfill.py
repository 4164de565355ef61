"""`make bench` (second part): a history backfill in one pass against night by night, side by side.

    .venv/bin/python scripts/bench_backfill.py                      # 213 days, ~100k ratings
    .venv/bin/python scripts/bench_backfill.py --days 20 --rows-per-day 500   # a quick look

The shipped recommendation pipeline (its YAML, with the retraining cadence given here) on
generated interactions: `mlpipe backfill` (one pass) and `mlpipe backfill --night-by-night`
each in a fresh process on the same landed files, with their own tables and MLflow store. Each
run's wall time includes its Spark start; afterwards the two ledgers are compared (rows per stage
and date, through delta-rs) and the result goes to BENCHMARKS_BACKFILL.md and stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 180.0  # 213 days / 100k ratings in under 3 minutes on 2 cores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--days", type=int, default=213, help="dates in the history (default 213)")
    p.add_argument("--rows-per-day", type=int, default=470, help="interactions per day (470)")
    p.add_argument(
        "--retrain-every", type=int, default=30, help="nightly.retrain_every_days (default 30)"
    )
    p.add_argument(
        "--skip-night-by-night", action="store_true", help="time only the one-pass backfill"
    )
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS_BACKFILL.md")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def conf_dir(work: Path, every: int) -> Path:
    """A private copy of conf/ with the recommendation pipeline's cadence set."""
    conf = work / "conf"
    shutil.copytree(ROOT / "conf", conf)
    spec = conf / "base" / "pipelines" / "recommendation.yml"
    text = spec.read_text()
    assert "retrain_every_days: 7" in text, "the shipped recommendation YAML changed"
    spec.write_text(text.replace("retrain_every_days: 7", f"retrain_every_days: {every}"))
    return conf


def sets(work: Path, world: str) -> list[str]:
    out = [
        f"storage.landing={work / 'landing'}",
        f"storage.tables={work / world / 'tables'}",
        f"storage.reports={work / world / 'reports'}",
        f"mlflow.tracking_uri=sqlite:///{work / world / 'mlflow.db'}",
        f"mlflow.artifact_location={work / world / 'artifacts'}",
    ]
    return [a for item in out for a in ("--set", item)]


def mlpipe(conf: Path, *args: str, log: Path) -> float:
    """Run `mlpipe ARGS` in a fresh process (test overlay: local[2], quiet); its wall seconds."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    argv = [sys.executable, "-m", "pipeline", *args, "--env", "test", "--conf-dir", str(conf)]
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"`mlpipe {' '.join(args[:3])}` failed ({done.returncode}): see {log}")
    return wall


def ledger(tables: Path) -> tuple[Counter[tuple[Any, ...]], int]:
    """(rows per (stage, date, counts) of the latest successful row of each, trainings)."""
    from deltalake import DeltaTable

    rows = DeltaTable(str(tables / "recommendation" / "audit")).to_pyarrow_table().to_pylist()
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["finished_at"]):
        if r["status"] in ("succeeded", "noop") and r["stage"] != "ingest":
            latest[(r["stage"], r["run_date"])] = r
    counts = Counter(
        (k, r["status"], r["rows_read"], r["rows_accepted"], r["rows_dropped"])
        for k, r in latest.items()
    )
    return counts, sum(1 for k in latest if k[0] == "train")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mlpipe-bench-backfill-"))
    first = dt.date(2026, 1, 1)
    last = first + dt.timedelta(days=args.days - 1)
    try:
        conf = conf_dir(work, args.retrain_every)
        gen = ["generate", "recommendation", "--days", str(args.days)]
        gen += ["--rows-per-day", str(args.rows_per_day), "--start-date", str(first)]
        mlpipe(conf, *gen, *sets(work, "one_pass"), log=work / "generate.log")
        span = ["--pipeline", "recommendation", "--from", str(first), "--to", str(last)]
        walls: dict[str, float] = {}
        modes: list[tuple[str, list[str]]] = [("one_pass", [])]
        if not args.skip_night_by_night:
            modes.append(("night_by_night", ["--night-by-night"]))
        for mode, extra in modes:
            print(f"backfill {args.days} days, {mode.replace('_', ' ')} ...", flush=True)
            walls[mode] = mlpipe(
                conf, "backfill", *span, *extra, *sets(work, mode), log=work / f"{mode}.log"
            )
            print(f"  {walls[mode]:.1f} s", flush=True)
        one, trainings = ledger(work / "one_pass" / "tables")
        scored = sum(key[2] * n for key, n in one.items() if key[0][0] == "score")
        lines = [
            "# Backfill: one pass against night by night",
            "",
            f"`scripts/bench_backfill.py --days {args.days} --rows-per-day {args.rows_per_day} "
            f"--retrain-every {args.retrain_every}` on {dt.date.today()}: the shipped "
            f"recommendation pipeline, {args.days} dates ({first}..{last}), "
            f"{args.days * args.rows_per_day:,} generated interactions, retraining every "
            f"{args.retrain_every} days ({trainings} trainings, each with the YAML's halving "
            "search); each run in a fresh process, Spark start included.",
            "",
            "| path | wall s | s per date | vs one pass |",
            "| --- | ---: | ---: | ---: |",
        ]
        for mode, wall in walls.items():
            ratio = wall / walls["one_pass"]
            lines.append(
                f"| {mode.replace('_', ' ')} | {wall:.1f} | {wall / args.days:.2f} | {ratio:.2f}x |"
            )
        verdict = "met" if walls["one_pass"] < TARGET_S else "missed"
        lines += ["", f"Target: one pass under {TARGET_S:.0f} s at 213 days / 100k: {verdict}"]
        if "night_by_night" in walls:
            other, _ = ledger(work / "night_by_night" / "tables")
            same = "the same" if other == one else "DIFFERENT"
            lines.append(f"Ledgers (rows per stage and date, latest successful row): {same}.")
        lines.append(f"Users scored, summed over the dates: {scored:,}.")
        text = "\n".join(lines) + "\n"
        args.out.write_text(text)
        print(text)
        return 0
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
