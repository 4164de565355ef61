"""Nightly scoring end to end: dated predictions with lineage, idempotent reruns, concurrent dates,
bad rows, empty days, a missing champion, resuming a failed night, backfill, kill-and-rerun, drift."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from mlflow import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.cli import main
from pipeline.config import AppConfig
from pipeline.config.stages import MonitorSpec
from pipeline.errors import RunError
from pipeline.io.audit import read_audit
from pipeline.io.delta import read_delta
from pipeline.model.compiled import COMPILED, SCORING_TAG, TRANSFORM
from pipeline.model.evaluate import score_column
from pipeline.model.registry import CHAMPION, load_champion
from pipeline.nightly import run_backfill, run_nightly
from pipeline.paths import PipelinePaths
from pipeline.score import monitor
from pipeline.score.runner import run_score
from pipeline.tracking import configure_mlflow, experiment_name
from tests.helpers import ROOT, make_config

D1, D2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
SPEC = """
name: nt
task: binary_classification
sources:
  ev:
    format: csv
    options: {header: true}
    columns:
      - {name: id, type: string, nullable: false}
      - {name: user, type: string, nullable: false}
      - {name: ts, type: timestamp, nullable: false, format: "yyyy-MM-dd HH:mm:ss"}
      - {name: x, type: double}
      - {name: kind, type: string}
      - {name: y, type: int, nullable: false, allowed: [0, 1]}
features:
  key: [id]
  entity: user
  event_time: ts
  windows: [{column: "*", aggs: [count], over: [1d]}]
  label: {column: y}
model:
  numeric: [x, events_count_1d]
  categorical: [kind]
  impute: {strategy: median}
train:
  metric: areaUnderROC
  folds: 2
  split: {kind: stratified, test_fraction: 0.25, seed: 3}
  candidates:
    - {name: lr, algorithm: logistic_regression, params: {maxIter: 20, regParam: 0.01}}
nightly: {retrain_every_days: 30, retrain_on_drift: false}
"""


def day_lines(day: dt.date, n: int = 300, seed: int = 0, shift: float = 0.0) -> list[str]:
    rng = random.Random(f"{day}-{seed}")
    lines = ["id,user,ts,x,kind,y"]
    for i in range(n):
        x = rng.gauss(shift, 1)
        y = int(x + rng.gauss(0, 0.7) > 0.8)
        ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=int(86399 * i / n))
        lines.append(f"{day}-{i},u{i % 40},{ts:%Y-%m-%d %H:%M:%S},{x:.4f},{rng.choice('abc')},{y}")
    return lines


def drop_day(cfg: AppConfig, day: dt.date, lines: list[str]) -> None:
    folder = Path(PipelinePaths.of(cfg).source_path("ev").removeprefix("file://")) / str(day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.csv").write_text("\n".join(lines) + "\n")


@dataclass
class World:
    cfg: AppConfig
    tmp: Path


def configure(tmp: Path, *extra: str) -> AppConfig:
    return make_config(
        tmp,
        SPEC,
        name="nt",
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"mlflow.artifact_location={tmp}/artifacts",
            f"storage.reports={tmp}/reports",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def world(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("nightly")
    cfg = configure(tmp)
    configure_mlflow(cfg.mlflow)
    drop_day(cfg, D1, day_lines(D1))
    first = run_nightly(spark, cfg, run_date=D1, run_id="night-1")
    assert first.stages == {"ingest": "ran", "features": "ran", "train": "ran", "score": "ran"}
    return World(cfg, tmp)


def score_args(world: World, *extra: str) -> list[str]:
    """`mlpipe score` arguments for the world's pipeline, storage and MLflow store."""
    args = [
        "score",
        "--pipeline",
        "nt",
        "--env",
        "test",
        "--run-date",
        str(D1),
        "--conf-dir",
        str(world.tmp / "conf"),
    ]
    for item in (
        f"storage.landing={world.tmp / 'landing'}",
        f"storage.tables={world.tmp / 'tables'}",
        f"mlflow.tracking_uri=sqlite:///{world.tmp}/mlflow.db",
        *extra,
    ):
        args += ["--set", item]
    return args


