"""Reading the sample `mlpipe init` drafts a pipeline from (`pipeline.draft` does the drafting).

A local file is read directly, so drafting takes a moment and starts no JVM; any other Hadoop URI
(hdfs://, s3a://, ...) and every Parquet file is read through Spark.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.draft import SAMPLE_ROWS, Choices, Draft, draft_from_lines, draft_from_records
from pipeline.redact import uri_password

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_SPARK_TYPES = {
    "string": "string",
    "int": "int",
    "smallint": "int",
    "tinyint": "int",
    "bigint": "long",
    "double": "double",
    "float": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp_ntz": "timestamp",
}


def _format(uri: str, given: str | None) -> str:
    if given:
        return given
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return "json"
    return "csv"  # .csv, .txt, .data, .test, headerless dumps: sniffed


def _local(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri) else Path(uri)


MAX_FILES = 20  # files of a folder whose first lines the draft reads


def _data_file(path: Path) -> bool:
    # Spark leaves out names starting with `_` or `.` (`_SUCCESS`, checksums) when it lists.
    return path.is_file() and not path.name.startswith(("_", "."))


def _head(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        return list(islice(f, SAMPLE_ROWS + 1))


def draft_pipeline(
    spark: Callable[[], SparkSession],
    name: str,
    uri: str,
    *,
    fmt: str | None = None,
    label: str | None = None,
    positive: Sequence[str] = (),
    test: str | None = None,
    weight: str | None = None,
) -> Draft:
    """The drafted pipeline for the data at `uri` (a file, or a folder whose first file is read).

    The source's `path` is the folder, so the other files there (a separate test file) are
    ingested too, and the draft reads the first lines of each of them (up to `MAX_FILES`).
    """
    if uri_password(uri) is not None:
        # The URI becomes the source's `path` in a file: a credential must not be written there.
        raise ValueError(
            "--from carries a password: give the URI without it and the credentials through "
            "the environment (docs/CLUSTER.md)"
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"pipeline name '{name}' must be an identifier (letters, digits, _)")
    choices = Choices(label=label, positive=tuple(positive), test=test, weight=weight)
    local = _local(uri)
    if local is not None:
        if not local.exists():
            raise ValueError(f"--from {uri}: no such file or folder")
        files = sorted(p for p in local.rglob("*") if _data_file(p)) if local.is_dir() else [local]
        if not files:
            raise ValueError(f"--from {uri}: the folder holds no files")
        if not local.is_dir():  # the given file first, then its neighbours
            files = [
                local,
                *(p for p in sorted(local.parent.iterdir()) if p.is_file() and p != local),
            ]
        sample = files[0]
        folder = (local if local.is_dir() else local.parent).resolve().as_uri()
        kind = _format(str(sample), fmt)
        if kind == "csv":
            first, *others = [_head(f) for f in files[:MAX_FILES]]
            return draft_from_lines(name, first, path=folder, choices=choices, others=others)
        if kind == "json":
            with sample.open(encoding="utf-8", errors="replace") as f:
                records = [json.loads(line) for line in islice(f, SAMPLE_ROWS) if line.strip()]
            return draft_from_records(name, records, path=folder, fmt="json", choices=choices)
        return _draft_with_spark(spark(), name, sample.resolve().as_uri(), folder, kind, choices)
    folder = uri if not re.search(r"\.[A-Za-z0-9]+$", uri.rstrip("/")) else uri.rsplit("/", 1)[0]
    return _draft_with_spark(spark(), name, uri, folder, _format(uri, fmt), choices)


def _draft_with_spark(
    spark: SparkSession, name: str, uri: str, folder: str, kind: str, choices: Choices
) -> Draft:
    if kind == "parquet":
        df = spark.read.parquet(uri)
        types = {f.name: _SPARK_TYPES.get(f.dataType.simpleString(), "string") for f in df.schema}
        records = [r.asDict() for r in df.limit(SAMPLE_ROWS).collect()]
        return draft_from_records(
            name, records, path=folder, fmt="parquet", types=types, choices=choices
        )
    lines = [r[0] for r in spark.read.text(uri).limit(SAMPLE_ROWS + 1).collect()]
    if kind == "json":
        records = [json.loads(line) for line in lines if line.strip()]
        return draft_from_records(name, records, path=folder, fmt="json", choices=choices)
    return draft_from_lines(name, lines, path=folder, choices=choices)


def write_draft(
    spark: Callable[[], SparkSession],
    conf_dir: Path,
    name: str,
    uri: str,
    *,
    format: str | None,
    label: str | None,
    positive: Sequence[str] | None,
    test: str | None,
    weight: str | None,
    force: bool,
) -> str:
    """`mlpipe init`: draft the pipeline `name` from the data at `uri` into
    `<conf_dir>/base/pipelines/<name>.yml`; what to tell the user. A `ConfigError` when the file
    exists (without `force`) or the sample cannot be drafted from."""
    from pipeline.errors import ConfigError

    target = conf_dir / "base" / "pipelines" / f"{name}.yml"
    if target.exists() and not force:
        raise ConfigError(f"{target} exists: pass --force to replace it")
    try:
        draft = draft_pipeline(
            spark,
            name,
            uri,
            fmt=format,
            label=label,
            positive=positive or (),
            test=test,
            weight=weight,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(draft.text)
    lines = [f"wrote {target}", *(f"  {note}" for note in draft.notes)]
    lines.append(f"next: mlpipe ingest --pipeline {name}   (then features, train, score)")
    return "\n".join(lines)
