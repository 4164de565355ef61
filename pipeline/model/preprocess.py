"""Preprocessing as MLlib stages, fitted inside the saved model so scoring applies what training fit.

Order: missing indicators -> imputation -> (rare-category grouping -> index -> one-hot) ->
numeric assembly -> scaling -> final assembly -> variance threshold -> univariate selection -> PCA.
Everything that learns from data (imputer, grouper, indexer, scaler, selectors, PCA) is an
Estimator, so it is fitted on whatever rows `fit` is given: the fold's training rows during
cross-validation, the training split for the final model, never test rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCols
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.config.stages import ModelInputSpec

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel, Transformer

FEATURES = "features"
RARE = "__rare__"
UNSEEN = "__unseen__"


class _RareParams(HasInputCols):
    # MLlib persists params by attribute name, so they follow its camelCase convention.
    minFrequency: Param[float] = Param(  # noqa: N815
        Params._dummy(),
        "minFrequency",
        "share of rows below which a value is rare",
        TypeConverters.toFloat,
    )
    keptJson: Param[str] = Param(  # noqa: N815
        Params._dummy(), "keptJson", "JSON: column -> values kept", TypeConverters.toString
    )


class RareCategoryGrouper(
    Estimator["RareCategoryGroupingModel"],
    _RareParams,
    DefaultParamsReadable["RareCategoryGrouper"],
    DefaultParamsWritable,
):
    """Replace categorical values seen in less than `minFrequency` of the rows by `__rare__`."""

    def __init__(self, *, inputCols: list[str] | None = None, minFrequency: float = 0.0) -> None:
        super().__init__()
        self._setDefault(minFrequency=0.0, keptJson="{}")
        self._set(minFrequency=minFrequency)
        if inputCols is not None:
            self._set(inputCols=inputCols)

    def _fit(self, dataset: DataFrame) -> RareCategoryGroupingModel:
        share = self.getOrDefault(self.minFrequency)
        total = dataset.count()
        kept: dict[str, list[str]] = {}
        for col in self.getInputCols():
            counts = dataset.groupBy(col).count().where(F.col(col).isNotNull())
            rows = counts.where(F.col("count") >= F.lit(share * total)).select(col).collect()
            kept[col] = sorted(str(r[0]) for r in rows)
        model = RareCategoryGroupingModel(inputCols=self.getInputCols(), keptJson=json.dumps(kept))
        return model


class RareCategoryGroupingModel(
    Model, _RareParams, DefaultParamsReadable["RareCategoryGroupingModel"], DefaultParamsWritable
):
    """The fitted grouper: values outside the kept lists become `__rare__` (nulls stay null)."""

    def __init__(self, *, inputCols: list[str] | None = None, keptJson: str = "{}") -> None:
        super().__init__()
        self._setDefault(minFrequency=0.0, keptJson="{}")
        self._set(keptJson=keptJson)
        if inputCols is not None:
            self._set(inputCols=inputCols)

    def kept(self) -> dict[str, list[str]]:
        """Column -> the values kept as themselves."""
        return dict(json.loads(self.getOrDefault(self.keptJson)))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        kept = self.kept()
        out = dataset
        for col in self.getInputCols():
            values = kept.get(col, [])
            c = F.col(col)
            out = out.withColumn(col, F.when(c.isNull() | c.isin(values), c).otherwise(F.lit(RARE)))
        return out


def indicator_name(column: str) -> str:
    """Name of the missing-indicator column of a numeric column."""
    return f"{column}__missing"


def build_preprocessing(
    spec: ModelInputSpec,
    *,
    label: str = "label",
    classification: bool = True,
    pca_k: int | None = None,
) -> list[Any]:
    """Unfitted MLlib stages that turn feature-table columns into the `features` vector."""
    from pyspark.ml.feature import (
        PCA,
        Imputer,
        MinMaxScaler,
        OneHotEncoder,
        SQLTransformer,
        StandardScaler,
        StringIndexer,
        UnivariateFeatureSelector,
        VarianceThresholdSelector,
        VectorAssembler,
    )

    stages: list[Any] = []
    numeric_cols: list[str] = []
    if spec.numeric:
        casts = ", ".join(f"CAST(`{c}` AS DOUBLE) AS `{c}__num`" for c in spec.numeric)
        indicators = ""
        if spec.impute.indicators:
            indicators = ", " + ", ".join(
                f"CAST(`{c}` IS NULL AS DOUBLE) AS `{indicator_name(c)}`" for c in spec.numeric
            )
        stages.append(SQLTransformer(statement=f"SELECT *, {casts}{indicators} FROM __THIS__"))
        imputed = [f"{c}__imp" for c in spec.numeric]
        stages.append(
            Imputer(
                inputCols=[f"{c}__num" for c in spec.numeric],
                outputCols=imputed,
                strategy=spec.impute.strategy,
            )
        )
        numeric_cols = imputed + (
            [indicator_name(c) for c in spec.numeric] if spec.impute.indicators else []
        )
    vector_parts: list[str] = []
    if numeric_cols:
        stages.append(
            VectorAssembler(inputCols=numeric_cols, outputCol="_num_vec", handleInvalid="keep")
        )
        if spec.scale == "standard":
            stages.append(
                StandardScaler(
                    inputCol="_num_vec", outputCol="_num_scaled", withMean=True, withStd=True
                )
            )
            vector_parts.append("_num_scaled")
        elif spec.scale == "minmax":
            stages.append(MinMaxScaler(inputCol="_num_vec", outputCol="_num_scaled"))
            vector_parts.append("_num_scaled")
        else:
            vector_parts.append("_num_vec")
    if spec.categorical:
        if spec.encode.min_frequency > 0:
            stages.append(
                RareCategoryGrouper(
                    inputCols=list(spec.categorical), minFrequency=spec.encode.min_frequency
                )
            )
        indexed = [f"{c}__idx" for c in spec.categorical]
        # handleInvalid=keep: nulls and values never seen in training get their own index.
        stages.append(
            StringIndexer(
                inputCols=list(spec.categorical),
                outputCols=indexed,
                handleInvalid="keep",
                stringOrderType="frequencyDesc",
            )
        )
        if spec.encode.one_hot:
            encoded = [f"{c}__ohe" for c in spec.categorical]
            # dropLast=False keeps the indexer's unseen/null bucket as its own slot; the indexer never
            # emits an index outside its range, so the encoder needs no extra "invalid" slot.
            stages.append(
                OneHotEncoder(
                    inputCols=indexed, outputCols=encoded, dropLast=False, handleInvalid="error"
                )
            )
            vector_parts += encoded
        else:
            vector_parts += indexed
    current = "_assembled"
    stages.append(VectorAssembler(inputCols=vector_parts, outputCol=current, handleInvalid="keep"))
    if spec.select.variance_threshold is not None:
        stages.append(
            VarianceThresholdSelector(
                featuresCol=current,
                outputCol="_var_selected",
                varianceThreshold=spec.select.variance_threshold,
            )
        )
        current = "_var_selected"
    if spec.select.univariate_top_k is not None:
        selector = UnivariateFeatureSelector(
            featuresCol=current,
            outputCol="_uni_selected",
            labelCol=label,
            selectionMode="numTopFeatures",
        )
        test = spec.select.univariate_test
        if test == "auto":
            test = "anova" if classification else "f_regression"
        # MLlib picks the statistical test from the declared feature and label types.
        feature_type, label_type = {
            "anova": ("continuous", "categorical"),
            "f_regression": ("continuous", "continuous"),
            "chi2": ("categorical", "categorical"),
        }[test]
        selector.setFeatureType(feature_type).setLabelType(label_type)
        selector.setSelectionThreshold(spec.select.univariate_top_k)
        stages.append(selector)
        current = "_uni_selected"
    k = pca_k if pca_k is not None else (spec.pca.k if spec.pca is not None else None)
    if k is not None:
        stages.append(PCA(k=k, inputCol=current, outputCol="_pca"))
        current = "_pca"
    stages.append(SQLTransformer(statement=f"SELECT *, `{current}` AS `{FEATURES}` FROM __THIS__"))
    return stages


def feature_names(spec: ModelInputSpec, fitted: PipelineModel | Sequence[Transformer]) -> list[str]:
    """Names of the entries of the `features` vector, in order, from the fitted stages.

    Numeric columns (and their missing indicators) keep their names; one-hot slots are
    `<column>=<value>` (with `__unseen__` for the unseen/null bucket); selectors keep the names they
    select; PCA gives `pc_1..k`.
    """
    from pyspark.ml.feature import (
        PCAModel,
        StringIndexerModel,
        UnivariateFeatureSelectorModel,
        VarianceThresholdSelectorModel,
    )

    stages: list[Transformer] = list(fitted.stages) if hasattr(fitted, "stages") else list(fitted)
    names: list[str] = list(spec.numeric)
    if spec.numeric and spec.impute.indicators:
        names += [indicator_name(c) for c in spec.numeric]
    for stage in stages:
        if isinstance(stage, StringIndexerModel):
            for col, labels in zip(spec.categorical, stage.labelsArray, strict=True):
                if spec.encode.one_hot:
                    names += [f"{col}={v}" for v in labels] + [f"{col}={UNSEEN}"]
                else:
                    names.append(col)
        elif isinstance(stage, (VarianceThresholdSelectorModel, UnivariateFeatureSelectorModel)):
            names = [names[i] for i in stage.selectedFeatures]
        elif isinstance(stage, PCAModel):
            names = [f"pc_{i + 1}" for i in range(stage.getK())]
    return names


def choose_pca_k(
    spec: ModelInputSpec, fit_df: DataFrame, *, classification: bool = True
) -> int | None:
    """The number of PCA components: the configured `k`, or the fewest components whose explained
    variance reaches `variance`, measured on `fit_df` (the training split only, never test rows)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import PCA

    if spec.pca is None:
        return None
    if spec.pca.k is not None:
        return spec.pca.k
    target = spec.pca.variance or 1.0
    without_pca = spec.model_copy(update={"pca": None})
    prep = Pipeline(stages=build_preprocessing(without_pca, classification=classification)).fit(
        fit_df
    )
    vectors = prep.transform(fit_df).select(FEATURES)
    first = vectors.first()
    if first is None:
        return None
    width = int(first[FEATURES].size)
    explained = PCA(k=width, inputCol=FEATURES, outputCol="_all_pcs").fit(vectors).explainedVariance
    cumulative = 0.0
    for i, share in enumerate(explained.toArray()):
        cumulative += float(share)
        if cumulative >= target - 1e-12:
            return i + 1
    return width
