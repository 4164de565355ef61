"""Training end to end on data built so that one candidate is truly better: selection, fold
metrics in MLflow, reproducibility, the threshold never seeing test rows, the champion gate and a
registry round trip by alias."""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from chispa import assert_approx_df_equality
from mlflow import MlflowClient
from mlflow.entities import RunInputs
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from pipeline.config import AppConfig
from pipeline.io.audit import read_audit
from pipeline.io.delta import read_delta
from pipeline.lineage import version_model_id
from pipeline.model import bootstrap
from pipeline.model.evaluate import score_histogram, selection_metric
from pipeline.model.registry import (
    CHAMPION,
    GateDecision,
    GateInputs,
    gate_and_promote,
    load_champion,
    log_and_register,
)
from pipeline.model.sampling import with_folds
from pipeline.names import LABEL
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.session import parallelism
from pipeline.tracking import configure_mlflow, ensure_experiment
from pipeline.train import policy
from pipeline.train.runner import TrainResult, record_unrecorded_promotion, run_train
from pipeline.train.search import GridResult, pick_winner, search_candidates
from pipeline.train.supervised import SupervisedTask, fit_final, supervised_preparer
from tests.helpers import make_config

RUN_DATE = dt.date(2026, 1, 10)
SPEC = """
name: sel
task: binary_classification
sources:
  ev: {format: csv, columns: [{name: id, type: string}]}
features: {key: [id], entity: id, event_time: ts, label: {column: y}}
model:
  numeric: [x1, x2, noise]
  categorical: [c]
  impute: {strategy: median}
  scale: standard
train:
  metric: areaUnderPR
  folds: 2
  seed: 5
  split: {kind: stratified, test_fraction: 0.3, seed: 1}
  threshold: {rule: max_f1}
  gate: {margin: 0.001}
  model_name: sel-model
  candidates:
    - {name: linear, algorithm: logistic_regression, params: {maxIter: 20}, grid: {regParam: [0.0, 0.1]}}
    - {name: trees, algorithm: gbt, params: {maxIter: 15, maxDepth: 3}}
"""


def write_features(spark: SparkSession, cfg: AppConfig, n: int = 1500) -> None:
    """y = (x1 > 0) xor (x2 > 0), 3% flipped: trees can learn it, a linear model cannot."""
    rng = random.Random(11)
    rows = []
    for i in range(n):
        x1, x2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
        y = float((x1 > 0) != (x2 > 0))
        if rng.random() < 0.03:
            y = 1.0 - y
        ts = dt.datetime(2026, 1, 10) + dt.timedelta(seconds=17 * i)
        rows.append((f"r{i}", ts, RUN_DATE, x1, x2, rng.gauss(0, 1), rng.choice("abc"), y))
    df = spark.createDataFrame(
        rows,
        "id STRING, ts TIMESTAMP, event_date DATE, x1 DOUBLE, x2 DOUBLE, noise DOUBLE, c STRING, y DOUBLE",
    ).withColumn(LABEL, F.col("y"))
    df.write.format("delta").mode("overwrite").partitionBy("event_date").save(
        PipelinePaths.of(cfg).features
    )


def training_data(spark: SparkSession, cfg: AppConfig, *, version: int) -> DataFrame:
    """The labelled rows training reads for RUN_DATE, at a version of the feature table."""
    spec = cfg.require_pipeline()
    table = read_delta(spark, PipelinePaths.of(cfg).features, version)
    return policy.labelled_window(table, spec.nightly.training_window(RUN_DATE))


def task_of(cfg: AppConfig) -> SupervisedTask:
    return SupervisedTask.of(cfg.require_pipeline())


def split(spark: SparkSession, cfg: AppConfig, data: DataFrame) -> tuple[DataFrame, DataFrame]:
    return task_of(cfg).split(data, parallelism(spark))


@dataclass
class Trained:
    cfg: AppConfig
    first: TrainResult
    second: TrainResult


