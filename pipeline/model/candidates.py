"""Candidate algorithms: MLlib estimators and their parameter grids, from configuration."""

from __future__ import annotations

from typing import Any

from pipeline.config.choices import CLASSIFIER_ALGORITHMS, REGRESSOR_ALGORITHMS
from pipeline.config.stages import CandidateSpec
from pipeline.errors import ConfigError
from pipeline.model.preprocess import FEATURES
from pipeline.names import LABEL

XGBOOST = ("xgboost", "xgboost_regressor")
_SEEDED = ("random_forest", "gbt", "random_forest_regressor", "gbt_regressor")
# Every MLlib classifier and regressor takes a weight column (XGBoost's is given when it is built).
_WEIGHTED = tuple(a for a in (*CLASSIFIER_ALGORITHMS, *REGRESSOR_ALGORITHMS) if a not in XGBOOST)


def make_estimator(
    candidate: CandidateSpec,
    params: dict[str, Any],
    *,
    seed: int,
    weight_col: str | None = None,
    implicit: bool = True,
    where: str = "pipeline.train.candidates",
) -> Any:
    """An MLlib estimator for one grid point; a `ConfigError` for an unknown parameter name.
    `implicit` is ALS's implicitPrefs (the recommendation's feedback kind)."""
    from pyspark.ml.classification import (
        GBTClassifier,
        LinearSVC,
        LogisticRegression,
        NaiveBayes,
        RandomForestClassifier,
    )
    from pyspark.ml.recommendation import ALS
    from pyspark.ml.regression import GBTRegressor, LinearRegression, RandomForestRegressor

    if candidate.algorithm == "als":
        from pipeline.model.ranking import ITEM_INDEX, RATING, USER_INDEX

        # Implicit feedback (views, carts, purchases) or explicit ratings, as the recommend
        # section says; users and items unknown to the model are dropped from predictions
        # rather than scored NaN.
        estimator = ALS(
            userCol=USER_INDEX,
            itemCol=ITEM_INDEX,
            ratingCol=RATING,
            implicitPrefs=implicit,
            coldStartStrategy="drop",
            seed=seed,
        )
        # ALS splits users and items into 10 blocks each by default, whatever the cluster: on a
        # few cores that is mostly task overhead. One block per core (set explicitly to override).
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            blocks = max(1, session.sparkContext.defaultParallelism)
            estimator.setNumUserBlocks(blocks).setNumItemBlocks(blocks)
        return _set_params(estimator, candidate, params, where, "ALS")
    if candidate.algorithm in XGBOOST:
        return _set_params(
            _xgboost(candidate.algorithm, seed=seed, weight_col=weight_col),
            candidate,
            params,
            where,
            "SparkXGBClassifier" if candidate.algorithm == "xgboost" else "SparkXGBRegressor",
        )
    classes = {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "gbt": GBTClassifier,
        "linear_svc": LinearSVC,
        "naive_bayes": NaiveBayes,
        "linear_regression": LinearRegression,
        "random_forest_regressor": RandomForestRegressor,
        "gbt_regressor": GBTRegressor,
    }
    cls = classes.get(candidate.algorithm)
    if cls is None:
        raise ConfigError(
            f"algorithm '{candidate.algorithm}' is not a classifier or regressor",
            key=f"{where}.{candidate.name}.algorithm",
        )
    estimator = cls(featuresCol=FEATURES, labelCol=LABEL)
    if candidate.algorithm == "naive_bayes":
        # Scaled features can be negative; the Gaussian variant accepts any real value.
        estimator.setModelType("gaussian")
    if candidate.algorithm in _SEEDED:
        estimator.setSeed(seed)
    if weight_col and candidate.algorithm in _WEIGHTED:
        estimator.setWeightCol(weight_col)
    return _set_params(estimator, candidate, params, where, cls.__name__)


def _xgboost(algorithm: str, *, seed: int, weight_col: str | None) -> Any:
    """XGBoost's own Spark estimator on the preprocessing stages' vector: one worker per task
    slot (each a Spark task that trains on its partition, joined by XGBoost's allreduce),
    histogram trees, the run's seed."""
    try:
        from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor
    except ImportError as exc:  # a cluster whose executors' environment lacks it
        raise ConfigError(
            f"algorithm '{algorithm}' needs the xgboost package (xgboost-cpu) in this "
            "environment and on every executor (docs/CLUSTER.md)"
        ) from exc
    from pyspark.sql import SparkSession

    # A barrier stage of num_workers tasks must all run at once: one per task slot the session
    # has now (not the default parallelism, which may exceed the slots and would then wait for
    # ever). `num_workers` in the candidate's params overrides it.
    from xgboost.spark.utils import _get_max_num_concurrent_tasks

    session = SparkSession.getActiveSession()
    slots = _get_max_num_concurrent_tasks(session.sparkContext) if session is not None else 1
    workers = max(1, slots)
    cls = SparkXGBClassifier if algorithm == "xgboost" else SparkXGBRegressor
    kwargs: dict[str, Any] = {"weight_col": weight_col} if weight_col else {}
    return cls(
        features_col=FEATURES,
        label_col=LABEL,
        num_workers=workers,
        random_state=seed,
        tree_method="hist",
        **kwargs,
    )


def _set_params(
    estimator: Any, candidate: CandidateSpec, params: dict[str, Any], where: str, cls_name: str
) -> Any:
    for name, value in params.items():
        if not estimator.hasParam(name):
            known = ", ".join(sorted(p.name for p in estimator.params))
            raise ConfigError(
                f"'{name}' is not a parameter of {cls_name} (known: {known})",
                key=f"{where}.{candidate.name}.{name}",
            )
        estimator.set(estimator.getParam(name), value)
    return estimator


def model_summary(model: Any, names: list[str]) -> dict[str, float]:
    """Feature importances (trees) or coefficients (linear models) under the feature names."""
    values: list[float] | None = None
    if hasattr(model, "get_feature_importances"):  # XGBoost: gain per feature, f0, f1, ...
        gains = model.get_feature_importances(importance_type="gain")
        total = sum(gains.values()) or 1.0
        values = [float(gains.get(f"f{i}", 0.0)) / total for i in range(len(names))]
    elif hasattr(model, "featureImportances"):
        values = [float(v) for v in model.featureImportances.toArray()]
    elif hasattr(model, "coefficients"):
        values = [float(v) for v in model.coefficients.toArray()]
    if values is None or len(values) != len(names):
        return {}
    return dict(zip(names, values, strict=True))
