"""`mlpipe init`: a pipeline drafted from a data file runs from ingest to predictions unedited."""

from __future__ import annotations

import datetime as dt
import random
import textwrap
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.config import load_config
from pipeline.draft import Choices, draft_from_lines, has_header, null_token, sniff_delimiter
from pipeline.features.runner import run_features
from pipeline.ingest.runner import run_ingest
from pipeline.io.delta import read_delta
from pipeline.paths import PipelinePaths
from pipeline.score.runner import run_score
from pipeline.tracking import configure_mlflow
from pipeline.train.runner import run_train
from tests.helpers import CONF_DIR
from tests.test_your_data import census_lines

RUN_DATE = dt.date(2026, 2, 1)


def _census_folder(root: Path) -> Path:
    folder = root / "adult"
    folder.mkdir(parents=True)
    rng = random.Random(11)
    (folder / "adult.data").write_text("\n".join(census_lines(rng, 600, period=False)) + "\n")
    (folder / "adult.test").write_text("\n".join(census_lines(rng, 300, period=True)) + "\n")
    return folder


def test_the_draft_of_a_headerless_census_file_reads_its_shape(tmp_path: Path) -> None:
    folder = _census_folder(tmp_path)
    lines = (folder / "adult.data").read_text().splitlines()
    others = [(folder / "adult.test").read_text().splitlines()]
    draft = draft_from_lines(
        "census",
        lines,
        path=folder.as_uri(),
        choices=Choices(positive=(">50K",), test="adult.test", weight="column_3"),
        others=others,
    )
    spec = yaml.safe_load(draft.text)["sources"]["census"]
    assert spec["options"]["header"] is False
    assert spec["options"]["nullValue"] == "?"
    assert [(c["name"], c["type"], c.get("nullable", True)) for c in spec["columns"]] == [
        ("column_1", "int", False),
        ("column_2", "string", True),  # '?' is a missing value, not a category
        ("column_3", "double", False),
        ("column_4", "int", False),
        ("column_5", "int", False),
        ("column_6", "string", False),
    ]
    doc = yaml.safe_load(draft.text)
    # Both spellings of each class, the test file's trailing period included.
    assert doc["features"]["label"] == {
        "column": "column_6",
        "positive": [">50K", ">50K."],
        "negative": ["<=50K", "<=50K."],
    }
    assert doc["model"] == {"exclude": ["column_3"]}
    assert doc["train"]["weight_column"] == "column_3"
    assert doc["train"]["split"] == {"kind": "source", "test": "adult.test"}


@pytest.mark.parametrize(
    ("lines", "header", "delimiter", "null"),
    [
        (["id;amount;city", "1;2.5;Oslo", "2;NA;Bergen"], True, ";", "NA"),
        (["7\t2.5\tOslo", "8\t3.0\tBergen", "9\t\tOslo"], False, "\t", None),
        (["name,city", "ann,Oslo", "bob,Bergen"], True, ",", None),  # text under text
        (["ann,Oslo", "bob,Oslo", "carl,Bergen"], False, ",", None),  # a value repeats
    ],
)
def test_header_delimiter_and_missing_token_are_sniffed(
    lines: list[str], header: bool, delimiter: str, null: str | None
) -> None:
    import csv

    assert sniff_delimiter(lines) == delimiter
    rows = list(csv.reader(lines, delimiter=delimiter))
    assert has_header(rows) is header
    assert null_token(rows[1:] if header else rows) == null


def test_init_refuses_to_overwrite_and_names_an_unknown_label(tmp_path: Path) -> None:
    import shutil

    folder = _census_folder(tmp_path)
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    args = ["init", "census", "--from", str(folder), "--conf-dir", str(conf)]
    assert main([*args, "--label", "income"]) == EXIT_USAGE  # no such column: nothing written
    assert not (conf / "base" / "pipelines" / "census.yml").exists()
    assert main(args) == EXIT_OK
    assert main(args) == EXIT_USAGE  # exists: --force to replace
    assert main([*args, "--force"]) == EXIT_OK
    # A credential in the URI would be written into the YAML: refused, nothing written.
    secret = [
        "init",
        "leaky",
        "--from",
        "s3a://reader:hunter2@bucket/adult/",
        "--conf-dir",
        str(conf),
    ]
    assert main(secret) == EXIT_USAGE
    assert not (conf / "base" / "pipelines" / "leaky.yml").exists()


