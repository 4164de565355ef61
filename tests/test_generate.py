"""Sample-data generators: determinism, file layout, the declared schemas, and the documented
structure (label rates, learnable signals, mess rates, drift) measured on generated data."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from pipeline.cli import Invocation, main
from pipeline.config import load_config
from pipeline.config.sources import ColumnSpec
from pipeline.errors import ConfigError, RunError
from pipeline.generate import (
    USE_CASES,
    DayBatch,
    Settings,
    generate,
    generate_batches,
    maintenance,
    recommendation,
)
from pipeline.generate.common import file_name, write_local, write_spark
from pipeline.generate.fraud import FRAUD_CATEGORIES, FraudSettings, cards
from tests.helpers import CONF_DIR

START = dt.date(2026, 1, 1)
SEED = 11


def batches(
    use_case: str, days: int, rows: int, settings: Settings | None = None
) -> list[DayBatch]:
    """In-memory batches of `days` days from START with the suite's seed."""
    return list(
        generate_batches(
            use_case,
            days=days,
            rows_per_day=rows,
            start_date=START,
            seed=SEED,
            settings=settings,
        )
    )


def of(found: list[DayBatch], source: str) -> list[DayBatch]:
    """The batches of one source."""
    return [b for b in found if b.source == source]


def declared(use_case: str, source: str) -> list[ColumnSpec]:
    """The columns a source declares in its pipeline spec."""
    return (
        load_config(use_case, env="test", conf_dir=CONF_DIR)
        .require_pipeline()
        .source(source)
        .columns
    )


def read_text(path: Path) -> str:
    """A landing file's text (gunzipped when needed)."""
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below `root`: relative path -> bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def slope(values: list[float]) -> float:
    """Least-squares change per day."""
    return float(np.polyfit(np.arange(len(values)), values, 1)[0])


# --------------------------------------------------------------------------------------------------
# A minimal schema checker, independent of the generators: which lines would ingest quarantine?
# --------------------------------------------------------------------------------------------------

_JAVA_TO_STRPTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}


def _strptime_pattern(java: str) -> str:
    """A Java date pattern (as declared) in strptime form."""
    return re.sub("yyyy|MM|dd|HH|mm|ss", lambda m: _JAVA_TO_STRPTIME[m.group(0)], java)


def field_problem(value: str, col: ColumnSpec) -> str | None:
    """The rule a raw CSV field breaks, or None (empty = null)."""
    if value == "":
        return None if col.nullable else "null_required"
    number: float | None = None
    try:
        if col.type in ("int", "long"):
            if not re.fullmatch(r"-?\d+", value):
                return "type_mismatch"
            number = int(value)
        elif col.type in ("double", "float"):
            number = float(value)
            if not math.isfinite(number):
                return "type_mismatch"
        elif col.type in ("timestamp", "date"):
            default = "yyyy-MM-dd HH:mm:ss" if col.type == "timestamp" else "yyyy-MM-dd"
            dt.datetime.strptime(value, _strptime_pattern(col.format or default))
    except ValueError:
        return "type_mismatch"
    if number is not None and (
        (col.min is not None and number < col.min) or (col.max is not None and number > col.max)
    ):
        return "out_of_range"
    if col.allowed is not None and value not in {str(a) for a in col.allowed}:
        return "not_allowed"
    return None


def line_problem(line: str, columns: list[ColumnSpec]) -> str | None:
    """The first rule a raw CSV line breaks, or None."""
    fields = next(csv.reader([line]))
    if len(fields) != len(columns):
        return "malformed_record"
    return next(
        (p for f, c in zip(fields, columns, strict=True) if (p := field_problem(f, c))), None
    )


# --------------------------------------------------------------------------------------------------
# API, determinism and layout
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("use_case", "days", "rows", "message"),
    [
        ("nope", 1, 10, "known: fraud, maintenance, recommendation, churn"),
        ("fraud", 0, 10, "days must be a positive integer"),
        ("churn", 1, -5, "rows_per_day must be a positive integer"),
        ("maintenance", 1, 23, "rows_per_day >= 24"),
    ],
)
def test_bad_requests_are_configuration_errors(
    tmp_path: Path, use_case: str, days: int, rows: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        generate(use_case, str(tmp_path), days=days, rows_per_day=rows, start_date=START, seed=1)
    with pytest.raises(ConfigError, match="rows_per_file"):
        generate(
            "churn",
            str(tmp_path),
            days=1,
            rows_per_day=5,
            start_date=START,
            seed=1,
            rows_per_file=0,
        )
    with pytest.raises(ConfigError, match="fraud_rate"):
        FraudSettings(fraud_rate=0.05)


@pytest.mark.parametrize("use_case", USE_CASES)
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, use_case: str) -> None:
    def run(folder: str, seed: int) -> dict[str, bytes]:
        generate(
            use_case, str(tmp_path / folder), days=2, rows_per_day=480, start_date=START, seed=seed,
            gzip=True, rows_per_file=200,
        )  # fmt: skip
        return files_under(tmp_path / folder)

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    assert first == again
    assert first.keys() == other.keys()
    assert first != other
    # Regenerated in memory, a day's records are identical too (whole frames compared).
    pd.testing.assert_frame_equal(
        batches(use_case, 1, 480)[0].records, batches(use_case, 1, 480)[0].records
    )


