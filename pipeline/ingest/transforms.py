"""Pure transformations of the ingest stage: validate raw string records against the declared schema.

No reads, writes or actions here; the runner (`pipeline.ingest.runner`) does the I/O.

Every raw row gets at most one reason, the first rule it breaks, in this order:

==================  ==============================================================
reason              meaning
==================  ==============================================================
malformed_record    the parser could not split the line into the declared fields
undecodable_text    a value holds bytes that are not valid in the file's encoding
type_mismatch       a value does not parse as its declared type
null_required       a required (nullable: false) column is empty
out_of_range        a number is below `min` or above `max`
not_allowed         a value is not in `allowed`
==================  ==============================================================

File-level reasons (the runner's): ``missing_required_column`` and ``unreadable_file``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.config.sources import ColumnSpec
from pipeline.io.raw import BLOCK, CORRUPT, POSITION, SOURCE_FILE

REASON, RULE, RAW_FIELDS = "_reason", "_rule", "_raw_fields"
ROW_REASONS = (
    "malformed_record",
    "undecodable_text",
    "type_mismatch",
    "null_required",
    "out_of_range",
    "not_allowed",
)
FILE_REASONS = ("missing_required_column", "unreadable_file")
REPLACEMENT_CHAR = "\ufffd"  # what a decoder puts where bytes are not valid text


EPOCH_FORMATS = ("epoch_seconds", "epoch_millis")


def typed_value(raw: Column, spec: ColumnSpec) -> Column:
    """`raw` (a string) as the declared type; null where it does not parse."""
    if spec.type == "string":
        return raw
    if spec.format in EPOCH_FORMATS and spec.type in ("timestamp", "date"):
        # Seconds (fractions allowed) or whole milliseconds since 1970-01-01 00:00 UTC.
        if spec.format == "epoch_seconds":
            instant = F.timestamp_seconds(raw.try_cast("double"))
        else:
            instant = F.timestamp_millis(raw.try_cast("long"))
        return instant if spec.type == "timestamp" else F.to_date(instant)
    if spec.type == "timestamp" and spec.format:
        return F.try_to_timestamp(raw, F.lit(spec.format))
    if spec.type == "date" and spec.format:
        return F.try_to_date(raw, spec.format)
    return raw.try_cast(spec.type)


def _allowed_literals(spec: ColumnSpec) -> list[Column]:
    return [F.lit(v).try_cast(spec.type) for v in spec.allowed or []]


def _shown(raw: Column) -> Column:
    return F.concat(F.lit("'"), F.substring(raw, 1, 80), F.lit("'"))


def _rules(
    columns: Sequence[ColumnSpec],
    extras: Sequence[str],
    typed: Callable[[ColumnSpec], Column] | None = None,
) -> list[tuple[Column, str, Column]]:
    """(condition, reason, detail) for every rule, in the order the reasons are checked.

    `typed(spec)` is the column's typed value (default: parsed from the raw string in place).
    """
    if typed is None:

        def typed(spec: ColumnSpec) -> Column:
            return typed_value(F.col(f"`{spec.name}`"), spec)

    rules: list[tuple[Column, str, Column]] = [
        (
            F.col(CORRUPT).isNotNull(),
            "malformed_record",
            F.lit("the line does not split into the declared fields"),
        ),
    ]
    for name in [c.name for c in columns] + list(extras):
        raw = F.col(f"`{name}`")
        rules.append(
            (
                raw.contains(REPLACEMENT_CHAR),
                "undecodable_text",
                F.lit(f"{name}: invalid bytes for the encoding"),
            )
        )
    for spec in columns:
        raw, value = F.col(f"`{spec.name}`"), typed(spec)
        rules.append(
            (
                raw.isNotNull() & value.isNull(),
                "type_mismatch",
                F.concat(
                    F.lit(f"{spec.name}: "), _shown(raw), F.lit(f" is not a valid {spec.type}")
                ),
            )
        )
    for spec in columns:
        if not spec.nullable:
            rules.append(
                (
                    F.col(spec.name).isNull(),
                    "null_required",
                    F.lit(f"{spec.name}: required value is missing"),
                )
            )
    for spec in columns:
        value = typed(spec)
        if spec.min is not None:
            rules.append(
                (
                    value < F.lit(spec.min),
                    "out_of_range",
                    F.concat(
                        F.lit(f"{spec.name}: "),
                        _shown(F.col(spec.name)),
                        F.lit(f" < min {spec.min:g}"),
                    ),
                )
            )
        if spec.max is not None:
            rules.append(
                (
                    value > F.lit(spec.max),
                    "out_of_range",
                    F.concat(
                        F.lit(f"{spec.name}: "),
                        _shown(F.col(spec.name)),
                        F.lit(f" > max {spec.max:g}"),
                    ),
                )
            )
    for spec in columns:
        if spec.allowed is not None:
            value = typed(spec)
            rules.append(
                (
                    value.isNotNull() & ~value.isin(*_allowed_literals(spec)),
                    "not_allowed",
                    F.concat(
                        F.lit(f"{spec.name}: "),
                        _shown(F.col(spec.name)),
                        F.lit(" is not an allowed value"),
                    ),
                )
            )
    return rules


def validate_records(
    raw_df: DataFrame, columns: Sequence[ColumnSpec], extras: Sequence[str] = ()
) -> DataFrame:
    """Add the typed columns, `_reason` (null for a good row) and, for a bad row, what
    `rejected_rows` needs to describe it: the number of the rule it broke and its raw fields.

    `raw_df` has every declared column (and each evolved `extras` column) as a string, plus
    `_corrupt_record` and `_source_file` (see `pipeline.io.raw.read_strings`).

    The batch is cached in this form, so what every row carries is kept small and cheap: the
    human-readable detail and the raw record as JSON are built by `rejected_rows`, for the rejected
    rows alone. Built here, for every row, they cost more than parsing the file.
    """
    raw_names = [c.name for c in columns] + list(extras)
    typed_names = {c.name: f"__typed__{c.name}" for c in columns}

    def typed(spec: ColumnSpec) -> Column:
        return F.col(f"`{typed_names[spec.name]}`")

    # Every value is parsed once, in its own projection: the rules use a typed value up to three
    # times, and Spark keeps a non-trivial expression that is used more than once in the projection
    # that computes it instead of inlining it into every use.
    parsed = raw_df.select(
        *[F.col(f"`{n}`") for n in raw_names],
        *[typed_value(F.col(f"`{c.name}`"), c).alias(typed_names[c.name]) for c in columns],
        F.col(CORRUPT),
        F.col(SOURCE_FILE),
        F.col(BLOCK),
        F.col(POSITION),
    )
    rules = _rules(columns, extras, typed)
    # The number of the first rule the row breaks: a CASE over cheap conditions returning a small
    # integer.
    first_broken: Column | None = None
    for i, (condition, _, _) in enumerate(rules):
        # A null condition (null compared with anything) means the rule does not apply.
        cond = F.coalesce(condition, F.lit(False))
        first_broken = (
            F.when(cond, F.lit(i)) if first_broken is None else first_broken.when(cond, F.lit(i))
        )
    assert first_broken is not None
    rule = F.col(RULE)
    return parsed.select("*", first_broken.alias(RULE)).select(
        *[typed(c).alias(c.name) for c in columns],
        *[F.col(f"`{n}`") for n in extras],
        F.col(SOURCE_FILE),
        F.col(BLOCK),
        F.col(POSITION),
        _reason_of(rule, rules).alias(REASON),
        rule,
        F.when(rule.isNotNull(), F.struct(*[F.col(f"`{n}`") for n in raw_names])).alias(RAW_FIELDS),
        F.col(CORRUPT),
    )


def _reason_of(rule: Column, rules: Sequence[tuple[Column, str, Column]]) -> Column:
    """The reason of a rule number. The rules come grouped by reason, in the order of
    ROW_REASONS, so the reason is the group the number falls in (a CASE of six branches)."""
    reason: Column | None = None
    for i, (_, name, _) in enumerate(rules):
        if i + 1 == len(rules) or rules[i + 1][1] != name:
            ends_here = rule <= F.lit(i)
            reason = (
                F.when(ends_here, F.lit(name))
                if reason is None
                else reason.when(ends_here, F.lit(name))
            )
    assert reason is not None
    return reason


def accepted_rows(
    validated_df: DataFrame, columns: Sequence[ColumnSpec], extras: Sequence[str] = ()
) -> DataFrame:
    """The rows that passed every rule, with the declared (and evolved) columns, the source file
    and the record's number in it."""
    return validated_df.where(F.col(REASON).isNull()).select(
        *[c.name for c in columns], *[f"`{n}`" for n in extras], SOURCE_FILE, BLOCK, POSITION
    )


