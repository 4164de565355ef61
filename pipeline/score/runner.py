"""The score stage: the run date's feature rows -> champion PipelineModel -> predictions table.

The champion is loaded as a native Spark `PipelineModel` (not `mlflow.pyfunc.spark_udf`, which
moves every row through Python). A champion whose compiled SQL expression was checked against
`transform` at registration (`pipeline.model.compiled`) is scored through that expression, with
no vector UDFs; any other through `transform`. The run date's partition of the predictions table
is replaced atomically (`replaceWhere run_date = D`), so a rerun gives the same content, never
duplicates, and a run killed mid-write leaves the previous complete set (or none) in place.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.console import stage_started
from pipeline.errors import RunError
from pipeline.faults import crash_point
from pipeline.io.audit import LedgerEntry, audited
from pipeline.io.delta import read_delta, table_version
from pipeline.io.lease import tables_lease
from pipeline.io.quarantine import replace_date_quarantine
from pipeline.model.compiled import COMPILED, SCORING_TAG, model_scores
from pipeline.model.inputs import resolve_inputs
from pipeline.names import EVENT_DATE, RUN_DATE
from pipeline.paths import PipelinePaths
from pipeline.score.observe import assess_supervised, log_monitoring, score_lineage
from pipeline.score.predictions import (
    champion_and_features,
    count_today,
    predictions_frame,
    write_predictions,
)
from pipeline.score.recommend import score_recommendations
from pipeline.tracking import configure_mlflow

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from pipeline.config.models import PipelineSpec
    from pipeline.config.stages import ModelInputSpec
    from pipeline.model.registry import Champion

log = logging.getLogger(__name__)


def non_finite(columns: list[str]) -> Column:
    from pyspark.sql import functions as F

    cond = F.lit(False)
    for c in columns:
        v = F.col(c).cast("double")
        cond = cond | (F.isnan(v) | (F.abs(v) == F.lit(float("inf"))))
    return F.coalesce(cond, F.lit(False))


def score_keys(spec: PipelineSpec) -> list[str]:
    """The columns a prediction row keeps to name its input row: the score keys (or the
    feature key), the entity and the event time."""
    features = spec.require_features()
    keys = list(spec.score.keys or features.key_columns)
    for extra in (features.entity, features.event_time):
        if extra is not None and extra not in keys:
            keys.append(extra)
    return keys


def model_inputs(spec: PipelineSpec, rows: DataFrame) -> tuple[ModelInputSpec, list[str]]:
    """The model's inputs as found in the feature rows, and their names; a `RunError` naming
    any the rows lack."""
    model_spec = resolve_inputs(spec, rows.schema)
    inputs = list(model_spec.numeric) + list(model_spec.categorical)
    missing = [c for c in inputs if c not in rows.columns]
    if missing:
        raise RunError(f"the feature table lacks the model's input column(s): {', '.join(missing)}")
    return model_spec, inputs


def score_rows(
    spec: PipelineSpec,
    champ: Champion,
    rows: DataFrame,
    model_spec: ModelInputSpec,
    *,
    keys: list[str],
    features_version: int,
    run_date: dt.date | Column,
) -> tuple[DataFrame, DataFrame, str]:
    """(prediction rows, rows refused for a NaN or infinite input, the path taken: compiled or
    transform) of the champion on `rows` — lazily."""
    # NaN or infinite inputs cannot be imputed meaningfully: quarantine those rows with a reason.
    bad = non_finite(list(model_spec.numeric))
    good_rows, bad_rows = rows.where(~bad), rows.where(bad)
    classification = spec.task == "binary_classification"
    scored, score, path = model_scores(
        champ.model,
        good_rows,
        classification=classification,
        compiled=spec.score.engine == "auto" and champ.tags.get(SCORING_TAG) == COMPILED,
    )
    predictions = predictions_frame(
        scored,
        score,
        keys=keys,
        threshold=champ.threshold,
        model=champ.name,
        version=champ.version,
        mlflow_run_id=champ.run_id,
        features_version=features_version,
        run_date=run_date,
        classification=classification,
    )
    return predictions, bad_rows, path


def non_finite_records(
    bad_rows: DataFrame, keys: list[str], inputs: list[str], *, run_date: Column | None = None
) -> DataFrame:
    """Quarantine records of rows refused for a NaN or infinite model input (with `run_date`,
    each record's run date too)."""
    from pyspark.sql import functions as F

    return bad_rows.select(
        F.to_json(F.struct(*[F.col(c) for c in keys + inputs])).alias("raw_record"),
        F.lit(None).cast("string").alias("source_file"),
        F.lit("non_finite_value").alias("reason"),
        F.lit("a numeric model input is NaN or infinite").alias("detail"),
        *([] if run_date is None else [run_date.cast("date").alias("run_date")]),
    )


def run_score(
    spark: SparkSession, config: AppConfig, *, run_date: dt.date, run_id: str
) -> LedgerEntry:
    """Score the run date; one audit row with the ledger and the monitoring metrics."""
    spec = config.require_pipeline()
    paths = PipelinePaths.of(config)
    # Whatever ran before in this process: the champion is looked up where this config says.
    configure_mlflow(config.mlflow)
    entry = LedgerEntry(run_id=run_id, pipeline=spec.name, stage="score", run_date=run_date)
    stage_started("score", spec.name, str(run_date))
    ttl = config.storage.lease_ttl_seconds
    with (
        tables_lease(spark, paths, ttl, command="score", run_id=run_id),
        audited(spark, paths.audit, entry),
    ):
        if spec.task == "recommendation":
            score_recommendations(spark, config, paths, run_date, entry)
        else:
            _score(spark, config, paths, run_date, entry)
    return entry


def _score(
    spark: SparkSession,
    config: AppConfig,
    paths: PipelinePaths,
    run_date: dt.date,
    entry: LedgerEntry,
) -> None:
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    champ, features_version = champion_and_features(spark, spec, paths)
    rows = read_delta(spark, paths.features, features_version).where(
        F.col(EVENT_DATE) == F.lit(run_date)
    )
    model_spec, inputs = model_inputs(spec, rows)
    keys = score_keys(spec)

    rows = rows.persist()
    if count_today(entry, rows, champ, features_version, f"no feature rows for {run_date}"):
        return

    predictions, bad_rows, path = score_rows(
        spec,
        champ,
        rows,
        model_spec,
        keys=keys,
        features_version=features_version,
        run_date=run_date,
    )
    log.info("writing predictions for %s (scored through %s)", run_date, path)
    crash_point("score.before_write")
    write_predictions(predictions, paths.predictions, run_date)
    crash_point("score.after_write")

    records = non_finite_records(bad_rows, keys, inputs)
    # Replaced per run date: a rerun leaves exactly its own quarantined rows, as the ledger says.
    replace_date_quarantine(
        records,
        paths.quarantine,
        pipeline=spec.name,
        source="score",
        run_id=entry.run_id,
        run_date=run_date,
    )
    crash_point("score.after_quarantine")

    written = read_delta(spark, paths.predictions).where(F.col(RUN_DATE) == F.lit(run_date))
    entry.rows_accepted = written.count()
    entry.rows_quarantined = bad_rows.count()
    if entry.rows_quarantined:
        entry.quarantined_by_reason = {"non_finite_value": entry.rows_quarantined}
    version_written = table_version(spark, paths.predictions)
    if version_written is not None:
        entry.table_versions["predictions"] = version_written

    report = assess_supervised(
        spark,
        paths,
        model=model_spec,
        monitor_spec=spec.monitor,
        nightly=spec.nightly,
        rows=rows,
        rows_today=entry.rows_read,
        written=written,
        run_date=run_date,
        tags=champ.tags,
    )
    rows.unpersist()
    entry.metrics.update(report.metrics)
    entry.reconcile()
    log_monitoring(
        config.mlflow,
        spec.name,
        run_date,
        report,
        model_name=champ.name,
        model_version=champ.version,
        inputs=score_lineage(paths, entry),
        tags={SCORING_TAG: path},
    )
    crash_point("score.after_monitoring")
    if report.failures:
        raise RunError(
            "data drift beyond the failure threshold (predictions were written): "
            + "; ".join(report.failures)
        )
    entry.finish(message="; ".join(report.warnings) or None)
