"""A plain tabular data set from YAML alone: no key, no event time, no header, `?` for missing
values, a separate test file, text labels spelt two ways, an instance-weight column.

The data is shaped like the census income table (`docs/YOUR_DATA.md` walks the real one): the
training file's labels are `>50K` / `<=50K`, the official test file's end with a period.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.config import AppConfig
from pipeline.features.runner import run_features
from pipeline.ingest.runner import run_ingest
from pipeline.io.delta import read_delta
from pipeline.model.registry import current_champion
from pipeline.names import LABEL
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.tracking import configure_mlflow
from pipeline.train.runner import run_train
from tests.helpers import assert_config_refused, make_config

RUN_DATE = dt.date(2026, 2, 1)

CENSUS = """
name: census
task: binary_classification
sources:
  adult:
    format: csv
    options: {header: false, nullValue: "?", ignoreLeadingWhiteSpace: true}
    columns:
      - {name: age, type: int, nullable: false, min: 0}
      - {name: workclass, type: string}
      - {name: fnlwgt, type: double, nullable: false, min: 0}
      - {name: education_num, type: int}
      - {name: hours_per_week, type: int}
      - {name: income, type: string, nullable: false}
features:
  label:
    column: income
    positive: [">50K", ">50K."]
    negative: ["<=50K", "<=50K."]
model:
  exclude: [fnlwgt]
train:
  metric: areaUnderROC
  folds: 2
  weight_column: fnlwgt
  split: {kind: source, test: "adult.test"}
  candidates:
    - {name: lr, algorithm: logistic_regression, params: {maxIter: 20}, grid: {regParam: [0.01]}}
