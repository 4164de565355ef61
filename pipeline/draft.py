"""`mlpipe init`: a commented pipeline YAML drafted from a sample of a data file.

Like TFX's SchemaGen, but the result is a file a person reads and edits: the columns with their
types, nullability and the ranges seen, whether the CSV has a header and which token stands for a
missing value, the label and its positive class, and model and train sections that run as they
are. Everything here is pure: the caller reads the sample (`sample_lines`, or Spark for remote
and Parquet files) and writes the text.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

NULL_TOKENS = ("?", "NA", "N/A", "NULL", "null", "None", "-", "nan", "NaN")
DELIMITERS = (",", "\t", ";", "|")
SAMPLE_ROWS = 5000
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_ALLOWED = 12  # a text column with at most this many values is shown with its values


@dataclass
class Column:
    """What the sample says about one column."""

    name: str
    type: str
    nullable: bool
    values: Counter[str] = field(default_factory=Counter)
    low: float | None = None
    high: float | None = None

    @property
    def format(self) -> str | None:
        if self.type == "timestamp":
            return "yyyy-MM-dd HH:mm:ss"
        if self.type == "date":
            return "yyyy-MM-dd"
        return None


@dataclass(frozen=True)
class Choices:
    """What the user said on the command line (each optional)."""

    label: str | None = None
    positive: tuple[str, ...] = ()
    test: str | None = None
    weight: str | None = None


@dataclass
class Draft:
    """A drafted pipeline: the YAML text and the choices it made (printed for the user)."""

    text: str
    notes: list[str]


def header_names(first: Sequence[str]) -> list[str]:
    """A header's names as declared columns: ingest matches them to the file's header ignoring
    case, so each must already be an identifier."""
    names = [v.strip() for v in first]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
    if bad:
        raise ValueError(
            f"header names that are not identifiers ({', '.join(bad[:5])}): rename them in the "
            "file (letters, digits, _), or drop the header line and run init again"
        )
    return names


def sniff_delimiter(lines: Sequence[str]) -> str:
    """The delimiter that splits the sample's lines into the same number (> 1) of fields."""
    best, best_score = ",", -1.0
    for d in DELIMITERS:
        counts = Counter(len(next(csv.reader([line], delimiter=d))) for line in lines if line)
        if not counts:
            continue
        width, seen = counts.most_common(1)[0]
        score = seen / sum(counts.values()) if width > 1 else 0.0
        if score > best_score:
            best, best_score = d, score
    return best


def _kind(value: str) -> str:
    if _INT.match(value):
        return "int"
    if _FLOAT.match(value):
        return "double"
    if _TIMESTAMP.match(value):
        return "timestamp"
    if _DATE.match(value):
        return "date"
    if value.lower() in ("true", "false"):
        return "boolean"
    return "string"


def has_header(rows: Sequence[Sequence[str]]) -> bool:
    """A header is a first row of text over columns whose other rows are mostly not text, or a
    first row of distinct names none of which appears again in its column."""
    if len(rows) < 2:
        return False
    first, rest = rows[0], rows[1:]
    for i, value in enumerate(first):
        column = [r[i].strip() for r in rest if i < len(r) and r[i].strip()]
        typed = [_kind(v) for v in column]
        if _kind(value.strip()) == "string" and typed and typed.count("string") < len(typed) / 10:
            return True
    names = [v.strip() for v in first]
    if len(set(names)) != len(names) or not all(names):
        return False
    return all(
        names[i] not in {r[i].strip() for r in rest if i < len(r)} for i in range(len(names))
    )


def null_token(rows: Sequence[Sequence[str]]) -> str | None:
    """The most frequent stand-in for a missing value among `NULL_TOKENS`, if any appears."""
    seen = Counter(v.strip() for r in rows for v in r if v.strip() in NULL_TOKENS)
    return seen.most_common(1)[0][0] if seen else None


def infer_columns(
    names: Sequence[str], rows: Sequence[Sequence[str]], null: str | None
) -> list[Column]:
    """Each column's type (the narrowest that parses every value), nullability and range."""
    columns = []
    for i, name in enumerate(names):
        values = [r[i].strip() if i < len(r) else "" for r in rows]
        present = [v for v in values if v and v != null]
        kinds = {_kind(v) for v in present}
        if not kinds:
            kind = "string"
        elif kinds <= {"int"}:
            kind = "long" if any(abs(int(v)) > 2**31 - 1 for v in present) else "int"
        elif kinds <= {"int", "double"}:
            kind = "double"
        elif len(kinds) == 1:
            kind = kinds.pop()
        else:
            kind = "string"
        col = Column(name, kind, nullable=len(present) < len(values), values=Counter(present))
        if kind in ("int", "long", "double"):
            numbers = [float(v) for v in present]
            col.low, col.high = min(numbers), max(numbers)
        columns.append(col)
    return columns