def test_a_drafted_pipeline_runs_from_ingest_to_predictions_without_edits(
    spark: SparkSession, tmp_path: Path
) -> None:
    import shutil

    folder = _census_folder(tmp_path / "data")
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    code = main(
        [
            "init",
            "census",
            "--from",
            str(folder / "adult.data"),
            "--positive",
            ">50K",
            "--test",
            "adult.test",
            "--weight",
            "column_3",
            "--conf-dir",
            str(conf),
        ]
    )
    assert code == EXIT_OK
    drafted = (conf / "base" / "pipelines" / "census.yml").read_text()
    cfg = load_config(
        "census",
        env="test",
        conf_dir=conf,
        overrides=[
            f"storage.tables={tmp_path / 'tables'}",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"mlflow.artifact_location={tmp_path}/artifacts",
            f"storage.reports={tmp_path}/reports",
        ],
    )
    paths = PipelinePaths.of(cfg)
    configure_mlflow(cfg.mlflow)

    [ingest] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="in")
    assert (ingest.rows_read, ingest.rows_accepted) == (900, 900)  # nothing quarantined
    features = run_features(spark, cfg, run_date=RUN_DATE, run_id="feat")
    assert (features.rows_accepted, features.rows_dropped) == (900, 0)
    result = run_train(spark, cfg, run_date=RUN_DATE, run_id="train")
    assert (result.summary.rows["train"], result.summary.rows["test"]) == (600, 300)
    assert result.summary.test["areaUnderROC"] > 0.75
    score = run_score(spark, cfg, run_date=RUN_DATE, run_id="score")
    assert score.rows_accepted == 900
    # Every record of both files scored once, known by its file and record number.
    predictions = read_delta(spark, paths.predictions)
    got = predictions.select(F.regexp_extract("row_id", r"[^/]*$", 0).alias("row_id"))
    want = spark.createDataFrame(
        [(f"adult.data:{i}",) for i in range(1, 601)]
        + [(f"adult.test:{i}",) for i in range(1, 301)],
        "row_id STRING",
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    # Both classes predicted: the drafted model learnt from the drafted inputs.
    assert {r[0] for r in predictions.select("predicted_label").distinct().collect()} == {0, 1}
    # Nothing was edited between init and the run.
    assert (conf / "base" / "pipelines" / "census.yml").read_text() == drafted
    assert textwrap.dedent(drafted).startswith("# Drafted by `mlpipe init`")


def test_a_parquet_file_is_drafted_with_its_own_column_types(
    spark: SparkSession, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "parquet"
    rows = [
        (i, float(i) * 1.5, "yes" if i % 3 == 0 else "no", None if i % 7 else "x")
        for i in range(60)
    ]
    spark.createDataFrame(rows, "id BIGINT, amount DOUBLE, churned STRING, note STRING").coalesce(
        1
    ).write.parquet(str(folder))
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    # Parquet is read through Spark, as a file on hdfs:// or s3a:// is.
    uri = f"file://{next(folder.glob('*.parquet'))}"
    assert main(["init", "churners", "--from", uri, "--conf-dir", str(conf)]) == EXIT_OK
    doc = yaml.safe_load((conf / "base" / "pipelines" / "churners.yml").read_text())
    source = doc["sources"]["churners"]
    assert source["format"] == "parquet"
    assert [(c["name"], c["type"], c.get("nullable", True)) for c in source["columns"]] == [
        ("id", "long", False),
        ("amount", "double", False),
        ("churned", "string", False),
        ("note", "string", True),
    ]
    # The rarer of the two classes is the positive one.
    assert doc["features"]["label"] == {
        "column": "churned",
        "positive": ["yes"],
        "negative": ["no"],
    }
