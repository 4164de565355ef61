"""`mlpipe status`: the row ledger per date and stage, predictions per date, and the champion."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.io.delta import is_delta_table, read_delta
from pipeline.model.registry import champion_version
from pipeline.nightly import dates_due_again
from pipeline.paths import PipelinePaths
from pipeline.tracking import configure_mlflow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
        + [fmt.format(*r) for r in rows]
    )


def pipeline_status(spark: SparkSession, config: AppConfig) -> str:
    """A readable summary of what ran, what it read and wrote, and which model scores."""
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    configure_mlflow(config.mlflow)
    paths = PipelinePaths.of(config)
    out: list[str] = [f"pipeline {spec.name}: tables under {paths.bronze_root.rsplit('/', 1)[0]}"]
    if is_delta_table(spark, paths.audit):
        rows = (
            read_delta(spark, paths.audit)
            .where(F.col("status") != "skipped")
            .orderBy("run_date", "started_at")
            .collect()
        )
        out += [
            "",
            "row ledger (audit table):",
            _table(
                [
                    "run date",
                    "stage",
                    "source",
                    "status",
                    "read",
                    "accepted",
                    "quarantined",
                    "dropped",
                    "seconds",
                ],
                [
                    [
                        str(r["run_date"]),
                        r["stage"],
                        r["source"] or "",
                        r["status"],
                        f"{r['rows_read']:,}",
                        f"{r['rows_accepted']:,}",
                        f"{r['rows_quarantined']:,}",
                        f"{r['rows_dropped']:,}",
                        f"{r['duration_s']:.0f}",
                    ]
                    for r in rows
                ],
            ),
        ]
    if is_delta_table(spark, paths.predictions):
        table = read_delta(spark, paths.predictions)
        # Classifiers flag rows; recommenders write k rows per user.
        if spec.recommend is not None and spec.recommend.user in table.columns:
            extra, header = F.countDistinct(spec.recommend.user), "users"
        else:
            extra, header = F.sum("predicted_label"), "flagged"
        preds = (
            table.groupBy("run_date", "model_version")
            .agg(F.count(F.lit(1)).alias("n"), extra.alias("extra"))
            .orderBy("run_date")
            .collect()
        )
        out += [
            "",
            f"predictions ({paths.predictions}):",
            _table(
                ["run date", "model version", "rows", header],
                [
                    [
                        str(r["run_date"]),
                        r["model_version"],
                        f"{r['n']:,}",
                        f"{int(r['extra'] or 0):,}",
                    ]
                    for r in preds
                ],
            ),
        ]
    due = dates_due_again(spark, config)
    if due:
        out += [
            "",
            "dates due again (data landed after they ran; the next nightly or backfill "
            "of each date reruns these stages):",
        ]
        out += [f"  {day}: {' and '.join(stages)} due again" for day, stages in sorted(due.items())]
    name = spec.model_name
    version = champion_version(name)
    out += [
        "",
        f"champion: {name} v{version}" if version else f"champion: none registered for {name}",
    ]
    return "\n".join(out)
