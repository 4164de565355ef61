"""Raw landing files on any Hadoop FileSystem: list them, read their column names, read their rows.

Rows are read with every column as a string (plus the parser's corrupt-record column) so that the
validation step, not the reader, decides what is a bad value and says why.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config.sources import SourceSpec
from pipeline.errors import RunError
from pipeline.redact import redact

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CORRUPT = "_corrupt_record"
SOURCE_FILE = "_source_file"


@dataclass(frozen=True)
class RawFile:
    """One file in a landing folder."""

    path: str
    size: int
    modified: dt.datetime


def list_files(spark: SparkSession, uri: str) -> list[RawFile]:
    """All files below `uri` (recursively), oldest first; a clear error when the folder is missing.

    Spark's `binaryFile` source does the listing so every Hadoop FileSystem works; only path, size
    and modification time are selected, so no file content is read.
    """
    from pyspark.errors import AnalysisException

    try:
        rows = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .load(uri)
            .select("path", "length", "modificationTime")
            .collect()
        )
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            raise RunError(f"source folder {uri} does not exist") from None
        raise
    files = [RawFile(r["path"], int(r["length"]), r["modificationTime"]) for r in rows]
    return sorted(files, key=lambda f: (f.modified, f.path))


def file_exists(spark: SparkSession, uri: str) -> bool:
    """Whether the file at `uri` exists (listed through Spark, so any Hadoop FileSystem works)."""
    from pyspark.errors import AnalysisException

    try:
        return bool(spark.read.format("binaryFile").load(uri).select("path").limit(1).count())
    except AnalysisException:
        return False


def _csv_options(spec: SourceSpec) -> dict[str, str]:
    opts = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in spec.options.items()}
    opts.setdefault("header", "true")
    return opts


def has_header(spec: SourceSpec) -> bool:
    """Whether the source's files carry their column names (CSV header, JSON keys, Parquet)."""
    return spec.format != "csv" or _csv_options(spec)["header"] == "true"


def read_columns(
    spark: SparkSession, files: Sequence[str], spec: SourceSpec
) -> dict[str, list[str]]:
    """The column names each file declares: CSV header, JSON keys (all lines), Parquet footer.

    A file whose columns cannot be read at all is left out of the result (the caller treats it as
    unreadable).
    """
    from pyspark.sql import functions as F

    found: dict[str, list[str]] = {}
    if spec.format == "csv":
        opts = _csv_options(spec)
        delimiter = opts.get("delimiter", opts.get("sep", ","))
        quote = opts.get("quote", '"')
        encoding = opts.get("encoding", "UTF-8")
        for path in files:
            try:
                first = spark.read.option("encoding", encoding).text(path).first()
            except Exception:  # unreadable: reported by the caller with the read error
                continue
            line = (first[0] if first is not None else "") or ""
            header = next(
                csv.reader([line.lstrip("\ufeff")], delimiter=delimiter, quotechar=quote), []
            )
            found[path] = [h.strip() for h in header if h.strip()]
    elif spec.format == "json":
        keys = (
            spark.read.text(list(files))
            .select(
                F.col("_metadata.file_path").alias("file"),
                F.explode(F.json_object_keys(F.col("value"))).alias("key"),
            )
            .distinct()
            .collect()
        )
        for path in files:
            found[path] = []
        for row in keys:
            found.setdefault(row["file"], []).append(row["key"])
        found = {p: sorted(set(cols)) for p, cols in found.items()}
    else:
        for path in files:
            try:
                found[path] = list(spark.read.parquet(path).columns)
            except Exception:
                continue
    return found


def read_strings(
    spark: SparkSession, files: Sequence[str], spec: SourceSpec, file_columns: Sequence[str]
) -> DataFrame:
    """Read files that share one column layout, every column as a string.

    Returns `file_columns` (strings), `_corrupt_record` (the raw line of a record the parser could
    not split, else null) and `_source_file`.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if spec.format == "parquet":
        df = spark.read.parquet(*files)
        cols = [F.col(f"`{c}`").cast("string").alias(c) for c in file_columns]
        return df.select(
            *cols,
            F.lit(None).cast("string").alias(CORRUPT),
            F.col("_metadata.file_path").alias(SOURCE_FILE),
        )

    schema = T.StructType(
        [T.StructField(c, T.StringType(), True) for c in file_columns]
        + [T.StructField(CORRUPT, T.StringType(), True)]
    )
    reader = spark.read.schema(schema).option("mode", "PERMISSIVE")
    reader = reader.option("columnNameOfCorruptRecord", CORRUPT)
    if spec.format == "csv":
        # Positional schema in the header's own order (checked by the caller), so a file whose
        # columns come in another order is still read correctly.
        for key, value in _csv_options(spec).items():
            reader = reader.option(key, value)
        df = reader.option("enforceSchema", "true").csv(list(files))
    else:
        for key, option in spec.options.items():
            reader = reader.option(
                key, str(option).lower() if isinstance(option, bool) else str(option)
            )
        df = reader.json(list(files))
    return df.select(*df.columns, F.col("_metadata.file_path").alias(SOURCE_FILE))


def describe_error(exc: BaseException) -> str:
    """A short, single-line reason from a (possibly Java) exception."""
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), type(exc).__name__)
    # Storage errors can quote a URI with credentials or a key: masked before anything keeps it.
    return json.dumps(redact(first)[:300])[1:-1]
