"""Configuration of a pipeline's sources: raw files, their declared columns, and the reader
options a source may set."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from pipeline.config.base import Frozen, Identifier, KeyedError
from pipeline.config.stages import NonNegativeDuration, duration_seconds
from pipeline.config.uris import Uri

SIMPLE_TYPES = (
    "string",
    "int",
    "long",
    "bigint",
    "double",
    "float",
    "boolean",
    "date",
    "timestamp",
)
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def _column_type(value: str) -> str:
    value = value.strip().lower()
    if value in SIMPLE_TYPES or _DECIMAL.match(value):
        return "long" if value == "bigint" else value
    raise ValueError(f"unknown type '{value}' (known: {', '.join(SIMPLE_TYPES)}, decimal(p,s))")


ColumnType = Annotated[str, AfterValidator(_column_type)]


class ColumnSpec(Frozen):
    """One declared source column; rows that break its rules go to quarantine."""

    name: Identifier
    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None
    # date/timestamp: a pattern ("yyyy-MM-dd HH:mm:ss"), or epoch_seconds / epoch_millis for
    # numbers of seconds (fractions allowed) or milliseconds since 1970-01-01 00:00 UTC
    format: str | None = None

    @model_validator(mode="after")
    def _range(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        numeric = self.type not in ("string", "boolean", "date", "timestamp")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to numeric columns, not {self.type}")
        if self.format is not None and self.type not in ("date", "timestamp"):
            raise KeyedError(
                "format", f"format applies to date and timestamp columns, not {self.type}"
            )
        return self


class SourceSpec(Frozen):
    """Raw files in a landing folder: format, options and the enforced schema."""

    path: Uri | None = None  # default: <storage.landing>/<pipeline>/<source name>
    format: Literal["csv", "json", "parquet"]
    options: dict[str, str | int | bool] = Field(default_factory=dict)
    columns: list[ColumnSpec] = Field(min_length=1)
    schema_evolution: Literal["fail", "add"] = "fail"
    max_files_per_batch: int | None = Field(None, ge=1)
    # A file modified less than this long ago is not taken yet (a copy may still be running);
    # 0s for landing folders whose files appear whole (HDFS `put`, object stores, atomic renames).
    settle: NonNegativeDuration = "0s"
    # A file rewritten or appended in place after it was ingested: quarantined whole with
    # reason `file_changed` (bronze keeps its first version), or read again as a new version.
    on_change: Literal["quarantine", "reingest"] = "quarantine"

    @property
    def settle_seconds(self) -> int:
        return duration_seconds(self.settle)

    @model_validator(mode="after")
    def _unique(self) -> SourceSpec:
        names = [c.name.lower() for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names: {', '.join(dupes)}")
        check_reader_options(self.format, self.options)
        return self


# Spark's file-source options, per format, that a source may set. Every other option is refused:
# the ones below that would drop, skip or fail rows or files without counting them, and the ones
# the ingest stage sets itself so that every record is kept and given a reason.
_COMMON_OPTIONS = {"encoding", "charset", "lineSep", "locale", "multiLine", "timeZone"}
READER_OPTIONS: dict[str, set[str]] = {
    "csv": _COMMON_OPTIONS
    | {
        "header",
        "sep",
        "delimiter",
        "quote",
        "escape",
        "comment",
        "ignoreLeadingWhiteSpace",
        "ignoreTrailingWhiteSpace",
        "nullValue",
        "emptyValue",
        "nanValue",
        "positiveInf",
        "negativeInf",
        "maxColumns",
        "maxCharsPerColumn",
        "unescapedQuoteHandling",
        "charToEscapeQuoteEscaping",
        "quoteAll",
    },
    "json": _COMMON_OPTIONS
    | {
        "allowComments",
        "allowUnquotedFieldNames",
        "allowSingleQuotes",
        "allowNumericLeadingZeros",
        "allowBackslashEscapingAnyCharacter",
        "allowUnquotedControlChars",
        "allowNonNumericNumbers",
    },
    "parquet": {"mergeSchema", "datetimeRebaseMode", "int96RebaseMode"},
}
_REFUSED_OPTIONS = {
    "mode": "drops or fails rows (ingest parses PERMISSIVE and quarantines each bad record "
    "with a reason)",
    "dropFieldIfAllNull": "drops columns",
    "ignoreCorruptFiles": "skips files without counting them (ingest quarantines an unreadable "
    "file whole)",
    "ignoreMissingFiles": "skips files without counting them",
    "pathGlobFilter": "skips files of the landing folder without counting them",
    "modifiedBefore": "skips files of the landing folder without counting them",
    "modifiedAfter": "skips files of the landing folder without counting them",
    "recursiveFileLookup": "is set by the ingest stage (every file below the folder is listed)",
    "columnNameOfCorruptRecord": "is set by the ingest stage",
    "enforceSchema": "is set by the ingest stage",
    "inferSchema": "is set by the ingest stage (the declared columns are the schema)",
    "samplingRatio": "is set by the ingest stage (the declared columns are the schema)",
    "prefersDecimal": "is set by the ingest stage (the declared columns are the schema)",
    "primitivesAsString": "is set by the ingest stage (every value is read as a string)",
    "dateFormat": "belongs on the column (`format:` of a date column)",
    "timestampFormat": "belongs on the column (`format:` of a timestamp column)",
    "timestampNTZFormat": "belongs on the column (`format:` of a timestamp column)",
}


def check_reader_options(fmt: str, options: dict[str, str | int | bool]) -> None:
    """Refuse reader options that lose rows silently or that the reader does not know."""
    known = READER_OPTIONS[fmt]
    folded = {k.lower(): k for k in known}
    for key in options:
        refused = {k.lower(): why for k, why in _REFUSED_OPTIONS.items()}.get(key.lower())
        if refused is not None:
            raise KeyedError(f"options.{key}", f"reader option '{key}' {refused}")
        if key.lower() not in folded:
            raise KeyedError(
                f"options.{key}",
                f"'{key}' is not an option of the {fmt} reader that a source may set "
                f"(known: {', '.join(sorted(known))})",
            )