@pytest.mark.parametrize("use_case", USE_CASES)
def test_a_day_generated_alone_equals_that_day_of_a_range(tmp_path: Path, use_case: str) -> None:
    generate(use_case, str(tmp_path / "range"), days=4, rows_per_day=960, start_date=START, seed=3)
    day4 = START + dt.timedelta(days=3)
    generate(
        use_case, f"file://{tmp_path / 'alone'}", days=1, rows_per_day=960, start_date=day4, seed=3
    )
    alone = files_under(tmp_path / "alone")
    in_range = {k: v for k, v in files_under(tmp_path / "range").items() if day4.isoformat() in k}
    assert alone
    assert alone == in_range


def test_files_follow_the_layout_and_split_into_parts(tmp_path: Path) -> None:
    report = generate(
        "maintenance", str(tmp_path), days=2, rows_per_day=2400, start_date=START, seed=2,
        rows_per_file=1000,
    )  # fmt: skip
    assert [(d.source, d.day) for d in report.days] == [
        ("telemetry", START),
        ("failures", START),
        ("telemetry", START + dt.timedelta(days=1)),
        ("failures", START + dt.timedelta(days=1)),
    ]
    for entry in report.days:
        folder = tmp_path / entry.source / entry.day.isoformat()
        parts = sorted(folder.iterdir())
        expected = [file_name(entry.source, entry.day, i, gzip=False) for i in range(len(parts))]
        assert [p.name for p in parts] == expected
        assert [f"file://{p}" for p in parts] == list(entry.files)
        lines = [read_text(p).splitlines() for p in parts]
        header = ",".join(c.name for c in declared("maintenance", entry.source))
        assert all(part[0] == header for part in lines)
        sizes = [len(part) - 1 for part in lines]
        assert sum(sizes) == entry.rows
        assert all(size <= 1000 for size in sizes)
        assert len(parts) == max(1, math.ceil(entry.rows / 1000))
    assert "telemetry  2026-01-02" in report.summary()


# --------------------------------------------------------------------------------------------------
# Files against the declared schemas: exactly the injected malformed lines are bad
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_case", USE_CASES)
def test_only_the_injected_malformed_lines_break_the_declared_schema(
    tmp_path: Path, use_case: str
) -> None:
    report = generate(
        use_case, str(tmp_path), days=2, rows_per_day=12_000, start_date=START, seed=SEED, gzip=True
    )
    in_memory = {(b.source, b.day): b for b in batches(use_case, 2, 12_000)}
    injected = 0
    for entry in report.days:
        columns = declared(use_case, entry.source)
        lines = read_text(Path(entry.files[0].removeprefix("file://"))).splitlines()
        assert lines[0] == ",".join(c.name for c in columns)
        bad = [line for line in lines[1:] if line_problem(line, columns) is not None]
        batch = in_memory[(entry.source, entry.day)]
        assert Counter(bad) == Counter(batch.malformed)
        assert len(bad) == entry.malformed
        assert lines[1:] == batch.lines()
        injected += entry.malformed
    total = sum(d.rows for d in report.days)
    assert 0.0004 * total <= injected <= 0.002 * total  # ~0.1% of the lines


# --------------------------------------------------------------------------------------------------
# Fraud
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fraud_days() -> list[DayBatch]:
    """Five days of 20,000 transactions."""
    return batches("fraud", 5, 20_000)


def test_fraud_rate_nulls_and_duplicates(fraud_days: list[DayBatch]) -> None:
    for batch in fraud_days:
        records = batch.records
        distinct = records.drop_duplicates()
        assert len(distinct) == 20_000
        assert batch.positives == int(distinct.is_fraud.sum())
        assert 0.008 <= distinct.is_fraud.mean() <= 0.012
        # Duplicates are exact: same transaction id, same values, counted as injected.
        assert (
            records.duplicated().sum()
            == records.transaction_id.duplicated().sum()
            == batch.duplicates
        )
        copies = records[records.transaction_id.duplicated(keep=False)]
        assert (copies.groupby("transaction_id").nunique(dropna=False) == 1).all().all()
        assert 0.003 <= batch.duplicates / len(distinct) <= 0.007
    everything = pd.concat([b.records for b in fraud_days])
    for column in ("device_type", "country", "customer_age", "merchant_id"):
        assert 0.017 <= everything[column].isna().mean() <= 0.023, column
    required = ["transaction_id", "card_id", "event_time", "amount", "channel", "is_fraud"]
    assert not everything[required].isna().any().any()


