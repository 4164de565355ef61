"""`mlpipe demo`: the main job on the embedded default, in one Spark application.

Night after night, a day of realistic fraud transactions lands in the landing folder and the nightly
flow runs for that date: ingest, features, training on the first night (no champion yet), scoring
every night. At the end it prints the ledger, the candidates, the chosen model and where to look.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.generate import generate
from pipeline.io.audit import new_run_id
from pipeline.io.lease import tables_lease
from pipeline.nightly import run_nightly
from pipeline.paths import PipelinePaths, join_uri
from pipeline.status import pipeline_status
from pipeline.train.runner import TrainResult

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

USE_CASE = "fraud"


@dataclass(frozen=True)
class DemoPlan:
    """How many nights of how much data, from which date."""

    days: int
    rows_per_day: int
    start_date: dt.date
    seed: int


def run_demo(spark: SparkSession, config: AppConfig, plan: DemoPlan) -> int:
    """Generate, run every night, summarise; the exit code. `config` is the fraud pipeline's."""
    paths = PipelinePaths.of(config)
    trained: TrainResult | None = None
    started = time.monotonic()
    print(
        f"mlpipe demo: {plan.days} nights of {plan.rows_per_day:,} card transactions, local Spark "
        f"({spark.sparkContext.master}), MLflow at {config.mlflow.tracking_uri}",
        flush=True,
    )
    ttl = config.storage.lease_ttl_seconds
    with tables_lease(spark, paths, ttl, command="demo", run_id=None):
        for night in range(plan.days):
            day = plan.start_date + dt.timedelta(days=night)
            t0 = time.monotonic()
            print(f"[night {night + 1}/{plan.days}] {day}: landing raw files ...", flush=True)
            generate(
                USE_CASE,
                paths.landing,
                days=1,
                rows_per_day=plan.rows_per_day,
                start_date=day,
                seed=plan.seed,
                spark=spark,
            )
            print(f"[night {night + 1}/{plan.days}] {day}: nightly flow ...", flush=True)
            result = run_nightly(spark, config, run_date=day, run_id=new_run_id())
            trained = result.trained or trained
            stages = ", ".join(f"{k} {v}" for k, v in result.stages.items())
            print(
                f"[night {night + 1}/{plan.days}] {day}: {stages} ({time.monotonic() - t0:.0f}s)",
                flush=True,
            )

    print()
    print(pipeline_status(spark, config))
    if trained is not None:
        print()
        print(trained.describe())
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
