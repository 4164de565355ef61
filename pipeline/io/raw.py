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
SOURCE_ROW = "_source_row"  # the record's number in its file, from 1 (header not counted)
BLOCK, POSITION = "_block", "_position"  # where a record was read (see `positioned`)


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
    not split, else null), `_source_file`, and `_block` and `_position` (see `positioned`).
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if spec.format == "parquet":
        df = spark.read.parquet(*files)
        cols = [F.col(f"`{c}`").cast("string").alias(c) for c in file_columns]
        return positioned(
            df.select(
                *cols,
                F.lit(None).cast("string").alias(CORRUPT),
                F.col("_metadata.file_path").alias(SOURCE_FILE),
                F.col("_metadata.file_block_start").alias(BLOCK),
            )
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
    return positioned(
        df.select(
            *df.columns,
            F.col("_metadata.file_path").alias(SOURCE_FILE),
            F.col("_metadata.file_block_start").alias(BLOCK),
        )
    )


def positioned(df: DataFrame) -> DataFrame:
    """Add where each record sits: `_block` (the start of the file split it was read from) and
    `_position` (its place in the partition's reading order); `record_numbers` turns the two into
    the record's number in its file."""
    from pyspark.sql import functions as F

    return df.withColumn(POSITION, F.monotonically_increasing_id())


def record_numbers(spark: SparkSession, every_record: DataFrame) -> DataFrame:
    """A small table (`_source_file`, `_block`, `_base`): `_position + _base` is a record's number
    in its file, from 1, for each record of `every_record` (cached, and holding every record the
    files gave, good and bad, so the numbers are the files' own).

    A file may be read as several splits, packed into partitions in any order; inside a split the
    rows come in file order and a partition reads its splits one after the other, so a split's
    records have consecutive positions. Counting each split's records (one small aggregation)
    gives the records before it in its file. Nothing is sorted or shuffled by file, so one large
    file is numbered by as many tasks as it has splits; and the numbers depend on the file's
    content alone, not on how Spark cut it.
    """
    from pyspark.sql import functions as F

    splits = (
        every_record.groupBy(SOURCE_FILE, BLOCK)
        .agg(F.min(POSITION).alias("first"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    by_file: dict[str, list[tuple[int, int, int]]] = {}
    for r in splits:
        by_file.setdefault(r[SOURCE_FILE], []).append((int(r[BLOCK]), int(r["first"]), int(r["n"])))
    bases = []
    for path, parts in by_file.items():
        before = 0
        for block, first, n in sorted(parts):
            bases.append((path, block, before + 1 - first))
            before += n
    return spark.createDataFrame(bases, f"{SOURCE_FILE} STRING, {BLOCK} BIGINT, _base BIGINT")


def with_record_numbers(rows: DataFrame, numbers: DataFrame) -> DataFrame:
    """`rows` (with `_block` and `_position`) with `_source_row` in place of the two."""
    from pyspark.sql import functions as F

    joined = rows.join(F.broadcast(numbers), [SOURCE_FILE, BLOCK], "left")
    return joined.withColumn(SOURCE_ROW, F.col(POSITION) + F.col("_base")).drop(
        BLOCK, POSITION, "_base"
    )


def describe_error(exc: BaseException) -> str:
    """A short, single-line reason from a (possibly Java) exception."""
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), type(exc).__name__)
    # Storage errors can quote a URI with credentials or a key: masked before anything keeps it.
    return json.dumps(redact(first)[:300])[1:-1]
