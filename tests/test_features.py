"""Feature transforms on small inline DataFrames (compared whole), and the features stage end to end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.config.stages import DerivedFeature, EventLabel, WindowFeature
from pipeline.features.runner import run_features
from pipeline.features.transforms import (
    clean_strings,
    deduplicate,
    event_label,
    with_derived,
    with_window_features,
)
from pipeline.ingest.runner import run_ingest
from pipeline.io.audit import read_audit
from pipeline.io.delta import read_delta
from pipeline.paths import PipelinePaths
from tests.helpers import make_config


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_clean_strings_trims_nulls_empties_and_lowercases(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(" Web ", " x ", 1), ("", "y", 2), (None, "  ", 3)], "channel STRING, other STRING, n INT"
    )
    got = df.transform(clean_strings, lowercase=["channel"])
    expected = spark.createDataFrame(
        [("web", "x", 1), (None, "y", 2), (None, None, 3)], "channel STRING, other STRING, n INT"
    )
    assert_df_equality(got, expected, ignore_row_order=True)


def test_deduplicate_keeps_the_latest_record_per_key(spark: SparkSession) -> None:
    schema = "id STRING, ts TIMESTAMP, v INT, _ingested_at TIMESTAMP"
    df = spark.createDataFrame(
        [
            ("a", t("2026-01-01 10:00:00"), 1, t("2026-01-02 00:00:00")),
            ("a", t("2026-01-01 11:00:00"), 2, t("2026-01-02 00:00:00")),  # later event wins
            ("b", t("2026-01-01 10:00:00"), 3, t("2026-01-02 00:00:00")),
            (
                "b",
                t("2026-01-01 10:00:00"),
                4,
                t("2026-01-03 00:00:00"),
            ),  # same time: later ingest wins
            ("c", t("2026-01-01 10:00:00"), 5, t("2026-01-02 00:00:00")),
        ],
        schema,
    )
    got = df.transform(deduplicate, key=["id"], event_time="ts", tie_breakers=["_ingested_at"])
    expected = spark.createDataFrame(
        [
            ("a", t("2026-01-01 11:00:00"), 2, t("2026-01-02 00:00:00")),
            ("b", t("2026-01-01 10:00:00"), 4, t("2026-01-03 00:00:00")),
            ("c", t("2026-01-01 10:00:00"), 5, t("2026-01-02 00:00:00")),
        ],
        schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True)


def test_derived_features_can_build_on_each_other(spark: SparkSession) -> None:
    df = spark.createDataFrame([(t("2026-01-01 03:15:00"), 9.0)], "ts TIMESTAMP, amount DOUBLE")
    got = df.transform(
        with_derived,
        [
            DerivedFeature(name="hour", expr="hour(ts)"),
            DerivedFeature(name="night", expr="cast(hour < 6 as int)"),
        ],
    )
    expected = spark.createDataFrame(
        [(t("2026-01-01 03:15:00"), 9.0, 3, 1)], "ts TIMESTAMP, amount DOUBLE, hour INT, night INT"
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_window_features_are_point_in_time_correct(spark: SparkSession) -> None:
    """An event sees only its entity's events strictly before it: never itself, later events, or
    events with the same timestamp (ties do not see each other)."""
    rows = [
        ("e1", "A", t("2026-01-01 10:00:00"), 10.0),
        ("e2", "A", t("2026-01-01 10:30:00"), 20.0),
        ("e3", "A", t("2026-01-01 10:30:00"), 30.0),  # tie with e2
        ("e4", "A", t("2026-01-01 11:15:00"), 40.0),  # 1h window: e2, e3 (e1 is 75 min before)
        ("e5", "A", t("2026-01-02 11:00:00"), 50.0),  # 24h window: e4 only (e1..e3 are >24h before)
        ("e6", "B", t("2026-01-01 10:45:00"), 99.0),  # another entity sees nothing of A
    ]
    df = spark.createDataFrame(rows, "id STRING, card STRING, ts TIMESTAMP, amount DOUBLE")
    windows = [
        WindowFeature(column="*", aggs=["count"], over=["1h", "24h"]),
        WindowFeature(column="amount", aggs=["mean", "max"], over=["1h"]),
    ]
    got = df.transform(with_window_features, entity="card", event_time="ts", windows=windows)
    expected = spark.createDataFrame(
        [
            ("e1", "A", t("2026-01-01 10:00:00"), 10.0, 0, 0, None, None),
            ("e2", "A", t("2026-01-01 10:30:00"), 20.0, 1, 1, 10.0, 10.0),
            ("e3", "A", t("2026-01-01 10:30:00"), 30.0, 1, 1, 10.0, 10.0),
            ("e4", "A", t("2026-01-01 11:15:00"), 40.0, 2, 3, 25.0, 30.0),
            ("e5", "A", t("2026-01-02 11:00:00"), 50.0, 0, 1, None, None),
            ("e6", "B", t("2026-01-01 10:45:00"), 99.0, 0, 0, None, None),
        ],
        "id STRING, card STRING, ts TIMESTAMP, amount DOUBLE, events_count_1h LONG, "
        "events_count_24h LONG, amount_mean_1h DOUBLE, amount_max_1h DOUBLE",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_event_label_uses_only_the_future_horizon_and_leaves_unknown_outcomes_null(
    spark: SparkSession,
) -> None:
    telemetry = spark.createDataFrame(
        [
            ("r1", "m1", t("2026-01-01 00:00:00")),  # failure 3 days later: positive
            ("r2", "m1", t("2026-01-05 00:00:00")),  # after the failure, next one is 20 days later
            ("r3", "m2", t("2026-01-01 00:00:00")),  # no failure, horizon fully observed: 0
            ("r4", "m2", t("2026-01-28 00:00:00")),  # horizon reaches past what is observed: null
            (
                "r5",
                "m1",
                t("2026-01-24 00:00:00"),
            ),  # failure seen, but horizon not fully observed: null
        ],
        "rid STRING, machine STRING, ts TIMESTAMP",
    )
    failures = spark.createDataFrame(
        [("m1", t("2026-01-04 00:00:00")), ("m1", t("2026-01-25 00:00:00"))],
        "machine STRING, failed_at TIMESTAMP",
    )
    observed = F.lit(t("2026-01-30 00:00:00"))
    within = EventLabel(source="failures", time="failed_at", within="7d")
    got = event_label(
        telemetry,
        failures,
        spec=within,
        key=["rid"],
        entity="machine",
        event_time="ts",
        observed_until=observed,
    )
    expected = spark.createDataFrame(
        [
            ("r1", "m1", t("2026-01-01 00:00:00"), 1.0),
            ("r2", "m1", t("2026-01-05 00:00:00"), 0.0),
            ("r3", "m2", t("2026-01-01 00:00:00"), 0.0),
            ("r4", "m2", t("2026-01-28 00:00:00"), None),
            ("r5", "m1", t("2026-01-24 00:00:00"), None),
        ],
        "rid STRING, machine STRING, ts TIMESTAMP, label DOUBLE",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)

    rul = EventLabel(source="failures", time="failed_at", within="30d", kind="time_until")
    got_rul = event_label(
        telemetry, failures, spec=rul, key=["rid"], entity="machine", event_time="ts"
    )
    expected_rul = spark.createDataFrame(
        [("r1", 3.0), ("r2", 20.0), ("r3", 30.0), ("r4", 30.0), ("r5", 1.0)],
        "rid STRING, label DOUBLE",
    )
    assert_df_equality(
        got_rul.select("rid", "label"), expected_rul, ignore_row_order=True, ignore_nullable=True
    )


FEATURE_SPEC = """
name: t
task: binary_classification
sources:
  tx:
    format: csv
    options: {header: true}
    columns:
      - {name: id, type: string, nullable: false}
      - {name: card, type: string, nullable: false}
      - {name: ts, type: timestamp, nullable: false, format: "yyyy-MM-dd HH:mm:ss"}
      - {name: amount, type: double, nullable: false}
      - {name: channel, type: string}
      - {name: y, type: int, nullable: false}