@pytest.fixture(scope="module")
def trained(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    tmp = tmp_path_factory.mktemp("train")
    cfg = make_config(
        tmp,
        SPEC,
        name="sel",
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"mlflow.artifact_location={tmp}/artifacts",
            f"storage.reports={tmp}/reports",
        ],
    )
    configure_mlflow(cfg.mlflow)
    write_features(spark, cfg)
    first = run_train(spark, cfg, run_date=RUN_DATE, run_id="train-1")
    second = run_train(spark, cfg, run_date=RUN_DATE, run_id="train-2")
    return Trained(cfg, first, second)


def test_selection_picks_the_truly_better_candidate(trained: Trained) -> None:
    result = trained.first
    assert result.winner.candidate == "trees"
    best_linear = max(r.mean for r in result.summary.candidates if r.candidate == "linear")
    assert result.winner.mean > best_linear + 0.2
    assert result.test_metrics["areaUnderROC"] > 0.9
    assert result.decision.promoted
    assert result.decision.reason == "first model: no champion yet"


def test_every_candidate_logs_every_fold_metric(trained: Trained) -> None:
    client = MlflowClient()
    parent = client.get_run(trained.first.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    by_name = {c.info.run_name: c.data.metrics for c in children}
    assert set(by_name) == {"linear", "trees"}
    for name, metrics in by_name.items():
        folds = [metrics[f"cv_areaUnderPR_fold_{i}"] for i in range(2)]
        expected = next(
            r for r in trained.first.summary.candidates if r.candidate == name and r.folds == folds
        )
        assert metrics["cv_areaUnderPR_mean"] == pytest.approx(expected.mean)
        assert metrics["cv_areaUnderPR_std"] == pytest.approx(expected.std)
    assert parent.data.params["features_version"] == "0"
    assert parent.data.tags["spark_version"].startswith("4.")
    assert {"overfit_gap_cv_minus_test", "test_areaUnderPR", "duration_s.cross_validation"} <= set(
        parent.data.metrics
    )
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "evaluation")}
    assert {
        "evaluation/roc_curve.png",
        "evaluation/pr_curve.png",
        "evaluation/confusion_matrix.png",
        "evaluation/calibration.png",
        "evaluation/feature_importance.png",
        "evaluation/summary.json",
    } <= artifacts


def test_same_config_data_and_seed_give_the_same_winner_and_metrics(trained: Trained) -> None:
    a, b = trained.first, trained.second
    assert (a.winner.candidate, a.winner.params) == (b.winner.candidate, b.winner.params)
    for ra, rb in zip(a.summary.candidates, b.summary.candidates, strict=True):
        assert ra.folds == pytest.approx(rb.folds, abs=1e-6)
    assert a.test_metrics == pytest.approx(b.test_metrics, abs=1e-6)
    assert a.summary.threshold == b.summary.threshold
    # An equal model does not beat the champion by the margin: it stays registered, unpromoted.
    assert not b.decision.promoted
    assert (
        str(MlflowClient().get_model_version_by_alias("sel-model", CHAMPION).version)
        == a.model_version
    )


def test_champion_loads_by_alias_and_predicts_like_the_trained_model(
    spark: SparkSession, trained: Trained
) -> None:
    cfg = trained.cfg
    data = training_data(spark, cfg, version=0)
    train, test = split(spark, cfg, data)
    fresh = fit_final(task_of(cfg), train, trained.first.winner)
    champion, version, threshold = load_champion("sel-model")
    assert (version, threshold) == (trained.first.model_version, trained.first.summary.threshold)
    cols: list[Column | str] = [
        "id",
        "prediction",
        vector_to_array(F.col("probability"))[1].alias("p"),
    ]
    # Saved doubles round-trip exactly; a refit may differ in the last bits of a float sum.
    assert_approx_df_equality(
        champion.transform(test).select(*cols),
        fresh.transform(test).select(*cols),
        precision=1e-9,
        ignore_row_order=True,
    )


