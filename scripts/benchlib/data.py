"""The set-up step (one process, not measured): the training tables of every size (Spark, Delta),
the base size's Parquet export with the split and folds, the scoring model (saved, and logged once
to a temporary MLflow store), and the generated fraud CSV files for the ingest measurements."""

from __future__ import annotations

import calendar
import math
from typing import TYPE_CHECKING, Any

from benchlib.common import (
    CATEGORICAL,
    GBT_PARAMS,
    INGEST_START,
    KEY,
    LR_MAX_ITER,
    NUMERIC,
    RUN_DATE,
    SCORE_REG_PARAM,
    SEED,
    SPLIT_COL,
    TREE_MODEL_ROWS,
    Layout,
    bench_config,
    start_spark,
    uri,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# The label's signal: a logistic model on the standardised values, a few non-linear terms (so
# trees have something to find) and category effects; the intercept gives ~7% positives.
WEIGHTS = [0.8, -0.6, 0.5, 0.4, 0.35, -0.3, 0.25, 0.2, -0.15, 0.1] + [0.0] * 10
INTERCEPT = -3.5
NULL_SHARE = 0.02  # x01..x05 are missing in 2% of rows (the imputer has work to do)
C1_VALUES = list("abcdefghij")
C2_LEVELS = 50
ROWS_PER_PARTITION = 250_000


def _scale(i: int) -> float:
    """Features on different scales (0.1 .. 100), so standardisation matters."""
    return float(10 ** ((i % 4) - 1))


def training_frame(spark: SparkSession, rows: int) -> DataFrame:
    """`rows` rows: row_id, 20 numeric features, 2 categorical ones, a binary label, dates.

    Deterministic: seeded random columns over a fixed number of partitions per size.
    """
    from pyspark.sql import functions as F

    from pipeline.names import EVENT_DATE, LABEL

    parts = max(2, math.ceil(rows / ROWS_PER_PARTITION))
    raw = spark.range(0, rows, 1, numPartitions=parts).select(
        F.col("id").alias(KEY),
        *[F.randn(SEED + i).alias(f"z{i}") for i in range(len(NUMERIC))],
        *[F.rand(SEED + 100 + i).alias(f"m{i}") for i in range(5)],
        F.rand(SEED + 200).alias("u1"),
        F.rand(SEED + 201).alias("u2"),
        F.rand(SEED + 202).alias("uy"),
        F.rand(SEED + 203).alias("mc"),
    )
    z = [F.col(f"z{i}") for i in range(len(NUMERIC))]
    c1_index = F.floor(F.col("u1") * len(C1_VALUES))
    c2_index = F.floor(F.col("u2") * F.col("u2") * C2_LEVELS)
    logit: Column = F.lit(INTERCEPT)
    for w, zi in zip(WEIGHTS, z, strict=True):
        if w:
            logit = logit + F.lit(w) * zi
    logit = (
        logit
        + F.when(c1_index < 3, 0.7).otherwise(0.0)
        + F.when(c2_index < 5, 0.5).otherwise(0.0)
        + F.when(z[3] > 1, 0.6).otherwise(0.0)
        - F.lit(0.25) * z[4] * z[4]
        + F.lit(0.3) * z[0] * z[1]
    )
    numeric = []
    for i, name in enumerate(NUMERIC):
        value = F.lit(3.0 * i) + F.lit(_scale(i)) * z[i]
        if i < 5:
            value = F.when(F.col(f"m{i}") < NULL_SHARE, F.lit(None)).otherwise(value)
        numeric.append(value.cast("double").alias(name))
    c1 = F.when(F.col("mc") < 0.01, F.lit(None)).otherwise(
        F.element_at(F.array(*[F.lit(v) for v in C1_VALUES]), (c1_index + 1).cast("int"))
    )
    c2 = F.concat(F.lit("k"), F.lpad(c2_index.cast("string"), 2, "0"))
    start = calendar.timegm(RUN_DATE.timetuple())
    return raw.select(
        KEY,
        *numeric,
        c1.alias(CATEGORICAL[0]),
        c2.alias(CATEGORICAL[1]),
        (F.col("uy") < F.lit(1.0) / (F.lit(1.0) + F.exp(-logit))).cast("double").alias(LABEL),
        F.timestamp_seconds(F.lit(start) + F.col(KEY) % 86400).alias("event_time"),
        F.lit(RUN_DATE).cast("date").alias(EVENT_DATE),
    )


def jvm_blas(spark: SparkSession) -> str:
    """The BLAS implementation MLlib loaded (JNIBLAS = native, VectorBLAS/JavaBLAS = pure JVM)."""
    try:
        jvm: Any = spark.sparkContext._jvm
        return str(jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName())
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def setup(
    layout: Layout, *, sizes: list[int], base: int, ingest_rows: int, env: str
) -> dict[str, Any]:
    """Build everything the measurements read; the manifest (also written to the work dir)."""
    import json

    import mlflow
    import mlflow.spark
    from mlflow.models import infer_signature
    from pyspark.sql import functions as F

    from pipeline.generate import generate
    from pipeline.io.delta import read_delta
    from pipeline.model import sampling
    from pipeline.model.compiled import SCORING_TAG, scoring_tags
    from pipeline.model.registry import pip_requirements
    from pipeline.names import LABEL
    from pipeline.session import parallelism
    from pipeline.timing import Laps
    from pipeline.tracking import configure_mlflow, ensure_experiment
    from pipeline.train.search import GridResult
    from pipeline.train.supervised import SupervisedTask, fit_final

    lap = Laps(digits=2)
    timings = lap.durations

    scratch = layout.root / "setup"
    config = bench_config(scratch, kind="lr", features_table=layout.table(base), env=env)
    spark = start_spark(config, "setup")
    lap("spark_start")
    counts: dict[str, dict[str, int]] = {}
    for rows in sorted(set(sizes)):
        table = uri(layout.table(rows))
        training_frame(spark, rows).write.format("delta").mode("overwrite").save(table)
        df = read_delta(spark, table)
        total = df.count()
        positives = df.where(F.col(LABEL) == 1.0).count()
        counts[str(rows)] = {"rows": total, "positives": positives}
        lap(f"table_{rows}")

    # The base size: split and folds exactly as our training computes them, exported to Parquet.
    data = read_delta(spark, uri(layout.table(base))).where(F.col(LABEL).isNotNull())
    task = SupervisedTask.of(config.require_pipeline())
    cores = parallelism(spark)
    train, test = task.split(data, cores)
    train = train.persist()
    folded = task.folds(train, cores)
    columns = [KEY, *NUMERIC, *CATEGORICAL, LABEL]
    export = folded.select(*columns, sampling.FOLD, F.lit("train").alias(SPLIT_COL)).unionByName(
        test.select(*columns, F.lit(-1).alias(sampling.FOLD), F.lit("test").alias(SPLIT_COL))
    )
    export.write.mode("overwrite").parquet(uri(layout.export(base)))
    split_rows = {"train": train.count(), "test": test.count()}
    lap("export")

    # The scoring model: our preprocessing + logistic regression, refit on the training split.
    winner = GridResult(
        "logreg",
        "logistic_regression",
        0,
        {"maxIter": LR_MAX_ITER, "regParam": SCORE_REG_PARAM},
    )
    model = fit_final(task, train, winner)
    model.write().overwrite().save(uri(layout.model))
    # The check registration makes: may the score stage use the compiled expression?
    scoring = scoring_tags(model, test, classification=True)
    inputs = [*NUMERIC, *CATEGORICAL]
    sample = data.select(*inputs).limit(5)
    signature = infer_signature(
        sample.toPandas(), model.transform(sample).select("prediction").toPandas()
    )
    configure_mlflow(config.mlflow)
    experiment_id = ensure_experiment(config.mlflow, "bench")
    with mlflow.start_run(experiment_id=experiment_id, run_name="bench scoring model") as run:
        info = mlflow.spark.log_model(
            model,
            artifact_path="model",
            signature=signature,
            pip_requirements=pip_requirements(),
        )
        run_id = run.info.run_id
    # The tree champion: the same preprocessing + MLlib's GBT of the training benchmark.
    sample = train.limit(TREE_MODEL_ROWS)
    trees = fit_final(task, sample, GridResult("gbt", "gbt", 0, dict(GBT_PARAMS)))
    trees.write().overwrite().save(uri(layout.tree_model))
    tree_scoring = scoring_tags(trees, test, classification=True)
    train.unpersist()
    lap("model")

    report = generate(
        "fraud",
        str(layout.landing / "fraud"),
        days=1,
        rows_per_day=ingest_rows,
        start_date=INGEST_START,
        seed=SEED,
    )
    files = [f for day in report.days for f in day.files]
    ingest_lines = sum(day.rows for day in report.days)
    lap("fraud_files")

    manifest: dict[str, Any] = {
        "sizes": sorted(set(sizes)),
        "base": base,
        "counts": counts,
        "split_rows": split_rows,
        "model_path": uri(layout.model),
        "model_uri": info.model_uri,
        "model_run_id": run_id,
        "scoring_path": scoring[SCORING_TAG],
        "tree_model_path": uri(layout.tree_model),
        "tree_scoring_path": tree_scoring[SCORING_TAG],
        "tree_scoring_reason": tree_scoring.get(f"{SCORING_TAG}.reason", ""),
        "tracking_uri": config.mlflow.tracking_uri,
        "ingest_rows": ingest_rows,
        "ingest_lines": ingest_lines,
        "ingest_files": files,
        "spark_version": spark.version,
        "jvm_blas": jvm_blas(spark),
        "spark_master": config.spark.master,
        "driver_memory": config.spark.driver_memory,
        "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        "timings": timings,
    }
    spark.stop()
    layout.manifest.write_text(json.dumps(manifest, indent=2))
    return manifest
