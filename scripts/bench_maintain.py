"""`make bench` (third part): what a year of nights costs the ledger reads, before and after
`mlpipe maintain`.

    .venv/bin/python scripts/bench_maintain.py               # 365 nights
    .venv/bin/python scripts/bench_maintain.py --nights 60   # a quick look

Writes the history the nightly flow leaves in the ingest log (two commits per night: the batch
planned, then committed) and the audit table (a row per stage: ingest, features, train every 7th
night, score), through the pipeline's own writers, then times the two reads every night makes
(the ingest log of a source, `pipeline.ingest.files.read_log`; the date's latest audit rows,
`pipeline.nightly.completed_stages`), runs `maintain`, and times them again. Each read is repeated
and the median reported; the result goes to BENCHMARKS_MAINTAIN.md and stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nights", type=int, default=365, help="nights of history (default 365)")
    p.add_argument("--repeat", type=int, default=5, help="timed reads per measurement (5)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS_MAINTAIN.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.config import load_config
    from pipeline.ingest.files import COMMITTED, PLANNED, Batch, log_batch, read_log
    from pipeline.io.audit import LedgerEntry, write_audit
    from pipeline.io.raw import RawFile
    from pipeline.maintain import run_maintain
    from pipeline.nightly import completed_stages
    from pipeline.paths import PipelinePaths
    from pipeline.session import build_spark
    from pipeline.tracking import configure_mlflow

    work = Path(tempfile.mkdtemp(prefix="mlpipe-bench-maintain-"))
    try:
        cfg = load_config(
            "fraud",
            env="test",
            conf_dir=ROOT / "conf",
            overrides=[
                f"storage.landing={work / 'landing'}",
                f"storage.tables={work / 'tables'}",
                f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}",
            ],
        )
        configure_mlflow(cfg.mlflow)
        spark = build_spark(cfg.spark, app_name="mlpipe-bench-maintain")
        paths = PipelinePaths.of(cfg)
        first = dt.date(2025, 1, 1)
        started = time.monotonic()
        for night in range(args.nights):
            day = first + dt.timedelta(days=night)
            moment = dt.datetime(day.year, day.month, day.day, 2)
            raw = RawFile(f"file:///landing/fraud/transactions/{day}/part-0.csv", 1 << 20, moment)
            batch = Batch(night + 1, [raw], resumed=False)
            log_batch(spark, paths.ingest_log, "transactions", batch, PLANNED, f"run-{night}")
            log_batch(spark, paths.ingest_log, "transactions", batch, COMMITTED, f"run-{night}")
            stages = ["ingest", "features", *(["train"] * (night % 7 == 0)), "score"]
            entries = [
                LedgerEntry(f"run-{night}", "fraud", s, day, rows_read=1000, rows_accepted=1000)
                for s in stages
            ]
            write_audit(spark, paths.audit, [e.finish() for e in entries])
        built = time.monotonic() - started
        last = first + dt.timedelta(days=args.nights - 1)

        def timed() -> dict[str, float]:
            out: dict[str, list[float]] = {"ingest log": [], "audit": []}
            for _ in range(args.repeat):
                t0 = time.monotonic()
                assert len(read_log(spark, paths.ingest_log, "transactions")) == 2 * args.nights
                out["ingest log"].append(time.monotonic() - t0)
                t0 = time.monotonic()
                completed_stages(spark, cfg, last)
                out["audit"].append(time.monotonic() - t0)
            return {k: statistics.median(v) for k, v in out.items()}

        before = timed()
        t0 = time.monotonic()
        result = run_maintain(spark, cfg, run_date=last, run_id="bench-maintain")
        maintain_s = time.monotonic() - t0
        after = timed()
        files = {t.name: (t.files_before, t.files_after) for t in result.tables}
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Ledger reads after a year of nights, before and after `mlpipe maintain`",
        "",
        f"`scripts/bench_maintain.py --nights {args.nights}` on {dt.date.today()}: "
        f"{args.nights} nights of ingest-log and audit history written by the pipeline's own "
        f"writers ({built:.0f} s), local[2]; median of {args.repeat} reads each.",
        "",
        "| read | files before | before s | files after | after s | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, table in (("ingest log", "ingest_log"), ("audit", "audit")):
        was, now = files.get(table, (0, 0))
        ratio = before[name] / after[name] if after[name] else float("inf")
        lines.append(
            f"| {name} | {was} | {before[name]:.2f} | {now} | {after[name]:.2f} | {ratio:.1f}x |"
        )
    lines += ["", f"`maintain` itself: {maintain_s:.1f} s for {len(result.tables)} tables."]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