def test_degraded_model_trained_on_shuffled_labels_is_never_promoted(
    spark: SparkSession, trained: Trained
) -> None:
    cfg = trained.cfg
    data = training_data(spark, cfg, version=0)
    train, test = split(spark, cfg, data)
    shuffled = train.withColumn(LABEL, F.when(F.rand(3) < 0.5, 1.0).otherwise(0.0))
    degraded = fit_final(task_of(cfg), shuffled, trained.first.winner)
    experiment_id = ensure_experiment(cfg.mlflow, "sel")
    with mlflow.start_run(experiment_id=experiment_id, run_name="degraded"):
        version = log_and_register(spark, degraded, test, name="sel-model", threshold=0.5, tags={})
        decision = gate_and_promote(
            "sel-model",
            version,
            degraded,
            GateInputs("areaUnderPR", lambda m: selection_metric(m.transform(test), "areaUnderPR")),
            margin=0.0,
            higher_is_better=True,
        )
    assert not decision.promoted
    assert decision.champion_metric is not None
    assert decision.challenger_metric is not None
    assert decision.challenger_metric < decision.champion_metric - 0.2
    assert (
        str(MlflowClient().get_model_version_by_alias("sel-model", CHAMPION).version)
        == trained.first.model_version
    )


def test_threshold_selection_and_preprocessing_never_use_test_rows(
    spark: SparkSession, trained: Trained
) -> None:
    """Mirror x1 on every test row (labels, hence the split, unchanged): cross-validation, the
    threshold and every fitted preprocessing statistic stay exactly the same; only test metrics move."""
    from pyspark.ml.feature import ImputerModel, StandardScalerModel

    cfg = trained.cfg
    paths = PipelinePaths.of(cfg)
    _, test = split(spark, cfg, training_data(spark, cfg, version=0))
    test_ids = [r.id for r in test.select("id").collect()]
    table = read_delta(spark, paths.features, 0)
    mirrored = table.withColumn(
        "x1", F.when(F.col("id").isin(test_ids), -F.col("x1")).otherwise(F.col("x1"))
    )
    mirrored.write.format("delta").mode("overwrite").save(paths.features)
    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train-3")

    first = trained.first
    assert result.features_version == 1
    # Equal up to the order of Spark's floating-point sums.
    for again, before in zip(result.summary.candidates, first.summary.candidates, strict=True):
        assert again.folds == pytest.approx(before.folds, abs=1e-9)
    assert result.summary.threshold == first.summary.threshold
    assert result.test_metrics["areaUnderROC"] < 0.2 < first.test_metrics["areaUnderROC"]

    def fitted_stats(version: int) -> tuple[list[float], list[float], list[float]]:
        train, _ = split(spark, cfg, training_data(spark, cfg, version=version))
        stages = fit_final(task_of(cfg), train, first.winner).stages
        imputer = next(s for s in stages if isinstance(s, ImputerModel))
        scaler = next(s for s in stages if isinstance(s, StandardScalerModel))
        surrogates = [float(v) for v in imputer.surrogateDF.first()]  # type: ignore[union-attr]
        return surrogates, list(scaler.mean.toArray()), list(scaler.std.toArray())

    assert fitted_stats(0) == fitted_stats(1)


def test_report_files_are_written(trained: Trained, tmp_path: Path) -> None:
    report = trained.first.report_dir
    assert {p.name for p in report.iterdir()} >= {
        "summary.json",
        "summary.md",
        "roc_curve.png",
        "pr_curve.png",
    }
    assert "Winner:** trees" in (report / "summary.md").read_text()


HALVING_SPEC = (
    SPEC.replace("name: sel", "name: halv")
    .replace("grid: {regParam: [0.0, 0.1]}", "grid: {regParam: [0.0, 0.01, 0.1, 1.0]}")
    .replace(
        "params: {maxIter: 15, maxDepth: 3}}", "params: {maxIter: 15}, grid: {maxDepth: [2, 3]}}"
    )
    + "  search: {kind: halving, factor: 3, min_fraction: 0.1}\n"
)


