"""`mlpipe check`: prove the stack works end to end on this machine (Delta + MLflow)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pipeline import tracking
from pipeline.config import AppConfig
from pipeline.errors import RunError
from pipeline.tracking import ensure_experiment

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run_check(spark: SparkSession, config: AppConfig) -> str:
    """Write a Delta table, read it back, log an MLflow run; return a report of where they are."""
    import mlflow
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = f"{config.storage.tables.rstrip('/')}/_check/delta_roundtrip"
    written_df = spark.range(0, 1000).select(
        F.col("id"), (F.col("id") % 7).alias("bucket"), F.lit(dt.date.today()).alias("checked_on")
    )
    written_df.write.format("delta").mode("overwrite").save(path)
    read_df = spark.read.format("delta").load(path)
    missing = written_df.exceptAll(read_df).count() + read_df.exceptAll(written_df).count()
    if missing:
        raise RunError(f"Delta round trip lost or added {missing} rows at {path}")
    version = DeltaTable.forPath(spark, path).history(1).select("version").first()

    experiment_id = ensure_experiment(config.mlflow, "_check")
    with mlflow.start_run(experiment_id=experiment_id, run_name="stack-check") as run:
        tracking.log_params({"spark_version": spark.version, "delta_table": path})
        mlflow.log_metric("rows_round_tripped", read_df.count())
    return "\n".join(
        [
            "stack check passed",
            f"  Delta table : {path} (version {version[0] if version else '?'}, 1000 rows)",
            f"  MLflow run  : {run.info.run_id} in experiment {experiment_id}",
            f"  tracking    : {config.mlflow.tracking_uri}",
            "  browse with : "
            + (
                f"open {config.mlflow.tracking_uri}"
                if config.mlflow.tracking_uri.startswith("http")
                else f"mlflow ui --backend-store-uri {config.mlflow.tracking_uri}"
            ),
        ]
    )