"""

WORKCLASSES = ["Private", "Self-emp", "Gov", "?"]


def census_lines(rng: random.Random, n: int, *, period: bool) -> list[str]:
    """Rows whose label follows age, education and hours (plus noise)."""
    out = []
    for _ in range(n):
        age, edu, hours = rng.randint(17, 80), rng.randint(1, 16), rng.randint(10, 70)
        rich = 0.04 * (age - 40) + 0.3 * (edu - 9) + 0.05 * (hours - 40) + rng.gauss(0, 1) > 0
        label = (">50K" if rich else "<=50K") + ("." if period else "")
        weight = round(rng.uniform(1e4, 5e5), 1)
        out.append(f"{age}, {rng.choice(WORKCLASSES)}, {weight}, {edu}, {hours}, {label}")
    return out


def census_world(tmp_path: Path) -> tuple[AppConfig, list[str], list[str]]:
    cfg = make_config(
        tmp_path,
        CENSUS,
        name="census",
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"mlflow.artifact_location={tmp_path}/artifacts",
            f"storage.reports={tmp_path}/reports",
        ],
    )
    folder = Path(PipelinePaths.of(cfg).source_path("adult").removeprefix("file://"))
    folder.mkdir(parents=True)
    rng = random.Random(7)
    train, test = census_lines(rng, 600, period=False), census_lines(rng, 300, period=True)
    test[10] = test[10].rsplit(",", 1)[0] + ", unknown"  # a label in neither list
    (folder / "adult.data").write_text("\n".join(train) + "\n")
    (folder / "adult.test").write_text("\n".join(test) + "\n")
    return cfg, train, test


def test_a_headerless_census_table_with_its_own_test_file_goes_from_yaml_to_predictions(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg, train_lines, test_lines = census_world(tmp_path)
    paths = PipelinePaths.of(cfg)
    configure_mlflow(cfg.mlflow)

    [ingest] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="in")
    assert ingest.rows_accepted == len(train_lines) + len(test_lines)
    features = run_features(spark, cfg, run_date=RUN_DATE, run_id="feat")
    # Every row is its own (no key: nothing is a duplicate); the unknown label is quarantined.
    assert features.dropped_by_reason == {"unknown_label": 1}
    assert features.rows_accepted == len(train_lines) + len(test_lines) - 1

    # Each feature row is known by its file and record number, and its text label is mapped.
    table = read_delta(spark, paths.features)
    expected = [
        (f"{name}:{i}", 1.0 if line.rsplit(",", 1)[1].strip().startswith(">") else 0.0)
        for name, lines in (("adult.data", train_lines), ("adult.test", test_lines))
        for i, line in enumerate(lines, start=1)
        if not line.endswith("unknown")
    ]
    # (the file as Spark spells its URI, `file:/...`: compared by name)
    assert table.where(~F.col("row_id").contains("/landing/census/adult/")).count() == 0
    got = table.select(F.regexp_extract("row_id", r"[^/]*$", 0).alias("row_id"), F.col(LABEL))
    want = spark.createDataFrame(expected, "row_id STRING, label DOUBLE")
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    # A row without an event time belongs to the run date of the batch that ingested it.
    assert {r[0] for r in table.select("event_date").distinct().collect()} == {RUN_DATE}
    quarantined = read_delta(spark, paths.quarantine).where(F.col("source") == "features")
    assert [r.reason for r in quarantined.collect()] == ["unknown_label"]

    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train")
    # The test set is exactly the official test file's labelled rows.
    assert result.summary.rows["test"] == len(test_lines) - 1
    assert result.summary.rows["train"] == len(train_lines)
    # The inputs are every column without another role: not the weight, label, key or file.
    inputs = {name.split("=")[0].split("_is_missing")[0] for name in result.summary.importances}
    assert inputs == {"age", "workclass", "education_num", "hours_per_week"}, inputs

    # The test metric weighs each row by its instance weight: recomputed from the champion.
    champion = current_champion(result.model_name)
    test_rows = table.where(F.col("source_file").endswith("adult.test"))
    predicted = champion.model.transform(test_rows)
    weighted = BinaryClassificationEvaluator(labelCol=LABEL, weightCol="fnlwgt").evaluate(predicted)
    unweighted = BinaryClassificationEvaluator(labelCol=LABEL).evaluate(predicted)
    assert result.summary.test["areaUnderROC"] == pytest.approx(weighted, abs=1e-9)
    assert weighted != pytest.approx(unweighted, abs=1e-6)
    assert weighted > 0.75  # the label follows the inputs: a model that learnt nothing fails

    score = run_score(spark, cfg, run_date=RUN_DATE, run_id="score")
    assert score.rows_accepted == features.rows_accepted
    scored = read_delta(spark, paths.predictions).select("row_id")
    assert_df_equality(scored, table.select("row_id"), ignore_row_order=True, ignore_nullable=True)


def test_record_numbers_follow_the_file_however_spark_splits_and_packs_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = make_config(
        tmp_path,
        """
        name: rows
        task: binary_classification
        sources:
          s:
            format: csv
            options: {header: true}
            columns:
              - {name: n, type: long, nullable: false}
              - {name: text, type: string}
        """,
        name="rows",
    )
    folder = Path(PipelinePaths.of(cfg).source_path("s").removeprefix("file://"))
    folder.mkdir(parents=True)
    sizes = {"big.csv": 3000, "small-1.csv": 3, "small-2.csv": 40}
    for name, count in sizes.items():
        body = "".join(f"{i},{'x' * (i % 17)}\n" for i in range(1, count + 1))
        (folder / name).write_text("n,text\n" + body)
    # Splits of 4 KB: the big file is read as many splits, the small ones are packed together.
    setting = "spark.sql.files.maxPartitionBytes"
    old = spark.conf.get(setting)
    spark.conf.set(setting, "4096")
    try:
        run_ingest(spark, cfg, run_date=RUN_DATE, run_id="in")
    finally:
        if old is None:
            spark.conf.unset(setting)
        else:
            spark.conf.set(setting, old)
    bronze = read_delta(spark, PipelinePaths.of(cfg).bronze("s"))
    got = bronze.select(
        F.regexp_extract("_source_file", r"[^/]*$", 0).alias("file"), "n", "_source_row"
    )
    want = spark.createDataFrame(
        [(name, i, i) for name, count in sizes.items() for i in range(1, count + 1)],
        "file STRING, n LONG, _source_row LONG",
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize(
    ("edit", "key", "phrase"),
    [
        (
            (
                "features:\n  label:",
                "features:\n  windows: [{column: age, aggs: [sum], over: [7d]}]\n  label:",
            ),
            "pipeline.features",
            "window features look back along an entity's timeline: set entity and event_time",
        ),
        (
            ('    positive: [">50K", ">50K."]\n', ""),
            "pipeline.features.label",
            "negative needs positive",
        ),
        (
            ('split: {kind: source, test: "adult.test"}', "split: {kind: source}"),
            "pipeline.train.split",
            "a source split needs `test`",
        ),
        (
            ('split: {kind: source, test: "adult.test"}', "split: {kind: column, test: [a]}"),
            "pipeline.train.split",
            "a column split needs `column`",
        ),
        (
            ("  exclude: [fnlwgt]\n", "  exclude: [fnlwgt]\n  numeric: [age]\n"),
            "pipeline.model",
            "exclude applies when the inputs are found from the feature table",
        ),
    ],
)
def test_a_yaml_only_data_set_is_checked_before_spark_with_the_key_named(
    tmp_path: Path, edit: tuple[str, str], key: str, phrase: str
) -> None:
    old, new = edit
    assert old in CENSUS
    assert_config_refused(tmp_path, CENSUS.replace(old, new), "census", key, phrase)


def test_the_census_yaml_loads_without_key_entity_or_event_time(tmp_path: Path) -> None:
    spec = make_config(tmp_path, CENSUS, name="census").require_pipeline()
    features = spec.require_features()
    assert (features.key_columns, features.time_column, features.entity) == (
        ["row_id"],
        "_run_date",
        None,
    )
    assert spec.require_train().split.test == ["adult.test"]


def _with_test_source(spec: str, columns: str = "*columns") -> str:
    """The census spec with the official test file as a source of its own, named by the split."""
    spec = spec.replace("    columns:\n", "    columns: &columns\n", 1)
    holdout = (
        "  adult_test:\n"
        "    format: csv\n"
        '    options: {header: false, nullValue: "?", ignoreLeadingWhiteSpace: true}\n'
        f"    columns: {columns}\n"
        "features:\n"
    )
    spec = spec.replace("features:\n", holdout, 1)
    return spec.replace('test: "adult.test"', "test: adult_test")


def test_a_source_named_by_the_split_brings_the_test_rows_from_its_own_folder(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = make_config(
        tmp_path,
        _with_test_source(CENSUS),
        name="census",
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"mlflow.artifact_location={tmp_path}/artifacts",
            f"storage.reports={tmp_path}/reports",
        ],
    )
    paths = PipelinePaths.of(cfg)
    rng = random.Random(7)
    lines = {"adult": census_lines(rng, 400, period=False)}
    lines["adult_test"] = census_lines(rng, 200, period=True)
    for source, name in (("adult", "adult.data"), ("adult_test", "adult.test")):
        folder = Path(paths.source_path(source).removeprefix("file://"))
        folder.mkdir(parents=True)
        (folder / name).write_text("\n".join(lines[source]) + "\n")
    configure_mlflow(cfg.mlflow)

    ingested = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="in")
    assert sorted((e.source, e.rows_accepted) for e in ingested) == [
        ("adult", 400),
        ("adult_test", 200),
    ]
    features = run_features(spark, cfg, run_date=RUN_DATE, run_id="feat")
    assert (features.rows_read, features.rows_accepted) == (600, 600)
    assert set(features.table_versions) == {"bronze", "bronze.adult_test", "features"}
    # Each feature row is known by its own folder's file.
    table = read_delta(spark, paths.features)
    got = table.select(F.regexp_extract("row_id", r"[^/]*/[^/]*$", 0).alias("row_id"))
    want = spark.createDataFrame(
        [
            (f"{source}/{name}:{i}",)
            for source, name in (("adult", "adult.data"), ("adult_test", "adult.test"))
            for i in range(1, len(lines[source]) + 1)
        ],
        "row_id STRING",
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)

    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train")
    assert (result.summary.rows["train"], result.summary.rows["test"]) == (400, 200)
    # The test metric is the champion's on exactly the test source's rows.
    champion = current_champion(result.model_name)
    test_rows = table.where(F.col("source_file").contains("/adult_test/"))
    predicted = champion.model.transform(test_rows)
    auc = BinaryClassificationEvaluator(labelCol=LABEL, weightCol="fnlwgt").evaluate(predicted)
    assert result.summary.test["areaUnderROC"] == pytest.approx(auc, abs=1e-9)


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        (
            _with_test_source(CENSUS).replace("test: adult_test", "test: adult"),
            "'adult' is the source the features come from",
        ),
        (
            _with_test_source(CENSUS, "[{name: age, type: int}, {name: income, type: int}]"),
            "must declare the columns of 'adult' (same names and types); they differ in",
        ),
    ],
)
def test_a_test_source_is_another_source_with_the_same_columns(
    tmp_path: Path, spec: str, phrase: str
) -> None:
    assert_config_refused(tmp_path, spec, "census", "pipeline.train.split.test", phrase)