def test_successive_halving_finds_the_full_grid_winner_on_fewer_rows(
    spark: SparkSession, trained: Trained, tmp_path: Path
) -> None:
    halving = make_config(tmp_path, HALVING_SPEC, name="halv")
    grid = make_config(
        tmp_path / "grid", HALVING_SPEC.replace("kind: halving", "kind: grid"), name="halv"
    )
    data = training_data(spark, trained.cfg, version=0)
    train, _ = split(spark, trained.cfg, data)
    folded = with_folds(train, key=["id"], folds=2, seed=5, label=LABEL).persist()

    def search(cfg: AppConfig) -> list[GridResult]:
        task = task_of(cfg)
        return search_candidates(task.train, supervised_preparer(task, folded))

    full = search(grid)
    halved = search(halving)
    folded.unpersist()

    # 6 points: all on a third of each fold's training rows, the best 2 on all rows.
    assert sorted(r.fraction for r in halved) == [1 / 3] * 4 + [1.0] * 2
    assert all(len(r.rungs) == (2 if r.fraction == 1.0 else 1) for r in halved)
    work = sum(f for r in halved for f, _ in r.rungs)
    assert work == pytest.approx(6 / 3 + 2)
    assert work < len(full)
    best_full, best_halved = pick_winner(full, "areaUnderPR"), pick_winner(halved, "areaUnderPR")
    assert (best_halved.candidate, best_halved.params) == (best_full.candidate, best_full.params)
    assert best_halved.candidate == "trees"
    # The last rung is the full grid's computation for the survivors: the same fold metrics.
    assert best_halved.fold_metrics == pytest.approx(best_full.fold_metrics, abs=1e-12)


def test_bootstrap_gate_promotes_a_clear_gain_and_refuses_noise(
    spark: SparkSession, trained: Trained
) -> None:
    cfg = trained.cfg
    train, test = split(spark, cfg, training_data(spark, cfg, version=0))
    shuffled = train.withColumn(LABEL, F.when(F.rand(3) < 0.5, 1.0).otherwise(0.0)).persist()

    def inputs(metric: str) -> GateInputs:
        return GateInputs(
            metric,
            lambda m: selection_metric(m.transform(test), metric),
            lambda a, b: bootstrap.supervised_gains(
                a.transform(test),
                b.transform(test),
                key=["id"],
                metric=metric,
                replicates=60,
                seed=5,
            ),
        )

    good = fit_final(task_of(cfg), train, trained.first.winner)
    degraded = fit_final(task_of(cfg), shuffled, trained.first.winner)
    experiment_id = ensure_experiment(cfg.mlflow, "sel")

    def register(model: PipelineModel, name: str) -> str:
        # One run per logged model, as in training: a run's "model" artifact holds one model.
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"bootstrap {name}"):
            return log_and_register(spark, model, test, name=name, threshold=0.5, tags={})

    def gate_good_over_degraded(name: str, margin: float) -> GateDecision:
        first = register(degraded, name)
        opening = gate_and_promote(
            name, first, degraded, inputs("areaUnderPR"), margin=0.0, higher_is_better=True
        )
        assert opening.promoted  # the first model, whatever it is
        return gate_and_promote(
            name,
            register(good, name),
            good,
            inputs("areaUnderPR"),
            margin=margin,
            higher_is_better=True,
        )

    clear = gate_good_over_degraded("boot-clear", 0.05)
    assert clear.challenger_metric is not None
    assert clear.champion_metric is not None
    assert clear.gain_lower_bound is not None
    point = clear.challenger_metric - clear.champion_metric
    # A margin between the bound and the point gain: the point gain alone would promote.
    unsure = gate_good_over_degraded("boot-unsure", (clear.gain_lower_bound + point) / 2)
    assert clear.promoted
    assert 0.05 < clear.gain_lower_bound < point
    assert "95% lower bound of the gain" in clear.reason
    assert not unsure.promoted
    assert unsure.gain_lower_bound == clear.gain_lower_bound  # same replicates, same seed
    assert str(MlflowClient().get_model_version_by_alias("boot-unsure", CHAMPION).version) == "1"