def predictions(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    return read_delta(spark, PipelinePaths.of(cfg).predictions).drop("scored_at")


def test_predictions_carry_lineage_to_a_real_model_version_and_delta_version(
    spark: SparkSession, world: World
) -> None:
    cfg, paths = world.cfg, PipelinePaths.of(world.cfg)
    client = MlflowClient()
    champion = client.get_model_version_by_alias("mlpipe-nt", CHAMPION)
    preds = predictions(spark, cfg).where(F.col("run_date") == D1)
    lineage = (
        preds.select("model_name", "model_version", "mlflow_run_id", "features_version")
        .distinct()
        .collect()
    )
    assert len(lineage) == 1
    [row] = lineage
    assert (row.model_name, row.model_version, row.mlflow_run_id) == (
        "mlpipe-nt",
        str(champion.version),
        champion.run_id,
    )
    # The recorded feature-table version really holds the scored rows.
    scored_at_version = read_delta(spark, paths.features, row.features_version).where(
        F.col("event_date") == D1
    )
    assert_df_equality(
        preds.select("id").orderBy("id"), scored_at_version.select("id").orderBy("id")
    )
    threshold = float(champion.tags["decision_threshold"])
    wrong = preds.where(
        F.col("predicted_label") != (F.col("score") >= threshold).cast("int")
    ).count()
    assert wrong == 0


def test_rerunning_a_date_replaces_exactly_its_predictions(
    spark: SparkSession, world: World
) -> None:
    before = predictions(spark, world.cfg)
    run_score(spark, world.cfg, run_date=D1, run_id="rescore")
    assert_df_equality(predictions(spark, world.cfg), before, ignore_row_order=True)


def score_run_tag(cfg: AppConfig, day: dt.date) -> str:
    """The scoring path the latest score run of `day` recorded in MLflow."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=[experiment_name(cfg.mlflow, "nt")],
        filter_string=f"tags.stage = 'score' AND tags.run_date = '{day}'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    return str(runs[0].data.tags[SCORING_TAG])


def test_the_champion_is_scored_through_its_compiled_expression_as_transform_scores(
    spark: SparkSession, world: World
) -> None:
    cfg, paths = world.cfg, PipelinePaths.of(world.cfg)
    champion = MlflowClient().get_model_version_by_alias("mlpipe-nt", CHAMPION)
    # Registration checked the compiled expression against transform on test rows.
    assert champion.tags[SCORING_TAG] == COMPILED
    run_score(spark, cfg, run_date=D1, run_id="compiled")
    assert score_run_tag(cfg, D1) == COMPILED
    model, _, _ = load_champion("mlpipe-nt")
    rows = read_delta(spark, paths.features).where(F.col("event_date") == D1)
    scored = model.transform(rows)
    expected = scored.select("id", score_column(scored).alias("score"))
    written = predictions(spark, cfg).where(F.col("run_date") == D1).select("id", "score")
    assert_approx_df_equality(written, expected, precision=1e-12, ignore_row_order=True)

    # `score.engine: transform` takes MLlib's path for the same champion, with the same scores.
    as_transform = configure(world.tmp, "pipeline.score.engine=transform")
    run_score(spark, as_transform, run_date=D1, run_id="transform")
    assert score_run_tag(cfg, D1) == TRANSFORM
    again = predictions(spark, cfg).where(F.col("run_date") == D1).select("id", "score")
    assert_approx_df_equality(again, expected, precision=1e-12, ignore_row_order=True)
    run_score(spark, cfg, run_date=D1, run_id="compiled-again")


def test_second_night_resumes_after_a_failure_in_the_middle_stage(
    spark: SparkSession, world: World
) -> None:
    drop_day(world.cfg, D2, day_lines(D2))
    broken = configure(
        world.tmp, "pipeline.features.derived=[{name: bad, expr: 'no_such_column + 1'}]"
    )
    with pytest.raises(Exception, match="no_such_column"):
        run_nightly(spark, broken, run_date=D2, run_id="night-2-broken")
    result = run_nightly(spark, world.cfg, run_date=D2, run_id="night-2")
    # Ingest runs every night (late files may have landed); it found nothing new.
    assert result.stages["ingest"] == "ran"
    assert (result.stages["features"], result.stages["score"]) == ("ran", "ran")
    assert result.stages["train"].startswith("not due")
    audit = read_audit(spark, PipelinePaths.of(world.cfg).audit).where(F.col("run_date") == D2)
    got = sorted((r.run_id, r.stage, r.status) for r in audit.collect())
    assert got == sorted(
        [
            ("night-2-broken", "ingest", "succeeded"),
            ("night-2-broken", "features", "failed"),
            ("night-2", "ingest", "noop"),
            ("night-2", "features", "succeeded"),
            ("night-2", "score", "succeeded"),
        ]
    )


def test_unseen_category_is_scored_and_non_finite_input_is_quarantined(
    spark: SparkSession, world: World
) -> None:
    day = dt.date(2026, 3, 12)
    drop_day(
        world.cfg,
        day,
        [
            *day_lines(day),
            f"{day}-unseen,u1,{day} 12:00:00,0.5,zzz,0",
            f"{day}-nan,u2,{day} 12:00:01,NaN,a,0",
        ],
    )
    run_nightly(spark, world.cfg, run_date=day, run_id="unseen")
    paths = PipelinePaths.of(world.cfg)
    scored = predictions(spark, world.cfg).where(F.col("run_date") == day)
    assert scored.where(F.col("id") == f"{day}-unseen").count() == 1
    assert scored.where(F.col("id") == f"{day}-nan").count() == 0
    [q] = (
        read_delta(spark, paths.quarantine)
        .where((F.col("source") == "score") & (F.col("run_date") == day))
        .collect()
    )
    assert (q.reason, q.run_id) == ("non_finite_value", "unseen")
    assert f"{day}-nan" in q.raw_record
    [entry] = (
        read_audit(spark, paths.audit)
        .where((F.col("stage") == "score") & (F.col("run_date") == day))
        .collect()
    )
    assert (entry.rows_read, entry.rows_accepted, entry.rows_quarantined) == (302, 301, 1)
    assert entry.quarantined_by_reason == {"non_finite_value": 1}


def test_two_dates_scored_at_the_same_time_both_commit(spark: SparkSession, world: World) -> None:
    before = predictions(spark, world.cfg)
    errors: list[BaseException] = []

    def score(day: dt.date) -> None:
        try:
            run_score(spark, world.cfg, run_date=day, run_id=f"concurrent-{day}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=score, args=(d,)) for d in (D1, D2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_df_equality(predictions(spark, world.cfg), before, ignore_row_order=True)


def test_empty_day_is_a_recorded_success(spark: SparkSession, world: World) -> None:
    entry = run_score(spark, world.cfg, run_date=dt.date(2026, 3, 20), run_id="empty")
    assert (entry.status, entry.rows_read) == ("noop", 0)
    audit = (
        read_audit(spark, PipelinePaths.of(world.cfg).audit)
        .where(F.col("run_id") == "empty")
        .collect()
    )
    assert [(a.stage, a.status) for a in audit] == [("score", "noop")]


def test_missing_champion_exits_1_with_a_clear_message(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(score_args(world, "pipeline.train.model_name=never-trained"))
    assert code == 1
    assert (
        "model 'never-trained' has no champion yet: run `mlpipe train` first"
        in capsys.readouterr().err
    )


def test_backfill_runs_three_dates_in_order(spark: SparkSession, world: World) -> None:
    days = [dt.date(2026, 3, 3) + dt.timedelta(days=i) for i in range(3)]
    for day in days:
        drop_day(world.cfg, day, day_lines(day))
    results = run_backfill(spark, world.cfg, first=days[0], last=days[-1], run_id="bf")
    assert [r.run_date for r in results] == days
    counts = {
        r.run_date: r["count"]
        for r in predictions(spark, world.cfg).groupBy("run_date").count().collect()
    }
    assert [counts[d] for d in days] == [300, 300, 300]
    # Ingest picked up all three drops on the first date; the next dates had nothing new.
    audit = read_audit(spark, PipelinePaths.of(world.cfg).audit).where(
        F.col("run_id").startswith("bf")
    )
    ingests = sorted(
        (r.run_date, r.status, r.rows_read)
        for r in audit.where(F.col("stage") == "ingest").collect()
    )
    assert ingests == [(days[0], "succeeded", 900), (days[1], "noop", 0), (days[2], "noop", 0)]


def test_scoring_killed_while_its_files_are_written_leaves_the_previous_complete_set(
    spark: SparkSession, world: World
) -> None:
    """Kill the scoring process and its JVM at the moment the new partition's first data file
    appears on disk (written, not yet committed): readers still see the previous complete set,
    and a rerun replaces it with one complete set. A replace that deleted before it wrote would
    leave the date empty or partial here."""
    paths = PipelinePaths.of(world.cfg)
    expected = predictions(spark, world.cfg).where(F.col("run_date") == D1)
    partition = Path(paths.predictions.removeprefix("file://")) / f"run_date={D1}"
    before = set(partition.glob("*.parquet"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *score_args(world)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the JVM dies with the driver
    )
    deadline = time.monotonic() + 300
    killed = False
    while proc.poll() is None and time.monotonic() < deadline:
        if set(partition.glob("*.parquet")) - before:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed, "the scoring run ended before writing a data file"
    assert_df_equality(
        predictions(spark, world.cfg).where(F.col("run_date") == D1).drop("features_version"),
        expected.drop("features_version"),
        ignore_row_order=True,
    )
    run_score(spark, world.cfg, run_date=D1, run_id="after-kill")
    assert_df_equality(
        predictions(spark, world.cfg).where(F.col("run_date") == D1).drop("features_version"),
        expected.drop("features_version"),
        ignore_row_order=True,
    )
    assert read_delta(spark, paths.predictions).where(F.col("run_date") == D1).count() == 300


def test_drift_metrics_separate_drifted_from_stable_data(spark: SparkSession) -> None:
    rng = random.Random(5)
    reference = spark.createDataFrame([(rng.gauss(0, 1),) for _ in range(4000)], "x DOUBLE")
    stable = spark.createDataFrame([(rng.gauss(0, 1),) for _ in range(4000)], "x DOUBLE")
    drifted = spark.createDataFrame([(rng.gauss(1.0, 1),) for _ in range(4000)], "x DOUBLE")
    assert monitor.psi_by_column(reference, stable, ["x"])["x"] < 0.05
    assert monitor.psi_by_column(reference, drifted, ["x"])["x"] > 0.5
    spec = make_monitor_spec()
    report = monitor.assess(
        spec,
        feature_psi={"x": 0.6, "z": 0.01},
        score_psi=0.3,
        nulls={"x": 0.0},
        rows_today=40,
        trailing_mean=100.0,
    )
    assert report.failures == ["x: PSI 0.600 >= 0.5"]
    assert report.warnings == [
        "prediction distribution shifted: PSI 0.300",
        "only 40 rows, 40% of the trailing mean 100",
    ]


def make_monitor_spec() -> MonitorSpec:
    return MonitorSpec(psi_warn=0.2, psi_fail=0.5, null_rate_warn=0.5, row_count_ratio_warn=0.5)


def test_missing_feature_column_is_a_clear_error(spark: SparkSession, world: World) -> None:
    cfg = configure(world.tmp, "pipeline.model.numeric=[x, events_count_1d, ghost]")
    with pytest.raises(
        RunError, match=r"the feature table lacks the model's input column\(s\): ghost"
    ):
        run_score(spark, cfg, run_date=D1, run_id="ghost")
    [audit] = (
        read_audit(spark, PipelinePaths.of(cfg).audit).where(F.col("run_id") == "ghost").collect()
    )
    assert (audit.stage, audit.status) == ("score", "failed")


def drop_file(cfg: AppConfig, day: dt.date, name: str, lines: list[str]) -> None:
    """Another file for a day's folder (a late delivery)."""
    folder = Path(PipelinePaths.of(cfg).source_path("ev").removeprefix("file://")) / str(day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


def late_lines(day: dt.date, n: int, tag: str, *, nan: int = 0) -> list[str]:
    """`n` rows of `day` with their own ids (and `nan` of them with a NaN input)."""
    rows = day_lines(day, n, seed=7)[1:]
    out = ["id,user,ts,x,kind,y"]
    for i, line in enumerate(rows):
        fields = line.split(",")
        fields[0] = f"{day}-{tag}-{i}"
        if i < nan:
            fields[3] = "NaN"
        out.append(",".join(fields))
    return out


def test_late_files_for_a_done_night_are_featurized_and_scored_by_a_rerun_and_by_a_backfill(
    spark: SparkSession, world: World
) -> None:
    from pipeline.status import pipeline_status

    cfg = world.cfg
    night, other = dt.date(2026, 3, 20), dt.date(2026, 3, 21)
    for day in (night, other):
        drop_day(cfg, day, day_lines(day, 100))
        run_nightly(spark, cfg, run_date=day, run_id=f"on-time-{day}")
    for day in (night, other):
        assert predictions(spark, cfg).where(F.col("run_date") == day).count() == 100
        drop_file(cfg, day, "late.csv", late_lines(day, 40, "late"))
    again = run_nightly(spark, cfg, run_date=night, run_id="rerun")
    assert again.stages["ingest"] == "ran"
    assert (again.stages["features"], again.stages["score"]) == ("ran", "ran")
    # The other date was not rerun yet: status shows it due again.
    assert f"{other}: features and score due again" in pipeline_status(spark, cfg)
    run_backfill(spark, cfg, first=other, last=other, run_id="catch-up")
    for day in (night, other):
        scored = predictions(spark, cfg).where(F.col("run_date") == day)
        assert scored.count() == 140
        assert scored.select("id").distinct().count() == 140
        expected = {f"{day}-{i}" for i in range(100)} | {f"{day}-late-{i}" for i in range(40)}
        assert {r.id for r in scored.select("id").collect()} == expected
    assert f"{other}:" not in pipeline_status(spark, cfg)


def test_rescoring_a_date_replaces_its_quarantined_rows_as_its_ledger_counts_them(
    spark: SparkSession, world: World
) -> None:
    from pipeline.features.runner import run_features
    from pipeline.ingest.runner import run_ingest

    cfg = world.cfg
    day = dt.date(2026, 3, 25)
    drop_day(cfg, day, late_lines(day, 20, "first", nan=1))

    def once(run_id: str) -> int:
        run_ingest(spark, cfg, run_date=day, run_id=run_id)
        run_features(spark, cfg, run_date=day, run_id=run_id)
        return run_score(spark, cfg, run_date=day, run_id=run_id).rows_quarantined

    assert once("score-1") == 1
    drop_file(cfg, day, "more.csv", late_lines(day, 10, "more", nan=2))
    assert once("score-2") == 3
    q = read_delta(spark, PipelinePaths.of(cfg).quarantine).where(
        (F.col("source") == "score") & (F.col("run_date") == day)
    )
    assert sorted(r.run_id for r in q.collect()) == ["score-2"] * 3
    assert once("score-3") == 3  # a plain rerun: the same three, not six
    assert q.count() == 3


def test_scoring_records_the_version_that_scored_even_if_the_alias_moves_meanwhile(
    spark: SparkSession, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from pipeline.model.registry import log_and_register
    from pipeline.tracking import ensure_experiment
    from pipeline.train.search import GridResult
    from pipeline.train.supervised import SupervisedTask, fit_final

    cfg, name = world.cfg, "mlpipe-nt"
    client = MlflowClient()
    champion = str(client.get_model_version_by_alias(name, CHAMPION).version)
    rows = read_delta(spark, PipelinePaths.of(cfg).features).where(F.col("event_date") == D1)
    # A different model, registered but not promoted: trained on labels drawn at random.
    shuffled = rows.withColumn("label", F.when(F.rand(9) < 0.5, 1.0).otherwise(0.0))
    point = GridResult("lr", "logistic_regression", 0, {"maxIter": 20, "regParam": 0.01})
    other_model = fit_final(SupervisedTask.of(cfg.require_pipeline()), shuffled, point)
    with mlflow.start_run(experiment_id=ensure_experiment(cfg.mlflow, "nt"), run_name="other"):
        other = log_and_register(spark, other_model, rows, name=name, threshold=0.5, tags={})

    # Another writer promotes it right after scoring looked the champion up.
    moved: list[str] = []

    def promote_after(method: str) -> None:
        real = getattr(MlflowClient, method)

        def looked_up(self: MlflowClient, *args: object, **kwargs: object) -> object:
            found = real(self, *args, **kwargs)
            if not moved:
                moved.append(method)
                real_set = MlflowClient.set_registered_model_alias
                real_set(self, name, CHAMPION, other)
            return found

        monkeypatch.setattr(MlflowClient, method, looked_up)

    promote_after("get_registered_model")
    promote_after("get_model_version_by_alias")
    try:
        run_score(spark, cfg, run_date=D1, run_id="alias-race")
    finally:
        monkeypatch.undo()
        client.set_registered_model_alias(name, CHAMPION, champion)
    assert moved  # the race happened
    model, _, _ = load_champion(name)
    scored = model.transform(rows)
    expected = scored.select("id", score_column(scored).alias("score"))
    written = predictions(spark, cfg).where(F.col("run_date") == D1)
    assert {r.model_version for r in written.select("model_version").distinct().collect()} == {
        champion
    }
    assert_approx_df_equality(
        written.select("id", "score"), expected, precision=1e-12, ignore_row_order=True
    )