features:
  key: [id]
  entity: card
  event_time: ts
  lowercase: [channel]
  derived:
    - {name: hour, expr: "hour(ts)"}
  windows:
    - {column: amount, aggs: [sum], over: [24h]}
  label: {column: y}
"""


def test_features_stage_writes_the_run_date_and_reconciles(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, FEATURE_SPEC)
    paths = PipelinePaths.of(cfg)
    landing = Path(paths.source_path("tx").removeprefix("file://"))
    landing.mkdir(parents=True)
    (landing / "d.csv").write_text(
        "id,card,ts,amount,channel,y\n"
        "1,c1,2026-01-01 23:00:00,5.0, Web ,0\n"
        "2,c1,2026-01-02 01:00:00,7.0,APP,1\n"
        "2,c1,2026-01-02 01:00:00,7.0,APP,1\n"  # exact duplicate: dropped
        "3,c1,2026-01-02 02:00:00,1.0,,0\n"
        "4,c2,2026-01-03 00:00:00,2.0,web,0\n"  # another date: not written by the 01-02 run
    )
    run_ingest(spark, cfg, run_date=dt.date(2026, 1, 2), run_id="ingest-1")

    entry = run_features(spark, cfg, run_date=dt.date(2026, 1, 2), run_id="features-1")
    expected = spark.createDataFrame(
        [
            ("2", "c1", t("2026-01-02 01:00:00"), 7.0, "app", 1, 1, 5.0, 1.0, dt.date(2026, 1, 2)),
            ("3", "c1", t("2026-01-02 02:00:00"), 1.0, None, 0, 2, 12.0, 0.0, dt.date(2026, 1, 2)),
        ],
        "id STRING, card STRING, ts TIMESTAMP, amount DOUBLE, channel STRING, y INT, hour INT, "
        "amount_sum_24h DOUBLE, label DOUBLE, event_date DATE",
    )
    table = read_delta(spark, paths.features)
    assert_df_equality(
        table.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True
    )
    assert (entry.rows_read, entry.rows_accepted, entry.rows_dropped) == (3, 2, 1)
    assert entry.table_versions["bronze"] == 0

    # Rerunning the date replaces its rows: same table content, no duplicates.
    run_features(spark, cfg, run_date=dt.date(2026, 1, 2), run_id="features-2")
    assert_df_equality(
        read_delta(spark, paths.features).select(*expected.columns),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    audit = (
        read_audit(spark, paths.audit).where("stage = 'features'").orderBy("started_at").collect()
    )
    assert [(a.run_id, a.status, a.rows_read, a.rows_accepted, a.rows_dropped) for a in audit] == [
        ("features-1", "succeeded", 3, 2, 1),
        ("features-2", "succeeded", 3, 2, 1),
    ]