def test_bootstrap_gains_with_sample_weights_spread_around_the_weighted_gain(
    spark: SparkSession,
) -> None:
    """Heavy rows (weight 9) favour the challenger, light ones the champion: weighted, the
    challenger's accuracy gain is +0.35 (0.90 vs 0.55); counted row by row it is -0.25."""
    rows = []
    for i in range(400):
        y = float(i % 2)
        heavy = i < 200
        challenger = y if heavy else 1.0 - y
        champion = y if (not heavy or i < 100) else 1.0 - y
        rows.append((i, y, 9.0 if heavy else 1.0, challenger, champion))
    df = spark.createDataFrame(rows, f"id INT, {LABEL} DOUBLE, w DOUBLE, a DOUBLE, b DOUBLE")

    def gains(weight: str | None) -> list[float]:
        return bootstrap.supervised_gains(
            df.withColumnRenamed("a", "prediction"),
            df.withColumnRenamed("b", "prediction"),
            key=["id"],
            metric="accuracy",
            replicates=40,
            seed=3,
            weight=weight,
        )

    weighted, unweighted = gains("w"), gains(None)
    assert len(weighted) == 40
    assert abs(sum(weighted) / 40 - 0.35) < 0.03
    assert min(weighted) > 0.25
    assert abs(sum(unweighted) / 40 + 0.25) < 0.03


def test_histogram_areas_match_mllib_within_bin_resolution(
    spark: SparkSession, trained: Trained
) -> None:
    cfg = trained.cfg
    _, test = split(spark, cfg, training_data(spark, cfg, version=0))
    champion, _, _ = load_champion("sel-model")
    predictions = champion.transform(test)
    hist = score_histogram(predictions)
    for metric in ("areaUnderROC", "areaUnderPR"):
        assert hist.area(metric) == pytest.approx(selection_metric(predictions, metric), abs=5e-3)


