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

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.config.models import ColumnSpec
from pipeline.io.raw import CORRUPT, SOURCE_FILE

REASON, DETAIL, RAW_RECORD = "_reason", "_detail", "_raw_record"
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


def typed_value(raw: Column, spec: ColumnSpec) -> Column:
    """`raw` (a string) as the declared type; null where it does not parse."""
    if spec.type == "string":
        return raw
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
    columns: Sequence[ColumnSpec], extras: Sequence[str]
) -> list[tuple[Column, str, Column]]:
    """(condition, reason, detail) for every rule, in the order the reasons are checked."""
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
        raw, typed = F.col(spec.name), typed_value(F.col(spec.name), spec)
        rules.append(
            (
                raw.isNotNull() & typed.isNull(),
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
        typed = typed_value(F.col(spec.name), spec)
        if spec.min is not None:
            rules.append(
                (
                    typed < F.lit(spec.min),
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
                    typed > F.lit(spec.max),
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
            typed = typed_value(F.col(spec.name), spec)
            rules.append(
                (
                    typed.isNotNull() & ~typed.isin(*_allowed_literals(spec)),
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
    """Add `_reason`/`_detail` (null for a good row), typed columns and the raw record as JSON.

    `raw_df` has every declared column (and each evolved `extras` column) as a string, plus
    `_corrupt_record` and `_source_file` (see `pipeline.io.raw.read_strings`).
    """
    verdict: Column | None = None
    for condition, reason, detail in _rules(columns, extras):
        outcome = F.struct(F.lit(reason).alias("reason"), detail.alias("detail"))
        # A null condition (null compared with anything) means the rule does not apply.
        cond = F.coalesce(condition, F.lit(False))
        verdict = F.when(cond, outcome) if verdict is None else verdict.when(cond, outcome)
    assert verdict is not None
    raw_names = [c.name for c in columns] + list(extras)
    raw_json = F.to_json(F.struct(*[F.col(f"`{n}`") for n in raw_names]))
    return (
        raw_df.select(
            *[typed_value(F.col(c.name), c).alias(c.name) for c in columns],
            *[F.col(f"`{n}`") for n in extras],
            verdict.alias("_verdict"),
            F.coalesce(F.col(CORRUPT), raw_json).alias(RAW_RECORD),
            F.col(SOURCE_FILE),
        )
        .select(
            "*",
            F.col("_verdict.reason").alias(REASON),
            F.col("_verdict.detail").alias(DETAIL),
        )
        .drop("_verdict")
    )


def accepted_rows(
    validated_df: DataFrame, columns: Sequence[ColumnSpec], extras: Sequence[str] = ()
) -> DataFrame:
    """The rows that passed every rule, with the declared (and evolved) columns and the source file."""
    return validated_df.where(F.col(REASON).isNull()).select(
        *[c.name for c in columns], *[f"`{n}`" for n in extras], SOURCE_FILE
    )


def rejected_rows(validated_df: DataFrame) -> DataFrame:
    """The rows that broke a rule: raw record, source file, reason code and detail."""
    return validated_df.where(F.col(REASON).isNotNull()).select(
        F.col(RAW_RECORD).alias("raw_record"),
        F.col(SOURCE_FILE).alias("source_file"),
        F.col(REASON).alias("reason"),
        F.col(DETAIL).alias("detail"),
    )


def with_lineage(
    df: DataFrame, *, run_id: str, batch_id: int, ingested_at: Column | None = None
) -> DataFrame:
    """Add the bronze metadata columns (the source file is already there): ingest time, run, batch."""
    return df.select(
        "*",
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("_ingested_at"),
        F.lit(run_id).alias("_run_id"),
        F.lit(batch_id).cast("long").alias("_batch_id"),
    )