def test_fraud_rate_is_configurable() -> None:
    found = batches("fraud", 1, 30_000, settings=FraudSettings(fraud_rate=0.02))[0]
    assert 0.017 <= found.records.drop_duplicates().is_fraud.mean() <= 0.023


def test_fraud_follows_learnable_patterns(fraud_days: list[DayBatch]) -> None:
    df = pd.concat([b.records.drop_duplicates() for b in fraud_days], ignore_index=True)
    pop = cards(20_000, SEED)
    typical = pd.Series(pop.spend, index=pop.card_id)
    df["ratio"] = df.amount / df.card_id.map(typical)
    df["night"] = df.event_time.str[11:13].astype(int) < 6
    df["foreign"] = df.country.notna() & (df.country != df.home_country)
    df["online"] = df.channel.isin(["web", "app"])
    df["risky_category"] = df.merchant_category.isin(FRAUD_CATEGORIES)
    df["young"] = df.account_age_days < 90
    ts = pd.to_datetime(df.event_time)
    df = df.assign(ts=ts).sort_values(["card_id", "ts"])
    gap = df.ts - df.groupby("card_id").ts.shift()
    df["burst"] = gap < pd.Timedelta(hours=1)
    fraud, legit = df[df.is_fraud == 1], df[df.is_fraud == 0]
    assert fraud.ratio.median() > 4 * legit.ratio.median()
    for signal, factor in [
        ("night", 5),
        ("foreign", 5),
        ("online", 1.5),
        ("risky_category", 2),
        ("young", 3),
        ("burst", 2),
    ]:
        assert fraud[signal].mean() > factor * legit[signal].mean(), signal
    # ...but not trivially separable: each signal alone misses a good share of fraud.
    assert all(fraud[s].mean() < 0.95 for s in ("night", "foreign", "young", "burst"))


def test_fraud_drifts_up_in_amount_and_towards_the_app(fraud_days: list[DayBatch]) -> None:
    legit = [b.records.drop_duplicates().query("is_fraud == 0") for b in fraud_days]
    amount = slope([float(np.log(d.amount).mean()) for d in legit])
    app = slope([float((d.channel == "app").mean()) for d in legit])
    assert 0.008 <= amount <= 0.025  # ~1.5% a day
    assert 0.003 <= app <= 0.02


# --------------------------------------------------------------------------------------------------
# Maintenance
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def maintenance_days() -> list[DayBatch]:
    """Two weeks of telemetry from 150 machines, with their failures."""
    return batches("maintenance", 14, 24 * 150)


@pytest.fixture(scope="module")
def labelled(maintenance_days: list[DayBatch]) -> pd.DataFrame:
    """Telemetry joined with the next failure (label: a failure within 7 days)."""
    tel = pd.concat([b.records for b in of(maintenance_days, "telemetry")]).drop_duplicates()
    fail = pd.concat([b.records for b in of(maintenance_days, "failures")]).drop_duplicates()
    tel = tel.assign(t=pd.to_datetime(tel.event_time)).sort_values("t")
    fail = fail.assign(f=pd.to_datetime(fail.failure_time)).sort_values("f")
    ahead = pd.merge_asof(
        tel,
        fail[["machine_id", "f"]],
        left_on="t",
        right_on="f",
        by="machine_id",
        direction="forward",
    )
    behind = pd.merge_asof(
        tel, fail[["machine_id", "f"]].rename(columns={"f": "prev"}), left_on="t", right_on="prev",
        by="machine_id", direction="backward", allow_exact_matches=False,
    )  # fmt: skip
    ahead["until"] = (ahead.f - ahead.t).dt.total_seconds() / 86_400
    ahead["since"] = ((ahead.t - behind.prev).dt.total_seconds() / 3600).to_numpy()
    ahead["label"] = ahead.until <= 7
    return ahead


