"""`mlpipe demo`: the main job on the embedded default, in one Spark application.

Night after night, a day of realistic fraud transactions lands in the landing folder and the nightly
flow runs for that date: ingest, features, training on the first night (no champion yet), scoring
every night. At the end it prints the ledger, the candidates, the chosen model and where to look.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from pipeline.config import load_config
from pipeline.paths import PipelinePaths, join_uri

if TYPE_CHECKING:
    from pipeline.cli import Invocation
    from pipeline.train.runner import TrainResult

USE_CASE = "fraud"


def run_demo(inv: Invocation) -> int:
    """Generate, run every night, summarise; the exit code."""
    from pipeline.cli import new_run_id
    from pipeline.generate import generate
    from pipeline.nightly import pipeline_lock, run_nightly
    from pipeline.status import pipeline_status

    args = inv.args
    config = load_config(USE_CASE, env=args.env, conf_dir=args.conf_dir, overrides=args.overrides)
    paths = PipelinePaths.of(config)
    spark = inv.spark()
    trained: TrainResult | None = None
    started = time.monotonic()
    print(
        f"mlpipe demo: {args.days} nights of {args.rows_per_day:,} card transactions, local Spark "
        f"({spark.sparkContext.master}), MLflow at {config.mlflow.tracking_uri}",
        flush=True,
    )
    with pipeline_lock(config):
        for night in range(args.days):
            day = args.start_date + dt.timedelta(days=night)
            t0 = time.monotonic()
            print(f"[night {night + 1}/{args.days}] {day}: landing raw files ...", flush=True)
            generate(
                USE_CASE,
                paths.landing,
                days=1,
                rows_per_day=args.rows_per_day,
                start_date=day,
                seed=args.seed,
            )
            print(f"[night {night + 1}/{args.days}] {day}: nightly flow ...", flush=True)
            result = run_nightly(spark, config, run_date=day, run_id=new_run_id())
            trained = result.trained or trained
            stages = ", ".join(f"{k} {v}" for k, v in result.stages.items())
            print(
                f"[night {night + 1}/{args.days}] {day}: {stages} ({time.monotonic() - t0:.0f}s)",
                flush=True,
            )

    print()
    print(pipeline_status(spark, config))
    if trained is not None:
        print()
        print(trained.summary())
    elapsed = time.monotonic() - started
    print()
    print(f"done in {elapsed / 60:.1f} min. Where to look:")
    print(f"  raw files     : {paths.landing}")
    print(
        f"  tables        : {join_uri(config.storage.tables, USE_CASE)} "
        "(bronze, quarantine, audit, features, predictions; Delta)"
    )
    if trained is not None:
        print(f"  report        : {trained.report_dir / 'report.html'}")
    print(f"  MLflow        : mlflow ui --backend-store-uri {config.mlflow.tracking_uri}")
    return 0
