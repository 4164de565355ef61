"""Ingest: declared schema enforced, bad records quarantined with a reason, the row ledger
reconciles, files are ingested exactly once, schema drift handled both ways."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import AppConfig
from pipeline.errors import RunError
from pipeline.ingest.runner import run_ingest
from pipeline.io.audit import read_audit
from pipeline.io.delta import read_delta
from pipeline.paths import PipelinePaths
from tests.helpers import make_config

RUN_DATE = dt.date(2026, 1, 5)
SPEC = """
name: t
task: binary_classification
sources:
  tx:
    format: {fmt}
    options: {options}
    schema_evolution: {evolution}
    columns:
      - {{name: id, type: string, nullable: false}}
      - {{name: amount, type: double, nullable: false, min: 0, max: 1000}}
      - {{name: kind, type: string, allowed: [a, b]}}
      - {{name: qty, type: int}}
      - {{name: ts, type: timestamp, format: "yyyy-MM-dd HH:mm:ss"}}
"""
HEADER = "id,amount,kind,qty,ts"
BRONZE_DDL = (
    "id STRING, amount DOUBLE, kind STRING, qty INT, ts TIMESTAMP, file STRING, _batch_id BIGINT"
)


def config_for(
    tmp_path: Path, fmt: str = "csv", evolution: str = "fail", options: str = "{header: true}"
) -> AppConfig:
    return make_config(tmp_path, SPEC.format(fmt=fmt, options=options, evolution=evolution))


def landing(cfg: AppConfig) -> Path:
    path = Path(PipelinePaths.of(cfg).source_path("tx").removeprefix("file://"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def drop(cfg: AppConfig, name: str, lines: list[str] | bytes) -> Path:
    """Write one raw file into the source's landing folder."""
    target = landing(cfg) / name
    if isinstance(lines, bytes):
        target.write_bytes(lines)
    else:
        target.write_text("\n".join(lines) + "\n")
    return target