def test_maintenance_fleet_sizes_nulls_and_positives(
    maintenance_days: list[DayBatch], labelled: pd.DataFrame
) -> None:
    for batch in of(maintenance_days, "telemetry"):
        records = batch.records
        assert records.machine_id.nunique() == 150
        assert len(records.drop_duplicates()) == 150 * 24
        assert records.duplicated(["machine_id", "event_time"]).sum() == batch.duplicates
    for sensor in maintenance.SENSORS:
        assert 0.007 <= labelled[sensor].isna().mean() <= 0.013, sensor
    assert (
        not labelled[["machine_id", "event_time", "error_count", "model", "age_years"]]
        .isna()
        .any()
        .any()
    )
    # The reported positives are the label the features stage will derive (exact in the first
    # week, whose 7-day horizon lies inside the generated range).
    first_week = labelled[labelled.t < pd.Timestamp(START + dt.timedelta(days=7))]
    reported = sum(b.positives or 0 for b in of(maintenance_days, "telemetry")[:7])
    assert int(first_week.label.sum()) == reported
    assert 0.05 <= first_week.label.mean() <= 0.25


def test_maintenance_degrades_before_a_failure_and_resets_after(labelled: pd.DataFrame) -> None:
    running = labelled[~(labelled.since < maintenance.REPAIR_HOURS)]
    means = running.groupby("label")[["vibration", "temperature", "error_count"]].mean()
    assert means.vibration[True] > 1.2 * means.vibration[False]
    assert means.temperature[True] > means.temperature[False] + 2.0
    assert means.error_count[True] > 3 * means.error_count[False]
    # The signal ramps up as the failure approaches...
    last_day = running[running.until <= 1].vibration.mean()
    week_before = running[(running.until > 5) & (running.until <= 7)].vibration.mean()
    assert last_day > week_before > running[~running.label].vibration.mean()
    # ...the machine stops during repair, then runs like its healthy self again (failing
    # machines vibrate more anyway: older, rougher models; so compare each with its own baseline).
    repairing = labelled[labelled.since < maintenance.REPAIR_HOURS]
    assert len(repairing) > 0
    assert (repairing.rpm.dropna() == 0).all()
    healthy = running[~(running.until <= maintenance.RAMP_DAYS) & ~(running.since < 24)]
    baseline = healthy.groupby("machine_id").vibration.mean()
    relative = running.vibration / running.machine_id.map(baseline)
    after = relative[(running.since < 24) & ~(running.until <= maintenance.RAMP_DAYS)]
    before = relative[running.until <= 1]
    assert len(after) > 100
    assert abs(after.mean() - 1.0) < 0.05
    assert before.mean() > 1.3


def test_maintenance_temperature_drifts_up(labelled: pd.DataFrame) -> None:
    healthy = labelled[~labelled.label & ~(labelled.since < maintenance.REPAIR_HOURS)]
    daily = healthy.groupby(healthy.t.dt.date).temperature.mean()
    assert 0.02 <= slope(list(daily)) <= 0.1  # ~0.05 degrees a day


# --------------------------------------------------------------------------------------------------
# Recommendation
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    """Four days of ~8,000 interactions, with a day index."""
    found = batches("recommendation", 4, 8_000)
    return pd.concat([b.records.assign(day=i) for i, b in enumerate(found)], ignore_index=True)


