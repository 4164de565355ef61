"""The columns a model sees when the YAML lists none: found from the feature table's schema.

Every column is an input unless the pipeline already gives it another role (the row key, the
entity, the event time and date, the label and the columns it is made from, the source file, the
sample weight) or `model.exclude` names it. Numbers and true/false (as 1/0) are numeric inputs,
text is categorical. Training and scoring resolve the inputs the same way from the feature table
they read; a fitted model keeps the columns it was trained on, so a column the features stage adds
later reaches the model only when it is retrained.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipeline.config.models import PipelineSpec
from pipeline.config.stages import ModelInputSpec
from pipeline.errors import RunError
from pipeline.names import EVENT_DATE, LABEL, SOURCE_FILE

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def roles(spec: PipelineSpec) -> set[str]:
    """Feature-table columns that have a role other than model input."""
    features = spec.require_features()
    taken = {EVENT_DATE, LABEL, SOURCE_FILE, *features.key_columns, *spec.score.keys}
    taken.update(c for c in (features.entity, features.event_time) if c is not None)
    label = features.label
    if label is not None:
        if label.column is not None:
            taken.add(label.column)
        if label.expr is not None:
            # Any column the expression names would leak the label into the inputs; a word of
            # the expression that is not a column (a function, a keyword) removes nothing.
            taken.update(_WORD.findall(label.expr))
    if spec.train is not None and spec.train.weight_column is not None:
        taken.add(spec.train.weight_column)
    return taken


def resolve_inputs(spec: PipelineSpec, schema: StructType) -> ModelInputSpec:
    """The model section with its input columns listed (as declared, or found in `schema`)."""
    from pyspark.sql import types as T

    model = spec.require_model()
    if not model.inferred:
        return model
    unknown = sorted(set(model.exclude) - set(schema.fieldNames()))
    if unknown:
        raise RunError(
            f"model.exclude names column(s) the feature table does not have: {', '.join(unknown)}"
        )
    skip = roles(spec) | set(model.exclude)
    numeric: list[str] = []
    categorical: list[str] = []
    for field in schema.fields:
        if field.name in skip:
            continue
        if isinstance(field.dataType, (T.NumericType, T.BooleanType)):
            numeric.append(field.name)  # true/false as 1/0, imputed like any number
        elif isinstance(field.dataType, T.StringType):
            categorical.append(field.name)
        # Dates, timestamps, arrays and maps are not model inputs without a derived column.
    if not numeric and not categorical:
        raise RunError(
            "the feature table has no column left for the model: every one has another role or "
            "is excluded (see model.exclude)"
        )
    return model.model_copy(update={"numeric": numeric, "categorical": categorical, "exclude": []})
