"""The measurements. Each runs in its own process (`bench.py --one NAME`): the dispatcher loads the
configuration and starts Spark (not timed), then the measurement times its own work with a
`Clock` (stopped before any checking) and returns its quality numbers."""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchlib.common import (
    CATEGORICAL,
    FOLDS,
    GBT_PARAMS,
    KEY,
    NUMERIC,
    REG_PARAMS,
    RUN_DATE,
    SEED,
    SPLIT_COL,
    Layout,
    bench_config,
    start_spark,
    uri,
)
from benchlib.procmem import own_hwm_mb
from benchlib.report import regparam_to_c

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from pipeline.config import AppConfig

Quality = dict[str, float | int | str]


class Clock:
    """The timed section of a measurement, with named phases."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.stopped: float | None = None
        self.phases: dict[str, float] = {}
        self._last = 0.0

    def start(self) -> None:
        self.started = self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(now - self._last, 3)
        self._last = now

    def stop(self) -> None:
        if self.stopped is None:
            self.stopped = time.monotonic()

    @property
    def wall_s(self) -> float | None:
        if self.started is None or self.stopped is None:
            return None
        return self.stopped - self.started


@dataclass
class Context:
    """What one measurement process knows."""

    name: str
    rows: int
    rep: int
    layout: Layout
    env: str
    sklearn_jobs: int
    manifest: dict[str, Any]
    scratch: Path
    clock: Clock = field(default_factory=Clock)

    @property
    def table(self) -> str:
        return uri(self.layout.table(self.rows))


Measure = Callable[[Context, "AppConfig", "SparkSession | None"], Quality]


@dataclass(frozen=True)
class Case:
    measure: Measure
    spark: bool
    config: str  # "lr", "gbt", "xgb" or "fraud"


# --------------------------------------------------------------------------------------------------
# Training: logistic regression, 4-point grid x 3 folds
# --------------------------------------------------------------------------------------------------


def _labelled(spark: SparkSession, table: str) -> DataFrame:
    from pyspark.sql import functions as F

    from pipeline.io.delta import read_delta
    from pipeline.names import LABEL

    return read_delta(spark, table).where(F.col(LABEL).isNotNull())


def train_ours(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """Everything `run_train` does before MLflow: split, folds, CV, winner, refit, test metrics."""
    from pipeline.model.evaluate import binary_metrics, choose_threshold
    from pipeline.session import parallelism
    from pipeline.train.search import pick_winner, search_candidates
    from pipeline.train.supervised import SupervisedTask, fit_final, supervised_preparer

    assert spark is not None
    task = SupervisedTask.of(config.require_pipeline())
    cores = parallelism(spark)
    clock = ctx.clock
    clock.start()
    train, test = task.split(_labelled(spark, ctx.table), cores)
    train, test = train.persist(), test.persist()
    n_train, n_test = train.count(), test.count()
    clock.lap("split")
    folded = task.folds(train, cores).persist()
    tspec = task.train
    results = search_candidates(tspec, supervised_preparer(task, folded))
    folded.unpersist()
    winner = pick_winner(results, "areaUnderROC")
    clock.lap("cross_validation")
    final = fit_final(task, train, winner)
    clock.lap("refit")
    assert winner.histogram is not None
    threshold = choose_threshold(winner.histogram, "max_f1")
    metrics, _ = binary_metrics(final.transform(test), threshold)
    clock.lap("evaluate")
    clock.stop()
    return {
        "chosen": f"regParam={winner.params['regParam']}",
        "cv_auc": winner.mean,
        "test_auc": metrics["areaUnderROC"],
        "rows_train": n_train,
        "rows_test": n_test,
    }


def train_ours_halving(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """`train_ours` with successive halving (factor 2: 4 points on 1/4 of each fold's training
    rows, 2 on 1/2, 1 on all) instead of the full grid."""
    from pipeline.config.stages import SearchSpec

    spec = config.require_pipeline()
    assert spec.train is not None
    search = SearchSpec(kind="halving", factor=2, min_fraction=0.1)
    train = spec.train.model_copy(update={"search": search})
    halving = config.model_copy(update={"pipeline": spec.model_copy(update={"train": train})})
    return train_ours(ctx, halving, spark)


def train_ours_full(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """`run_train` itself: the above plus plots, MLflow runs, registry and gate (temp SQLite)."""
    from pipeline.tracking import configure_mlflow
    from pipeline.train.runner import run_train

    assert spark is not None
    configure_mlflow(config.mlflow)
    ctx.clock.start()
    result = run_train(spark, config, run_date=RUN_DATE, run_id=f"bench-{ctx.rep}")
    ctx.clock.stop()
    ctx.clock.phases.update(result.summary.durations_s)
    return {
        "chosen": f"regParam={result.winner.params['regParam']}",
        "cv_auc": result.winner.mean,
        "test_auc": result.test_metrics["areaUnderROC"],
    }


def train_naive_mllib(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """MLlib's CrossValidator over the whole Pipeline (preprocessing refitted per grid point)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    from pipeline.model import sampling
    from pipeline.model.candidates import make_estimator
    from pipeline.model.evaluate import binary_metrics
    from pipeline.model.preprocess import build_preprocessing
    from pipeline.names import LABEL
    from pipeline.session import parallelism
    from pipeline.train.supervised import SupervisedTask

    assert spark is not None
    task = SupervisedTask.of(config.require_pipeline())
    candidate = task.train.candidates[0]
    estimator = make_estimator(candidate, dict(candidate.params), seed=SEED)
    pipeline = Pipeline(stages=[*build_preprocessing(task.model, classification=True), estimator])
    grid = ParamGridBuilder().addGrid(estimator.regParam, REG_PARAMS).build()
    cv = CrossValidator(
        estimator=pipeline,
        estimatorParamMaps=grid,
        evaluator=BinaryClassificationEvaluator(labelCol=LABEL, metricName="areaUnderROC"),
        numFolds=FOLDS,
        foldCol=sampling.FOLD,  # the same folds as ours
        parallelism=1,
        seed=SEED,
    )
    clock = ctx.clock
    clock.start()
    cores = parallelism(spark)
    train, test = task.split(_labelled(spark, ctx.table), cores)
    folded = task.folds(train, cores)
    model = cv.fit(folded)
    clock.lap("cross_validation_and_refit")
    metrics, _ = binary_metrics(model.bestModel.transform(test), 0.5)
    clock.lap("evaluate")
    clock.stop()
    averages = [float(m) for m in model.avgMetrics]
    best = max(range(len(averages)), key=lambda i: averages[i])
    return {
        "chosen": f"regParam={REG_PARAMS[best]}",
        "cv_auc": averages[best],
        "test_auc": metrics["areaUnderROC"],
    }