def test_recommendation_long_tail_and_taste_clusters(interactions: pd.DataFrame) -> None:
    cat = recommendation.catalogue(8_000, SEED)
    counts = interactions.item_id.value_counts()
    assert counts.iloc[: cat.item_id.size // 10].sum() > 0.5 * counts.sum()  # a short head...
    assert counts.size > 0.8 * cat.item_id.size  # ...and a long tail
    user_cluster = pd.Series(cat.user_cluster, index=cat.user_id)
    item_cluster = pd.Series(cat.item_cluster, index=cat.item_id)
    own = interactions.user_id.map(user_cluster) == interactions.item_id.map(item_cluster)
    assert own.mean() > 0.6  # 10 clusters: 0.1 by chance
    # Funnel: every purchase follows a cart of the same item by the same user.
    key = ["user_id", "item_id", "day"]
    carts = interactions[interactions.event_type == "cart"][key].drop_duplicates()
    buys = interactions[interactions.event_type == "purchase"][key].drop_duplicates()
    assert len(buys.merge(carts, on=key)) == len(buys) > 0


def test_recommendation_collaborative_filtering_beats_most_popular(
    interactions: pd.DataFrame,
) -> None:
    users = {u: i for i, u in enumerate(interactions.user_id.unique())}
    items = {v: i for i, v in enumerate(interactions.item_id.unique())}
    train, test = interactions[interactions.day < 3], interactions[interactions.day == 3]
    matrix = np.zeros((len(users), len(items)))
    np.add.at(
        matrix, (train.user_id.map(users).to_numpy(), train.item_id.map(items).to_numpy()), 1.0
    )
    # Rank-10 SVD projection M V V^T, from the small item-item Gram matrix (cheaper than svd(M)).
    weights = np.log1p(matrix)
    _, vectors = np.linalg.eigh(weights.T @ weights)
    top = vectors[:, -10:]
    scores = weights @ top @ top.T
    popular = np.argsort(-matrix.sum(axis=0))[:10]
    discount = 1.0 / np.log2(np.arange(2, 12))

    def ndcg(top_of: dict[int, np.ndarray]) -> float:
        values = []
        for user, group in test.groupby("user_id"):
            relevant = set(group.item_id.map(items))
            gains = [discount[i] for i, item in enumerate(top_of[users[user]]) if item in relevant]
            values.append(sum(gains) / discount[: min(10, len(relevant))].sum())
        return float(np.mean(values))

    test_users = [users[x] for x in test.user_id.unique()]
    cf = ndcg({x: np.argsort(-scores[x])[:10] for x in test_users})
    baseline = ndcg(dict.fromkeys(test_users, popular))
    assert cf > 1.3 * baseline


def test_recommendation_conversion_drifts_up() -> None:
    days = batches("recommendation", 6, 20_000)
    share = [float((b.records.event_type != "view").mean()) for b in days]
    assert slope(share) > 0.001  # cart rates grow ~2% a day (relative)


# --------------------------------------------------------------------------------------------------
# Churn
# --------------------------------------------------------------------------------------------------


def test_churn_rate_and_learnable_drivers() -> None:
    found = batches("churn", 3, 20_000)
    df = pd.concat([b.records.drop_duplicates() for b in found], ignore_index=True)
    assert 0.17 <= df.churned.mean() <= 0.23
    assert sum(b.positives or 0 for b in found) == int(df.churned.sum())
    by_contract = df.groupby("contract").churned.mean()
    assert by_contract.month_to_month > 2 * by_contract.one_year > 2 * by_contract.two_year
    by_tenure = df.groupby(pd.cut(df.tenure_months, [-1, 12, 36, 72]), observed=True).churned.mean()
    assert by_tenure.is_monotonic_decreasing
    by_calls = df.groupby(df.support_calls.clip(upper=4)).churned.mean()
    assert by_calls.is_monotonic_increasing
    # New customers have no total yet; otherwise ~1% of totals are missing.
    assert df[df.tenure_months == 0].total_charges.isna().all()
    assert 0.005 <= df[df.tenure_months > 0].total_charges.isna().mean() <= 0.015
    charges = [float(b.records.monthly_charges.mean()) for b in found]
    assert slope(charges) > 0


# --------------------------------------------------------------------------------------------------
# Writers and the command line
# --------------------------------------------------------------------------------------------------


def test_spark_writer_writes_the_local_writers_lines(spark: SparkSession, tmp_path: Path) -> None:
    batch = batches("churn", 1, 700)[0]
    local = write_local(str(tmp_path / "local"), batch, gzip=True, rows_per_file=300)
    out = f"file://{tmp_path / 'spark'}"
    folder = tmp_path / "spark" / "customers" / START.isoformat()
    write_spark(spark, out, batch, gzip=True, rows_per_file=1000)  # replaced by the next write
    written = write_spark(spark, out, batch, gzip=True, rows_per_file=300)
    parts = sorted(folder.glob("part-*.txt.gz"))
    assert len(parts) == len(written) == len(local) == 3
    expected = sorted(read_text(Path(p.removeprefix("file://"))) for p in local)
    assert sorted(read_text(p) for p in parts) == expected


def test_remote_output_needs_an_active_spark_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    with pytest.raises(RunError, match="active SparkSession"):
        generate(
            "churn",
            "hdfs://namenode:8020/landing",
            days=1,
            rows_per_day=5,
            start_date=START,
            seed=1,
        )


def test_cli_generates_into_the_landing_folder_without_spark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_spark(self: Invocation) -> SparkSession:
        raise AssertionError("local output must not start Spark")

    monkeypatch.setattr(Invocation, "spark", no_spark)
    code = main(
        ["generate", "churn", "--days", "2", "--rows-per-day", "50", "--gzip",
         "--start-date", "2026-03-01", "--set", f"storage.landing={tmp_path}"]
    )  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "churn" / "customers").rglob("*.gz"))
    assert names == ["customers-2026-03-01-000.csv.gz", "customers-2026-03-02-000.csv.gz"]
    assert "customers  2026-03-02" in capsys.readouterr().out
    assert main(["generate", "churn", "--rows-per-day", "0", "--out", str(tmp_path)]) == 2
