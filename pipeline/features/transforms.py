"""Pure feature transformations: `DataFrame -> DataFrame`, no reads, writes or actions.

Compose them with `df.transform(f, ...)`; `pipeline.features.runner` does the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.config.stages import (
    ROW_ID,
    DerivedFeature,
    EventLabel,
    LabelSpec,
    WindowFeature,
    duration_seconds,
)
from pipeline.names import EVENT_DATE, LABEL

_MICROS = 1_000_000


def clean_strings(df: DataFrame, *, trim: bool = True, lowercase: Sequence[str] = ()) -> DataFrame:
    """Trim string columns (empty becomes null) and lower-case the listed categorical columns."""
    lowered = set(lowercase)
    cols: list[Column] = []
    for field in df.schema.fields:
        col = F.col(f"`{field.name}`")
        if isinstance(field.dataType, T.StringType) and not field.name.startswith("_"):
            if trim:
                col = F.trim(col)
                col = F.when(col == "", F.lit(None)).otherwise(col)
            if field.name in lowered:
                col = F.lower(col)
        cols.append(col.alias(field.name))
    return df.select(*cols)


def deduplicate(
    df: DataFrame, *, key: Sequence[str], event_time: str, tie_breakers: Sequence[str] = ()
) -> DataFrame:
    """One row per key: the latest by event time wins (then by the tie-breaker columns, descending)."""
    order = [
        F.col(event_time).desc_nulls_last(),
        *[F.col(c).desc_nulls_last() for c in tie_breakers],
    ]
    w = Window.partitionBy(*key).orderBy(*order)
    return (
        df.withColumn("_dup_rank", F.row_number().over(w))
        .where(F.col("_dup_rank") == 1)
        .drop("_dup_rank")
    )


def with_derived(df: DataFrame, derived: Sequence[DerivedFeature]) -> DataFrame:
    """Add columns from Spark SQL expressions, in order (each may use the ones before it)."""
    for feature in derived:
        df = df.withColumn(feature.name, F.expr(feature.expr))
    return df


def window_column_name(column: str, agg: str, over: str) -> str:
    """Name of a window feature, e.g. amount_mean_24h or events_count_1h."""
    base = "events" if column == "*" else column
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{base}_{agg}_{over}")


def with_window_features(
    df: DataFrame, *, entity: str, event_time: str, windows: Sequence[WindowFeature]
) -> DataFrame:
    """Per-entity aggregates over past windows that are point-in-time correct.

    An event at time t sees only events of its entity in [t - window, t): strictly before t, so it
    never sees itself, later events, or other events with the very same timestamp (ties are
    excluded on purpose: their order is unknown, so neither may use the other).
    """
    ts = F.unix_micros(F.col(event_time).cast("timestamp"))
    df = df.withColumn("_ts_us", ts)
    for spec in windows:
        value = F.lit(1) if spec.column == "*" else F.col(spec.column)
        for over in spec.over:
            span = duration_seconds(over) * _MICROS
            w = Window.partitionBy(entity).orderBy("_ts_us").rangeBetween(-span, -1)
            for agg in spec.aggs:
                name = window_column_name(spec.column, agg, over)
                if agg == "count":
                    col = F.count(value).over(w)
                elif agg == "sum":
                    col = F.coalesce(F.sum(value).over(w), F.lit(0)).cast("double")
                elif agg == "mean":
                    col = F.avg(value).over(w)
                elif agg == "min":
                    col = F.min(value).over(w).cast("double")
                elif agg == "max":
                    col = F.max(value).over(w).cast("double")
                else:
                    col = F.stddev_samp(value).over(w)
                df = df.withColumn(name, col)
    return df.drop("_ts_us")


def with_label(
    df: DataFrame,
    label: LabelSpec,
    *,
    key: Sequence[str] = (),
    events_df: DataFrame | None = None,
    entity: str | None = None,
    event_time: str | None = None,
    observed_until: Column | None = None,
) -> DataFrame:
    """Add the `label` column from a column, an expression or future events (see `event_label`)."""
    if label.column is not None:
        if label.positive is not None:
            return df.withColumn(LABEL, mapped_label(label))
        return df.withColumn(LABEL, F.col(label.column).cast("double"))
    if label.expr is not None:
        return df.withColumn(LABEL, F.expr(label.expr).cast("double"))
    if label.event is None or events_df is None or not entity or not event_time or not key:
        raise ValueError("an event label needs the events, the key, the entity and the event time")
    return event_label(
        df,
        events_df,
        spec=label.event,
        key=key,
        entity=entity,
        event_time=event_time,
        observed_until=observed_until,
    )


def mapped_label(label: LabelSpec) -> Column:
    """1.0 for a `positive` value, 0.0 for a `negative` one (for anything else without a
    `negative` list), null for a missing value or, with a `negative` list, an unknown one."""
    assert label.positive is not None
    value = _label_value(label)
    negative = value.isin(label.negative) if label.negative is not None else F.lit(True)
    return (
        F.when(value.isNull(), F.lit(None).cast("double"))
        .when(value.isin(label.positive), F.lit(1.0))
        .when(negative, F.lit(0.0))
        .otherwise(F.lit(None).cast("double"))
    )


def _label_value(label: LabelSpec) -> Column:
    """The label column's value as the declared lists compare it: text, trimmed."""
    assert label.column is not None
    return F.trim(F.col(f"`{label.column}`").cast("string"))


