"""A fitted pipeline's score as one SQL expression, for batch scoring.

`PipelineModel.transform` runs every vector stage as a UDF: each row is boxed into a vector by the
assembler, copied into a new vector by the scaler and the one-hot encoder, assembled again, then
turned into raw-prediction and probability vectors that `vector_to_array` unboxes. On 1M rows that
is most of the scoring time. A linear model over linear preprocessing is a sum of scalar terms, so
this module folds those stages into one SQL expression over the input columns, which Spark's
whole-stage code generation evaluates with no vector objects at all.

Stages that only make scalar columns (the casting `SQLTransformer`, `Imputer`, `StringIndexer`,
the rare-category grouper) are applied as they are: they are SQL already. Vector stages become lists
of per-slot expressions (a one-hot block stays an index and a size, so a coefficient is looked up,
not summed over every category). Tree ensembles (MLlib's and XGBoost's) become nested CASE WHENs
over the slots (`pipeline.model.trees`). A stage without a compiled form (MinMaxScaler, multinomial
models, a custom stage) makes `compile_score` return `None`, and the caller uses `transform`.

The expression follows MLlib's arithmetic: a standard scaler multiplies by `1 / std` (0 for a
constant column), a margin is the features-coefficients dot product plus the intercept, and a
logistic model's positive-class probability is `1 - 1 / (1 + exp(margin))`, as MLlib computes it.
`check_against_transform` compares the two on rows of the run before the expression is trusted.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.model.evaluate import score_column

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel

log = logging.getLogger(__name__)

SCORING_TAG = "scoring_path"  # model version tag: "compiled" once verified at registration
COMPILED = "compiled"
TRANSFORM = "transform"
SCORE = "__score__"
_ROW = "__row__"
_SLOT = "__slot_"
_TREE_SCORE = "__tree_score__"
LINEAR_TOLERANCE = 1e-9  # the same arithmetic in another summation order
_ALIAS = re.compile(r"^\s*SELECT\s+\*\s*,\s*`?(\w+)`?\s+AS\s+`?(\w+)`?\s+FROM\s+__THIS__\s*$", re.I)


@dataclass(frozen=True)
class _OneHot:
    """A one-hot block: slot k is 1.0 when the index equals k, else 0.0."""

    index: Column
    size: int

    def slots(self) -> list[Column]:
        return [F.when(self.index == F.lit(float(k)), 1.0).otherwise(0.0) for k in range(self.size)]

    def dot(self, weights: list[float]) -> Column:
        # One lookup instead of `size` products. An index outside the block (MLlib's encoder would
        # reject it; the indexer never emits one) adds 0.
        table = F.array(*[F.lit(w) for w in weights])
        inside = (self.index >= F.lit(0.0)) & (self.index < F.lit(float(self.size)))
        return F.when(inside, F.element_at(table, self.index.cast("int") + F.lit(1))).otherwise(
            F.lit(0.0)
        )


_Segment = list[Column] | _OneHot


@dataclass(frozen=True)
class _Vector:
    """A vector column as expressions: dense runs of slots and one-hot blocks, in slot order."""

    segments: tuple[_Segment, ...]

    @property
    def size(self) -> int:
        return sum(s.size if isinstance(s, _OneHot) else len(s) for s in self.segments)

    def dense(self) -> list[Column]:
        out: list[Column] = []
        for s in self.segments:
            out += s.slots() if isinstance(s, _OneHot) else s
        return out

    def dot(self, weights: list[float]) -> Column:
        """Sum of weight x slot in slot order (MLlib's `BLAS.dot` order, zero terms included)."""
        if len(weights) != self.size:
            raise ValueError(f"{len(weights)} weights for a vector of {self.size} slots")
        terms: list[Column] = []
        at = 0
        for s in self.segments:
            if isinstance(s, _OneHot):
                terms.append(s.dot(weights[at : at + s.size]))
                at += s.size
            else:
                terms += [F.lit(w) * e for w, e in zip(weights[at : at + len(s)], s, strict=True)]
                at += len(s)
        # Left to right, as MLlib sums: (t0 + t1) + t2 ...
        return functools.reduce(operator.add, terms) if terms else F.lit(0.0)


class _UnsupportedError(Exception):
    """A stage without a compiled form: the caller scores with `transform`."""


@dataclass(frozen=True)
class CompiledScore:
    """The rows the scalar stages produced, and the score as an expression over them."""

    frame: DataFrame
    score: Column


def compile_score(
    model: PipelineModel, rows: DataFrame, *, classification: bool
) -> CompiledScore | None:
    """The score of `model` on `rows` as one expression, or `None` when a stage has no compiled form.

    The score is the positive-class probability (the sigmoid of the margin for a linear SVM, as
    `score_column` reads it) for classification, the prediction for regression.
    """
    try:
        frame, score, _ = _compile(model, rows, classification)
    except _UnsupportedError as exc:
        log.info("no compiled form, scoring with transform: %s", exc)
        return None
    return CompiledScore(frame, score)


def model_scores(
    model: PipelineModel, rows: DataFrame, *, classification: bool, compiled: bool
) -> tuple[DataFrame, Column, str]:
    """The scored rows, the score column and the path taken (`compiled` or `transform`).

    `compiled` asks for the compiled expression; a pipeline without one is scored by `transform`.
    """
    if compiled:
        found = compile_score(model, rows, classification=classification)
        if found is not None:
            return found.frame, found.score, COMPILED
    scored = model.transform(rows)
    score = score_column(scored) if classification else F.col("prediction").cast("double")
    return scored, score, TRANSFORM


def scoring_tags(model: PipelineModel, rows: DataFrame, *, classification: bool) -> dict[str, str]:
    """Model-version tags saying how the model may be scored, checked on `rows` (test rows)."""
    problem = check_against_transform(model, rows, classification=classification)
    if problem is None:
        return {SCORING_TAG: COMPILED}
    log.info("the model will be scored with transform: %s", problem)
    return {SCORING_TAG: TRANSFORM, f"{SCORING_TAG}.reason": problem[:500]}


def _compile(
    model: PipelineModel, rows: DataFrame, classification: bool
) -> tuple[DataFrame, Column, float]:
    """(the scalar stages' rows, the score over them, the tolerance of the check against
    `transform`)."""
    from pyspark.ml.classification import LinearSVCModel, LogisticRegressionModel
    from pyspark.ml.feature import (
        ImputerModel,
        OneHotEncoderModel,
        PCAModel,
        SQLTransformer,
        StandardScalerModel,
        StringIndexerModel,
        UnivariateFeatureSelectorModel,
        VarianceThresholdSelectorModel,
        VectorAssembler,
    )
    from pyspark.ml.regression import LinearRegressionModel

    from pipeline.model.preprocess import RareCategoryGroupingModel

    frame = rows
    vectors: dict[str, _Vector] = {}
    stages: list[Any] = list(model.stages)
    if not stages:
        raise _UnsupportedError("the pipeline has no stages")
    *preprocessing, predictor = stages
    for stage in preprocessing:
        name = type(stage).__name__
        if isinstance(stage, SQLTransformer):
            statement = stage.getStatement()
            alias = _ALIAS.match(statement)
            if alias and alias.group(1) in vectors:
                vectors[alias.group(2)] = vectors[alias.group(1)]
            elif any(re.search(rf"\b{re.escape(v)}\b", statement) for v in vectors):
                raise _UnsupportedError(f"a SQLTransformer reads a vector column: {statement}")
            else:
                frame = stage.transform(frame)
        elif isinstance(stage, (ImputerModel, StringIndexerModel, RareCategoryGroupingModel)):
            _scalar_inputs(stage, vectors)
            frame = stage.transform(frame)
        elif isinstance(stage, VectorAssembler):
            vectors[stage.getOutputCol()] = _assemble(stage, frame, vectors)
        elif isinstance(stage, StandardScalerModel):
            vectors[stage.getOutputCol()] = _standard_scale(stage, _vector(stage, vectors))
        elif isinstance(stage, OneHotEncoderModel):
            for out, block in _one_hot(stage, vectors).items():
                vectors[out] = _Vector((block,))
        elif isinstance(stage, (VarianceThresholdSelectorModel, UnivariateFeatureSelectorModel)):
            slots = _vector(stage, vectors, "featuresCol").dense()
            # The model lists its features by rank; the output vector keeps them in input order.
            kept = sorted(stage.selectedFeatures)
            vectors[stage.getOutputCol()] = _Vector(([slots[i] for i in kept],))
        elif isinstance(stage, PCAModel):
            vectors[stage.getOutputCol()] = _pca(stage, _vector(stage, vectors))
        else:
            raise _UnsupportedError(f"no compiled form for {name}")

    features = _vector(predictor, vectors, "featuresCol")
    tree = _tree_score(predictor, frame, features, classification)
    if tree is not None:
        return tree
    if isinstance(predictor, LogisticRegressionModel):
        multinomial = predictor.getOrDefault(predictor.family) == "multinomial"
        if not classification or predictor.numClasses != 2 or multinomial:
            raise _UnsupportedError("only a binomial LogisticRegressionModel compiles")
        margin = features.dot(_weights(predictor)) + F.lit(float(predictor.intercept))
        # MLlib's binary raw2probability: p0 = 1 / (1 + exp(-raw0)) with raw0 = -margin, p1 = 1 - p0.
        score = F.lit(1.0) - F.lit(1.0) / (F.lit(1.0) + F.exp(margin))
    elif isinstance(predictor, LinearSVCModel):
        if not classification:
            raise _UnsupportedError("a LinearSVCModel scores a classification")
        margin = features.dot(_weights(predictor)) + F.lit(float(predictor.intercept))
        score = F.lit(1.0) / (F.lit(1.0) + F.exp(-margin))
    elif isinstance(predictor, LinearRegressionModel):
        if classification:
            raise _UnsupportedError("a LinearRegressionModel does not score a classification")
        score = features.dot(_weights(predictor)) + F.lit(float(predictor.intercept))
    else:
        raise _UnsupportedError(f"no compiled form for {type(predictor).__name__}")
    return frame, score.cast("double"), LINEAR_TOLERANCE


_TREE_MODELS = (
    "DecisionTreeClassificationModel",
    "DecisionTreeRegressionModel",
    "RandomForestClassificationModel",
    "RandomForestRegressionModel",
    "GBTClassificationModel",
    "GBTRegressionModel",
)
_XGBOOST_MODELS = ("SparkXGBClassifierModel", "SparkXGBRegressorModel")


def _tree_score(
    predictor: Any, frame: DataFrame, features: _Vector, classification: bool
) -> tuple[DataFrame, Column, float] | None:
    """A tree ensemble's score (`pipeline.model.trees`), or None for a predictor of another kind.

    The slots the trees read become columns first, and the score a column after them: each
    slot is read by many splits, and the score twice (the score and the label at the
    threshold), so Spark computes each once per row instead of inlining it at every use.
    """
    from pipeline.model import trees

    name = type(predictor).__name__
    if name not in _TREE_MODELS + _XGBOOST_MODELS:
        return None
    slots = features.dense()

    def slot(i: int) -> Column:
        return F.col(f"{_SLOT}{i}")

    try:
        if name in _XGBOOST_MODELS:
            score, used = trees.xgboost_score(predictor, slot, classification=classification)
            tolerance = trees.XGBOOST_TOLERANCE
        else:
            score, used = trees.mllib_score(predictor, slot, classification=classification)
            tolerance = LINEAR_TOLERANCE
    except trees.TreeUnsupportedError as exc:
        raise _UnsupportedError(str(exc)) from None
    frame = frame.select("*", *[slots[i].alias(f"{_SLOT}{i}") for i in used])
    frame = frame.select("*", score.cast("double").alias(_TREE_SCORE))
    return frame, F.col(_TREE_SCORE), tolerance


def _weights(predictor: Any) -> list[float]:
    return [float(w) for w in predictor.coefficients.toArray()]


def _vector(stage: Any, vectors: dict[str, _Vector], param: str = "inputCol") -> _Vector:
    column = stage.getOrDefault(stage.getParam(param))
    if column not in vectors:
        raise _UnsupportedError(f"{type(stage).__name__} reads {column!r}, not a compiled vector")
    return vectors[column]


def _scalar_inputs(stage: Any, vectors: dict[str, _Vector]) -> None:
    """A scalar stage must not read a vector column (it would need the materialised vector)."""
    inputs: list[str] = []
    for param in ("inputCols", "inputCol"):
        if stage.hasParam(param) and stage.isDefined(stage.getParam(param)):
            value = stage.getOrDefault(stage.getParam(param))
            inputs += list(value) if isinstance(value, list) else [value]
    if any(c in vectors for c in inputs):
        raise _UnsupportedError(f"{type(stage).__name__} reads a vector column")


def _assemble(stage: Any, frame: DataFrame, vectors: dict[str, _Vector]) -> _Vector:
    if stage.getHandleInvalid() != "keep":
        # "error" fails and "skip" drops a row with a null; only "keep" (null -> NaN) is a value.
        raise _UnsupportedError(f"VectorAssembler with handleInvalid={stage.getHandleInvalid()}")
    numeric = ("double", "float", "int", "bigint", "smallint", "tinyint", "boolean", "decimal")
    types = dict(frame.dtypes)
    segments: list[_Segment] = []
    for column in stage.getInputCols():
        if column in vectors:
            segments += vectors[column].segments
        elif types.get(column, "").startswith(numeric):
            segments.append([F.coalesce(F.col(column).cast("double"), F.lit(math.nan))])
        else:
            raise _UnsupportedError(f"VectorAssembler input {column!r} is {types.get(column)}")
    return _Vector(tuple(segments))


def _standard_scale(stage: Any, vector: _Vector) -> _Vector:
    with_mean, with_std = stage.getWithMean(), stage.getWithStd()
    means = [float(m) for m in stage.mean.toArray()]
    # MLlib scales by the reciprocal, and by 0 where the training column was constant.
    scales = [0.0 if s == 0 else 1.0 / float(s) for s in stage.std.toArray()]
    out: list[Column] = []
    for i, slot in enumerate(vector.dense()):
        value = slot - F.lit(means[i]) if with_mean else slot
        out.append(value * F.lit(scales[i]) if with_std else value)
    return _Vector((out,))


def _one_hot(stage: Any, vectors: dict[str, _Vector]) -> dict[str, _OneHot]:
    if stage.getHandleInvalid() != "error":
        raise _UnsupportedError("OneHotEncoder with handleInvalid=keep")
    _scalar_inputs(stage, vectors)
    if stage.isDefined(stage.inputCols):
        inputs, outputs = stage.getInputCols(), stage.getOutputCols()
    else:
        inputs, outputs = [stage.getInputCol()], [stage.getOutputCol()]
    drop = 1 if stage.getDropLast() else 0
    return {
        out: _OneHot(F.col(col).cast("double"), int(size) - drop)
        for col, out, size in zip(inputs, outputs, stage.categorySizes, strict=True)
    }


def _pca(stage: Any, vector: _Vector) -> _Vector:
    pc = stage.pc.toArray()  # n x k: component j is column j, applied without centring
    dense = _Vector((vector.dense(),))
    return _Vector(([dense.dot([float(w) for w in pc[:, j]]) for j in range(pc.shape[1])],))


def check_against_transform(
    model: PipelineModel,
    rows: DataFrame,
    *,
    classification: bool,
    sample: int = 1000,
    tolerance: float | None = None,
) -> str | None:
    """Compare the compiled score with `transform` on up to `sample` of the rows.

    None when every score agrees within `tolerance` (relative to the score's size, at least 1;
    by default the model kind's: `LINEAR_TOLERANCE`, or single precision for XGBoost),
    else why not: no compiled form, no rows to compare on, or the worst row's gap. The sample is
    brought to the driver and rebuilt as a local frame, so both sides score exactly the same rows.
    """
    from pyspark.sql.types import LongType, StructField, StructType

    try:
        # Lazy: finds a stage without a compiled form before any row is read.
        _, _, default_tolerance = _compile(model, rows, classification)
    except _UnsupportedError as exc:
        return str(exc)
    if tolerance is None:
        tolerance = default_tolerance
    taken = rows.limit(sample).collect()
    if not taken:
        return "no rows to compare the compiled score with transform on"
    schema = StructType([StructField(_ROW, LongType(), False), *rows.schema.fields])
    local = rows.sparkSession.createDataFrame([(i, *row) for i, row in enumerate(taken)], schema)
    frame, score, _ = _compile(model, local, classification)
    ours = {r[_ROW]: r[SCORE] for r in frame.select(_ROW, score.alias(SCORE)).collect()}
    scored, expected, _ = model_scores(model, local, classification=classification, compiled=False)
    worst: tuple[float, int] | None = None
    for r in scored.select(_ROW, expected.alias(SCORE)).collect():
        a, b = ours.get(r[_ROW]), r[SCORE]
        gap = _gap(a, b)
        size = abs(b) if b is not None and math.isfinite(b) else 1.0
        if gap > tolerance * max(1.0, size) and (worst is None or gap > worst[0]):
            worst = (gap, int(r[_ROW]))
    if worst is None:
        return None
    return f"the compiled and transform scores differ by {worst[0]:.3g} on sample row {worst[1]}"


def _gap(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b)