def _sklearn_preprocessing(*, dense: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    return ColumnTransformer(
        [
            ("num", numeric, NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ],
        sparse_threshold=0.0 if dense else 0.3,
    )


def _read_export(ctx: Context) -> tuple[Any, Any]:
    import pandas as pd

    df = pd.read_parquet(ctx.layout.export(ctx.rows))
    return df[df[SPLIT_COL] == "train"], df[df[SPLIT_COL] == "test"]


def train_sklearn(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """GridSearchCV over C (mapped from regParam), PredefinedSplit on our `_fold`, refit, test AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import Pipeline

    from pipeline.model.sampling import FOLD
    from pipeline.names import LABEL

    clock = ctx.clock
    clock.start()
    train, test = _read_export(ctx)
    clock.lap("read_parquet")
    n_train = len(train)
    c_values = [regparam_to_c(r, n_train) for r in REG_PARAMS]
    search = GridSearchCV(
        Pipeline(
            [
                ("pre", _sklearn_preprocessing(dense=False)),
                ("lr", LogisticRegression(max_iter=100)),
            ]
        ),
        {"lr__C": c_values},
        scoring="roc_auc",
        cv=PredefinedSplit(train[FOLD].to_numpy()),
        n_jobs=ctx.sklearn_jobs,
        refit=True,
    )
    search.fit(train[NUMERIC + CATEGORICAL], train[LABEL].astype(int))
    clock.lap("cross_validation_and_refit")
    scores = search.predict_proba(test[NUMERIC + CATEGORICAL])[:, 1]
    auc = float(roc_auc_score(test[LABEL].astype(int), scores))
    clock.lap("evaluate")
    clock.stop()
    best_c = float(search.best_params_["lr__C"])
    reg = REG_PARAMS[c_values.index(best_c)]
    return {
        "chosen": f"C={best_c:.3g} (regParam={reg})",
        "cv_auc": float(search.best_score_),
        "test_auc": auc,
    }


# --------------------------------------------------------------------------------------------------
# Training: one GBT grid point
# --------------------------------------------------------------------------------------------------


def train_gbt_ours(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """Our refit path with the config's one tree candidate (preprocessing + MLlib's GBT, or
    XGBoost's Spark estimator) and test AUC."""
    from pipeline.model.evaluate import binary_metrics
    from pipeline.session import parallelism
    from pipeline.train.search import GridResult, grid_points
    from pipeline.train.supervised import SupervisedTask, fit_final

    assert spark is not None
    task = SupervisedTask.of(config.require_pipeline())
    candidate = task.train.candidates[0]
    clock = ctx.clock
    clock.start()
    train, test = task.split(_labelled(spark, ctx.table), parallelism(spark))
    train, test = train.persist(), test.persist()
    train.count(), test.count()
    clock.lap("split")
    winner = GridResult(candidate.name, candidate.algorithm, 0, grid_points(candidate)[0])
    final = fit_final(task, train, winner)
    clock.lap("fit")
    metrics, _ = binary_metrics(final.transform(test), 0.5)
    clock.lap("evaluate")
    clock.stop()
    return {"test_auc": metrics["areaUnderROC"]}


def train_gbt_sklearn(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """HistGradientBoostingClassifier with the same depth, iterations and rate, same rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline

    from pipeline.names import LABEL

    clock = ctx.clock
    clock.start()
    train, test = _read_export(ctx)
    clock.lap("read_parquet")
    model = Pipeline(
        [
            ("pre", _sklearn_preprocessing(dense=True)),
            (
                "gbt",
                HistGradientBoostingClassifier(
                    max_depth=GBT_PARAMS["maxDepth"],
                    max_iter=GBT_PARAMS["maxIter"],
                    learning_rate=GBT_PARAMS["stepSize"],
                    early_stopping=False,
                    max_leaf_nodes=None,
                    random_state=SEED,
                ),
            ),
        ]
    )
    model.fit(train[NUMERIC + CATEGORICAL], train[LABEL].astype(int))
    clock.lap("fit")
    scores = model.predict_proba(test[NUMERIC + CATEGORICAL])[:, 1]
    auc = float(roc_auc_score(test[LABEL].astype(int), scores))
    clock.lap("evaluate")
    clock.stop()
    return {"test_auc": auc}


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def _predictions(
    ctx: Context, scored: DataFrame, score: Column, *, classification: bool
) -> DataFrame:
    from pipeline.score.predictions import predictions_frame

    return predictions_frame(
        scored,
        score,
        keys=[KEY],
        threshold=0.5,
        model="bench-lr",
        version="1",
        mlflow_run_id=str(ctx.manifest.get("model_run_id", "")),
        features_version=0,
        run_date=RUN_DATE,
        classification=classification,
    )


def _written(spark: SparkSession, path: str) -> int:
    from pipeline.io.delta import read_delta

    return int(read_delta(spark, path).count())


def _score_saved(ctx: Context, spark: SparkSession, model_path: str, compiled: bool) -> Quality:
    """A saved PipelineModel scored as the score stage does: `model_scores` (the compiled
    expression when asked and the model has one), `predictions_frame`, `write_predictions`."""
    from pyspark.ml import PipelineModel

    from pipeline.io.delta import read_delta
    from pipeline.model.compiled import model_scores
    from pipeline.score.predictions import write_predictions

    out = uri(ctx.scratch / "predictions")
    clock = ctx.clock
    clock.start()
    model = PipelineModel.load(model_path)
    clock.lap("load_model")
    scored, score, path = model_scores(
        model, read_delta(spark, ctx.table), classification=True, compiled=compiled
    )
    write_predictions(_predictions(ctx, scored, score, classification=True), out, RUN_DATE)
    clock.lap("score_and_write")
    clock.stop()
    return {"rows_written": _written(spark, out), "scoring_path": path}


def score_ours(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """The linear champion, compiled when the set-up's check passed (as registration checks)."""
    from pipeline.model.compiled import COMPILED

    assert spark is not None
    compiled = ctx.manifest.get("scoring_path") == COMPILED
    return _score_saved(ctx, spark, str(ctx.manifest["model_path"]), compiled)


def score_tree_ours(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """The tree champion (50 trees of depth 5), compiled when the set-up's check passed."""
    from pipeline.model.compiled import COMPILED

    assert spark is not None
    compiled = ctx.manifest.get("tree_scoring_path") == COMPILED
    return _score_saved(ctx, spark, str(ctx.manifest["tree_model_path"]), compiled)


def score_tree_transform(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """The same tree champion through MLlib's `transform`."""
    assert spark is not None
    return _score_saved(ctx, spark, str(ctx.manifest["tree_model_path"]), False)


def score_spark_udf(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """mlflow.pyfunc.spark_udf on the same model (logged once), same rows, same Delta write."""
    import mlflow
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    from pipeline.io.delta import read_delta
    from pipeline.score.predictions import write_predictions

    assert spark is not None
    mlflow.set_tracking_uri(str(ctx.manifest["tracking_uri"]))
    out = uri(ctx.scratch / "predictions")
    clock = ctx.clock
    clock.start()
    predict = mlflow.pyfunc.spark_udf(
        spark, str(ctx.manifest["model_uri"]), env_manager="local", result_type="double"
    )
    clock.lap("load_model")
    rows = read_delta(spark, ctx.table)
    inputs = [F.col(c) for c in NUMERIC + CATEGORICAL]
    scored = rows.withColumn("prediction", predict(F.struct(*inputs)))
    score = F.col("prediction").cast("double")
    write_predictions(_predictions(ctx, scored, score, classification=False), out, RUN_DATE)
    clock.lap("score_and_write")
    clock.stop()
    return {"rows_written": _written(spark, out)}


def score_io_floor(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """The I/O floor: a plain Delta -> Delta copy of the same rows."""
    from pipeline.io.delta import read_delta

    assert spark is not None
    out = uri(ctx.scratch / "copy")
    clock = ctx.clock
    clock.start()
    read_delta(spark, ctx.table).write.format("delta").mode("overwrite").save(out)
    clock.stop()
    return {"rows_written": _written(spark, out)}


# --------------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------------


def ingest_ours(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """`run_ingest` on the generated fraud files (fresh tables: every repetition ingests them)."""
    from pipeline.ingest.runner import run_ingest

    assert spark is not None
    clock = ctx.clock
    clock.start()
    [entry] = run_ingest(spark, config, run_date=RUN_DATE, run_id=f"bench-{ctx.rep}")
    clock.stop()
    return {
        "rows_read": entry.rows_read,
        "rows_accepted": entry.rows_accepted,
        "rows_quarantined": entry.rows_quarantined,
    }


def ingest_plain(ctx: Context, config: AppConfig, spark: SparkSession | None) -> Quality:
    """`spark.read.csv` with the declared schema (no validation) -> Delta append, same files."""
    assert spark is not None
    source = config.require_pipeline().source()
    ddl = ", ".join(f"`{c.name}` {c.type.upper()}" for c in source.columns)
    formats = [c.format for c in source.columns if c.type == "timestamp" and c.format]
    reader = spark.read.options(
        **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in source.options.items()}
    )
    if formats:
        reader = reader.option("timestampFormat", formats[0])
    out = uri(ctx.scratch / "bronze")
    clock = ctx.clock
    clock.start()
    files = [str(f) for f in ctx.manifest["ingest_files"]]
    reader.schema(ddl).csv(files).write.format("delta").mode("append").save(out)
    clock.stop()
    return {"rows_written": _written(spark, out)}


CASES: dict[str, Case] = {
    "train_ours": Case(train_ours, True, "lr"),
    "train_ours_halving": Case(train_ours_halving, True, "lr"),
    "train_ours_full": Case(train_ours_full, True, "lr"),
    "train_naive_mllib": Case(train_naive_mllib, True, "lr"),
    "train_sklearn": Case(train_sklearn, False, "lr"),
    "train_gbt_ours": Case(train_gbt_ours, True, "gbt"),
    "train_gbt_sklearn": Case(train_gbt_sklearn, False, "gbt"),
    "train_xgb": Case(train_gbt_ours, True, "xgb"),
    "score_ours": Case(score_ours, True, "lr"),
    "score_tree_ours": Case(score_tree_ours, True, "lr"),
    "score_tree_transform": Case(score_tree_transform, True, "lr"),
    "score_spark_udf": Case(score_spark_udf, True, "lr"),
    "score_io_floor": Case(score_io_floor, True, "lr"),
    "ingest_ours": Case(ingest_ours, True, "fraud"),
    "ingest_plain": Case(ingest_plain, True, "fraud"),
}


def warm_up(spark: SparkSession, scratch: Path) -> None:
    """Write and read back a 10-row Delta table: the class loading and JIT of the Delta/Parquet path
    that every new JVM pays once (a nightly run pays it once for all its stages)."""
    path = uri(scratch / "_warmup")
    spark.range(10).selectExpr(
        "id", "cast(id AS DOUBLE) AS x", "cast(id AS STRING) AS s"
    ).write.format("delta").mode("overwrite").save(path)
    spark.read.format("delta").load(path).where("x > 2").count()


def run_one(
    name: str,
    *,
    rows: int,
    rep: int,
    layout: Layout,
    env: str,
    sklearn_jobs: int,
    warmup: bool = True,
) -> dict[str, Any]:
    """Run one measurement in this process; the JSON-ready record (never raises)."""
    import logging

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    case = CASES[name]
    scratch = layout.scratch(name, rows, rep)
    scratch.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        name=name,
        rows=rows,
        rep=rep,
        layout=layout,
        env=env,
        sklearn_jobs=sklearn_jobs,
        manifest=layout.read_manifest(),
        scratch=scratch,
    )
    record: dict[str, Any] = {"name": name, "size": rows, "rep": rep, "pid": os.getpid()}
    spark = None
    try:
        if case.config == "fraud":
            config = bench_config(scratch, pipeline="fraud", env=env, landing=layout.landing)
        else:
            config = bench_config(
                scratch, kind=case.config, features_table=layout.table(rows), env=env
            )
        started = time.monotonic()
        if case.spark:
            spark = start_spark(config, name)
        ctx.clock.phases["spark_start"] = round(time.monotonic() - started, 3)
        if spark is not None and warmup:
            started = time.monotonic()
            warm_up(spark, scratch)
            ctx.clock.phases["warmup"] = round(time.monotonic() - started, 3)
        quality = case.measure(ctx, config, spark)
        record.update(ok=True, wall_s=ctx.clock.wall_s, quality=quality)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        traceback.print_exc()  # to stderr: the run's log file
        record.update(ok=False, error=f"{type(exc).__name__}: {first_line}"[:300])
    if spark is None and "spark_start" in ctx.clock.phases:
        del ctx.clock.phases["spark_start"]
    record["phases"] = ctx.clock.phases
    record["py_hwm_mb"] = own_hwm_mb()
    if spark is not None:
        spark.stop()
    return record