def bronze(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    df = read_delta(spark, PipelinePaths.of(cfg).bronze("tx"))
    return df.select(
        "id",
        "amount",
        "kind",
        "qty",
        "ts",
        F.element_at(F.split("_source_file", "/"), -1).alias("file"),
        "_batch_id",
    )


def quarantine(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    df = read_delta(spark, PipelinePaths.of(cfg).quarantine)
    return df.select(
        F.element_at(F.split("source_file", "/"), -1).alias("file"),
        "reason",
        "detail",
        "raw_record",
        "batch_id",
    )


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_each_bad_record_kind_is_quarantined_with_its_reason(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    drop(
        cfg,
        "day1.csv",
        [
            HEADER,
            "1,10.5,a,3,2026-01-01 10:00:00",
            "2,0,b,,",
            "3,1,2,3,4,5,6",  # malformed: too many fields
            "4,abc,a,1,2026-01-01 10:00:00",  # type_mismatch
            ",5.0,a,1,2026-01-01 10:00:00",  # null_required
            "6,-5,a,1,2026-01-01 10:00:00",  # out_of_range (min)
            "7,5000,b,1,2026-01-01 10:00:00",  # out_of_range (max)
            "8,5,z,1,2026-01-01 10:00:00",  # not_allowed
            "9,5,a,1,01/02/2026",  # type_mismatch on the timestamp format
        ],
    )
    drop(
        cfg, "day1b.csv", HEADER.encode() + b"\n10,1.0,a\xff\xfe,1,2026-01-01 11:00:00\n"
    )  # undecodable

    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")

    expected_bronze = spark.createDataFrame(
        [
            ("1", 10.5, "a", 3, ts("2026-01-01 10:00:00"), "day1.csv", 1),
            ("2", 0.0, "b", None, None, "day1.csv", 1),
        ],
        BRONZE_DDL,
    )
    assert_df_equality(
        bronze(spark, cfg), expected_bronze, ignore_row_order=True, ignore_nullable=True
    )

    got = {(r.file, r.reason, r.detail) for r in quarantine(spark, cfg).collect()}
    assert got == {
        ("day1.csv", "malformed_record", "the line does not split into the declared fields"),
        ("day1.csv", "type_mismatch", "amount: 'abc' is not a valid double"),
        ("day1.csv", "null_required", "id: required value is missing"),
        ("day1.csv", "out_of_range", "amount: '-5' < min 0"),
        ("day1.csv", "out_of_range", "amount: '5000' > max 1000"),
        ("day1.csv", "not_allowed", "kind: 'z' is not an allowed value"),
        ("day1.csv", "type_mismatch", "ts: '01/02/2026' is not a valid timestamp"),
        ("day1b.csv", "undecodable_text", "kind: invalid bytes for the encoding"),
    }
    # The raw record keeps the original text: the line itself when it could not be split, else
    # every field as read.
    raw = {r.detail: r.raw_record for r in quarantine(spark, cfg).collect()}
    assert raw["the line does not split into the declared fields"] == "3,1,2,3,4,5,6"
    assert json.loads(raw["kind: 'z' is not an allowed value"]) == {
        "id": "8",
        "amount": "5",
        "kind": "z",
        "qty": "1",
        "ts": "2026-01-01 10:00:00",
    }
    assert json.loads(raw["id: required value is missing"]) == {
        "amount": "5.0",
        "kind": "a",
        "qty": "1",
        "ts": "2026-01-01 10:00:00",
    }

    assert (entry.rows_read, entry.rows_accepted, entry.rows_quarantined) == (10, 2, 8)
    assert entry.quarantined_by_reason == {
        "malformed_record": 1,
        "type_mismatch": 2,
        "null_required": 1,
        "out_of_range": 2,
        "not_allowed": 1,
        "undecodable_text": 1,
    }
    audit = read_audit(spark, PipelinePaths.of(cfg).audit).collect()
    assert [
        (
            a.run_id,
            a.stage,
            a.source,
            a.status,
            a.rows_read,
            a.rows_accepted,
            a.rows_quarantined,
            a.files_read,
            a.run_date,
        )
        for a in audit
    ] == [("run-1", "ingest", "tx", "succeeded", 10, 2, 8, 2, RUN_DATE)]


def test_unreadable_file_is_quarantined_whole_and_the_run_goes_on(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "good.csv", [HEADER, "1,1.0,a,1,2026-01-01 00:00:00"])
    whole = gzip.compress(
        ("\n".join([HEADER] + [f"{i},1.0,a,1,2026-01-01 00:00:00" for i in range(2000)])).encode()
    )
    drop(cfg, "truncated.csv.gz", whole[: len(whole) // 2])

    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")

    assert_df_equality(
        bronze(spark, cfg),
        spark.createDataFrame(
            [("1", 1.0, "a", 1, ts("2026-01-01 00:00:00"), "good.csv", 1)], BRONZE_DDL
        ),
        ignore_nullable=True,
    )
    [q] = quarantine(spark, cfg).collect()
    assert (q.file, q.reason, q.raw_record) == ("truncated.csv.gz", "unreadable_file", None)
    assert entry.files_quarantined == 1
    assert entry.quarantined_by_reason == {"file:unreadable_file": 1}
    assert (entry.rows_read, entry.rows_accepted, entry.rows_quarantined) == (1, 1, 0)


def test_missing_required_column_quarantines_the_file(spark: SparkSession, tmp_path: Path) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "ok.csv", [HEADER, "1,1.0,a,1,2026-01-01 00:00:00"])
    drop(cfg, "no_amount.csv", ["id,kind,qty,ts", "2,a,1,2026-01-01 00:00:00"])
    drop(cfg, "no_optional.csv", ["id,amount", "3,2.0"])  # optional columns may be absent

    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")

    assert_df_equality(
        bronze(spark, cfg),
        spark.createDataFrame(
            [
                ("1", 1.0, "a", 1, ts("2026-01-01 00:00:00"), "ok.csv", 1),
                ("3", 2.0, None, None, None, "no_optional.csv", 1),
            ],
            BRONZE_DDL,
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    [q] = quarantine(spark, cfg).collect()
    assert (q.file, q.reason, q.detail) == (
        "no_amount.csv",
        "missing_required_column",
        "missing: amount",
    )
    assert entry.files_quarantined == 1


def test_columns_in_another_order_are_read_by_name(spark: SparkSession, tmp_path: Path) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "a.csv", [HEADER, "1,1.0,a,1,2026-01-01 00:00:00"])
    drop(cfg, "b.csv", ["ts,qty,kind,amount,id", "2026-01-02 00:00:00,2,b,2.0,2"])
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    assert_df_equality(
        bronze(spark, cfg),
        spark.createDataFrame(
            [
                ("1", 1.0, "a", 1, ts("2026-01-01 00:00:00"), "a.csv", 1),
                ("2", 2.0, "b", 2, ts("2026-01-02 00:00:00"), "b.csv", 1),
            ],
            BRONZE_DDL,
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_unexpected_column_fails_the_run_and_writes_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "drift.csv", [HEADER + ",channel", "1,1.0,a,1,2026-01-01 00:00:00,web"])
    with pytest.raises(
        RunError, match=r"unexpected new column\(s\).*drift.csv: channel.*Nothing was written"
    ):
        run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    paths = PipelinePaths.of(cfg)
    assert not Path(paths.bronze("tx").removeprefix("file://")).exists()
    assert not Path(paths.quarantine.removeprefix("file://")).exists()
    [audit] = read_audit(spark, paths.audit).collect()
    assert (audit.status, audit.batch_id) == ("failed", 1)
    assert "unexpected new column" in audit.message


def test_schema_evolution_add_extends_bronze(spark: SparkSession, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, evolution="add")
    drop(cfg, "d1.csv", [HEADER, "1,1.0,a,1,2026-01-01 00:00:00"])
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    drop(cfg, "d2.csv", [HEADER + ",channel", "2,2.0,b,2,2026-01-02 00:00:00,web"])
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-2")

    got = read_delta(spark, PipelinePaths.of(cfg).bronze("tx")).select("id", "channel", "_batch_id")
    expected = spark.createDataFrame(
        [("1", None, 1), ("2", "web", 2)], "id STRING, channel STRING, _batch_id BIGINT"
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_rerun_ingests_only_new_files(spark: SparkSession, tmp_path: Path) -> None:
    cfg = config_for(tmp_path)
    drop(cfg, "d1.csv", [HEADER, "1,1.0,a,1,2026-01-01 00:00:00", "x,-1,a,1,"])
    run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    first_bronze, first_quarantine = bronze(spark, cfg).collect(), quarantine(spark, cfg).collect()

    [again] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-2")  # same input: nothing new
    assert (again.status, again.rows_read) == ("noop", 0)
    assert sorted(bronze(spark, cfg).collect()) == sorted(first_bronze)
    assert sorted(quarantine(spark, cfg).collect()) == sorted(first_quarantine)

    drop(cfg, "d2.csv", [HEADER, "2,2.0,b,2,2026-01-02 00:00:00"])
    [third] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-3")
    assert (third.batch_id, third.files_read, third.rows_accepted) == (2, 1, 1)
    assert_df_equality(
        bronze(spark, cfg),
        spark.createDataFrame(
            [
                ("1", 1.0, "a", 1, ts("2026-01-01 00:00:00"), "d1.csv", 1),
                ("2", 2.0, "b", 2, ts("2026-01-02 00:00:00"), "d2.csv", 2),
            ],
            BRONZE_DDL,
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    statuses = [
        r.status
        for r in read_audit(spark, PipelinePaths.of(cfg).audit).orderBy("started_at").collect()
    ]
    assert statuses == ["succeeded", "noop", "succeeded"]


def test_empty_file_and_empty_folder_are_successful_noops(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = config_for(tmp_path)
    landing(cfg)
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    assert (entry.status, entry.files_read, entry.rows_read) == ("noop", 0, 0)

    # Spark's file listing skips zero-byte files: there is nothing in them to ingest or lose.
    drop(cfg, "empty.csv", b"")
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-2")
    assert (entry.status, entry.files_read, entry.rows_read) == ("noop", 0, 0)

    drop(cfg, "header_only.csv", [HEADER])
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-3")
    assert (entry.status, entry.files_read, entry.rows_read, entry.rows_accepted) == (
        "succeeded",
        1,
        0,
        0,
    )
    audit = read_audit(spark, PipelinePaths.of(cfg).audit).orderBy("started_at").collect()
    assert [(a.run_id, a.status, a.files_read) for a in audit] == [
        ("run-1", "noop", 0),
        ("run-2", "noop", 0),
        ("run-3", "succeeded", 1),
    ]
    assert_df_equality(
        bronze(spark, cfg), spark.createDataFrame([], BRONZE_DDL), ignore_nullable=True
    )


def test_missing_source_folder_is_a_clear_error(spark: SparkSession, tmp_path: Path) -> None:
    cfg = config_for(tmp_path)
    with pytest.raises(RunError, match=r"source folder .*landing/t/tx does not exist"):
        run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")


def test_json_lines_source(spark: SparkSession, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, fmt="json", options="{}")
    drop(
        cfg,
        "d1.jsonl",
        [
            json.dumps(
                {"id": "1", "amount": 10.5, "kind": "a", "qty": 3, "ts": "2026-01-01 10:00:00"}
            ),
            json.dumps({"id": "2", "amount": 1}),  # absent optional keys are nulls
            '{"id": "3", "amount": ',  # malformed
            json.dumps({"id": "4", "amount": "lots"}),  # type_mismatch
        ],
    )
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    assert_df_equality(
        bronze(spark, cfg),
        spark.createDataFrame(
            [
                ("1", 10.5, "a", 3, ts("2026-01-01 10:00:00"), "d1.jsonl", 1),
                ("2", 1.0, None, None, None, "d1.jsonl", 1),
            ],
            BRONZE_DDL,
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert entry.quarantined_by_reason == {"malformed_record": 1, "type_mismatch": 1}


def test_parquet_source(spark: SparkSession, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, fmt="parquet", options="{}")
    folder = landing(cfg) / "d1"
    spark.createDataFrame(
        [("1", 10.5, "a", 3, "2026-01-01 10:00:00"), ("2", -1.0, "b", 1, None)],
        "id STRING, amount DOUBLE, kind STRING, qty INT, ts STRING",
    ).coalesce(1).write.parquet(str(folder))
    [entry] = run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    got = bronze(spark, cfg).drop("file")
    expected = spark.createDataFrame(
        [("1", 10.5, "a", 3, ts("2026-01-01 10:00:00"), 1)],
        "id STRING, amount DOUBLE, kind STRING, qty INT, ts TIMESTAMP, _batch_id BIGINT",
    )
    assert_df_equality(got, expected, ignore_nullable=True)
    assert entry.quarantined_by_reason == {"out_of_range": 1}


def test_rows_are_numbered_in_their_file_unless_the_features_declare_a_key(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A keyed row is known by its key: its record number would cost a pass and serve nothing."""
    keyed = make_config(
        tmp_path / "keyed",
        SPEC.format(fmt="csv", options="{header: true}", evolution="fail")
        + "features: {key: [id], event_time: ts}\n",
    )
    plain = config_for(tmp_path / "plain")
    for cfg in (keyed, plain):
        drop(
            cfg, "a.csv", [HEADER, "1,1.0,a,1,2026-01-01 00:00:00", "2,2.0,b,2,2026-01-01 00:00:00"]
        )
        run_ingest(spark, cfg, run_date=RUN_DATE, run_id="run-1")
    assert "_source_row" not in read_delta(spark, PipelinePaths.of(keyed).bronze("tx")).columns
    numbers = read_delta(spark, PipelinePaths.of(plain).bronze("tx")).select("id", "_source_row")
    assert_df_equality(
        numbers,
        spark.createDataFrame([("1", 1), ("2", 2)], "id STRING, _source_row LONG"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