def rejected_rows(
    validated_df: DataFrame, columns: Sequence[ColumnSpec], extras: Sequence[str] = ()
) -> DataFrame:
    """The rows that broke a rule: raw record (the line itself when it did not split into fields,
    else its fields as JSON), source file, reason code and detail."""
    rules = _rules(columns, extras)
    rule = F.col(RULE)
    detail: Column | None = None
    for i, (_, _, text) in enumerate(rules):
        matches = rule == F.lit(i)
        detail = F.when(matches, text) if detail is None else detail.when(matches, text)
    assert detail is not None
    bad = validated_df.where(F.col(REASON).isNotNull())
    # The detail texts refer to the raw values by column name: bring the raw fields back as columns.
    raw = bad.select(f"{RAW_FIELDS}.*", RULE, RAW_FIELDS, CORRUPT, SOURCE_FILE, REASON)
    return raw.select(
        F.coalesce(F.col(CORRUPT), F.to_json(F.col(RAW_FIELDS))).alias("raw_record"),
        F.col(SOURCE_FILE).alias("source_file"),
        F.col(REASON).alias("reason"),
        detail.alias("detail"),
    )


def with_lineage(
    df: DataFrame,
    *,
    run_id: str,
    batch_id: int,
    run_date: dt.date | None,
    ingested_at: Column | None = None,
) -> DataFrame:
    """Add the bronze metadata columns (the source file is already there): ingest time, run,
    batch, and the run date of the batch (the date a row without an event time belongs to)."""
    return df.select(
        "*",
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("_ingested_at"),
        F.lit(run_id).alias("_run_id"),
        F.lit(batch_id).cast("long").alias("_batch_id"),
        F.lit(run_date).cast("date").alias("_run_date"),
    )