def unknown_label(label: LabelSpec | None) -> Column | None:
    """Rows whose label value is in neither declared list (None when every value maps)."""
    if label is None or label.column is None or label.negative is None:
        return None
    assert label.positive is not None
    value = _label_value(label)
    return value.isNotNull() & ~value.isin(label.positive) & ~value.isin(label.negative)


def with_row_id(df: DataFrame, *, source_file: str, source_row: str) -> DataFrame:
    """Add `row_id`, "<file>:<record number>": the key of a row whose source declares none."""
    return df.withColumn(
        ROW_ID, F.concat_ws(":", F.col(source_file), F.col(source_row).cast("string"))
    )


def event_label(
    df: DataFrame,
    events_df: DataFrame,
    *,
    spec: EventLabel,
    key: Sequence[str],
    entity: str,
    event_time: str,
    observed_until: Column | None = None,
) -> DataFrame:
    """Label each row (unique by `key`) from its entity's next event after the row's time.

    `occurs_within`: 1.0 when an event happens in (t, t + within], else 0.0.
    `time_until`: days from t to the next event, capped at the horizon (remaining useful life).
    A row whose horizon reaches past `observed_until` (what has been seen so far) gets a null label,
    with or without an event seen so far: its outcome is censored, so it must not be trained on.
    """
    horizon = duration_seconds(spec.within)
    within = F.expr(f"INTERVAL {horizon} SECONDS")
    events = events_df.select(
        F.col(entity).alias("_e_entity"), F.col(spec.time).cast("timestamp").alias("_e_time")
    )
    rows = df.select(
        *key, F.col(entity).alias("_entity"), F.col(event_time).cast("timestamp").alias("_t")
    )
    joined = rows.join(
        events,
        (F.col("_entity") == F.col("_e_entity"))
        & (F.col("_e_time") > F.col("_t"))
        & (F.col("_e_time") <= F.col("_t") + within),
        "left",
    )
    nxt = joined.groupBy(*key).agg(F.min("_e_time").alias("_next_event"), F.first("_t").alias("_t"))
    seconds_until = F.unix_timestamp("_next_event") - F.unix_timestamp("_t")
    if spec.kind == "occurs_within":
        value = F.when(F.col("_next_event").isNotNull(), F.lit(1.0)).otherwise(F.lit(0.0))
    else:
        value = F.coalesce(seconds_until / 86400.0, F.lit(horizon / 86400.0)).cast("double")
    if observed_until is not None:
        # Censored: the whole horizon is not observed yet. Leave the label unknown even when an event
        # was already seen, or the latest rows would be labelled only when positive (a biased,
        # optimistic training and test set).
        immature = F.col("_t") + within > observed_until
        value = F.when(immature, F.lit(None).cast("double")).otherwise(value)
    labels = nxt.select(*key, value.alias(LABEL))
    return df.join(labels, list(key), "left")


def with_event_date(df: DataFrame, event_time: str) -> DataFrame:
    """Add the partition column `event_date` (UTC date of the event time, or the date itself)."""
    return df.withColumn(EVENT_DATE, F.to_date(F.col(event_time)))