def _label_classes(col: Column) -> dict[str, list[str]]:
    """The label's classes, spellings that differ only by a trailing period put together."""
    classes: dict[str, list[str]] = {}
    for value in sorted(col.values):
        classes.setdefault(value.rstrip("."), []).append(value)
    return classes


def choose_label(columns: Sequence[Column], label: str | None) -> Column | None:
    """The named label column, else the last column with two classes."""
    if label is not None:
        for col in columns:
            if col.name == label:
                return col
        names = ", ".join(c.name for c in columns)
        raise ValueError(f"--label {label}: no such column (columns: {names})")
    for col in reversed(columns):
        if len(_label_classes(col)) == 2:
            return col
    return None


def _q(value: str) -> str:
    """A YAML double-quoted scalar."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def render(
    name: str,
    *,
    path: str,
    fmt: str,
    columns: Sequence[Column],
    header: bool,
    delimiter: str,
    null: str | None,
    rows: int,
    choices: Choices = Choices(),
) -> Draft:
    """The commented YAML of a pipeline over these columns."""
    label, positive, test, weight = choices.label, choices.positive, choices.test, choices.weight
    notes: list[str] = []
    target = choose_label(columns, label)
    weight_name = weight or None
    if weight_name is not None and weight_name not in {c.name for c in columns}:
        raise ValueError(f"--weight {weight}: no such column")
    out = [
        f"# Drafted by `mlpipe init` from {rows} rows of {path} on {dt.date.today()}.",
        "# Read it, edit what the sample could not know, then: mlpipe ingest --pipeline " + name,
        f"name: {name}",
    ]
    classes: dict[str, list[str]] = {}
    if target is not None and target.type == "string":
        classes = _label_classes(target)
    two_numbers = target is not None and target.type != "string" and len(target.values) == 2
    binary = len(classes) == 2 or (bool(classes) and bool(positive)) or two_numbers
    task = "binary_classification" if binary else "regression"
    out.append(f"task: {task}")
    options = []
    if fmt == "csv":
        options.append(f"header: {'true' if header else 'false'}")
        if delimiter != ",":
            options.append(f"sep: {_q(delimiter)}")
        if null is not None:
            options.append(f"nullValue: {_q(null)}")
        options.append("ignoreLeadingWhiteSpace: true")
        options.append("ignoreTrailingWhiteSpace: true")
    out += ["sources:", f"  {name}:", f"    path: {path}", f"    format: {fmt}"]
    if options:
        out.append(f"    options: {{{', '.join(options)}}}")
    out.append("    columns:")
    for col in columns:
        parts = [f"name: {col.name}", f"type: {col.type}"]
        if not col.nullable:
            parts.append("nullable: false")
        if col.low is not None and col.low >= 0:
            parts.append("min: 0")  # negative values would be an error in a count or an amount
        if col.format:
            parts.append(f"format: {_q(col.format)}")
        comment = ""
        if col.low is not None and col.high is not None:
            comment = f"  # seen {_number(col.low)} .. {_number(col.high)}"
        elif col.type == "string" and 0 < len(col.values) <= _MAX_ALLOWED:
            comment = "  # seen: " + ", ".join(sorted(col.values))
        elif col.type == "string":
            comment = f"  # {len(col.values)} distinct values in the sample"
        out.append(f"      - {{{', '.join(parts)}}}{comment}")
    out += [
        "features:",
        "  # No key: each row is known by its file and record number (row_id). No event time: a",
        "  # row belongs to the run date that ingested it. Set key / entity / event_time if the",
        "  # data has them.",
    ]
    if target is None:
        notes.append("no label column found: set features.label (or pass --label)")
        out.append("  # label: {column: ...}   # no two-class column was found: name the label")
    elif classes:
        spelt = classes
        if positive:
            pos_key = next(
                (k for k, spellings in spelt.items() if set(spellings) & set(positive)), None
            )
            if pos_key is None:
                raise ValueError(f"--positive {', '.join(positive)}: not a value of {target.name}")
        else:
            # The rarer class is the one a model is usually asked to find.
            counts = {k: sum(target.values[v] for v in spelt[k]) for k in spelt}
            pos_key = min(counts, key=lambda k: (counts[k], k))
        out += [
            "  label:",
            f"    column: {target.name}",
            f"    positive: [{', '.join(_q(v) for v in spelt[pos_key])}]",
        ]
        if len(spelt) == 2:
            [neg_key] = [k for k in spelt if k != pos_key]
            out.append(
                f"    negative: [{', '.join(_q(v) for v in spelt[neg_key])}]"
                "  # any other value is quarantined (unknown_label)"
            )
        else:
            out.append(f"    # every other value ({len(spelt) - 1} classes seen) is the class 0")
        notes.append(f"label {target.name}: positive {', '.join(spelt[pos_key])}")
    else:
        out += ["  label:", f"    column: {target.name}"]
        notes.append(f"label {target.name} (numeric)")
    out += ["model:", "  # Inputs: every column without another role (the label, row id, weight)."]
    out.append(f"  exclude: [{weight_name}]" if weight_name else "  exclude: []")
    classification = task == "binary_classification"
    out += [
        "train:",
        f"  metric: {'areaUnderPR' if classification else 'rmse'}",
        "  folds: 3",
    ]
    if weight_name:
        out.append(f"  weight_column: {weight_name}")
    if test:
        out.append(f"  split: {{kind: source, test: {_q(test)}}}  # these files are the test set")
    else:
        kind = "stratified" if classification else "random"
        out.append(f"  split: {{kind: {kind}, test_fraction: 0.2}}")
    out.append("  candidates:")
    if classification:
        out += [
            "    - name: logistic",
            "      algorithm: logistic_regression",
            "      params: {maxIter: 50}",
            "      grid: {regParam: [0.001, 0.01, 0.1]}",
            "    - name: forest",
            "      algorithm: random_forest",
            "      params: {numTrees: 50, maxDepth: 8}",
        ]
    else:
        out += [
            "    - name: linear",
            "      algorithm: linear_regression",
            "      grid: {regParam: [0.001, 0.01, 0.1]}",
            "    - name: forest",
            "      algorithm: random_forest_regressor",
            "      params: {numTrees: 50, maxDepth: 8}",
        ]
    out += [
        "nightly:",
        "  train_lookback_days: 3650  # rows without an event time: keep every ingested day",
    ]
    return Draft("\n".join(out) + "\n", notes)


def draft_from_lines(
    name: str,
    lines: Sequence[str],
    *,
    path: str,
    choices: Choices = Choices(),
    others: Sequence[Sequence[str]] = (),
) -> Draft:
    """Draft a CSV source's pipeline from the first lines of one of its files; `others` are
    the first lines of the folder's other files, whose values (a test file's label spellings,
    wider ranges, missing values) the draft must accept too."""
    sample = _clean(lines)
    if not sample:
        raise ValueError(f"{path} has no lines to draft from")
    delimiter = sniff_delimiter(sample[:200])

    def split(block: list[str]) -> list[list[str]]:
        return list(csv.reader([s.lstrip("\ufeff") for s in block], delimiter=delimiter))

    rows = split(sample)
    header = has_header(rows)
    width = Counter(len(r) for r in rows).most_common(1)[0][0]
    names = header_names(rows[0]) if header else [f"column_{i + 1}" for i in range(width)]
    body = rows[1:] if header else rows
    for other in others:
        more = split(_clean(other))
        body += more[1:] if header else more
    null = null_token(body)
    columns = infer_columns(names, body, null)
    return render(
        name,
        path=path,
        fmt="csv",
        columns=columns,
        header=header,
        delimiter=delimiter,
        null=null,
        rows=len(body),
        choices=choices,
    )


def _clean(lines: Sequence[str]) -> list[str]:
    return [line.rstrip("\r\n") for line in lines if line.strip()][: SAMPLE_ROWS + 1]


def draft_from_records(
    name: str,
    records: Sequence[dict[str, object]],
    *,
    path: str,
    fmt: str,
    types: dict[str, str] | None = None,
    choices: Choices = Choices(),
) -> Draft:
    """Draft a JSON or Parquet source's pipeline from sample records (`types`: the file's own
    column types, for Parquet)."""
    if not records:
        raise ValueError(f"{path} has no records to draft from")
    names: list[str] = []
    for record in records:
        names += [k for k in record if k not in names]
    header_names(names)  # the same rule: a declared column must name the key as it is

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    rows = [[text(r.get(n)) for n in names] for r in records]
    columns = infer_columns(names, rows, None)
    for col in columns:
        if types and col.name in types:
            col.type = types[col.name]
    return render(
        name,
        path=path,
        fmt=fmt,
        columns=columns,
        header=True,
        delimiter=",",
        null=None,
        rows=len(rows),
        choices=choices,
    )