def test_the_gate_fails_the_run_when_the_registry_cannot_be_read(
    spark: SparkSession, trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that does not answer must not read as "no champion yet": that would promote
    any challenger unchecked."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    from pipeline.errors import RunError

    cfg = trained.cfg
    train, test = split(spark, cfg, training_data(spark, cfg, version=0))
    shuffled = train.withColumn(LABEL, F.when(F.rand(4) < 0.5, 1.0).otherwise(0.0))
    degraded = fit_final(task_of(cfg), shuffled, trained.first.winner)
    experiment_id = ensure_experiment(cfg.mlflow, "sel")
    with mlflow.start_run(experiment_id=experiment_id, run_name="registry-down"):
        version = log_and_register(spark, degraded, test, name="sel-model", threshold=0.5, tags={})

    def unavailable(*args: object, **kwargs: object) -> None:
        raise MlflowException("the registry is briefly down", error_code=TEMPORARILY_UNAVAILABLE)

    monkeypatch.setattr(MlflowClient, "get_registered_model", unavailable)
    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", unavailable)
    inputs = GateInputs("areaUnderPR", lambda m: selection_metric(m.transform(test), "areaUnderPR"))
    with pytest.raises(RunError, match="cannot read model 'sel-model' from the registry"):
        gate_and_promote("sel-model", version, degraded, inputs, margin=0.0, higher_is_better=True)
    monkeypatch.undo()
    champion = MlflowClient().get_model_version_by_alias("sel-model", CHAMPION)
    assert str(champion.version) == trained.first.model_version


def test_a_champion_whose_run_stopped_before_its_ledger_row_gets_that_row_once(
    spark: SparkSession, trained: Trained
) -> None:
    """Killed between the alias move and the ledger row, a training run leaves a champion and no
    row; the next run under the lease writes the row the version carries, and only once."""
    from delta.tables import DeltaTable

    cfg = trained.cfg
    audit = PipelinePaths.of(cfg).audit
    champion = MlflowClient().get_model_version_by_alias("sel-model", CHAMPION)
    promoted_by = next(
        r for r in (trained.first, trained.second) if r.model_version == str(champion.version)
    )
    run_id = "train-1" if promoted_by is trained.first else "train-2"
    volatile = ("finished_at", "duration_s")
    mine = F.col("run_id") == run_id
    before = read_audit(spark, audit).where(mine).drop(*volatile)
    written = before.collect()
    assert [r["status"] for r in written] == ["succeeded"], written

    DeltaTable.forPath(spark, audit).delete(mine)  # the state such a kill leaves
    recorded = record_unrecorded_promotion(spark, cfg)

    assert recorded is not None
    assert recorded.run_id == run_id
    assertDataFrameEqual(read_audit(spark, audit).where(mine).drop(*volatile), written)
    assert record_unrecorded_promotion(spark, cfg) is None
    assert read_audit(spark, audit).where(mine).count() == 1


def test_training_run_logs_the_feature_table_version_as_mlflow_datasets_linked_to_the_model(
    trained: Trained,
) -> None:
    configure_mlflow(trained.cfg.mlflow)
    client = MlflowClient()
    features = PipelinePaths.of(trained.cfg).features
    first = _inputs(client, trained.first.mlflow_run_id).dataset_inputs
    second = _inputs(client, trained.second.mlflow_run_id).dataset_inputs
    by_name = {i.dataset.name: i for i in first}
    contexts = {
        n: {t.key: t.value for t in i.tags}["mlflow.data.context"] for n, i in by_name.items()
    }
    assert contexts == {"features.train": "training", "features.test": "evaluation"}
    for side in ("train", "test"):
        dataset = by_name[f"features.{side}"].dataset
        assert dataset.source_type == "delta_table"
        assert _json(dataset.source) == {"path": features, "delta_table_version": 0}
        assert _json(dataset.profile)["num_rows"] == trained.first.summary.rows[side]
    # A digest names the input: the same rows on a second run, other rows on the other side.
    digests = {i.dataset.name: i.dataset.digest for i in first}
    assert digests == {i.dataset.name: i.dataset.digest for i in second}
    assert digests["features.train"] != digests["features.test"]

    # The registered version's logged model carries the test metrics, each with its dataset.
    version = client.get_model_version("sel-model", trained.first.model_version)
    model_id = version_model_id("sel-model", trained.first.model_version)
    assert model_id is not None
    assert version.source == f"models:/{model_id}"
    model = client.get_logged_model(model_id)
    assert model.source_run_id == trained.first.mlflow_run_id
    linked = {(m.key, m.dataset_name, m.dataset_digest): m.value for m in model.metrics or []}
    for key, value in trained.first.test_metrics.items():
        assert linked[(f"test_{key}", "features.test", digests["features.test"])] == (
            pytest.approx(value)
        )
    # And an input example: five test rows of the model's input columns.
    example = Path(
        mlflow.artifacts.download_artifacts(f"{model.artifact_location}/input_example.json")
    )
    rows = json.loads(example.read_text())
    assert len(rows["data"]) == 5
    assert {"x1", "x2", "noise", "c"} <= set(rows["columns"])


def test_score_run_logs_the_rows_it_read_the_partition_it_wrote_and_the_champion_it_used(
    spark: SparkSession, trained: Trained
) -> None:
    cfg = trained.cfg
    configure_mlflow(cfg.mlflow)
    entry = run_score(spark, cfg, run_date=RUN_DATE, run_id="score-lineage")
    client = MlflowClient()
    experiment = ensure_experiment(cfg.mlflow, "sel")
    [run] = client.search_runs([experiment], filter_string="tags.stage = 'score'")
    inputs = _inputs(client, run.info.run_id)
    by_name = {i.dataset.name: i for i in inputs.dataset_inputs}
    paths = PipelinePaths.of(cfg)
    written = read_delta(spark, paths.predictions).where(F.col("run_date") == F.lit(RUN_DATE))
    expected = {
        "features": (paths.features, entry.table_versions["features"], entry.rows_read, "scoring"),
        "predictions": (
            paths.predictions,
            entry.table_versions["predictions"],
            written.count(),
            "predictions",
        ),
    }
    got = {
        name: (
            _json(i.dataset.source)["path"],
            _json(i.dataset.source)["delta_table_version"],
            _json(i.dataset.profile)["num_rows"],
            {t.key: t.value for t in i.tags}["mlflow.data.context"],
        )
        for name, i in by_name.items()
    }
    assert got == expected
    champion = client.get_model_version_by_alias("sel-model", CHAMPION)
    champion_model = version_model_id("sel-model", champion.version)
    assert champion_model is not None
    assert [m.model_id for m in inputs.model_inputs] == [champion_model]


def _inputs(client: MlflowClient, run_id: str) -> RunInputs:
    inputs = client.get_run(run_id).inputs
    assert inputs is not None, f"run {run_id} has no inputs"
    return inputs


def _json(text: str | None) -> dict[str, Any]:
    assert text is not None
    value = json.loads(text)
    assert isinstance(value, dict)
    return value
